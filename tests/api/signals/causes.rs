//! Every way a session ends, as a stream and as back-channel logout clients hear of it: one
//! `session-revoked` SET per ended session with the session and its user as a complex subject,
//! the time of the termination and who initiated it; one logout token per ended session to
//! each client whose sessions it concerns. A session that merely expires is not ended by
//! anyone: no event, no token.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::helpers::*;

/// A session of `user` created for the client `client_id` (its metadata `client_id`).
async fn session_of_client(app: &TestApp, user: &sessiond::domain::User, client_id: &str) -> Login {
    let mut request = create_for_user(user.id.as_str());
    request
        .metadata
        .insert("client_id".into(), client_id.as_bytes().to_vec());
    let created = app
        .api(Protocol::Grpc, Version::V2)
        .create(Some(&app.admin()), request)
        .await
        .expect("a session for a client")
        .message;
    Login {
        id: created.session_id,
        token: created.session_token,
    }
}

/// ZITADEL DeleteSession with the session's own token, by a caller without permissions.
async fn delete_with_token(app: &TestApp, login: &Login) {
    app.api(Protocol::Grpc, Version::V2)
        .delete(
            Some(&app.bearer("login-ui", &[])),
            delete(&login.id, Some(&login.token)),
        )
        .await
        .expect("DeleteSession with the session token");
}

