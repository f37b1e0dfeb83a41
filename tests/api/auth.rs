//! Authentication: bearer JWTs signed with the embedded key, and session tokens as bearers.

use std::time::Duration;

use sessiond::auth::EmbeddedKey;
use sessiond::domain::Time;

use crate::helpers::*;

/// ListSessions with `auth` fails Unauthenticated on every protocol and version.
pub async fn assert_unauthenticated_everywhere(app: &TestApp, auth: Option<&str>, what: &str) {
    for api in app.apis() {
        let failure = fails_with(
            &api,
            api.list(auth, v2::ListSessionsRequest::default()).await,
            Code::Unauthenticated,
        );
        if let Some(status) = failure.http_status {
            assert_eq!(status, 401, "{api}: {what}");
        }
        assert!(
            matches!(failure.id(), "AUTH-7fs1a" | "AUTH-7fs1b" | "AUTH-7fs1e"),
            "{api}: {what}: {failure:?}"
        );
    }
}

#[tokio::test]
async fn requests_without_a_valid_credential_are_unauthenticated_on_every_protocol() {
    let app = spawn_app().await;
    let now = app.now();
    let other_dir = tempfile::tempdir().expect("temp dir");
    let other_key = EmbeddedKey::load_or_create(other_dir.path()).expect("another key");
    let own_key = EmbeddedKey::load(app.data_dir.path()).expect("own key");
    let hour = Duration::from_secs(3600);
    let perms = ALL_SESSION_PERMISSIONS;

    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "no authorization header"),
        (Some(String::new()), "empty authorization header"),
        (Some("Bearer".into()), "bearer without credential"),
        (Some("Bearer garbage".into()), "garbage bearer"),
        (Some("Basic YWRtaW46YWRtaW4=".into()), "basic credentials"),
        (
            Some("Bearer sdst_not-a-real-token".into()),
            "unknown session token",
        ),
        (
            Some(format!(
                "Bearer {}",
                mint_jwt(
                    &other_key, "sessiond", "sessiond", "admin", perms, hour, now
                )
            )),
            "JWT signed with another key",
        ),
        (
            Some(format!(
                "Bearer {}",
                mint_jwt(
                    &own_key,
                    "someone-else",
                    "sessiond",
                    "admin",
                    perms,
                    hour,
                    now
                )
            )),
            "JWT with the wrong issuer",
        ),
        (
            Some(format!(
                "Bearer {}",
                mint_jwt(
                    &own_key,
                    "sessiond",
                    "someone-else",
                    "admin",
                    perms,
                    hour,
                    now
                )
            )),
            "JWT with the wrong audience",
        ),
        (
            Some(format!(
                "Bearer {}",
                mint_jwt(&own_key, "sessiond", "sessiond", "", perms, hour, now)
            )),
            "JWT without a subject",
        ),
        (
            Some(format!(
                "Bearer {}",
                mint_jwt(
                    &own_key,
                    "sessiond",
                    "sessiond",
                    "admin",
                    perms,
                    hour,
                    // Not valid before an hour from now (beyond the 30 s leeway).
                    Time::from_unix_micros(now.unix_micros() + 3_600_000_000),
                )
            )),
            "JWT not valid yet",
        ),
    ];
    for (auth, what) in &cases {
        assert_unauthenticated_everywhere(&app, auth.as_deref(), what).await;
    }

    // The same key, issuer and audience work: the cases above fail for their one defect.
    let good = format!(
        "Bearer {}",
        mint_jwt(&own_key, "sessiond", "sessiond", "admin", perms, hour, now)
    );
    for api in app.apis() {
        ok(&api, api.list(Some(&good), Default::default()).await);
    }
}

#[tokio::test]
async fn an_expired_jwt_is_unauthenticated_once_the_leeway_has_passed() {
    let app = spawn_app().await;
    let token = app.bearer_with("admin", ALL_SESSION_PERMISSIONS, Duration::from_secs(60));
    for api in app.apis() {
        ok(&api, api.list(Some(&token), Default::default()).await);
    }
    // exp + 29 s: still inside the 30 s leeway.
    app.advance(Duration::from_secs(60 + 29));
    for api in app.apis() {
        ok(&api, api.list(Some(&token), Default::default()).await);
    }
    // exp + 30 s: expired.
    app.advance(Duration::from_secs(1));
    assert_unauthenticated_everywhere(&app, Some(&token), "expired JWT").await;
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = spawn_app().await;
    let jwt = app.admin();
    let lower = jwt.replacen("Bearer", "bearer", 1);
    for api in app.apis() {
        ok(&api, api.list(Some(&lower), Default::default()).await);
    }
}

