//! Traces over OTLP/gRPC, only when `--otlp-endpoint` is set.
//!
//! [`Traces::start`] builds the exporter (tonic, bounded by [`EXPORT_TIMEOUT`] per export), a
//! batch span processor on its own thread, and a `tracing-opentelemetry` layer that
//! `telemetry::init` installs beside the log layer. What becomes a span:
//!
//! - one `request` span per request (`observe.rs`): face, protocol, method (the RPC name or
//!   the route template, the access log's labels), then the HTTP status and the code (gRPC
//!   status, or the HTTP status) of the answer; named `<face> <method>`, kind server; its
//!   parent is the caller's span when the request carries a W3C `traceparent` (and
//!   `tracestate`), so the trace goes on;
//! - a child span per store call (`store.rs`'s `Traced` wrapper, only put in while tracing);
//! - a child span per password hash or check (`core/password.rs`, level debug).
//!
//! Warnings and errors logged inside a span become its events. Attributes carry labels and
//! codes only: never a header value, a body, a token or a password (`tests/api/traces.rs`
//! checks every exported value).
//!
//! Without the setting nothing here runs: no exporter, no layer in the subscriber, no store
//! wrapper; the observe middleware only reads [`installed`] (one relaxed atomic load), and
//! the debug-level password spans are disabled by the log filter at the callsite.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracerProvider};
use tonic::transport::{Certificate, ClientTlsConfig};
use tracing::{Level, Metadata, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::{LevelFilter, filter_fn};
use tracing_subscriber::{Layer, Registry};

use super::labels::Route;
use crate::telemetry::Checked;

/// Longest one export may take, connecting included: an unreachable collector costs the
/// export thread this much per batch and never a request anything.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);

/// Longest the shutdown waits for the last spans to be sent.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The service name in every exported resource.
pub const SERVICE_NAME: &str = "sessiond";

/// Whether the tracing layer is installed in the process's subscriber.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Whether requests are traced (the layer is installed).
pub fn installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

/// A layer of the process's subscriber.
pub type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The OpenTelemetry layer, to install once in the process's subscriber.
pub struct TraceLayer(BoxedLayer);

impl TraceLayer {
    /// The layer, to be installed by the caller right away: from here on requests record
    /// their trace fields and the store is traced.
    pub fn install(self) -> BoxedLayer {
        INSTALLED.store(true, Ordering::Relaxed);
        self.0
    }
}

/// The exporter behind the layer; [`Traces::shutdown`] sends what is still buffered.
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// The exporter to `endpoint` (`http://host:port` or `https://host:port`, OTLP/gRPC) and
    /// its layer, recording `ratio` of the traces that start here. An https collector is
    /// trusted by the public web roots, or only by the authority in `ca_file` when given.
    /// Runs in the tokio runtime (the exporter's channel lives there); connects lazily, so a
    /// collector that is not up yet is no error.
    pub fn start(
        endpoint: &str,
        ca_file: Option<&Path>,
        ratio: f64,
    ) -> anyhow::Result<(Self, TraceLayer)> {
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(EXPORT_TIMEOUT);
        if endpoint.starts_with("https://") {
            exporter = exporter.with_tls_config(tls(ca_file)?);
        } else if ca_file.is_some() {
            anyhow::bail!("otlp-ca-file: only for an https otlp-endpoint, not {endpoint:?}");
        }
        let exporter = exporter
            .build()
            .with_context(|| format!("otlp-endpoint: cannot export to {endpoint:?}"))?;
        // Defaults: a queue of 2048 spans (past it new spans are dropped, never waited for),
        // batches of 512 every 5 s, on the processor's own thread.
        let batches = BatchSpanProcessor::builder(exporter).build();
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                ratio,
            ))))
            .with_span_processor(batches)
            .with_resource(resource())
            .build();
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(SERVICE_NAME))
            .with_filter(Checked(
                filter_fn(exported).with_max_level_hint(LevelFilter::DEBUG),
            ))
            .boxed();
        Ok((Self { provider }, TraceLayer(layer)))
    }

    /// Sends the spans still buffered and stops the exporter, waiting at most
    /// [`SHUTDOWN_TIMEOUT`] (off the async workers: the flush blocks its thread).
    pub async fn shutdown(self) {
        let provider = self.provider;
        let flushed =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT))
                .await;
        match flushed {
            Ok(Ok(())) => tracing::debug!("traces flushed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "traces not flushed at shutdown"),
            Err(e) => tracing::warn!(error = %e, "traces not flushed at shutdown"),
        }
    }
}

