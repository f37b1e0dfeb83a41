//! A stream's life as the transmitter shapes it: the verification interval (429 with
//! `Retry-After`), the inactivity timeout (a stream-updated event, then a pause), the
//! signals' metrics, and the causes of a termination a stream hears of (password change with
//! its credential-change, deactivation).

use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::helpers::*;

pub const STREAM_UPDATED: &str =
    "https://schemas.openid.net/secevent/ssf/event-type/stream-updated";

/// Creates a poll stream owned by `auth`; returns its configuration.
async fn poll_stream(app: &TestApp, auth: &str) -> Value {
    let created = send(
        app.http
            .post(app.url("/auth/admin/api/ssf/stream"))
            .header("authorization", auth)
            .json(&json!({"events_requested": [SESSION_REVOKED]})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    created.json
}

async fn verify(app: &TestApp, auth: &str, stream_id: &str, state: &str) -> Answer {
    send(
        app.http
            .post(app.url("/auth/admin/api/ssf/verify"))
            .header("authorization", auth)
            .json(&json!({"stream_id": stream_id, "state": state})),
    )
    .await
}

#[tokio::test]
async fn verification_requests_sooner_than_the_interval_get_429_with_retry_after() {
    let app = signals_app().await;
    let auth = manager(&app, "verifier");
    let stream = poll_stream(&app, &auth).await;
    let id = stream["stream_id"].as_str().unwrap();
    assert_eq!(stream["min_verification_interval"], 30);
    assert!(
        stream.get("inactivity_timeout").is_none(),
        "no inactivity timeout unless configured"
    );

    assert_eq!(verify(&app, &auth, id, "one").await.status, 204);
    let soon = verify(&app, &auth, id, "two").await;
    assert_eq!(soon.status, 429, "{}", soon.body);
    assert_eq!(soon.header("retry-after"), Some("30"));
    assert_eq!(soon.json["statusCode"], 429);
    assert_eq!(soon.json["code"], "TOO_MANY_REQUESTS");
    assert!(
        soon.json["message"]
            .as_str()
            .unwrap()
            .contains("min_verification_interval")
    );
    app.advance(Duration::from_secs(20));
    let still = verify(&app, &auth, id, "two").await;
    assert_eq!(still.status, 429);
    assert_eq!(still.header("retry-after"), Some("10"));
    app.advance(Duration::from_secs(10));
    assert_eq!(verify(&app, &auth, id, "two").await.status, 204);

    // The creation's own verification, then one per accepted request: the refused sent none.
    let polled = send(
        app.http
            .post(stream["delivery"]["endpoint_url"].as_str().unwrap())
            .header("authorization", &auth)
            .json(&json!({"returnImmediately": true})),
    )
    .await;
    assert_eq!(polled.json["sets"].as_object().unwrap().len(), 3);

    // The interval is the transmitter's: a receiver may repeat it, not change it.
    let patch = |value: Value| {
        send(
            app.http
                .patch(app.url("/auth/admin/api/ssf/stream"))
                .header("authorization", &auth)
                .json(&json!({"stream_id": id, "min_verification_interval": value})),
        )
    };
    assert_eq!(patch(json!(30)).await.status, 200);
    let changed = patch(json!(1)).await;
    assert_eq!(changed.status, 400, "{}", changed.body);
    assert!(changed.body.contains("min_verification_interval"));
}

#[tokio::test]
async fn a_stream_whose_receiver_is_inactive_is_announced_then_paused_and_activity_calls_it_off() {
    let app =
        signals_app_with(|s| s.signals_inactivity_timeout = Some(Duration::from_secs(3600))).await;
    let Some(receiver) = receiver(&app) else {
        return;
    };
    let quiet = push_stream(&app, &receiver, "quiet", &[SESSION_REVOKED]).await;
    let busy = push_stream(&app, &receiver, "busy", &[SESSION_REVOKED]).await;
    let back = push_stream(&app, &receiver, "back", &[SESSION_REVOKED]).await;
    assert_eq!(quiet["inactivity_timeout"], 3600);
    for name in ["quiet", "busy", "back"] {
        receiver.wait_for(name, 1).await;
    }
    let (quiet_id, busy_id, back_id) = (
        quiet["stream_id"].as_str().unwrap(),
        busy["stream_id"].as_str().unwrap(),
        back["stream_id"].as_str().unwrap(),
    );
    receiver.set_down("back", true).await;

    app.advance(Duration::from_secs(1800));
    // A management call is activity: "busy" starts its hour again.
    assert_eq!(
        stream_status(&app, &manager(&app, "busy"), busy_id).await["status"],
        "enabled"
    );
    app.advance(Duration::from_secs(1801));

    // "quiet" hears of its pause first; once it took that event, the pause takes effect.
    let got = receiver.wait_for("quiet", 2).await;
    let updated = &got[1]["events"][STREAM_UPDATED];
    assert_eq!(updated["status"], "paused", "{got:#?}");
    assert!(updated["reason"].as_str().unwrap().contains("inactivity"));
    assert_eq!(
        got[1]["sub_id"],
        json!({"format": "opaque", "id": quiet_id})
    );
    // Streams are checked every second; reading the status is activity, which would call
    // off a pause not yet in effect, so wait before reading it.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let paused = stream_status(&app, &manager(&app, "quiet"), quiet_id).await;
    assert_eq!(paused["status"], "paused", "{paused}");
    assert!(paused["reason"].as_str().unwrap().contains("inactivity"));

    // A paused stream holds what happens; enabled again, it delivers it.
    let alice = app.add_user("alice").await;
    let session = app.create_session_for(&alice).await.session_id;
    admin_revoke(&app, alice.id.as_str(), &session).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.received().await["quiet"].len(), 2, "held");
    let enabled = send(
        app.http
            .post(app.url("/auth/admin/api/ssf/status"))
            .header("authorization", manager(&app, "quiet"))
            .json(&json!({"stream_id": quiet_id, "status": "enabled"})),
    )
    .await;
    assert_eq!(enabled.status, 200, "{}", enabled.body);
    let got = receiver.wait_for("quiet", 3).await;
    assert_eq!(revoked_sessions(&got), [session.as_str()]);

    // "back" could not take its announcement; it comes back (a management call) before the
    // pause took effect: the pause is called off, and a second event says so.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = stream_status(&app, &manager(&app, "back"), back_id).await;
    assert_eq!(status["status"], "enabled");
    receiver.set_down("back", false).await;
    let got = receiver.wait_for("back", 4).await;
    let statuses: Vec<&Value> = got
        .iter()
        .filter_map(|c| c["events"].get(STREAM_UPDATED))
        .map(|e| &e["status"])
        .collect();
    assert_eq!(statuses, [&json!("paused"), &json!("enabled")], "{got:#?}");
    assert_eq!(revoked_sessions(&got), [session.as_str()]);

    // "busy" was active half an hour ago: nothing announced, still enabled.
    assert_eq!(
        receiver.received().await["busy"].len(),
        2,
        "verification, revocation"
    );
    assert_eq!(
        stream_status(&app, &manager(&app, "busy"), busy_id).await["status"],
        "enabled"
    );
}

/// The depth once it is 0 (or after 5 s): a push target stores its cursor shortly after its
/// receiver's answer, not with it.
async fn depth_once_stored(app: &TestApp, depth: &str) -> f64 {
    metric_once(app, depth, 0.0).await
}

/// `sample` once it is `value` (or after 5 s): the worker counts a delivery after the
/// receiver's answer, on threads that run when the machine has a core to spare.
async fn metric_once(app: &TestApp, sample: &str, value: f64) -> f64 {
    for _ in 0..50 {
        if metric(app, sample).await == value {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    metric(app, sample).await
}

#[tokio::test]
async fn signals_metrics_count_signing_deliveries_retries_outbox_and_latency() {
    let app = signals_app().await;
    let Some(receiver) = receiver(&app) else {
        return;
    };
    const SIGNED: &str = "sessiond_signals_tokens_signed_total{kind=\"stream\"}";
    const DELIVERED: &str =
        "sessiond_signals_deliveries_total{kind=\"stream\",outcome=\"delivered\"}";
    const RETRIED: &str = "sessiond_signals_deliveries_total{kind=\"stream\",outcome=\"retried\"}";
    const DEPTH: &str = "sessiond_signals_outbox_depth{kind=\"stream\"}";
    const LATENCIES: &str = "sessiond_signals_delivery_latency_seconds_count{kind=\"stream\"}";
    let body = send(app.http.get(app.url("/metrics"))).await.body;
    for series in [
        SIGNED,
        DELIVERED,
        RETRIED,
        DEPTH,
        "sessiond_signals_deliveries_total{kind=\"logout\",outcome=\"given_up\"}",
    ] {
        assert!(body.contains(&format!("{series} 0")), "{series} in {body}");
    }

    push_stream(&app, &receiver, "counted", &[SESSION_REVOKED]).await;
    receiver.wait_for("counted", 1).await;
    let alice = app.add_user("alice").await;
    let first = app.create_session_for(&alice).await.session_id;
    admin_revoke(&app, alice.id.as_str(), &first).await;
    receiver.wait_for("counted", 2).await;
    assert_eq!(metric_once(&app, SIGNED, 2.0).await, 2.0);
    assert_eq!(metric_once(&app, DELIVERED, 2.0).await, 2.0);
    assert_eq!(depth_once_stored(&app, DEPTH).await, 0.0);
    // The verification event has no event time: one latency, the revocation's.
    assert_eq!(metric_once(&app, LATENCIES, 1.0).await, 1.0);

    receiver.set_down("counted", true).await;
    let second = app.create_session_for(&alice).await.session_id;
    admin_revoke(&app, alice.id.as_str(), &second).await;
    let mut retried = 0.0;
    for _ in 0..50 {
        retried = metric(&app, RETRIED).await;
        if retried >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(retried >= 1.0, "a failed push is a retry");
    assert_eq!(metric(&app, DEPTH).await, 1.0, "waiting in the outbox");
    receiver.set_down("counted", false).await;
    receiver.wait_for("counted", 3).await;
    assert_eq!(depth_once_stored(&app, DEPTH).await, 0.0);
    assert_eq!(metric_once(&app, DELIVERED, 3.0).await, 3.0);
    assert_eq!(metric_once(&app, LATENCIES, 2.0).await, 2.0);
}

#[tokio::test]
async fn a_password_change_and_a_deactivation_each_signal_their_sessions_and_the_change() {
    const CREDENTIAL_CHANGE: &str =
        "https://schemas.openid.net/secevent/caep/event-type/credential-change";
    let app = signals_app().await;
    let Some(receiver) = receiver(&app) else {
        return;
    };
    push_stream(
        &app,
        &receiver,
        "causes",
        &[SESSION_REVOKED, CREDENTIAL_CHANGE],
    )
    .await;
    receiver.wait_for("causes", 1).await;
    let carol = app.add_user("carol").await;
    let dave = app.add_user("dave").await;
    let mut carols = vec![
        app.create_session_for(&carol).await.session_id,
        app.create_session_for(&carol).await.session_id,
    ];
    let daves = app.create_session_for(&dave).await.session_id;
    let admin = app.bearer("admin", EVERY_PERMISSION);
    let changed = send(
        app.http
            .put(app.url(&format!(
                "/auth/admin/api/users/{}/password",
                carol.id.as_str()
            )))
            .header("authorization", &admin)
            .json(&json!({"password": "a new correct horse battery"})),
    )
    .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    let deactivated = send(
        app.http
            .post(app.url(&format!(
                "/auth/admin/api/users/{}/deactivate",
                dave.id.as_str()
            )))
            .header("authorization", &admin),
    )
    .await;
    assert_eq!(deactivated.status, 200, "{}", deactivated.body);

    let got = receiver.wait_for("causes", 5).await;
    let entity = |session: &str| {
        got.iter()
            .find(|c| c["sub_id"]["session"]["id"] == session)
            .map(|c| c["events"][SESSION_REVOKED]["initiating_entity"].clone())
    };
    for session in &carols {
        assert_eq!(entity(session), Some(json!("policy")), "{got:#?}");
    }
    assert_eq!(entity(&daves), Some(json!("admin")), "{got:#?}");
    let changes: Vec<&Value> = got
        .iter()
        .filter(|c| c["events"].get(CREDENTIAL_CHANGE).is_some())
        .collect();
    assert_eq!(
        changes.len(),
        1,
        "one change, whatever the sessions: {got:#?}"
    );
    assert_eq!(changes[0]["sub_id"]["user"]["id"], carol.id.as_str());
    let mut revoked = revoked_sessions(&got);
    revoked.sort();
    carols.push(daves);
    carols.sort();
    assert_eq!(revoked, carols);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.received().await["causes"].len(),
        5,
        "nothing twice"
    );
}
