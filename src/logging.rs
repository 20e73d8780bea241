//! The log: to stderr, filtered by `RUST_LOG` when it is set, else by
//! `server.log_level`; text or JSON (`server.log_format`). Both can change
//! on a running gateway (a reload): the filter and the formatting layer sit
//! behind `tracing_subscriber::reload` handles.
//!
//! The libraries' events (Pingora's, through the `log` bridge) are redacted
//! before they are written, at every level: they may quote raw requests and
//! headers (`redact.rs`).

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::layer::{Layer, Layered, SubscriberExt};
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

/// `level` as a filter (checked at config load; `info` if it fails here).
fn filter(level: &str) -> EnvFilter {
    EnvFilter::builder()
        .parse(level)
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the log for this process (once; later calls do nothing).
/// `pinned_format` (the command line's) wins over `format` (the config's),
/// now and at every reload.
pub fn init(pinned_format: Option<LogFormat>, format: LogFormat, level: &str) {
    let format = pinned_format.unwrap_or(format);
    let from_env = std::env::var_os("RUST_LOG").is_some();
    let env_filter = if from_env {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
    } else {
        filter(level)
    };
    let (filter_layer, filter) = reload::Layer::new(env_filter);
    let (format_layer, format) = reload::Layer::new(format_layer(format));
    let installed = tracing_subscriber::registry()
        .with(filter_layer)
        .with(format_layer)
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
