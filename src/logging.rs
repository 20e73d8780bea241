//! The log: to stderr, filtered by `RUST_LOG` when it is set, else by
//! `server.log_level`; text or JSON (`server.log_format`). Both can change
//! on a running gateway (a reload): the filter and the formatting layer sit
//! behind `tracing_subscriber::reload` handles.
//!
//! The libraries' events (Pingora's, through the `log` bridge) are redacted
//! before they are written, at every level: they may quote raw requests and
//! headers (`redact.rs`).
//!
//! Audit events (target `vigile::audit`, `audit.rs`) are written as the JSON
//! lines they are, in either format, and pass whatever the level, unless
//! the filter names their target itself (`vigile::audit=off`).

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::{Context, Layer, Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::config::LogFormat;

type Filtered = Layered<reload::Layer<EnvFilter, Registry>, Registry>;
type Format = Box<dyn Layer<Filtered> + Send + Sync>;

struct Handles {
    filter: reload::Handle<EnvFilter, Registry>,
    format: reload::Handle<Format, Filtered>,
    /// `RUST_LOG` was set at start: it stays the filter.
    from_env: bool,
    /// `vigile serve --log-format` was given: it stays the format.
    pinned_format: Option<LogFormat>,
}

static HANDLES: OnceLock<Handles> = OnceLock::new();

fn format_layer(format: LogFormat) -> Format {
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(crate::redact::LogWriter::new(format == LogFormat::Json));
    match format {
        LogFormat::Json => Box::new(layer.json().flatten_event(true)),
        LogFormat::Text => Box::new(layer),
    }
}

/// `level` as a filter (checked at config load; `info` if it fails here),
/// with the audit events on.
fn filter(level: &str) -> EnvFilter {
    with_audit(
        EnvFilter::builder()
            .parse(level)
            .unwrap_or_else(|_| EnvFilter::new("info")),
        level,
    )
}

/// `filter` letting the audit events through, unless `directives` (what it
/// was made of) name their target.
fn with_audit(filter: EnvFilter, directives: &str) -> EnvFilter {
    if directives.contains(crate::audit::TARGET) {
        return filter;
    }
    match format!("{}=info", crate::audit::TARGET).parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

/// Writes each audit event's message (its JSON line) as it is, to stderr.
struct AuditLines;

impl<S: tracing::Subscriber> Layer<S> for AuditLines {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != crate::audit::TARGET {
            return;
        }
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        message.0.push('\n');
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), message.0.as_bytes());
    }
}

/// Installs the log for this process (once; later calls do nothing).
/// `pinned_format` (the command line's) wins over `format` (the config's),
/// now and at every reload.
pub fn init(pinned_format: Option<LogFormat>, format: LogFormat, level: &str) {
    let format = pinned_format.unwrap_or(format);
    let from_env = std::env::var_os("RUST_LOG").is_some();
    let env_filter = if from_env {
        let directives = std::env::var("RUST_LOG").unwrap_or_default();
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        with_audit(filter, &directives)
    } else {
        filter(level)
    };
    let (filter_layer, filter) = reload::Layer::new(env_filter);
    let (format_layer, format) = reload::Layer::new(format_layer(format));
    let not_audit = filter_fn(|meta| meta.target() != crate::audit::TARGET);
    let installed = tracing_subscriber::registry()
        .with(filter_layer)
        .with(format_layer.with_filter(not_audit))
        .with(AuditLines)
        .try_init();
    if installed.is_ok() {
        let _ = HANDLES.set(Handles {
            filter,
            format,
            from_env,
            pinned_format,
        });
    }
}

/// A reload: the new level (unless `RUST_LOG` rules) and format apply to
/// the next events.
pub fn apply(format: LogFormat, level: &str) {
    let Some(handles) = HANDLES.get() else {
        return;
    };
    if !handles.from_env {
        if let Err(e) = handles.filter.reload(filter(level)) {
            tracing::warn!(error = %e, "cannot change the log level");
        }
    }
    let format = handles.pinned_format.unwrap_or(format);
    if let Err(e) = handles.format.reload(format_layer(format)) {
        tracing::warn!(error = %e, "cannot change the log format");
    }
}
