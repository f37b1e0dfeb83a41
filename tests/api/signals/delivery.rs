use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::helpers::*;

#[tokio::test]
async fn a_push_stream_gets_a_verification_event_then_one_verified_session_revoked_per_revocation()
{
    let app = signals_app().await;
    let Some(receiver) = receiver(&app) else {
        return;
    };
    let stream = push_stream(&app, &receiver, "rp1", &[SESSION_REVOKED, "urn:unknown"]).await;
    assert_eq!(stream["events_delivered"], json!([SESSION_REVOKED]));
    assert!(stream["delivery"].get("authorization_header").is_none());
    assert_eq!(stream["iss"], app.base.as_str());
    let first = receiver.wait_for("rp1", 1).await;
    assert!(first[0]["events"].get(VERIFICATION).is_some());
    assert_eq!(first[0]["sub_id"]["id"], stream["stream_id"]);

    let alice = app.add_user("alice").await;
    let bob = app.add_user("bob").await;
    let by_admin = app.create_session_for(&alice).await.session_id;
    let by_lock = app.create_session_for(&bob).await.session_id;
    let by_revoke_all = app.create_session_for(&alice).await.session_id;
    admin_revoke(&app, alice.id.as_str(), &by_admin).await;
    let locked = send(
        app.http
            .post(app.url(&format!("/auth/admin/api/users/{}/lock", bob.id.as_str())))
            .header("authorization", app.bearer("admin", EVERY_PERMISSION)),
    )
    .await;
    assert_eq!(locked.status, 200, "{}", locked.body);
    let all = send(
        app.http
            .delete(app.url(&format!(
                "/auth/admin/api/users/{}/sessions",
                alice.id.as_str()
            )))
            .header("authorization", app.bearer("admin", EVERY_PERMISSION)),
    )
    .await;
    assert_eq!(all.status, 200, "{}", all.body);

    let got = receiver.wait_for("rp1", 4).await;
    let mut sessions = revoked_sessions(&got);
    sessions.sort();
    let mut expected = vec![by_admin.clone(), by_lock, by_revoke_all];
    expected.sort();
    assert_eq!(sessions, expected);
    let admin_set = got
        .iter()
        .find(|c| c["sub_id"]["session"]["id"] == by_admin.as_str())
        .unwrap();
    assert_eq!(admin_set["sub_id"]["user"]["id"], alice.id.as_str());
    assert_eq!(admin_set["aud"], "rp1");
    assert_eq!(
        admin_set["events"][SESSION_REVOKED]["initiating_entity"],
        "admin"
    );
    let jtis: HashSet<&str> = got.iter().map(|c| c["jti"].as_str().unwrap()).collect();
    assert_eq!(jtis.len(), got.len(), "every jti is unique");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().await["rp1"].len(), 4, "nothing twice");
}

#[tokio::test]
async fn a_receiver_down_for_a_while_gets_every_set_once_it_is_back_in_order_and_none_twice() {
    let app = signals_app().await;
    let Some(receiver) = receiver(&app) else {
        return;
    };
    push_stream(&app, &receiver, "rp2", &[SESSION_REVOKED]).await;
    receiver.wait_for("rp2", 1).await;
    receiver.set_down("rp2", true).await;
    let alice = app.add_user("alice").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let id = app.create_session_for(&alice).await.session_id;
        admin_revoke(&app, alice.id.as_str(), &id).await;
        ids.push(id);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        receiver.received().await["rp2"].len(),
        1,
        "nothing while down"
    );
    receiver.set_down("rp2", false).await;
    let got = receiver.wait_for("rp2", 6).await;
    assert_eq!(
        revoked_sessions(&got),
        ids,
        "all, in the order of revocation"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().await["rp2"].len(), 6, "none twice");
}

