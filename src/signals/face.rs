//! The signals routes. Public: the SSF metadata (`/.well-known/ssf-configuration`, with the
//! issuer's path appended when it has one) and the JWKS (`/.well-known/ssf-jwks.json`). Under the admin face, with a bearer JWT granting
//! `ssf.manage`, and its error shape: SSF stream management (`/auth/admin/api/ssf/…`:
//! stream, status, subjects, verification, poll) and back-channel logout clients
//! (`/auth/admin/api/backchannel-logout-clients`).
//!
//! A stream belongs to the subject of the JWT that created it; other callers are told it does
//! not exist. Every call on a stream, and every poll, is the receiver's activity: it resets
//! the stream's `inactivity_timeout` (see `Signals::activity`). A verification request sooner
//! than `min_verification_interval` after the last one gets 429 with `Retry-After`. Unknown request members are ignored (SSF); members the transmitter sets, sent
//! with another value, are refused. The `Authorization` header a receiver gives for push
//! delivery is sealed at once and never shown again.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Map, Value, json};

use super::{LogoutClient, POLL, PUSH, Signals, targets, tokens};
use crate::domain::{Error, ErrorKind, Permission, Principal, Time, error_ids};
use crate::faces::FaceState;
use crate::faces::admin::AdminError;
use crate::faces::edges;
use crate::store::signals::{TargetKind, TargetRow};

type Admin = edges::Bearer<AdminError>;
type Body = edges::Json<Value, AdminError>;
type Query = edges::Query<AdminError>;
type Answer = Result<Response, AdminError>;

const SSF: &str = "/auth/admin/api/ssf";
const LOGOUT_CLIENTS: &str = "/auth/admin/api/backchannel-logout-clients";
const METADATA: &str = "/.well-known/ssf-configuration";
/// The metadata of an issuer with a path (SSF: the path follows the well-known name).
const METADATA_OF_ISSUER: &str = "/.well-known/ssf-configuration/{*issuer_path}";
pub const JWKS_PATH: &str = "/.well-known/ssf-jwks.json";

/// The complex subject members a receiver must understand to act on our events (SSF
/// `critical_subject_members`): a `session-revoked` SET ends one session, and a receiver
/// that read only its `user` would end all of the user's sessions; such a receiver must
/// drop the event instead. The `user` member is not critical: the session alone names what
/// ended.
pub const CRITICAL_SUBJECT_MEMBERS: [&str; 1] = ["session"];

/// Bounds on what a receiver may store in a stream's configuration.
const MAX_EVENTS_REQUESTED: usize = 64;
const MAX_EVENT_TYPE_BYTES: usize = 512;
const MAX_TEXT_CHARS: usize = 1000;

pub fn routes() -> Router<FaceState> {
    Router::new()
        .route(METADATA, get(metadata))
        .route(METADATA_OF_ISSUER, get(metadata))
        .route(JWKS_PATH, get(jwks))
        .route(
            &format!("{SSF}/stream"),
            get(read_stream)
                .post(create_stream)
                .patch(update_stream)
                .put(replace_stream)
                .delete(delete_stream),
        )
        .route(
            &format!("{SSF}/status"),
            get(read_status).post(update_status),
        )
        .route(&format!("{SSF}/subjects/add"), post(add_subject))
        .route(&format!("{SSF}/subjects/remove"), post(remove_subject))
        .route(&format!("{SSF}/verify"), post(verify))
        .route(&format!("{SSF}/poll/{{stream_id}}"), post(poll))
        .route(LOGOUT_CLIENTS, get(list_clients).post(create_client))
        .route(
            &format!("{LOGOUT_CLIENTS}/{{client_id}}"),
            delete(delete_client),
        )
}

/// The route of a public path (the metadata, with or without an issuer's path, and the
/// JWKS), for the request metrics; `None` for any other path.
pub fn public_route(path: &str) -> Option<&'static str> {
    match path {
        METADATA => Some(METADATA),
        JWKS_PATH => Some(JWKS_PATH),
        _ if path
            .strip_prefix(METADATA)
            .is_some_and(|rest| rest.starts_with('/')) =>
        {
            Some(METADATA_OF_ISSUER)
        }
        _ => None,
    }
}

