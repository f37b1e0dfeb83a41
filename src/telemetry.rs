//! Logging setup: `tracing` to stderr, text or JSON, filtered by `RUST_LOG` (default `info`).
//! Text is coloured only when stderr is a terminal and `NO_COLOR` is unset or empty, so logs
//! redirected to a file or read by journald carry no escape codes; JSON never is. With
//! `--otlp-endpoint`, `serve` adds the OpenTelemetry layer of [`crate::ops::trace`].
//!
//! With two layers each filter is per layer, and `tracing-subscriber` carries a per-layer
//! decision from `enabled` to the span or event in a thread-local. A callsite whose interest
//! is cached as "always" skips `enabled`, so it would read whatever the last dynamic check
//! left there (sqlx asks `enabled!` after every query): on PostgreSQL a request span was at
//! times dropped from both layers. [`Checked`] keeps every callsite a layer wants at
//! "sometimes", so its decision is always taken afresh; callsites no layer wants stay cached
//! as "never".

use std::io::IsTerminal as _;

use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber, span};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::layer::{Context, Filter};
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
            let layers: Vec<BoxedLayer> = vec![
                logs(format).with_filter(Checked(filter)).boxed(),
                traces.install(),
            ];
            tracing_subscriber::registry().with(layers).init();
        }
    }
}

/// A per-layer filter whose decision is taken at every span and event it may want, never
/// cached as "always" (see the module header); everything else is the inner filter's.
pub struct Checked<F>(pub F);

impl<S, F: Filter<S>> Filter<S> for Checked<F> {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        self.0.enabled(meta, cx)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if self.0.callsite_enabled(meta).is_never() {
            Interest::never()
        } else {
            Interest::sometimes()
        }
    }

    fn event_enabled(&self, event: &Event<'_>, cx: &Context<'_, S>) -> bool {
        self.0.event_enabled(event, cx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.0.max_level_hint()
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        self.0.on_new_span(attrs, id, ctx)
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        self.0.on_record(id, values, ctx)
    }

    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.0.on_enter(id, ctx)
    }

    fn on_exit(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.0.on_exit(id, ctx)
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        self.0.on_close(id, ctx)
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