/// TLS to the collector: the authority in `ca_file`, or the public web roots.
fn tls(ca_file: Option<&Path>) -> anyhow::Result<ClientTlsConfig> {
    Ok(match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("otlp-ca-file: cannot read {}", path.display()))?;
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
        }
        None => ClientTlsConfig::new().with_webpki_roots(),
    })
}

/// `service.name` and `service.version`; `OTEL_RESOURCE_ATTRIBUTES` may add more.
fn resource() -> Resource {
    Resource::builder()
        .with_service_name(SERVICE_NAME)
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build()
}

/// What the layer exports: sessiond's own spans, and warnings and errors as span events.
fn exported(meta: &Metadata<'_>) -> bool {
    meta.target().starts_with("sessiond") && (meta.is_span() || *meta.level() <= Level::WARN)
}

/// The request headers as the propagator reads them.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Names a request span after its route and makes it the child of the caller's span when
/// the headers carry a valid `traceparent`. Before the span is first entered; nothing when
/// not tracing. The span declares `otel.name` and `otel.kind`.
pub fn begin_request(span: &Span, headers: &HeaderMap, route: &Route) {
    if !installed() {
        return;
    }
    span.record(
        "otel.name",
        tracing::field::display(format_args!("{} {}", route.face, route.method)),
    );
    span.record("otel.kind", "server");
    // An absent or malformed traceparent extracts an empty context: a new trace starts.
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    if let Err(e) = span.set_parent(parent) {
        tracing::debug!(error = %e, "request span not continued");
    }
}

/// Records the answer on a request span: the HTTP status and the code of the access log
/// (the gRPC status on gRPC and gRPC-Web, else the HTTP status), and an error status for
/// server-side failures. Nothing when not tracing. The span declares `status`, `code` and
/// `otel.status_code`.
pub fn end_request(span: &Span, route: &Route, status: u16, code: &str) {
    if !installed() {
        return;
    }
    span.record("status", status);
    span.record("code", code);
    if server_failed(route, status, code) {
        span.record("otel.status_code", "error");
    }
}

/// Whether an answer is the server's failure (OpenTelemetry's conventions: HTTP 5xx; gRPC
/// UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS).
fn server_failed(route: &Route, status: u16, code: &str) -> bool {
    match route.protocol {
        "grpc" | "grpc-web" => matches!(code, "2" | "4" | "12" | "13" | "14" | "15"),
        _ => status >= 500,
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    fn route(protocol: &'static str) -> Route {
        Route {
            face: "session.v2",
            protocol,
            method: Cow::Borrowed("GetSession"),
        }
    }

    #[test]
    fn server_failures_follow_the_protocol() {
        assert!(server_failed(&route("grpc"), 200, "13"));
        assert!(server_failed(&route("grpc-web"), 200, "14"));
        assert!(!server_failed(&route("grpc"), 200, "5"));
        assert!(!server_failed(&route("grpc"), 200, "0"));
        assert!(server_failed(&route("rest"), 503, "503"));
        assert!(!server_failed(&route("connect"), 404, "404"));
    }

    #[test]
    fn only_own_spans_and_warnings_are_exported() {
        struct Probe;
        impl tracing::Callsite for Probe {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!()
            }
        }
        static PROBE: Probe = Probe;
        let meta = |name, target, level, kind| {
            Metadata::new(
                name,
                target,
                level,
                None,
                None,
                None,
                tracing::field::FieldSet::new(&[], tracing::callsite::Identifier(&PROBE)),
                kind,
            )
        };
        use tracing::metadata::Kind;
        assert!(exported(&meta(
            "s",
            "sessiond::store",
            Level::DEBUG,
            Kind::SPAN
        )));
        assert!(exported(&meta(
            "e",
            "sessiond::core",
            Level::WARN,
            Kind::EVENT
        )));
        assert!(!exported(&meta(
            "e",
            "sessiond::ops",
            Level::INFO,
            Kind::EVENT
        )));
        assert!(!exported(&meta("s", "h2::proto", Level::INFO, Kind::SPAN)));
    }

    #[test]
    fn the_caller_trace_is_read_from_traceparent() {
        use opentelemetry::trace::TraceContextExt as _;
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        );
        let cx = TraceContextPropagator::new().extract(&Headers(&headers));
        let remote = cx.span().span_context().clone();
        assert!(remote.is_remote());
        assert_eq!(
            remote.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(remote.span_id().to_string(), "b7ad6b7169203331");
    }
}
