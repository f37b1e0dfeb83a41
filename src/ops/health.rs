//! Liveness and readiness for load balancers and orchestrators: `GET /healthz` answers while
//! the process serves; `GET /readyz` answers 200 only when the store is reachable and fully
//! migrated, 503 otherwise.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use serde_json::json;

use super::Ops;

async fn healthz() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

async fn readyz(State(ops): State<Ops>) -> Response {
    let store = ops.core.store();
    let (status, detail) = match store.ping().await {
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unreachable: {e}"),
        ),
        Ok(()) => match store.schema_ready().await {
            Ok(true) => (StatusCode::OK, String::from("store reachable and migrated")),
            Ok(false) => (
                StatusCode::SERVICE_UNAVAILABLE,
                String::from("store not migrated"),
            ),
            Err(e) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("store unreachable: {e}"),
            ),
        },
    };
    let word = if status == StatusCode::OK {
        "ready"
    } else {
        "unavailable"
    };
    (
        status,
        axum::Json(json!({ "status": word, "store": detail })),
    )
        .into_response()
}

pub fn routes() -> Router<Ops> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}