fn invalid(message: impl Into<String>) -> AdminError {
    Error::invalid_argument(error_ids::SIGNALS_INVALID, message.into()).into()
}

fn not_found(what: &str) -> AdminError {
    Error::not_found(error_ids::SIGNALS_NOT_FOUND, format!("no such {what}")).into()
}

fn signals(state: &FaceState) -> Result<&Signals, AdminError> {
    state.signals.as_ref().ok_or_else(|| {
        Error::failed_precondition(
            error_ids::SIGNALS_OFF,
            "signals are off on this server: on PostgreSQL, give every replica the same \
             --signals-key-file",
        )
        .into()
    })
}

fn manager(principal: &Principal) -> Result<(), AdminError> {
    if principal.can(Permission::SsfManage) {
        Ok(())
    } else {
        Err(Error::permission_denied(
            error_ids::PERMISSION_MISSING,
            "this call needs the ssf.manage permission",
        )
        .into())
    }
}

/// Checks a configured issuer (`--signals-issuer`): an absolute http(s) URL with a host and
/// neither query, fragment nor credentials (SSF 1.0, "Transmitter Configuration Metadata").
pub fn check_issuer(text: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(text).map_err(|_| format!("{text:?} is not an absolute URL"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
        return Err(format!("{text:?} is not an https URL with a host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{text:?} must have neither query nor fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{text:?} must not carry credentials"));
    }
    Ok(())
}

/// Where the metadata of `issuer` is: `/.well-known/ssf-configuration` inserted between the
/// host and the issuer's path, without a terminating `/` (`https://h/t1` →
/// `/.well-known/ssf-configuration/t1`).
fn metadata_path(issuer: &str) -> String {
    let path = reqwest::Url::parse(issuer)
        .map(|u| u.path().trim_end_matches('/').to_owned())
        .unwrap_or_default();
    format!("{METADATA}{path}")
}

/// The URL of one of our routes under the issuer.
fn under(issuer: &str, path: &str) -> String {
    format!("{}{path}", issuer.trim_end_matches('/'))
}

/// The issuer: the configured one as it is written, or the URL the caller used.
fn issuer(signals: &Signals, headers: &HeaderMap) -> String {
    if let Some(issuer) = &signals.settings().issuer {
        return issuer.clone();
    }
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

/// The transmitter metadata, at the one path its issuer gives (SSF 1.0): with an issuer
/// `https://h/t1`, `/.well-known/ssf-configuration/t1`, and any other path is 404 (its
/// `issuer` would not be the one a receiver derived the URL from). The other endpoints are
/// under the issuer. Every subject is in every stream unless removed (`default_subjects`).
async fn metadata(
    State(state): State<FaceState>,
    headers: HeaderMap,
    uri: axum::extract::OriginalUri,
) -> Answer {
    let signals = signals(&state)?;
    let iss = issuer(signals, &headers);
    let path = metadata_path(&iss);
    if uri.path() != path {
        return Err(Error::not_found(
            error_ids::SIGNALS_NOT_FOUND,
            format!("the metadata of the issuer {iss} is at {path}"),
        )
        .into());
    }
    let body = json!({
        "spec_version": "1_0",
        "issuer": iss,
        "jwks_uri": under(&iss, JWKS_PATH),
        "delivery_methods_supported": [PUSH, POLL],
        "configuration_endpoint": under(&iss, &format!("{SSF}/stream")),
        "status_endpoint": under(&iss, &format!("{SSF}/status")),
        "add_subject_endpoint": under(&iss, &format!("{SSF}/subjects/add")),
        "remove_subject_endpoint": under(&iss, &format!("{SSF}/subjects/remove")),
        "verification_endpoint": under(&iss, &format!("{SSF}/verify")),
        "critical_subject_members": CRITICAL_SUBJECT_MEMBERS,
        "authorization_schemes": [{"spec_urn": "urn:ietf:rfc:6749"}],
        "default_subjects": "ALL",
    });
    Ok(axum::Json(body).into_response())
}

async fn jwks(State(state): State<FaceState>) -> Answer {
    let signals = signals(&state)?;
    Ok((
        [(http::header::CACHE_CONTROL, "max-age=60")],
        axum::Json(signals.jwks()),
    )
        .into_response())
}

/// The value of a transmitter-set member of a stream's configuration.
fn transmitter_member(signals: &Signals, row_id: &str, config: &Value, member: &str) -> Value {
    let settings = signals.settings();
    match member {
        "stream_id" => Value::String(row_id.to_owned()),
        "min_verification_interval" => json!(settings.min_verification_interval.as_secs()),
        "inactivity_timeout" => settings
            .inactivity_timeout
            .map_or(Value::Null, |t| json!(t.as_secs())),
        _ => config[member].clone(),
    }
}

/// A stream as its receiver sees it.
fn stream_json(signals: &Signals, row: &TargetRow) -> Value {
    let mut out = row.config.clone();
    if let Some(object) = out.as_object_mut() {
        object.remove("owner");
        object.insert("stream_id".into(), Value::String(row.id.clone()));
        for member in ["min_verification_interval", "inactivity_timeout"] {
            let value = transmitter_member(signals, &row.id, &row.config, member);
            if !value.is_null() {
                object.insert(member.into(), value);
            }
        }
    }
    out
}

/// The caller's stream by id; the call is its receiver's activity.
async fn own_stream(
    signals: &Signals,
    principal: &Principal,
    id: Option<&str>,
) -> Result<TargetRow, AdminError> {
    let id = id.ok_or_else(|| invalid("stream_id is required"))?;
    let row = signals
        .store()
        .target(TargetKind::Stream, id)
        .await
        .map_err(Error::from)?;
    let row = row
        .filter(|r| r.config["owner"] == principal.user_id.as_str())
        .ok_or_else(|| not_found("stream"))?;
    signals.activity(&row).await?;
    Ok(row)
}

fn query_param(query: &Query, name: &str) -> Option<String> {
    query
        .0
        .iter()
        .find_map(|(k, v)| (k == name).then(|| v.clone()))
}

fn string_member<'a>(body: &'a Value, name: &str) -> Result<Option<&'a str>, AdminError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format!("{name} must be a string"))),
    }
}

