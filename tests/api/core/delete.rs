//! DeleteSession: the token or permission is checked before the state; a delete is one
//! `session.terminated` event, a second delete the same details and no event; an unknown id
//! with `session.delete` and no token is empty details; expired sessions can be deleted.

use std::time::Duration;

use sessiond::core::CreateSession;
use sessiond::domain::{Details, ErrorKind, Permission, SessionToken, error_ids};

use super::*;

#[tokio::test]
async fn the_current_token_deletes_a_session_with_one_terminated_event() {
    for h in harnesses().await {
        let user = h.user("bye@example.com").await;
        let created = h.session_for(&user).await;
        h.advance(Duration::from_secs(30));
        let stranger = caller("stranger", &[]);
        let details = succeeds(
            &h,
            h.core
                .delete_session(&stranger, &created.id, Some(&created.token))
                .await,
        );
        assert_eq!(details.sequence, 2, "{h}");
        assert_eq!(details.change_date, Some(h.now()), "{h}");
        assert_eq!(
            h.stored(&created.id).await.terminated_at,
            Some(h.now()),
            "{h}"
        );
        let events = h.events(&created.id).await;
        assert_eq!(
            h.event_types(&created.id).await,
            ["session.added", "session.terminated"],
            "{h}"
        );
        assert_eq!(events[1].payload["reason"], "deleted", "{h}");
        assert_eq!(events[1].editor, "stranger", "{h}");
        assert_eq!(events[1].sequence, 2, "{h}");
    }
}

#[tokio::test]
async fn deleting_twice_returns_the_same_details_and_adds_no_event() {
    for h in harnesses().await {
        let created = h.create(CreateSession::default()).await;
        let first = succeeds(
            &h,
            h.core
                .delete_session(&login_ui(), &created.id, Some(&created.token))
                .await,
        );
        h.advance(Duration::from_secs(60));
        for token in [Some(&created.token), None] {
            let again = succeeds(
                &h,
                h.core.delete_session(&login_ui(), &created.id, token).await,
            );
            assert_eq!(again, first, "{h}");
        }
        assert_eq!(h.events(&created.id).await.len(), 2, "{h}");
    }
}

#[tokio::test]
async fn a_wrong_stale_or_foreign_token_is_denied_before_the_state_is_looked_at() {
    for h in harnesses().await {
        let live = h.create(CreateSession::default()).await;
        let foreign = h.create(CreateSession::default()).await;
        let stale = live.token.clone();
        let rotated = h
            .set(SetSession {
                metadata: metadata(&[("k", "v")]),
                ..set(&live.id)
            })
            .await;
        assert!(rotated.token.is_some(), "{h}");
        let ended = h.create(CreateSession::default()).await;
        h.delete(&ended.id).await;
        let wrong = SessionToken::from_client("sdst_wrong");
        // Even `session.delete` does not excuse a wrong token, and an unknown or terminated
        // session answers the same as a live one.
        let cases = [
            (&live.id, &stale),
            (&live.id, &foreign.token),
            (&live.id, &wrong),
            (&ended.id, &wrong),
            (&unknown_id(), &wrong),
        ];
        for (id, token) in cases {
            fails(
                &h,
                h.core.delete_session(&login_ui(), id, Some(token)).await,
                ErrorKind::PermissionDenied,
                error_ids::SESSION_TOKEN_INVALID,
            );
        }
        assert_eq!(h.events(&live.id).await.len(), 2, "{h}: added, updated");
        assert!(h.stored(&live.id).await.terminated_at.is_none(), "{h}");
    }
}

#[tokio::test]
async fn an_unknown_id_with_session_delete_and_no_token_yields_empty_details() {
    for h in harnesses().await {
        let deleter = caller("deleter", &[Permission::SessionDelete]);
        let details = succeeds(
            &h,
            h.core.delete_session(&deleter, &unknown_id(), None).await,
        );
        assert_eq!(details, Details::default(), "{h}");
    }
}

#[tokio::test]
async fn without_token_or_permission_deletion_is_denied_whatever_the_state() {
    for h in harnesses().await {
        let live = h.create(CreateSession::default()).await;
        let ended = h.create(CreateSession::default()).await;
        h.delete(&ended.id).await;
        // The creator may read a session without its token, but not delete it.
        let callers = [
            caller("stranger", &[]),
            caller(
                "login-ui",
                &[Permission::SessionRead, Permission::SessionWrite],
            ),
        ];
        for caller in callers {
            for id in [&live.id, &ended.id, &unknown_id()] {
                fails(
                    &h,
                    h.core.delete_session(&caller, id, None).await,
                    ErrorKind::PermissionDenied,
                    error_ids::PERMISSION_MISSING,
                );
            }
        }
        assert!(h.stored(&live.id).await.terminated_at.is_none(), "{h}");
    }
}

#[tokio::test]
async fn the_checked_user_deletes_its_own_session_without_a_token() {
    for h in harnesses().await {
        let user = h.user("mine@example.com").await;
        let other = h.user("theirs@example.com").await;
        let mine = h.session_for(&user).await;
        let theirs = h.session_for(&other).await;
        fails(
            &h,
            h.core
                .delete_session(&as_user(&user), &theirs.id, None)
                .await,
            ErrorKind::PermissionDenied,
            error_ids::PERMISSION_MISSING,
        );
        succeeds(
            &h,
            h.core.delete_session(&as_user(&user), &mine.id, None).await,
        );
        assert!(h.stored(&mine.id).await.is_terminated(), "{h}");
        assert!(!h.stored(&theirs.id).await.is_terminated(), "{h}");
    }
}

#[tokio::test]
async fn an_empty_token_counts_as_none() {
    for h in harnesses().await {
        let created = h.create(CreateSession::default()).await;
        let empty = SessionToken::from_client("");
        fails(
            &h,
            h.core
                .delete_session(&caller("stranger", &[]), &created.id, Some(&empty))
                .await,
            ErrorKind::PermissionDenied,
            error_ids::PERMISSION_MISSING,
        );
        succeeds(
            &h,
            h.core
                .delete_session(&login_ui(), &created.id, Some(&empty))
                .await,
        );
        assert!(h.stored(&created.id).await.is_terminated(), "{h}");
    }
}

#[tokio::test]
async fn expired_sessions_can_be_deleted() {
    for h in harnesses().await {
        let user = h.user("old@example.com").await;
        let created = h.expired_session_for(&user, 60, 3600).await;
        let details = succeeds(
            &h,
            h.core
                .delete_session(&login_ui(), &created.id, Some(&created.token))
                .await,
        );
        assert_eq!(details.sequence, 2, "{h}");
        assert_eq!(
            h.stored(&created.id).await.terminated_at,
            Some(h.now()),
            "{h}"
        );
    }
}
