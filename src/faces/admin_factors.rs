//! A user's second factors on the admin face: list them (no secrets: kind, state, times,
//! recovery codes left) and remove one (`…/factors/{kind}`, or `…/factors/passkey/{id}` for
//! one passkey). Removing ends the user's sessions unless `revokeSessions=false` is in the
//! query, as a password change does.

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::response::IntoResponse;
use axum::routing::get;
use http::request::Parts;
use serde_json::{Value, json};

use super::FaceState;
use super::admin::{Admin, AdminError, Answer, Query, UserPath, path_param};
use super::admin_json::rfc3339;
use super::edges::Bearer;
use crate::core::PasskeyInfo;
use crate::domain::{EnrolledFactor, FactorKind};

/// The `{kind}` of a factor route.
struct KindPath(FactorKind);

impl FromRequestParts<FaceState> for KindPath {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &FaceState) -> Result<Self, AdminError> {
        Ok(Self(FactorKind::parse(
            &path_param(parts, state, "kind").await?,
        )?))
    }
}

pub fn factor_json(factor: &EnrolledFactor) -> Value {
    let mut body = json!({
        "kind": factor.kind.as_str(),
        "state": factor.state.as_str(),
        "createdAt": rfc3339(Some(factor.created_at)),
        "verifiedAt": rfc3339(factor.verified_at),
    });
    if factor.kind == FactorKind::RecoveryCodes {
        body["remainingCodes"] = json!(factor.remaining_codes);
    }
    body
}

/// A passkey in the factor list: kind `passkey`, with its id, name and use.
pub fn passkey_json(passkey: &PasskeyInfo) -> Value {
    json!({
        "kind": "passkey",
        "state": "ready",
        "id": passkey.id,
        "name": passkey.name,
        "createdAt": rfc3339(Some(passkey.created_at)),
        "verifiedAt": rfc3339(Some(passkey.created_at)),
        "lastUsedAt": rfc3339(passkey.last_used_at),
        "userVerified": passkey.user_verified,
        "signCount": passkey.sign_count,
        "aaguid": passkey.aaguid,
    })
}

async fn list_factors(
    State(state): State<FaceState>,
    Bearer(principal, ..): Admin,
    UserPath(id): UserPath,
) -> Answer {
    let factors = state.api.core().user_factors(&principal, &id).await?;
    let passkeys = state.api.core().list_passkeys(&principal, &id).await?;
    let data: Vec<Value> = factors
        .iter()
        .map(factor_json)
        .chain(passkeys.iter().map(passkey_json))
        .collect();
    Ok(axum::Json(json!({ "data": data })).into_response())
}

/// `revokeSessions` of a removal's query: true unless it says false.
fn revoke_sessions(query: Query) -> Result<bool, AdminError> {
    let mut revoke = true;
    for (key, value) in query.0 {
        if key == "revokeSessions" || key == "revoke_sessions" {
            revoke = match value.as_str() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(AdminError::validation(
                        "revokeSessions must be true or false",
                    ));
                }
            };
        }
    }
    Ok(revoke)
}

async fn remove_factor(
    State(state): State<FaceState>,
    Bearer(principal, ..): Admin,
    UserPath(id): UserPath,
    KindPath(kind): KindPath,
    query: Query,
) -> Answer {
    let revoke = revoke_sessions(query)?;
    let change = state
        .api
        .core()
        .remove_factor(&principal, &id, kind, revoke)
        .await?;
    let body = json!({
        "message": "Factor removed",
        "kind": kind.as_str(),
        "revokedSessions": change.revoked,
    });
    Ok(axum::Json(body).into_response())
}

async fn remove_passkey(
    State(state): State<FaceState>,
    Bearer(principal, ..): Admin,
    UserPath(id): UserPath,
    parts: PasskeyPath,
    query: Query,
) -> Answer {
    let revoke = revoke_sessions(query)?;
    let change = state
        .api
        .core()
        .remove_passkey(&principal, &id, &parts.0, revoke)
        .await?;
    let body = json!({
        "message": "Factor removed",
        "kind": "passkey",
        "id": parts.0,
        "revokedSessions": change.revoked,
    });
    Ok(axum::Json(body).into_response())
}

/// The `{passkeyId}` of a passkey route: at most 200 characters.
struct PasskeyPath(String);

impl FromRequestParts<FaceState> for PasskeyPath {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &FaceState) -> Result<Self, AdminError> {
        let id = path_param(parts, state, "passkeyId").await?;
        if id.is_empty() || id.chars().count() > 200 || id.chars().any(char::is_control) {
            return Err(AdminError::validation(
                "passkeyId: 1 to 200 characters, no control characters",
            ));
        }
        Ok(Self(id))
    }
}

pub fn routes() -> Router<FaceState> {
    Router::new()
        .route("/auth/admin/api/users/{id}/factors", get(list_factors))
        .route(
            "/auth/admin/api/users/{id}/factors/{kind}",
            axum::routing::delete(remove_factor),
        )
        .route(
            "/auth/admin/api/users/{id}/factors/passkey/{passkeyId}",
            axum::routing::delete(remove_passkey),
        )
}