/// A string member of at most [`MAX_TEXT_CHARS`] characters.
fn text_member<'a>(body: &'a Value, name: &str) -> Result<Option<&'a str>, AdminError> {
    let text = string_member(body, name)?;
    if text.is_some_and(|t| t.chars().count() > MAX_TEXT_CHARS) {
        return Err(invalid(format!(
            "{name} must be at most {MAX_TEXT_CHARS} characters"
        )));
    }
    Ok(text)
}

fn object(body: &Value) -> Result<&Map<String, Value>, AdminError> {
    body.as_object()
        .ok_or_else(|| invalid("the request body must be a JSON object"))
}

/// The transmitter-set members a receiver may repeat but not change.
const TRANSMITTER_MEMBERS: [&str; 7] = [
    "stream_id",
    "iss",
    "aud",
    "events_supported",
    "events_delivered",
    "min_verification_interval",
    "inactivity_timeout",
];

/// Applies the receiver's members of `body` to a stream's configuration (`replace`: missing
/// members are removed, as for PUT). Returns the new `Authorization` header, if one was given.
fn apply_receiver_members(
    signals: &Signals,
    config: &mut Value,
    stream_id: &str,
    body: &Value,
    replace: bool,
) -> Result<Option<String>, AdminError> {
    object(body)?;
    for member in TRANSMITTER_MEMBERS {
        let current = transmitter_member(signals, stream_id, config, member);
        if let Some(given) = body.get(member)
            && *given != current
        {
            return Err(invalid(format!("{member} is set by the transmitter")));
        }
    }
    if let Some(requested) = body.get("events_requested") {
        let list = requested
            .as_array()
            .filter(|a| a.iter().all(Value::is_string))
            .ok_or_else(|| invalid("events_requested must be an array of strings"))?;
        let long = |e: &Value| e.as_str().is_some_and(|e| e.len() > MAX_EVENT_TYPE_BYTES);
        if list.len() > MAX_EVENTS_REQUESTED || list.iter().any(long) {
            return Err(invalid(format!(
                "events_requested: at most {MAX_EVENTS_REQUESTED} event types of at most \
                 {MAX_EVENT_TYPE_BYTES} bytes each"
            )));
        }
        config["events_requested"] = Value::Array(list.clone());
    } else if replace {
        config["events_requested"] = json!([]);
    }
    let requested: Vec<&str> = config["events_requested"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let delivered: Vec<&str> = tokens::EVENTS_SUPPORTED
        .into_iter()
        .filter(|e| requested.contains(e))
        .collect();
    config["events_delivered"] = json!(delivered);
    if body.get("description").is_some() {
        let text = text_member(body, "description")?
            .ok_or_else(|| invalid("description must be a string"))?;
        config["description"] = Value::String(text.to_owned());
    } else if replace && let Some(o) = config.as_object_mut() {
        o.remove("description");
    }
    let mut authorization = None;
    let delivery = match body.get("delivery") {
        Some(d) if !d.is_object() => return Err(invalid("delivery must be an object")),
        Some(d) => Some(d.clone()),
        None if replace || config.get("delivery").is_none() => Some(json!({"method": POLL})),
        None => None,
    };
    if let Some(delivery) = delivery {
        let method = string_member(&delivery, "method")?.unwrap_or(POLL);
        match method {
            PUSH => {
                let url = string_member(&delivery, "endpoint_url")?
                    .ok_or_else(|| invalid("push delivery needs delivery.endpoint_url"))?;
                let url = targets::receiver_url(url, signals.settings().allow_loopback_http)
                    .map_err(AdminError::from)?;
                if let Some(header) = string_member(&delivery, "authorization_header")? {
                    if header.is_empty() || header.len() > 4096 || header.contains(['\r', '\n']) {
                        return Err(invalid(
                            "delivery.authorization_header must be one line of at most 4096 bytes",
                        ));
                    }
                    authorization = Some(header.to_owned());
                }
                config["delivery"] = json!({"method": PUSH, "endpoint_url": url.as_str()});
            }
            POLL => {
                let iss = config["iss"].as_str().unwrap_or_default();
                config["delivery"] = json!({
                    "method": POLL,
                    "endpoint_url": under(iss, &format!("{SSF}/poll/{stream_id}")),
                });
            }
            other => {
                return Err(invalid(format!(
                    "delivery.method {other:?} is not one of {PUSH}, {POLL}"
                )));
            }
        }
    }
    Ok(authorization)
}

fn auth_column(
    signals: &Signals,
    row: &mut TargetRow,
    authorization: Option<String>,
    method_changed_to_poll: bool,
) -> Result<(), AdminError> {
    if let Some(header) = authorization {
        row.auth = Some(signals.sealer().seal(row.kind, &row.id, &header)?);
    } else if method_changed_to_poll {
        row.auth = None;
    }
    Ok(())
}

async fn create_stream(
    State(state): State<FaceState>,
    headers: HeaderMap,
    edges::Bearer(principal, ..): Admin,
    body: Body,
) -> Answer {
    let signals = signals(&state)?;
    manager(&principal)?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let now = signals.now();
    let mut config = json!({
        "owner": principal.user_id,
        "iss": issuer(signals, &headers),
        "aud": principal.user_id,
        "events_supported": tokens::EVENTS_SUPPORTED,
    });
    let authorization = apply_receiver_members(signals, &mut config, &id, &body.0, false)?;
    let mut row = TargetRow {
        kind: TargetKind::Stream,
        id,
        config,
        auth: None,
        status: "enabled".into(),
        reason: None,
        cursor: signals.head().await?,
        created_at: now,
        updated_at: now,
        last_activity: now,
        verified_at: Time::from_unix_micros(0),
        inactivity_notice: None,
    };
    auth_column(signals, &mut row, authorization, false)?;
    signals
        .store()
        .insert_target(&row)
        .await
        .map_err(Error::from)?;
    signals.verify(&row, None).await?;
    Ok((StatusCode::CREATED, axum::Json(stream_json(signals, &row))).into_response())
}

async fn read_stream(
    State(state): State<FaceState>,
    edges::Bearer(principal, ..): Admin,
    query: Query,
) -> Answer {
    let signals = signals(&state)?;
    manager(&principal)?;
    if let Some(id) = query_param(&query, "stream_id") {
        let row = own_stream(signals, &principal, Some(&id)).await?;
        return Ok(axum::Json(stream_json(signals, &row)).into_response());
    }
    let rows = signals
        .store()
        .targets(Some(TargetKind::Stream))
        .await
        .map_err(Error::from)?;
    let mut mine = Vec::new();
    for row in rows
        .iter()
        .filter(|r| r.config["owner"] == principal.user_id.as_str())
    {
        signals.activity(row).await?;
        mine.push(stream_json(signals, row));
    }
    Ok(axum::Json(Value::Array(mine)).into_response())
}

async fn change_stream(
    state: FaceState,
    principal: Principal,
    body: Value,
    replace: bool,
) -> Answer {
    let signals = signals(&state)?;
    manager(&principal)?;
    let id = string_member(&body, "stream_id")?.map(str::to_owned);
    let mut row = own_stream(signals, &principal, id.as_deref()).await?;
    let was_push = row.config["delivery"]["method"] == PUSH;
    let mut config = row.config.clone();
    let authorization = apply_receiver_members(signals, &mut config, &row.id, &body, replace)?;
    let now_poll = config["delivery"]["method"] == POLL;
    row.config = config;
    row.updated_at = signals.now();
    auth_column(signals, &mut row, authorization, was_push && now_poll)?;
    if !signals
        .store()
        .update_target(&row)
        .await
        .map_err(Error::from)?
    {
        return Err(not_found("stream"));
    }
    signals.touch();
    Ok(axum::Json(stream_json(signals, &row)).into_response())
}

async fn update_stream(
    State(state): State<FaceState>,
    edges::Bearer(principal, ..): Admin,
    body: Body,
) -> Answer {
    change_stream(state, principal, body.0, false).await
}

async fn replace_stream(
    State(state): State<FaceState>,
    edges::Bearer(principal, ..): Admin,
    body: Body,
) -> Answer {
    change_stream(state, principal, body.0, true).await
}

async fn delete_stream(
    State(state): State<FaceState>,
    edges::Bearer(principal, ..): Admin,
    query: Query,
) -> Answer {
    let signals = signals(&state)?;
    manager(&principal)?;
    let row = own_stream(
        signals,
        &principal,
        query_param(&query, "stream_id").as_deref(),
    )
    .await?;
    signals
        .store()
        .delete_target(row.kind, &row.id)
        .await
        .map_err(Error::from)?;
    signals.touch();
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn status_json(row: &TargetRow) -> Value {
    let mut out = json!({"stream_id": row.id, "status": row.status});
    if let Some(reason) = &row.reason {
        out["reason"] = Value::String(reason.clone());
    }
    out
}

async fn read_status(
    State(state): State<FaceState>,
    edges::Bearer(principal, ..): Admin,
    query: Query,
) -> Answer {
    let signals = signals(&state)?;
    manager(&principal)?;
    let row = own_stream(
        signals,
        &principal,
        query_param(&query, "stream_id").as_deref(),
    )
    .await?;
    Ok(axum::Json(status_json(&row)).into_response())
}

async fn update_status(
    State(state): State<FaceState>,
    edges::Bearer(principal, ..): Admin,
    body: Body,
) -> Answer {
    let signals = signals(&state)?;
    manager(&principal)?;
    let body = body.0;
    object(&body)?;
    let mut row = own_stream(signals, &principal, string_member(&body, "stream_id")?).await?;
    let status = string_member(&body, "status")?.ok_or_else(|| invalid("status is required"))?;
    if !matches!(status, "enabled" | "paused" | "disabled") {
        return Err(invalid("status must be enabled, paused or disabled"));
    }
    row.status = status.to_owned();
    row.reason = text_member(&body, "reason")?.map(str::to_owned);
    row.updated_at = signals.now();
    if !signals
        .store()
        .update_target(&row)
        .await
        .map_err(Error::from)?
    {
        return Err(not_found("stream"));
    }
    if status == "disabled" {
        signals.drop_outbox(&row).await?;
    }
    signals.touch();
    Ok(axum::Json(status_json(&row)).into_response())
}

async fn subject_change(
    state: FaceState,
    principal: Principal,
    body: Value,
    removed: bool,
) -> Answer {
    let signals = signals(&state)?;
    manager(&principal)?;
    object(&body)?;
    let row = own_stream(signals, &principal, string_member(&body, "stream_id")?).await?;
    let subject = body
        .get("subject")
        .ok_or_else(|| invalid("subject is required"))
        .and_then(|s| targets::subject(s).map_err(AdminError::from))?;
    if let Some(verified) = body.get("verified")
        && !verified.is_boolean()
    {
        return Err(invalid("verified must be true or false"));
    }
    let store = signals.store();
    if !removed {
        store
            .add_subject(&row.id, &subject)
            .await
            .map_err(Error::from)?;
        return Ok(StatusCode::OK.into_response());
    }
    let max = targets::MAX_REMOVED_SUBJECTS;
    if !store
        .remove_subject(&row.id, &subject, max)
        .await
        .map_err(Error::from)?
    {
        return Err(invalid(format!(
            "a stream may remove at most {max} subjects; add one back first"
        )));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn add_subject(
    State(state): State<FaceState>,
    edges::Bearer(principal, ..): Admin,
    body: Body,
) -> Answer {
    subject_change(state, principal, body.0, false).await
}

async fn remove_subject(
    State(state): State<FaceState>,
    edges::Bearer(principal, ..): Admin,
    body: Body,
) -> Answer {
    subject_change(state, principal, body.0, true).await
}

async fn verify(
    State(state): State<FaceState>,
    edges::Bearer(principal, ..): Admin,
    body: Body,
) -> Answer {
    let signals = signals(&state)?;
    manager(&principal)?;
    let body = body.0;
    object(&body)?;
    let row = own_stream(signals, &principal, string_member(&body, "stream_id")?).await?;
    let state_value = text_member(&body, "state")?;
    let interval = signals.settings().min_verification_interval;
    let now = signals.now();
    if !signals
        .store()
        .claim_verification(&row.id, now, super::before(now, interval))
        .await
        .map_err(Error::from)?
    {
        return Ok(too_soon(&row, interval, now));
    }
    signals.verify(&row, state_value).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// 429 for a verification request sooner than `interval` after the last one, with the
/// seconds to wait in `Retry-After`.
fn too_soon(row: &TargetRow, interval: std::time::Duration, now: Time) -> Response {
    let next = row.verified_at.saturating_add(interval);
    let wait_micros = u64::try_from(next.unix_micros().saturating_sub(now.unix_micros()))
        .unwrap_or(0)
        .max(1);
    let wait = wait_micros.div_ceil(1_000_000);
    let error: AdminError = Error::new(
        ErrorKind::ResourceExhausted,
        error_ids::SIGNALS_TOO_SOON,
        format!(
            "this stream's verification requests must be at least {} s apart \
             (min_verification_interval); retry in {wait} s",
            interval.as_secs()
        ),
    )
    .into();
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from(wait));
    response
}

async fn poll(
    State(state): State<FaceState>,
    edges::Bearer(principal, ..): Admin,
    stream: edges::Path<String, AdminError>,
    body: Body,
) -> Answer {
    let signals = signals(&state)?;
    manager(&principal)?;
    let body = body.0;
    object(&body)?;
    let row = own_stream(signals, &principal, Some(&stream.0)).await?;
    if row.config["delivery"]["method"] != POLL {
        return Err(invalid("this stream is delivered by push, not poll"));
    }
    let max = match body.get("maxEvents") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| invalid("maxEvents must be a non-negative integer"))?,
        ),
    };
    let immediately = match body.get("returnImmediately") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("returnImmediately must be true or false")),
    };
    let mut acks: Vec<String> = match body.get("ack") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(_) => return Err(invalid("ack must be an array of jti strings")),
    };
    match body.get("setErrs") {
        None | Some(Value::Null) => {}
        Some(Value::Object(errors)) => {
            for (jti, error) in errors {
                let code = error.get("err").and_then(Value::as_str);
                let Some(code) = code else {
                    return Err(invalid("setErrs: each value needs an err"));
                };
                tracing::warn!(stream_id = %row.id, jti = %jti, err = %code, "a receiver refused a SET");
                acks.push(jti.clone());
            }
        }
        Some(_) => return Err(invalid("setErrs must be an object")),
    }
    let (items, more) = signals.poll(&row, &acks, max, !immediately).await?;
    let sets: Map<String, Value> = items
        .into_iter()
        .map(|i| (i.jti, Value::String(i.token)))
        .collect();
    let mut out = json!({ "sets": sets });
    if more {
        out["moreAvailable"] = Value::Bool(true);
    }
    Ok(axum::Json(out).into_response())
}

