//! The signals' Prometheus metrics, registered on the server's registry by `ops::metrics`:
//! tokens signed, delivery outcomes (delivered: a push receiver took the token or a poll
//! receiver acknowledged it; retried: a push attempt failed and waits its backoff; given up:
//! retried past `--signals-retry-for`), the outbox depth (the tokens waiting: outbox rows
//! plus the terminations after each target's cursor, which push targets sign at delivery;
//! read from the store at scrape time, so on PostgreSQL it counts every replica's targets),
//! and the delivery latency from the
//! event (a session's termination) to its receiver's acknowledgement. Each is labelled by
//! target kind: `stream` (Shared Signals) or `logout` (back-channel logout).
//!
//! Stream control events (verification, stream-updated) count as signed and delivered, but
//! have no event time and so no latency. A token signed again for a retry counts as signed
//! again.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::domain::Time;
use crate::store::signals::TargetKind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    kind: &'static str,
    outcome: &'static str,
}

/// Latency buckets, in seconds: from a push on the same host to a receiver back after hours.
const LATENCY_BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
];

/// The metrics, shared by the routes and the workers of one server.
#[derive(Clone, Debug)]
pub struct SignalMetrics {
    signed: Family<KindLabels, Counter>,
    deliveries: Family<OutcomeLabels, Counter>,
    outbox: Family<KindLabels, Gauge>,
    latency: Family<KindLabels, Histogram>,
}

impl Default for SignalMetrics {
    fn default() -> Self {
        Self {
            signed: Family::default(),
            deliveries: Family::default(),
            outbox: Family::default(),
            latency: Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS)),
        }
    }
}

fn kind(kind: TargetKind) -> KindLabels {
    KindLabels {
        kind: kind.as_str(),
    }
}

impl SignalMetrics {
    /// Registers every signals metric on `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "signals_tokens_signed",
            "Security Event Tokens and logout tokens signed, by target kind",
            self.signed.clone(),
        );
        registry.register(
            "signals_deliveries",
            "Token deliveries by target kind and outcome (delivered, retried, given_up)",
            self.deliveries.clone(),
        );
        registry.register(
            "signals_outbox_depth",
            "Tokens waiting for delivery or acknowledgement, by target kind: outbox rows plus \
             terminations after the targets' cursors",
            self.outbox.clone(),
        );
        registry.register(
            "signals_delivery_latency_seconds",
            "Time from a session's termination to its receiver's acknowledgement of the token",
            self.latency.clone(),
        );
        // Every series exists from the start, at zero.
        for k in [TargetKind::Stream, TargetKind::Logout] {
            let _ = self.signed.get_or_create(&kind(k));
            let _ = self.outbox.get_or_create(&kind(k));
            for outcome in ["delivered", "retried", "given_up"] {
                self.outcome(k, outcome);
            }
        }
    }

    fn outcome(&self, k: TargetKind, outcome: &'static str) -> Counter {
        self.deliveries
            .get_or_create(&OutcomeLabels {
                kind: k.as_str(),
                outcome,
            })
            .clone()
    }

    pub fn signed(&self, k: TargetKind, n: usize) {
        self.signed
            .get_or_create(&kind(k))
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// A receiver took (or acknowledged) a token whose event happened at `occurred_at`.
    pub fn delivered(&self, k: TargetKind, occurred_at: Option<Time>, now: Time) {
        self.outcome(k, "delivered").inc();
        if let Some(at) = occurred_at {
            let micros = now.unix_micros().saturating_sub(at.unix_micros()).max(0);
            let seconds = micros as f64 / 1e6;
            self.latency.get_or_create(&kind(k)).observe(seconds);
        }
    }

    pub fn retried(&self, k: TargetKind) {
        self.outcome(k, "retried").inc();
    }

    pub fn given_up(&self, k: TargetKind) {
        self.outcome(k, "given_up").inc();
    }

    /// Sets the outbox gauges; a kind missing from `depths` has an empty outbox.
    pub fn set_depths(&self, depths: &[(TargetKind, u64)]) {
        for k in [TargetKind::Stream, TargetKind::Logout] {
            let n = depths
                .iter()
                .find_map(|(d, n)| (*d == k).then_some(*n))
                .unwrap_or(0);
            self.outbox
                .get_or_create(&kind(k))
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}