#[tokio::test]
async fn a_poll_stream_returns_sets_until_acknowledged() {
    let app = signals_app().await;
    let Some(receiver) = receiver(&app) else {
        return;
    };
    let auth = manager(&app, "poller");
    let created = send(
        app.http
            .post(app.url("/auth/admin/api/ssf/stream"))
            .header("authorization", &auth)
            .json(&json!({"events_requested": [SESSION_REVOKED]})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.json["delivery"]["method"], POLL);
    let poll_url = created.json["delivery"]["endpoint_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let alice = app.add_user("alice").await;
    let session = app.create_session_for(&alice).await.session_id;
    admin_revoke(&app, alice.id.as_str(), &session).await;

    let poll = |body: serde_json::Value| {
        send(
            app.http
                .post(&poll_url)
                .header("authorization", &auth)
                .json(&body),
        )
    };
    let first = poll(json!({"returnImmediately": true})).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let sets = first.json["sets"].as_object().unwrap().clone();
    assert_eq!(sets.len(), 2, "verification and session-revoked: {sets:?}");
    let mut revoked = None;
    for (jti, token) in &sets {
        let claims = receiver
            .verify("set", token.as_str().unwrap(), "poller")
            .await
            .expect("a valid SET");
        assert_eq!(claims["jti"], jti.as_str());
        if claims["events"].get(SESSION_REVOKED).is_some() {
            assert_eq!(claims["sub_id"]["session"]["id"], session.as_str());
            revoked = Some(jti.clone());
        }
    }
    let revoked = revoked.expect("a session-revoked SET");
    // Not acknowledged: delivered again.
    let again = poll(json!({"returnImmediately": true})).await;
    assert_eq!(again.json["sets"].as_object().unwrap().len(), 2);
    // Acknowledged (one as an error): gone.
    let verification = sets.keys().find(|j| **j != revoked).unwrap().clone();
    let acked = poll(json!({
        "returnImmediately": true,
        "ack": [revoked],
        "setErrs": {verification: {"err": "invalid_request", "description": "test"}},
    }))
    .await;
    assert_eq!(acked.json["sets"], json!({}));
    // A long poll waits for the next revocation.
    let second = app.create_session_for(&alice).await.session_id;
    let waiting = poll(json!({"maxEvents": 5}));
    let revoke = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        admin_revoke(&app, alice.id.as_str(), &second).await;
    };
    let (answer, ()) = tokio::join!(waiting, revoke);
    assert_eq!(
        answer.json["sets"].as_object().unwrap().len(),
        1,
        "{}",
        answer.body
    );
    assert_eq!(poll(json!({"maxEvents": 0})).await.json["sets"], json!({}));
}

#[tokio::test]
async fn back_channel_logout_reaches_each_client_for_the_sessions_it_asked_for() {
    let app = signals_app().await;
    let Some(receiver) = receiver(&app) else {
        return;
    };
    let admin = manager(&app, "ops");
    // sessionRequired (backchannel_logout_session_required) asks for sid in every token.
    for (client, scope, session_required) in
        [("app-all", "all", false), ("app-own", "client", true)]
    {
        let answer = send(
            app.http
                .post(app.url("/auth/admin/api/backchannel-logout-clients"))
                .header("authorization", &admin)
                .json(&json!({
                    "clientId": client,
                    "backchannelLogoutUri": receiver.url(&format!("/logout/{client}")),
                    "sessionRequired": session_required,
                    "sessions": scope,
                })),
        )
        .await;
        assert_eq!(answer.status, 201, "{}", answer.body);
    }
    let listed = send(
        app.http
            .get(app.url("/auth/admin/api/backchannel-logout-clients"))
            .header("authorization", &admin),
    )
    .await;
    assert_eq!(listed.json["data"].as_array().unwrap().len(), 2);
    assert_eq!(listed.json["data"][0]["sessionRequired"], false);
    assert_eq!(listed.json["data"][1]["sessionRequired"], true);

    let alice = app.add_user("alice").await;
    let plain = app.create_session_for(&alice).await.session_id;
    let mut request = create_for_user(alice.id.as_str());
    request
        .metadata
        .insert("client_id".into(), b"app-own".to_vec());
    let own = app
        .api(Protocol::Grpc, Version::V2)
        .create(Some(&app.admin()), request)
        .await
        .expect("a session for app-own")
        .message
        .session_id;
    admin_revoke(&app, alice.id.as_str(), &plain).await;
    admin_revoke(&app, alice.id.as_str(), &own).await;

    let all = receiver.wait_for("app-all", 2).await;
    let sids: Vec<&str> = all.iter().map(|c| c["sid"].as_str().unwrap()).collect();
    assert_eq!(sids, [plain.as_str(), own.as_str()]);
    assert!(
        all.iter()
            .all(|c| c["sub"] == alice.id.as_str() && c["aud"] == "app-all")
    );
    let mine = receiver.wait_for("app-own", 1).await;
    assert_eq!(mine[0]["sid"], own.as_str());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.received().await["app-own"].len(),
        1,
        "only its own session"
    );

    let deleted = send(
        app.http
            .delete(app.url("/auth/admin/api/backchannel-logout-clients/app-own"))
            .header("authorization", &admin),
    )
    .await;
    assert_eq!(deleted.status, 204);
}