pub fn client_json(row: &TargetRow) -> Value {
    json!({
        "clientId": row.id,
        "backchannelLogoutUri": row.config["backchannelLogoutUri"],
        "sessionRequired": row.config["sessionRequired"],
        "sessions": row.config["sessions"],
    })
}

async fn create_client(
    State(state): State<FaceState>,
    headers: HeaderMap,
    edges::Bearer(principal, ..): Admin,
    body: Body,
) -> Answer {
    let signals = signals(&state)?;
    manager(&principal)?;
    let body = body.0;
    object(&body)?;
    let client_id =
        string_member(&body, "clientId")?.ok_or_else(|| invalid("clientId is required"))?;
    let uri = string_member(&body, "backchannelLogoutUri")?
        .ok_or_else(|| invalid("backchannelLogoutUri is required"))?;
    let session_required = match body.get("sessionRequired") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("sessionRequired must be true or false")),
    };
    let sessions = string_member(&body, "sessions")?.unwrap_or("all");
    let row = signals
        .add_logout_client(LogoutClient {
            client_id,
            uri,
            session_required,
            sessions,
            issuer: &issuer(signals, &headers),
        })
        .await?;
    Ok((StatusCode::CREATED, axum::Json(client_json(&row))).into_response())
}

async fn list_clients(
    State(state): State<FaceState>,
    edges::Bearer(principal, ..): Admin,
) -> Answer {
    let signals = signals(&state)?;
    manager(&principal)?;
    let rows = signals
        .store()
        .targets(Some(TargetKind::Logout))
        .await
        .map_err(Error::from)?;
    let data: Vec<Value> = rows.iter().map(client_json).collect();
    Ok(axum::Json(json!({ "data": data })).into_response())
}

