//! The process's log: lines on stderr through `tracing-subscriber`, a filter that the
//! running server can change (`general.log_level`), and the last warnings and errors kept
//! for the dashboard.

use std::sync::Arc;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

/// Changes the log filter of the running process.
pub type FilterHandle = reload::Handle<EnvFilter, Registry>;

/// Installs the subscriber: `RUST_LOG` when set, else `info` until the configuration says
/// otherwise. Returns the handle that changes the filter later.
pub fn init() -> FilterHandle {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(RecentWarnings)
        .init();
    handle
}

/// Whether `RUST_LOG` sets the filter (it then wins over `general.log_level` at start).
pub fn from_environment() -> bool {
    std::env::var_os("RUST_LOG").is_some()
}

/// The hook the server calls when `general.log_level` changes.
pub fn setter(handle: FilterHandle) -> imss_server::admin::SetLogLevel {
    Arc::new(move |level: &str| {
        let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    })
}

/// Keeps warnings and errors in [`imss_server::metrics::recent_warnings`], except events
/// with a `secret` field.
struct RecentWarnings;

impl<S: tracing::Subscriber> Layer<S> for RecentWarnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > tracing::Level::WARN {
            return;
        }
        // Lines that carry a secret (the one-time admin password) are for the log only.
        if event.metadata().fields().field("secret").is_some() {
            return;
        }
        let mut text = Text::default();
        event.record(&mut text);
        let mut message = text.message;
        if !text.fields.is_empty() {
            message.push_str(" (");
            message.push_str(&text.fields.join(", "));
            message.push(')');
        }
        imss_server::metrics::recent_warnings().push(
            if level == tracing::Level::ERROR {
                "error"
            } else {
                "warn"
            },
            event.metadata().target(),
            message,
        );
    }
}

/// An event's message and its other fields as `key=value`.
#[derive(Default)]
struct Text {
    message: String,
    fields: Vec<String>,
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.fields.push(format!("{}={value}", field.name()));
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields.push(format!("{}={value:?}", field.name()));
        }
    }
}