/// Kratos "disable my other sessions", from the session `current`.
async fn revoke_others(app: &TestApp, current: &Login) -> u64 {
    let answer = send(
        app.http
            .delete(app.url("/auth/sessions"))
            .header("x-session-token", &current.token),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json["count"].as_u64().expect("a count")
}

async fn admin_post(app: &TestApp, path: &str) {
    let answer = send(
        app.http
            .post(app.url(path))
            .header("authorization", app.bearer("admin", EVERY_PERMISSION)),
    )
    .await;
    assert_eq!(answer.status, 200, "{path}: {}", answer.body);
}

fn seconds_now(app: &TestApp) -> i64 {
    app.now().unix_parts().0
}

/// What a `session-revoked` SET says about its session.
#[derive(Debug, PartialEq)]
struct Revoked {
    user: String,
    entity: String,
    reason: String,
    at: i64,
}

fn revoked(claims: &Value) -> (String, Revoked) {
    let event = &claims["events"][SESSION_REVOKED];
    let subject = &claims["sub_id"];
    assert_eq!(subject["format"], "complex", "{claims:#}");
    assert_eq!(subject["session"]["format"], "opaque", "{claims:#}");
    assert_eq!(subject["user"]["format"], "opaque", "{claims:#}");
    assert_eq!(
        subject.as_object().map(|o| o.len()),
        Some(3),
        "format, session and user only: {claims:#}"
    );
    assert_eq!(
        claims["events"].as_object().map(|o| o.len()),
        Some(1),
        "{claims:#}"
    );
    assert!(claims["txn"].is_string(), "{claims:#}");
    assert_eq!(
        event["reason_admin"].as_object().map(|o| o.len()),
        Some(1),
        "one language: {claims:#}"
    );
    (
        subject["session"]["id"].as_str().unwrap().to_owned(),
        Revoked {
            user: subject["user"]["id"].as_str().unwrap().to_owned(),
            entity: event["initiating_entity"].as_str().unwrap().to_owned(),
            reason: event["reason_admin"]["en"].as_str().unwrap().to_owned(),
            at: event["event_timestamp"].as_i64().unwrap(),
        },
    )
}

#[tokio::test]
async fn every_cause_of_a_termination_is_one_session_revoked_set_naming_who_initiated_it() {
    let app = signals_app().await;
    let Some(receiver) = receiver(&app) else {
        return;
    };
    push_stream(&app, &receiver, "causes", &[SESSION_REVOKED]).await;
    receiver.wait_for("causes", 1).await;
    let ann = app.add_user("ann").await;
    let bob = app.add_user("bob").await;
    let carl = app.add_user("carl").await;
    let dora = app.add_user("dora").await;
    let mut expected: HashMap<String, Revoked> = HashMap::new();
    let mut expect = |app: &TestApp, id: &str, user: &sessiond::domain::User, entity, reason| {
        let at = seconds_now(app);
        let earlier = expected.insert(
            id.to_owned(),
            Revoked {
                user: user.id.as_str().to_owned(),
                entity: String::from(entity),
                reason: String::from(reason),
                at,
            },
        );
        assert!(earlier.is_none());
    };

    // Expiry ends no session: dora's session expires and is never signalled.
    let expiring = app.create_expiring_session_for(&dora, 1).await.session_id;
    app.advance(Duration::from_secs(5));

    const SIGNED_OUT: &str = "The session was signed out";
    // DeleteSession with the session's own token.
    let by_token = login(&app, &ann).await;
    delete_with_token(&app, &by_token).await;
    expect(&app, &by_token.id, &ann, "user", SIGNED_OUT);
    app.advance(Duration::from_secs(1));

    // DeleteSession by its owner, with the owner's own JWT.
    let by_owner = login(&app, &ann).await;
    app.api(Protocol::Grpc, Version::V2)
        .delete(
            Some(&app.bearer(ann.id.as_str(), &[])),
            delete(&by_owner.id, None),
        )
        .await
        .expect("DeleteSession by the owner");
    expect(&app, &by_owner.id, &ann, "user", SIGNED_OUT);
    app.advance(Duration::from_secs(1));

    // Kratos: the owner revokes one of its other sessions.
    let current = login(&app, &ann).await;
    let by_self_service = login(&app, &ann).await;
    let revoked_one = send(
        app.http
            .delete(app.url(&format!("/auth/sessions/{}", by_self_service.id)))
            .header("x-session-token", &current.token),
    )
    .await;
    assert_eq!(revoked_one.status, 204, "{}", revoked_one.body);
    expect(&app, &by_self_service.id, &ann, "user", SIGNED_OUT);
    app.advance(Duration::from_secs(1));

    // Kratos "disable my other sessions": one SET per other session, none for the current.
    let others = [login(&app, &ann).await, login(&app, &ann).await];
    assert_eq!(revoke_others(&app, &current).await, 2);
    for other in &others {
        expect(
            &app,
            &other.id,
            &ann,
            "user",
            "The user signed out of their other sessions",
        );
    }
    app.advance(Duration::from_secs(1));

    // An administrator: the admin API, then the Kratos admin API.
    let by_admin = login(&app, &bob).await;
    admin_revoke(&app, bob.id.as_str(), &by_admin.id).await;
    expect(
        &app,
        &by_admin.id,
        &bob,
        "admin",
        "An administrator revoked the session",
    );
    let by_kratos_admin = login(&app, &bob).await;
    let kratos = send(
        app.http
            .delete(app.url(&format!("/auth/admin/sessions/{}", by_kratos_admin.id)))
            .header("authorization", app.bearer("admin", EVERY_PERMISSION)),
    )
    .await;
    assert_eq!(kratos.status, 204, "{}", kratos.body);
    expect(
        &app,
        &by_kratos_admin.id,
        &bob,
        "admin",
        "An administrator revoked the session",
    );
    app.advance(Duration::from_secs(1));

    // Locking a user ends each of its sessions.
    let locked = [login(&app, &carl).await, login(&app, &carl).await];
    admin_post(
        &app,
        &format!("/auth/admin/api/users/{}/lock", carl.id.as_str()),
    )
    .await;
    for session in &locked {
        expect(&app, &session.id, &carl, "admin", "The user was locked");
    }

    let n = expected.len();
    let got = receiver.wait_for("causes", 1 + n).await;
    let mut heard: HashMap<String, Revoked> = HashMap::new();
    for claims in &got[1..] {
        let (session, what) = revoked(claims);
        assert!(
            heard.insert(session.clone(), what).is_none(),
            "one SET per session: {session} twice in {got:#?}"
        );
    }
    assert!(!heard.contains_key(&current.id), "not the current session");
    assert!(!heard.contains_key(&expiring), "an expiry is no revocation");
    assert_eq!(heard, expected);
    // The last termination arrived, and delivery keeps the order of the log: nothing more
    // is on its way.
    assert_eq!(got.len(), 1 + n, "{got:#?}");
    let whoami = whoami(&app, &current.token).await;
    assert_eq!(whoami.status, 200, "the current session lives on");
}

/// An administrator removes one of a user's second factors on the admin face.
async fn remove_factor(app: &TestApp, user: &str, kind: &str, query: &str) -> u64 {
    let answer = send(
        app.http
            .delete(app.url(&format!(
                "/auth/admin/api/users/{user}/factors/{kind}{query}"
            )))
            .header("authorization", app.bearer("admin", EVERY_PERMISSION)),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json["revokedSessions"].as_u64().expect("a count")
}

#[tokio::test]
async fn a_change_of_second_factors_is_one_session_revoked_set_per_ended_session_by_policy() {
    let app = signals_app().await;
    let Some(receiver) = receiver(&app) else {
        return;
    };
    push_stream(&app, &receiver, "factors", &[SESSION_REVOKED]).await;
    receiver.wait_for("factors", 1).await;
    let eve = app.add_user("eve").await;
    let id = eve.id.as_str();
    let users = app.user_api(UserProtocol::Grpc);
    // TOTP, enrolled before eve has any session: nothing ends.
    enroll_totp(&app, &users, &operator(&app), id).await;
    const BY_POLICY: &str = "The user's second factors changed; the session ended by policy";
    let mut expected: HashMap<String, Revoked> = HashMap::new();
    let mut expect = |app: &TestApp, session: &str| {
        let revoked = Revoked {
            user: id.to_owned(),
            entity: String::from("policy"),
            reason: String::from(BY_POLICY),
            at: seconds_now(app),
        };
        assert!(expected.insert(session.to_owned(), revoked).is_none());
    };

    // Eve adds recovery codes from one of her sessions: her other sessions end.
    let others = [login(&app, &eve).await, login(&app, &eve).await];
    let current = login(&app, &eve).await;
    let own = format!("Bearer {}", current.token);
    generate_recovery_codes(&users, &own, id, 4).await;
    for other in &others {
        expect(&app, &other.id);
    }
    app.advance(Duration::from_secs(1));

    // An administrator removes TOTP with revokeSessions=false: no session ends.
    assert_eq!(
        remove_factor(&app, id, "totp", "?revokeSessions=false").await,
        0
    );
    app.advance(Duration::from_secs(1));

    // An administrator removes the recovery codes (revokeSessions by default): every
    // session of eve ends, the one she changed her factors from too.
    let later = login(&app, &eve).await;
    assert_eq!(remove_factor(&app, id, "recovery_codes", "").await, 2);
    expect(&app, &current.id);
    expect(&app, &later.id);

    let n = expected.len();
    let got = receiver.wait_for("factors", 1 + n).await;
    let mut heard: HashMap<String, Revoked> = HashMap::new();
    for claims in &got[1..] {
        let (session, what) = revoked(claims);
        assert!(
            heard.insert(session.clone(), what).is_none(),
            "one SET per session: {session} twice in {got:#?}"
        );
    }
    assert_eq!(heard, expected);
    // Delivery keeps the order of the log: the last termination arrived, nothing more is on
    // its way.
    assert_eq!(got.len(), 1 + n, "{got:#?}");
}

#[tokio::test]
async fn back_channel_logout_follows_every_cause_to_the_clients_whose_sessions_ended() {
    let app = signals_app().await;
    let Some(receiver) = receiver(&app) else {
        return;
    };
    let admin = manager(&app, "ops");
    for (client, scope) in [("shop", "client"), ("blog", "client"), ("every", "all")] {
        let answer = send(
            app.http
                .post(app.url("/auth/admin/api/backchannel-logout-clients"))
                .header("authorization", &admin)
                .json(&json!({
                    "clientId": client,
                    "backchannelLogoutUri": receiver.url(&format!("/logout/{client}")),
                    "sessions": scope,
                })),
        )
        .await;
        assert_eq!(answer.status, 201, "{}", answer.body);
    }
    let ann = app.add_user("ann").await;
    let bob = app.add_user("bob").await;

    // An administrator revokes one session of each client.
    let shop_admin = session_of_client(&app, &bob, "shop").await;
    let blog_admin = session_of_client(&app, &bob, "blog").await;
    admin_revoke(&app, bob.id.as_str(), &shop_admin.id).await;
    admin_revoke(&app, bob.id.as_str(), &blog_admin.id).await;

    // Revoke-others from a shop session ends the shop, blog and client-less ones but it.
    let current = session_of_client(&app, &ann, "shop").await;
    let shop_other = session_of_client(&app, &ann, "shop").await;
    let blog_other = session_of_client(&app, &ann, "blog").await;
    let plain = login(&app, &ann).await;
    assert_eq!(revoke_others(&app, &current).await, 3);

    // DeleteSession with the session's own token, last of all for each client.
    let shop_token = session_of_client(&app, &bob, "shop").await;
    delete_with_token(&app, &shop_token).await;
    let blog_token = session_of_client(&app, &bob, "blog").await;
    delete_with_token(&app, &blog_token).await;

    // Each client's tokens come in the order of the log; its last one is last of all, so
    // once it arrived nothing else is on its way to that client.
    let sids = |claims: &[Value], client: &str| -> Vec<String> {
        for c in claims {
            assert_eq!(c["aud"], client, "{c:#}");
            assert!(c.get("nonce").is_none());
        }
        claims
            .iter()
            .map(|c| c["sid"].as_str().unwrap().to_owned())
            .collect()
    };
    let subs = |claims: &[Value]| -> Vec<String> {
        claims
            .iter()
            .map(|c| c["sub"].as_str().unwrap().to_owned())
            .collect()
    };
    let (ann_id, bob_id) = (ann.id.as_str().to_owned(), bob.id.as_str().to_owned());

    let shop = receiver.wait_for("shop", 3).await;
    assert_eq!(
        sids(&shop, "shop"),
        [shop_admin.id.as_str(), &shop_other.id, &shop_token.id]
    );
    assert_eq!(subs(&shop), [bob_id.as_str(), &ann_id, &bob_id]);
    assert_eq!(shop.len(), 3, "{shop:#?}");

    let blog = receiver.wait_for("blog", 3).await;
    assert_eq!(
        sids(&blog, "blog"),
        [blog_admin.id.as_str(), &blog_other.id, &blog_token.id]
    );
    assert_eq!(blog.len(), 3, "{blog:#?}");

    let every = receiver.wait_for("every", 7).await;
    let mut all = sids(&every, "every");
    // One transaction ends the other sessions: their order among themselves is the store's.
    all[2..5].sort();
    let mut others = vec![
        shop_other.id.clone(),
        blog_other.id.clone(),
        plain.id.clone(),
    ];
    others.sort();
    let mut expected = vec![shop_admin.id.clone(), blog_admin.id.clone()];
    expected.extend(others);
    expected.extend([shop_token.id.clone(), blog_token.id.clone()]);
    assert_eq!(all, expected);
    assert!(!all.contains(&current.id), "not the current session");
    assert_eq!(every.len(), 7, "{every:#?}");
}
