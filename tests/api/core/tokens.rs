//! Session tokens: only the newest token of a live session with an active user
//! authenticates; a change rotates it, so every older token stops working everywhere.

use std::time::Duration;

use sessiond::core::{CreateSession, UserAction};
use sessiond::domain::{ErrorKind, Permission, PrincipalKind, SessionToken, error_ids};

use super::*;

/// Asserts that `token` authenticates nobody, neither as a bearer nor for self-service.
async fn assert_dead(h: &Harness, token: &SessionToken, why: &str) {
    let bearer = h
        .core
        .authenticate_session_token(token)
        .await
        .expect_err(&format!("{h}: a {why} token is no bearer"));
    assert_eq!(bearer.kind(), ErrorKind::Unauthenticated, "{h}: {why}");
    assert_eq!(bearer.id(), error_ids::AUTH_TOKEN_INVALID, "{h}: {why}");
    let current = h
        .core
        .current_session(token)
        .await
        .expect_err(&format!("{h}: a {why} token is no current session"));
    assert_eq!(current.kind(), ErrorKind::Unauthenticated, "{h}: {why}");
    assert_eq!(current.id(), error_ids::NO_SESSION, "{h}: {why}");
}

#[tokio::test]
async fn after_each_change_only_the_newest_token_authenticates() {
    for h in harnesses().await {
        let user = h.user("rotating@example.com").await;
        let created = h.session_for(&user).await;
        let mut old = vec![created.token.clone()];
        let mut current = created.token.clone();
        for round in 0..2 {
            let change = h
                .set(SetSession {
                    metadata: metadata(&[("round", &round.to_string())]),
                    ..set(&created.id)
                })
                .await;
            current = change.token.expect("rotated");
            for token in &old {
                assert_dead(&h, token, "rotated").await;
                fails(
                    &h,
                    h.core
                        .delete_session(&login_ui(), &created.id, Some(token))
                        .await,
                    ErrorKind::PermissionDenied,
                    error_ids::SESSION_TOKEN_INVALID,
                );
            }
            old.push(current.clone());
        }
        let principal = succeeds(&h, h.core.authenticate_session_token(&current).await);
        assert_eq!(principal.user_id, user.id.as_str(), "{h}");
        assert_eq!(
            principal.kind,
            PrincipalKind::Session(created.id.clone()),
            "{h}"
        );
        for permission in Permission::ALL {
            assert!(!principal.can(permission), "{h}: {permission:?}");
        }
        assert_eq!(h.current(&current).await.session.id, created.id, "{h}");
    }
}

#[tokio::test]
async fn a_token_stops_authenticating_when_its_session_ends_expires_or_its_user_is_blocked() {
    for h in harnesses().await {
        let user = h.user("ends@example.com").await;
        let deleted = h.session_for(&user).await;
        h.delete(&deleted.id).await;
        assert_dead(&h, &deleted.token, "deleted").await;

        let short = h
            .session_for_with_lifetime(&user, Duration::from_secs(60))
            .await;
        succeeds(&h, h.core.authenticate_session_token(&short.token).await);
        h.advance(Duration::from_secs(60));
        assert_dead(&h, &short.token, "expired").await;

        let anonymous = h.create(CreateSession::default()).await;
        assert_dead(&h, &anonymous.token, "no checked user").await;

        assert_dead(&h, &SessionToken::generate(), "never issued").await;

        for (name, action) in [
            ("locked@example.com", UserAction::Lock),
            ("gone@example.com", UserAction::Deactivate),
        ] {
            let blocked = h.user(name).await;
            let session = h.session_for(&blocked).await;
            succeeds(
                &h,
                h.core
                    .change_user_state(&admin(), &blocked.id, action)
                    .await,
            );
            assert_dead(&h, &session.token, name).await;
        }
    }
}

#[tokio::test]
async fn a_session_token_principal_reads_and_deletes_its_own_session_but_cannot_write() {
    for h in harnesses().await {
        let user = h.user("self@example.com").await;
        let created = h.session_for(&user).await;
        let principal = succeeds(&h, h.core.authenticate_session_token(&created.token).await);
        succeeds(&h, h.core.get_session(&principal, &created.id, None).await);
        fails(
            &h,
            h.core
                .create_session(&principal, CreateSession::default())
                .await,
            ErrorKind::PermissionDenied,
            error_ids::PERMISSION_MISSING,
        );
        succeeds(
            &h,
            h.core.delete_session(&principal, &created.id, None).await,
        );
        assert!(h.stored(&created.id).await.is_terminated(), "{h}");
    }
}