#[tokio::test]
async fn after_a_key_rotation_both_keys_are_published_and_new_sets_use_the_new_key() {
    // Keys made in the data directory (SQLite's default; PostgreSQL takes a key file).
    let app = spawn_app_with(|s| {
        s.database_url = None;
        s.signals_allow_loopback_http = true;
    })
    .await;
    let Some(receiver) = receiver(&app) else {
        return;
    };
    let old = send(app.http.get(app.url("/.well-known/ssf-jwks.json"))).await;
    let old_kid = old.json["keys"][0]["kid"].as_str().unwrap().to_owned();
    assert_eq!(old.json["keys"][0]["alg"], "RS256");
    let dir = app.data_dir.path().join(sessiond::signals::keys::KEY_DIR);
    let new_kid = sessiond::signals::keys::rotate(&dir, jsonwebtoken::Algorithm::RS256, app.now())
        .expect("rotating");
    assert_ne!(new_kid, old_kid);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let jwks = send(app.http.get(app.url("/.well-known/ssf-jwks.json"))).await;
    let kids: Vec<&str> = jwks.json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [new_kid.as_str(), old_kid.as_str()]);
    push_stream(&app, &receiver, "rp3", &[SESSION_REVOKED]).await;
    receiver.wait_for("rp3", 1).await;
}

#[tokio::test]
async fn refusals_come_in_the_admin_error_shape() {
    let app = signals_app().await;
    let stream = app.url("/auth/admin/api/ssf/stream");
    let no_permission = send(
        app.http
            .post(&stream)
            .header("authorization", app.bearer("x", &["session.read"]))
            .json(&json!({})),
    )
    .await;
    assert_eq!(no_permission.status, 403);
    assert_eq!(no_permission.json["code"], "FORBIDDEN");
    assert_eq!(no_permission.json["statusCode"], 403);
    let anonymous = send(app.http.post(&stream).json(&json!({}))).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.json["code"], "ADMIN_AUTH_REQUIRED");
    for url in [
        "http://example.com/events",
        "https://169.254.169.254/latest/meta-data",
        "https://[fe80::1]/x",
        "ftp://example.com/",
        "http://10.1.2.3/events",
    ] {
        let answer = send(
            app.http
                .post(&stream)
                .header("authorization", manager(&app, "r"))
                .json(&json!({"delivery": {"method": PUSH, "endpoint_url": url}})),
        )
        .await;
        assert_eq!(answer.status, 400, "{url}: {}", answer.body);
        assert_eq!(answer.json["code"], "VALIDATION_FAILED", "{url}");
    }
    let missing = send(
        app.http
            .get(app.url("/auth/admin/api/ssf/stream?stream_id=nope"))
            .header("authorization", manager(&app, "r")),
    )
    .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json["code"], "NOT_FOUND");
    let metadata = send(app.http.get(app.url("/.well-known/ssf-configuration"))).await;
    assert_eq!(metadata.status, 200);
    assert_eq!(metadata.json["spec_version"], "1_0");
    assert_eq!(
        metadata.json["delivery_methods_supported"],
        json!([PUSH, POLL])
    );
}

#[tokio::test]
async fn a_paused_stream_holds_its_events_and_a_disabled_one_drops_them() {
    let app = signals_app().await;
    let Some(receiver) = receiver(&app) else {
        return;
    };
    let stream = push_stream(&app, &receiver, "rp4", &[SESSION_REVOKED]).await;
    let id = stream["stream_id"].as_str().unwrap().to_owned();
    receiver.wait_for("rp4", 1).await;
    let auth = manager(&app, "rp4");
    let set_status = |status: &'static str| {
        send(
            app.http
                .post(app.url("/auth/admin/api/ssf/status"))
                .header("authorization", &auth)
                .json(&json!({"stream_id": id, "status": status, "reason": "test"})),
        )
    };
    let paused = set_status("paused").await;
    assert_eq!(
        paused.json,
        json!({"stream_id": id, "status": "paused", "reason": "test"})
    );
    let alice = app.add_user("alice").await;
    let held = app.create_session_for(&alice).await.session_id;
    admin_revoke(&app, alice.id.as_str(), &held).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        receiver.received().await["rp4"].len(),
        1,
        "held while paused"
    );
    set_status("enabled").await;
    let got = receiver.wait_for("rp4", 2).await;
    assert_eq!(revoked_sessions(&got), [held]);

    set_status("disabled").await;
    let dropped = app.create_session_for(&alice).await.session_id;
    admin_revoke(&app, alice.id.as_str(), &dropped).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    set_status("enabled").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        receiver.received().await["rp4"].len(),
        2,
        "dropped while disabled"
    );
    let status = send(
        app.http
            .get(app.url(&format!("/auth/admin/api/ssf/status?stream_id={id}")))
            .header("authorization", &auth),
    )
    .await;
    assert_eq!(status.json["status"], "enabled");
}