#[tokio::test]
async fn a_session_token_as_bearer_acts_as_the_sessions_user() {
    let app = spawn_app().await;
    let alice = app.add_user("alice@example.com").await;
    let bob = app.add_user("bob@example.com").await;
    // Created by a login client; alice's token then reads alice's session without
    // session.read and without presenting the token in the request.
    let own = app.create_session_for(&alice).await;
    let other_of_alice = app.create_session_for(&alice).await;
    let bobs = app.create_session_for(&bob).await;
    let bearer = format!("Bearer {}", own.session_token);
    for api in app.apis() {
        let got = ok(
            &api,
            api.get(Some(&bearer), get(&own.session_id, None)).await,
        );
        assert_eq!(
            got.message.session.map(|s| s.id),
            Some(own.session_id.clone())
        );
        ok(
            &api,
            api.get(Some(&bearer), get(&other_of_alice.session_id, None))
                .await,
        );
        let outcome = api.get(Some(&bearer), get(&bobs.session_id, None)).await;
        fails(&api, outcome, Code::PermissionDenied, "AUTH-AWfge");
        let listed = ok(&api, api.list(Some(&bearer), Default::default()).await);
        let mut ids: Vec<String> = listed.message.sessions.into_iter().map(|s| s.id).collect();
        ids.sort();
        let mut expected = vec![own.session_id.clone(), other_of_alice.session_id.clone()];
        expected.sort();
        assert_eq!(ids, expected, "{api}: alice sees her sessions only");
        // A session token grants no permissions: it cannot create sessions.
        let outcome = api
            .create(Some(&bearer), create_for_user(alice.id.as_str()))
            .await;
        fails(&api, outcome, Code::PermissionDenied, "AUTH-AWfge");
    }
}

#[tokio::test]
async fn a_terminated_sessions_token_is_rejected_as_bearer() {
    let app = spawn_app().await;
    let alice = app.add_user("alice@example.com").await;
    let session = app.create_session_for(&alice).await;
    let bearer = format!("Bearer {}", session.session_token);
    let api = app.api(Protocol::Grpc, Version::V2);
    ok(&api, api.list(Some(&bearer), Default::default()).await);
    ok(
        &api,
        api.delete(
            Some(&app.admin()),
            delete(&session.session_id, Some(&session.session_token)),
        )
        .await,
    );
    assert_unauthenticated_everywhere(&app, Some(&bearer), "terminated session token").await;
}

#[tokio::test]
async fn an_expired_sessions_token_is_rejected_as_bearer() {
    let app = spawn_app().await;
    let alice = app.add_user("alice@example.com").await;
    let api = app.api(Protocol::Grpc, Version::V2);
    let session = app.create_expiring_session_for(&alice, 60).await;
    let bearer = format!("Bearer {}", session.session_token);
    ok(&api, api.list(Some(&bearer), Default::default()).await);
    app.advance(Duration::from_secs(60));
    assert_unauthenticated_everywhere(&app, Some(&bearer), "expired session token").await;
}

#[tokio::test]
async fn a_session_without_a_checked_user_cannot_be_used_as_bearer() {
    let app = spawn_app().await;
    let api = app.api(Protocol::Grpc, Version::V2);
    let session = ok(
        &api,
        api.create(Some(&app.admin()), Default::default()).await,
    )
    .message;
    let bearer = format!("Bearer {}", session.session_token);
    assert_unauthenticated_everywhere(&app, Some(&bearer), "session without a user").await;
}

#[tokio::test]
async fn a_rotated_session_token_is_rejected_as_bearer() {
    let app = spawn_app().await;
    let alice = app.add_user("alice@example.com").await;
    let session = app.create_session_for(&alice).await;
    let api = app.api(Protocol::Grpc, Version::V2);
    let updated = ok(
        &api,
        api.set(
            Some(&app.admin()),
            set_metadata(&session.session_id, "k", b"v"),
        )
        .await,
    )
    .message;
    let old = format!("Bearer {}", session.session_token);
    assert_unauthenticated_everywhere(&app, Some(&old), "rotated session token").await;
    let new = format!("Bearer {}", updated.session_token);
    for api in app.apis() {
        ok(
            &api,
            api.get(Some(&new), get(&session.session_id, None)).await,
        );
    }
}
