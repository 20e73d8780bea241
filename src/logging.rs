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

use tracing_subscriber::filter::{LevelFilter, Targets};
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
/// with the audit events on, and the level the `log` facade is to be set
/// to for it.
fn filter(level: &str) -> (EnvFilter, log::LevelFilter) {
    let filter = EnvFilter::builder()
        .parse(level)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let most = log_level(&filter);
    (with_audit(filter, level), most)
}

/// The most verbose level `filter` lets through (before the audit
/// directive, which is `tracing`'s), for the `log` facade's own max level
/// (Pingora logs through it): a `log` call above it then costs one
/// comparison. Left at `trace`, each of Pingora's `debug!` points built a
/// record and asked the subscriber (behind the reload layers' locks) on
/// every request: 8,500 instructions of an HTTP/2 request
/// (`benches/README.md`, issue 15).
fn log_level(filter: &EnvFilter) -> log::LevelFilter {
    use tracing_subscriber::filter::LevelFilter as L;
    match <EnvFilter as Layer<Registry>>::max_level_hint(filter).unwrap_or(L::TRACE) {
        L::OFF => log::LevelFilter::Off,
        L::ERROR => log::LevelFilter::Error,
        L::WARN => log::LevelFilter::Warn,
        L::INFO => log::LevelFilter::Info,
        L::DEBUG => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
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

/// What Pingora logs at ERROR or WARN level although a client caused it
/// (one who connects and goes away, a scanner): (target, message start).
/// Such lines are written only when the `log` facade is at `debug` level;
/// a flood of them cannot fill the log (the TLS handshakes, which vigile
/// does itself, are counted in `vigile_edge_refusals_total`).
const CLIENT_NOISE: [(&str, &str); 2] = [
    // An HTTP/2 client that closes before its preface and settings.
    ("pingora_core::apps", "H2 handshake error"),
    // A TLS peer that resets instead of closing (a client, or an upstream
    // over TLS: the same Pingora code shuts both down).
    ("pingora_core::protocols::tls", "TLS shutdown failed"),
];

/// `F`, which also holds back the [`CLIENT_NOISE`] lines below `debug`.
struct ClientNoise<F>(F);

impl<S, F: tracing_subscriber::layer::Filter<S>> tracing_subscriber::layer::Filter<S>
    for ClientNoise<F>
{
    fn enabled(&self, meta: &tracing::Metadata<'_>, cx: &Context<'_, S>) -> bool {
        self.0.enabled(meta, cx)
    }

    fn callsite_enabled(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        self.0.callsite_enabled(meta)
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, cx: &Context<'_, S>) -> bool {
        let meta = event.metadata();
        // Only `log` records (Pingora's: their call site's target is "log",
        // theirs is a field) at ERROR or WARN are looked at.
        if *meta.level() > tracing::Level::WARN
            || meta.target() != "log"
            || log::max_level() >= log::LevelFilter::Debug
        {
            return self.0.event_enabled(event, cx);
        }
        #[derive(Default)]
        struct Record {
            target: String,
            message: String,
        }
        impl tracing::field::Visit for Record {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "log.target" {
                    self.target = value.to_string();
                }
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.message = format!("{value:?}");
                }
            }
        }
        let mut record = Record::default();
        event.record(&mut record);
        let noise = CLIENT_NOISE.iter().any(|(target, start)| {
            record.target.starts_with(target) && record.message.starts_with(start)
        });
        !noise && self.0.event_enabled(event, cx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.0.max_level_hint()
    }
}

/// Installs the log for this process (once; later calls do nothing).
/// `pinned_format` (the command line's) wins over `format` (the config's),
/// now and at every reload.
pub fn init(pinned_format: Option<LogFormat>, format: LogFormat, level: &str) {
    let format = pinned_format.unwrap_or(format);
    let from_env = std::env::var_os("RUST_LOG").is_some();
    let directives = if from_env {
        std::env::var("RUST_LOG").unwrap_or_default()
    } else {
        level.to_string()
    };
    let (env_filter, log_level) = filter(&directives);
    let (filter_layer, filter) = reload::Layer::new(env_filter);
    let (format_layer, format) = reload::Layer::new(format_layer(format));
    // Both layers filtered by target, decided once per call site. A layer
    // without a filter (or with a closure filter, `filter_fn`) beside a
    // filtered one makes every call site of every library "sometimes"
    // enabled: each of h2's many `trace!` points then asked the reload
    // layers (behind locks) on every HTTP/2 frame, 12 % of the CPU of an
    // HTTP/2 request (`benches/README.md`, issue 15).
    let not_audit = ClientNoise(
        Targets::new()
            .with_target(crate::audit::TARGET, LevelFilter::OFF)
            .with_default(LevelFilter::TRACE),
    );
    let only_audit = Targets::new().with_target(crate::audit::TARGET, LevelFilter::TRACE);
    let installed = tracing_subscriber::registry()
        .with(filter_layer)
        .with(format_layer.with_filter(not_audit))
        .with(AuditLines.with_filter(only_audit))
        .try_init();
    if installed.is_ok() {
        // `try_init` set the `log` level from the whole stack's hint, which
        // the per-layer filters raise to `trace`.
        log::set_max_level(log_level);
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
        let (filter, log_level) = filter(level);
        log::set_max_level(log_level);
        if let Err(e) = handles.filter.reload(filter) {
            tracing::warn!(error = %e, "cannot change the log level");
        }
    }
    let format = handles.pinned_format.unwrap_or(format);
    if let Err(e) = handles.format.reload(format_layer(format)) {
        tracing::warn!(error = %e, "cannot change the log format");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_facade_follows_the_most_verbose_level_but_not_the_audit_directive() {
        for (directives, expected) in [
            ("error", log::LevelFilter::Error),
            ("warn", log::LevelFilter::Warn),
            ("info", log::LevelFilter::Info),
            ("warn,pingora_core=debug", log::LevelFilter::Debug),
            ("trace", log::LevelFilter::Trace),
            ("off", log::LevelFilter::Off),
        ] {
            let (filter, level) = filter(directives);
            assert_eq!(level, expected, "{directives}");
            // The audit events still pass the filter itself.
            assert!(
                filter.to_string().contains(crate::audit::TARGET),
                "{directives}"
            );
        }
    }
}
