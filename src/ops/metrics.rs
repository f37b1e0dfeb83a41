//! `GET /metrics` in the Prometheus/OpenMetrics text format: requests by face, protocol,
//! method and result code with latency histograms, shed requests, sessions created /
//! terminated / live, password checks, store connection pools, the event feed (subscribers,
//! events delivered, delivery lag), signals (`signals::metrics`) and build information.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::Ops;
use super::labels::Route;
use crate::core::Core;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    face: &'static str,
    protocol: &'static str,
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShedLabels {
    face: &'static str,
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: &'static str,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The metrics, shared by every request.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram>,
    shed: Family<ShedLabels, Counter>,
    sessions_active: Gauge,
    pools: Family<PoolLabels, Gauge>,
    core: Core,
    signals: Option<crate::signals::Signals>,
}

/// Reads the core's counters at scrape time.
struct CoreCounters(Core);

impl std::fmt::Debug for CoreCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CoreCounters")
    }
}

impl Collector for CoreCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats().snapshot();
        for (name, help, value) in [
            (
                "sessions_created",
                "Sessions created since start",
                stats.sessions_created,
            ),
            (
                "sessions_terminated",
                "Sessions terminated since start",
                stats.sessions_terminated,
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let mut checks = encoder.encode_descriptor(
            "password_checks",
            "Password checks since start, by result",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (result, value) in [
            ("passed", stats.password_checks_passed),
            ("failed", stats.password_checks_failed),
        ] {
            let labels = ResultLabels { result };
            ConstCounter::new(value).encode(checks.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl Metrics {
    pub fn new(core: Core, signals: Option<crate::signals::Signals>) -> Self {
        let mut registry = Registry::with_prefix("sessiond");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ])
        });
        let shed = Family::<ShedLabels, Counter>::default();
        let sessions_active = Gauge::default();
        let pools = Family::<PoolLabels, Gauge>::default();
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register(
            "requests",
            "Requests by face, protocol, method and result code",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Request latency",
            latency.clone(),
        );
        registry.register(
            "requests_shed",
            "Requests refused because too many were in flight",
            shed.clone(),
        );
        registry.register(
            "sessions_active",
            "Sessions neither terminated nor expired",
            sessions_active.clone(),
        );
        registry.register(
            "store_connections",
            "Store connections by pool and state",
            pools.clone(),
        );
        registry.register("build_info", "Build information", build);
        let feed = core.feed().metrics().clone();
        registry.register(
            "feed_subscribers",
            "Event feed subscribers right now",
            feed.subscribers,
        );
        registry.register(
            "feed_events_delivered",
            "Session events handed to feed subscribers",
            feed.delivered,
        );
        registry.register(
            "feed_delivery_lag_seconds",
            "Time from a session event to its hand-off to a feed subscriber",
            feed.lag,
        );
        registry.register(
            "feed_held_back_polls",
            "Feed reads repeated soon because committed events waited for an older transaction",
            feed.held_back_polls,
        );
        registry.register_collector(Box::new(CoreCounters(core.clone())));
        if let Some(signals) = &signals {
            signals.metrics().register(&mut registry);
        }
        Self {
            registry: Arc::new(registry),
            requests,
            latency,
            shed,
            sessions_active,
            pools,
            core,
            signals,
        }
    }

    pub fn request(&self, route: &Route, code: &str, elapsed: Duration) {
        let labels = RequestLabels {
            face: route.face,
            protocol: route.protocol,
            method: route.method.to_string(),
            code: code.to_owned(),
        };
        self.latency
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        self.requests.get_or_create(&labels).inc();
    }

    pub fn shed(&self, route: &Route) {
        self.shed
            .get_or_create(&ShedLabels {
                face: route.face,
                protocol: route.protocol,
            })
            .inc();
    }

    /// Reads the values that live in the store, then renders everything.
    async fn render(&self) -> Result<String, std::fmt::Error> {
        let store = self.core.store();
        if let Ok(live) = store.count_live_sessions(self.core.now()).await {
            self.sessions_active
                .set(i64::try_from(live).unwrap_or(i64::MAX));
        }
        for pool in store.pools() {
            let idle = i64::try_from(pool.idle).unwrap_or(i64::MAX);
            self.pools
                .get_or_create(&PoolLabels {
                    pool: pool.name,
                    state: "idle",
                })
                .set(idle);
            self.pools
                .get_or_create(&PoolLabels {
                    pool: pool.name,
                    state: "in_use",
                })
                .set(i64::from(pool.open) - idle);
        }
        if let Some(signals) = &self.signals {
            signals.refresh_metrics().await;
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

pub async fn scrape(State(ops): State<Ops>) -> Response {
    match ops.metrics.render().await {
        Ok(text) => {
            let mut response = text.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
