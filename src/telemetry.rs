//! Logging setup: `tracing` to stderr, text or JSON, filtered by `RUST_LOG` (default `info`).
//! Text is coloured only when stderr is a terminal and `NO_COLOR` is unset or empty, so logs
//! redirected to a file or read by journald carry no escape codes; JSON never is. With
//! `--otlp-endpoint`, `serve` adds the OpenTelemetry layer of [`crate::ops::trace`].

use std::io::IsTerminal as _;

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::ops::trace::{BoxedLayer, TraceLayer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the process's subscriber: the log layer, filtered by `RUST_LOG`, and the trace
/// layer when there is one (`serve` with `--otlp-endpoint`). Without it, `RUST_LOG` filters
/// the whole subscriber, as it always did; with it, each layer has its own filter, so
/// `RUST_LOG` never hides spans from the traces.
pub fn init(format: LogFormat, traces: Option<TraceLayer>) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    match traces {
        None => tracing_subscriber::registry()
            .with(filter)
            .with(logs(format))
            .init(),
        Some(traces) => {
            let layers: Vec<BoxedLayer> =
                vec![logs(format).with_filter(filter).boxed(), traces.install()];
            tracing_subscriber::registry().with(layers).init();
        }
    }
}

/// The log layer: text (coloured on a terminal) or JSON, to stderr.
fn logs<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs
            .with_ansi(colour(std::io::stderr().is_terminal(), no_color))
            .boxed(),
        LogFormat::Json => logs.with_ansi(false).json().boxed(),
    }
}

/// Whether text logs are coloured: on a terminal, unless `NO_COLOR` says otherwise.
fn colour(terminal: bool, no_color: bool) -> bool {
    terminal && !no_color
}

#[cfg(test)]
mod tests {
    use super::colour;

    #[test]
    fn text_is_coloured_only_on_a_terminal_without_no_color() {
        assert!(colour(true, false));
        assert!(!colour(true, true));
        assert!(!colour(false, false));
        assert!(!colour(false, true));
    }
}
