//! The transmitter metadata: where it is served for an issuer with and without a path, and
//! what it says.

use serde_json::{Value, json};

use super::*;
use crate::helpers::*;

const METADATA: &str = "/.well-known/ssf-configuration";

/// An answer in the admin error shape with this status and code.
pub fn assert_admin_error(answer: &Answer, status: u16, code: &str, what: &str) {
    assert_eq!(answer.status, status, "{what}: {}", answer.body);
    assert_eq!(answer.json["statusCode"], status, "{what}: {}", answer.body);
    assert_eq!(answer.json["code"], code, "{what}: {}", answer.body);
    assert!(answer.json["error"].is_string(), "{what}: {}", answer.body);
    assert!(
        answer.json["message"].is_string(),
        "{what}: {}",
        answer.body
    );
}

/// Checks the members every metadata document has, under `issuer`.
fn assert_metadata(metadata: &Value, issuer: &str) {
    assert_eq!(metadata["issuer"], issuer, "{metadata:#}");
    assert_eq!(metadata["spec_version"], "1_0");
    assert_eq!(
        metadata["jwks_uri"],
        format!("{issuer}/.well-known/ssf-jwks.json")
    );
    for (member, path) in [
        ("configuration_endpoint", "stream"),
        ("status_endpoint", "status"),
        ("add_subject_endpoint", "subjects/add"),
        ("remove_subject_endpoint", "subjects/remove"),
        ("verification_endpoint", "verify"),
    ] {
        assert_eq!(
            metadata[member],
            format!("{issuer}/auth/admin/api/ssf/{path}"),
            "{member}"
        );
    }
    assert_eq!(metadata["delivery_methods_supported"], json!([PUSH, POLL]));
    // A receiver must understand the session member: read without it, a session-revoked
    // SET would end every session of the user.
    assert_eq!(metadata["critical_subject_members"], json!(["session"]));
    assert_eq!(metadata["default_subjects"], "ALL");
    assert_eq!(
        metadata["authorization_schemes"],
        json!([{"spec_urn": "urn:ietf:rfc:6749"}])
    );
    for (member, value) in metadata.as_object().unwrap() {
        assert!(
            value.as_array().is_none_or(|a| !a.is_empty()),
            "{member}: empty arrays are omitted"
        );
    }
}

#[tokio::test]
async fn without_a_configured_issuer_the_metadata_is_at_the_bare_path_under_the_url_called() {
    let app = signals_app().await;
    let metadata = send(app.http.get(app.url(METADATA))).await;
    assert_eq!(metadata.status, 200, "{}", metadata.body);
    assert_eq!(metadata.header("content-type"), Some("application/json"));
    assert_metadata(&metadata.json, &app.base);
    // The issuer has no path: no other issuer's metadata is here.
    let other = send(app.http.get(app.url(&format!("{METADATA}/t1")))).await;
    assert_admin_error(&other, 404, "NOT_FOUND", "a path the issuer has not");
}

#[tokio::test]
async fn an_issuer_with_a_path_has_its_metadata_at_the_path_appended_url_and_is_every_iss() {
    const ISSUER: &str = "https://sessiond.test/t1";
    let app = signals_app_with(|s| s.signals_issuer = Some(ISSUER.into())).await;
    let metadata = send(app.http.get(app.url(&format!("{METADATA}/t1")))).await;
    assert_eq!(metadata.status, 200, "{}", metadata.body);
    assert_metadata(&metadata.json, ISSUER);
    for path in [
        METADATA.to_owned(),
        format!("{METADATA}/t2"),
        format!("{METADATA}/t1/more"),
    ] {
        let elsewhere = send(app.http.get(app.url(&path))).await;
        assert_admin_error(&elsewhere, 404, "NOT_FOUND", &path);
        assert!(
            elsewhere.json["message"]
                .as_str()
                .unwrap()
                .contains("/.well-known/ssf-configuration/t1"),
            "says where it is: {}",
            elsewhere.body
        );
    }

    let Some(receiver) = receiver_for(&app.url("/.well-known/ssf-jwks.json"), ISSUER) else {
        return;
    };
    // The receiver checks `iss` of every token against the issuer.
    let stream = push_stream(&app, &receiver, "tenant", &[SESSION_REVOKED]).await;
    assert_eq!(stream["iss"], ISSUER);
    let admin = manager(&app, "ops");
    let client = send(
        app.http
            .post(app.url("/auth/admin/api/backchannel-logout-clients"))
            .header("authorization", &admin)
            .json(&json!({
                "clientId": "app",
                "backchannelLogoutUri": receiver.url("/logout/app"),
            })),
    )
    .await;
    assert_eq!(client.status, 201, "{}", client.body);
    let polled = send(
        app.http
            .post(app.url("/auth/admin/api/ssf/stream"))
            .header("authorization", &admin)
            .json(&json!({"events_requested": [SESSION_REVOKED]})),
    )
    .await;
    assert_eq!(polled.status, 201, "{}", polled.body);
    assert_eq!(polled.json["iss"], ISSUER);
    assert_eq!(
        polled.json["delivery"]["endpoint_url"],
        format!(
            "{ISSUER}/auth/admin/api/ssf/poll/{}",
            polled.json["stream_id"].as_str().unwrap()
        )
    );

    let alice = app.add_user("alice").await;
    let session = app.create_session_for(&alice).await.session_id;
    admin_revoke(&app, alice.id.as_str(), &session).await;
    let sets = receiver.wait_for("tenant", 2).await;
    assert!(sets.iter().all(|c| c["iss"] == ISSUER), "{sets:#?}");
    assert_eq!(revoked_sessions(&sets), [session.as_str()]);
    let logout = receiver.wait_for("app", 1).await;
    assert_eq!(logout[0]["iss"], ISSUER);
    assert_eq!(logout[0]["sid"], session.as_str());
}
