//! A real OTLP/gRPC trace receiver on 127.0.0.1:0 (opentelemetry-proto's `TraceService` on a
//! tonic server): it keeps every exported span with its resource, and counts the TCP
//! connections made to it, so a test can also show that nothing connected at all.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One exported span with the attributes of the resource that sent it.
#[derive(Clone, Debug)]
pub struct ExportedSpan {
    pub span: Span,
    pub resource: Vec<KeyValue>,
}

impl ExportedSpan {
    /// The span's trace id in lowercase hex.
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    pub fn parent_span_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// A span attribute as text (strings as they are, numbers and booleans formatted).
    pub fn attribute(&self, key: &str) -> Option<String> {
        find(&self.span.attributes, key)
    }

    /// A resource attribute as text.
    pub fn resource_attribute(&self, key: &str) -> Option<String> {
        find(&self.resource, key)
    }

    /// Every value this span carries anywhere: its name, span and resource attributes, and
    /// its events' names and attributes.
    pub fn every_value(&self) -> Vec<String> {
        let mut values = vec![self.span.name.clone()];
        let events = self.span.events.iter().flat_map(|e| {
            std::iter::once(e.name.clone()).chain(e.attributes.iter().map(|kv| text(&kv.value)))
        });
        values.extend(events);
        values.extend(
            self.span
                .attributes
                .iter()
                .chain(&self.resource)
                .map(|kv| text(&kv.value)),
        );
        values
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn find(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| text(&kv.value))
}

fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<ExportedSpan>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().expect("spans");
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.push(ExportedSpan {
                    span,
                    resource: resource.clone(),
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// The running receiver; stops when dropped.
pub struct OtlpReceiver {
    /// `http://127.0.0.1:PORT`, for `--otlp-endpoint`.
    pub endpoint: String,
    collector: Collector,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl OtlpReceiver {
    pub async fn start() -> OtlpReceiver {
        Self::serve(None).await
    }

    /// Over TLS with this certificate and key (PEM): `endpoint` is
    /// `https://localhost:PORT`.
    pub async fn start_tls(certificate: &[u8], key: &[u8]) -> OtlpReceiver {
        Self::serve(Some(tonic::transport::Identity::from_pem(certificate, key))).await
    }

    async fn serve(identity: Option<tonic::transport::Identity>) -> OtlpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let port = listener.local_addr().expect("address").port();
        let endpoint = match identity {
            Some(_) => format!("https://localhost:{port}"),
            None => format!("http://127.0.0.1:{port}"),
        };
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        let incoming = futures_util::stream::unfold(listener, move |listener| {
            let counted = counted.clone();
            async move {
                let accepted = listener.accept().await.map(|(tcp, _)| tcp);
                counted.fetch_add(1, Ordering::SeqCst);
                Some((accepted, listener))
            }
        });
        let collector = Collector::default();
        let service = TraceServiceServer::new(collector.clone());
        let mut server = tonic::transport::Server::builder();
        if let Some(identity) = identity {
            server = server
                .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                .expect("TLS configuration");
        }
        let task = tokio::spawn(async move {
            let _ = server
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        OtlpReceiver {
            endpoint,
            collector,
            connections,
            task,
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ExportedSpan> {
        self.collector.spans.lock().expect("spans").clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The spans received, once `done` holds for them (polled), or panics after `limit`.
    pub async fn wait_for(
        &self,
        limit: Duration,
        done: impl Fn(&[ExportedSpan]) -> bool,
    ) -> Vec<ExportedSpan> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the expected spans did not arrive within {limit:?}; got {} spans: {:#?}",
                spans.len(),
                spans
                    .iter()
                    .map(|s| (&s.span.name, s.trace_id()))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