async fn delete_client(
    State(state): State<FaceState>,
    edges::Bearer(principal, ..): Admin,
    client: edges::Path<String, AdminError>,
) -> Answer {
    let signals = signals(&state)?;
    manager(&principal)?;
    let deleted = signals
        .store()
        .delete_target(TargetKind::Logout, &client.0)
        .await
        .map_err(Error::from)?;
    if !deleted {
        return Err(not_found("back-channel logout client"));
    }
    signals.touch();
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metadata_of_an_issuer_with_a_path_is_under_that_path() {
        assert_eq!(metadata_path("https://h"), METADATA);
        assert_eq!(metadata_path("https://h/"), METADATA);
        assert_eq!(
            metadata_path("https://h/t1"),
            "/.well-known/ssf-configuration/t1"
        );
        assert_eq!(
            metadata_path("https://h/tenants/t1/"),
            "/.well-known/ssf-configuration/tenants/t1"
        );
        assert_eq!(
            under("https://h/t1/", JWKS_PATH),
            "https://h/t1/.well-known/ssf-jwks.json"
        );
    }

    #[test]
    fn a_configured_issuer_is_an_http_url_without_query_fragment_or_credentials() {
        for good in [
            "https://login.example",
            "https://h/t1",
            "http://sessiond.test",
        ] {
            assert_eq!(check_issuer(good), Ok(()), "{good}");
        }
        for bad in [
            "login.example",
            "/t1",
            "ftp://h/t1",
            "https://h/t1?tenant=1",
            "https://h/t1#x",
            "https://u:p@h/t1",
        ] {
            assert!(check_issuer(bad).is_err(), "{bad}");
        }
    }
}
