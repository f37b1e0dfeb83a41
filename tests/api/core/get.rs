//! GetSession: who may read a session (its current token, its creator, its checked user, or
//! `session.read`), and which sessions there are to read (expired yes, terminated no).

use sessiond::core::CreateSession;
use sessiond::domain::{ErrorKind, Permission, SessionToken, error_ids};

use super::*;

#[tokio::test]
async fn the_current_token_reads_a_session_without_any_permission() {
    for h in harnesses().await {
        let user = h.user("reader@example.com").await;
        let created = h.session_for(&user).await;
        let stranger = caller("stranger", &[]);
        let session = succeeds(
            &h,
            h.core
                .get_session(&stranger, &created.id, Some(&created.token))
                .await,
        );
        assert_eq!(session.id, created.id, "{h}");
        assert_eq!(session.user_id(), Some(&user.id), "{h}");
    }
}

#[tokio::test]
async fn a_wrong_token_is_permission_denied_even_with_session_read() {
    for h in harnesses().await {
        let created = h.create(CreateSession::default()).await;
        let other = h.create(CreateSession::default()).await;
        for token in [
            SessionToken::from_client("sdst_not-a-token"),
            other.token.clone(),
        ] {
            fails(
                &h,
                h.core
                    .get_session(&login_ui(), &created.id, Some(&token))
                    .await,
                ErrorKind::PermissionDenied,
                error_ids::SESSION_READ_DENIED,
            );
        }
    }
}

#[tokio::test]
async fn the_creator_the_checked_user_and_session_read_may_read_without_a_token() {
    for h in harnesses().await {
        let user = h.user("owner@example.com").await;
        let created = h.session_for(&user).await;
        let readers = [
            caller("login-ui", &[]),
            as_user(&user),
            caller("auditor", &[Permission::SessionRead]),
        ];
        for reader in readers {
            succeeds(&h, h.core.get_session(&reader, &created.id, None).await);
        }
        let others = [
            caller("stranger", &[]),
            caller(
                "writer",
                &[Permission::SessionWrite, Permission::SessionDelete],
            ),
        ];
        for other in others {
            let error = fails(
                &h,
                h.core.get_session(&other, &created.id, None).await,
                ErrorKind::PermissionDenied,
                error_ids::PERMISSION_MISSING,
            );
            assert!(error.message().contains("session.read"), "{h}: {error:?}");
        }
    }
}

#[tokio::test]
async fn expired_sessions_are_still_returned() {
    for h in harnesses().await {
        let user = h.user("late@example.com").await;
        let created = h.expired_session_for(&user, 60, 3600).await;
        let session = succeeds(
            &h,
            h.core
                .get_session(&login_ui(), &created.id, Some(&created.token))
                .await,
        );
        assert!(session.is_expired(h.now()), "{h}");
        succeeds(&h, h.core.get_session(&login_ui(), &created.id, None).await);
    }
}

#[tokio::test]
async fn terminated_and_unknown_sessions_are_not_found_whatever_the_credentials() {
    for h in harnesses().await {
        let created = h.create(CreateSession::default()).await;
        succeeds(
            &h,
            h.core
                .delete_session(&login_ui(), &created.id, Some(&created.token))
                .await,
        );
        for (id, token) in [
            (&created.id, Some(&created.token)),
            (&created.id, None),
            (&unknown_id(), None),
        ] {
            fails(
                &h,
                h.core.get_session(&login_ui(), id, token).await,
                ErrorKind::NotFound,
                error_ids::SESSION_NOT_FOUND,
            );
        }
    }
}
