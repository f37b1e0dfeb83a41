//! Operations: what runs around the faces rather than in one of them. The middleware on every
//! request (request id, load shedding, timeout, access log, request metrics), the labels it
//! logs with, the OpenTelemetry traces (`trace`), and the operations routes: `/healthz`,
//! `/readyz`, `/metrics`, `/openapi.json`.
//!
//! `ops` depends on `faces` (for [`crate::faces::Face`], which builds refusals in the shape
//! of a request's face, and the services' tables for labels), never the reverse.

pub mod health;
pub mod labels;
pub mod metrics;
pub mod observe;
pub mod openapi;
pub mod trace;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::sync::Semaphore;

use crate::core::Core;
pub use crate::faces::edges::REQUEST_ID;
pub use metrics::Metrics;

/// Settings and shared state of the operations routes and the middleware. The middleware
/// takes it as axum state, which is cloned for every request: one shared allocation keeps
/// that clone to a single reference count instead of one per field of the core and metrics.
#[derive(Clone)]
pub struct Ops(Arc<Shared>);

/// What [`Ops`] shares.
pub struct Shared {
    pub metrics: Metrics,
    core: Core,
    permits: Arc<Semaphore>,
    timeout: Duration,
}

impl std::ops::Deref for Ops {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Ops {
    /// At most `max_concurrent` requests in flight, each answered within `timeout`.
    pub fn new(
        core: Core,
        max_concurrent: usize,
        timeout: Duration,
        signals: Option<crate::signals::Signals>,
    ) -> Self {
        Self(Arc::new(Shared {
            metrics: Metrics::new(core.clone(), signals),
            core,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            timeout,
        }))
    }

    /// The operations routes, to serve beside the faces (`faces::router`).
    pub fn routes(&self) -> Router {
        health::routes()
            .merge(openapi::routes())
            .route("/metrics", get(metrics::scrape))
            .with_state(self.clone())
    }

    /// `router` with the middleware around every request.
    pub fn observe(&self, router: Router) -> Router {
        router.layer(axum::middleware::from_fn_with_state(
            self.clone(),
            observe::middleware,
        ))
    }
}
