//! The administrator's rules: a user's sessions (all, active, inactive; newest first), revoking
//! one or all of them, and the user changes that end sessions (lock, deactivate, new
//! password) or do not (reactivate).

use std::time::Duration;

use sessiond::core::{NewUser, PageRequest, UserAction};
use sessiond::domain::{ErrorKind, LoginName, Password, SessionId, UserId, UserState, error_ids};

use super::*;

/// A user's sessions as an administrator lists them.
async fn user_sessions(h: &Harness, user: &User, active: Option<bool>) -> (Vec<SessionId>, u64) {
    let page = succeeds(
        h,
        h.core
            .admin_user_sessions(&admin(), &user.id, active, &PageRequest::default())
            .await,
    );
    (
        page.sessions.into_iter().map(|s| s.session.id).collect(),
        page.total,
    )
}

/// Asserts that `ids` ended with `reason`, by `editor`, in one event each.
async fn assert_ended(h: &Harness, ids: &[&SessionId], reason: &str, editor: &str) {
    for id in ids {
        let events = h.events(id).await;
        assert_eq!(events.len(), 2, "{h}: {id} ended once");
        assert_eq!(events[1].event_type, "session.terminated", "{h}");
        assert_eq!(events[1].payload["reason"], reason, "{h}");
        assert_eq!(events[1].editor, editor, "{h}");
    }
}

#[tokio::test]
async fn a_users_sessions_are_listed_newest_first_terminated_included_unless_filtered() {
    for h in harnesses().await {
        let user = h.user("listed@example.com").await;
        let other = h.user("other@example.com").await;
        let ended = h.session_for(&user).await.id;
        h.advance(Duration::from_secs(1));
        let expired = h.expired_session_for(&user, 1, 1).await.id;
        let active = h.session_for(&user).await.id;
        h.session_for(&other).await;
        h.delete(&ended).await;
        h.advance(Duration::from_secs(5));

        let cases = [
            (None, vec![&active, &expired, &ended]),
            (Some(true), vec![&active]),
            (Some(false), vec![&expired, &ended]),
        ];
        for (filter, expected) in cases {
            let expected: Vec<SessionId> = expected.into_iter().cloned().collect();
            let total = expected.len() as u64;
            assert_eq!(
                user_sessions(&h, &user, filter).await,
                (expected, total),
                "{h}: active = {filter:?}"
            );
        }
    }
}

#[tokio::test]
async fn an_unknown_user_is_not_found_by_every_admin_session_command() {
    for h in harnesses().await {
        let nobody = UserId::parse("404").expect("id");
        fails(
            &h,
            h.core
                .admin_user_sessions(&admin(), &nobody, None, &PageRequest::default())
                .await,
            ErrorKind::NotFound,
            error_ids::USER_NOT_FOUND,
        );
        fails(
            &h,
            h.core
                .admin_revoke_session(&admin(), &nobody, &unknown_id())
                .await,
            ErrorKind::NotFound,
            error_ids::USER_NOT_FOUND,
        );
        fails(
            &h,
            h.core
                .admin_revoke_user_sessions(
                    &admin(),
                    &nobody,
                    None,
                    sessiond::core::RevokedBy::Admin,
                )
                .await,
            ErrorKind::NotFound,
            error_ids::USER_NOT_FOUND,
        );
        for action in [
            UserAction::Lock,
            UserAction::Deactivate,
            UserAction::Reactivate,
        ] {
            fails(
                &h,
                h.core.change_user_state(&admin(), &nobody, action).await,
                ErrorKind::NotFound,
                error_ids::USER_NOT_FOUND,
            );
        }
    }
}

#[tokio::test]
async fn revoking_one_session_is_idempotent_and_reports_the_first_revocation() {
    for h in harnesses().await {
        let user = h.user("revoked@example.com").await;
        let session = h.session_for(&user).await;
        let first = succeeds(
            &h,
            h.core
                .admin_revoke_session(&admin(), &user.id, &session.id)
                .await,
        );
        assert_eq!(first.terminated_at, Some(h.now()), "{h}");
        h.advance(Duration::from_secs(60));
        let again = succeeds(
            &h,
            h.core
                .admin_revoke_session(&admin(), &user.id, &session.id)
                .await,
        );
        assert_eq!(again.terminated_at, first.terminated_at, "{h}");
        assert_ended(&h, &[&session.id], "revoked_by_admin", "admin").await;
    }
}

#[tokio::test]
async fn a_session_of_another_user_or_an_unknown_one_is_not_found_for_this_user() {
    for h in harnesses().await {
        let user = h.user("mine@example.com").await;
        let other = h.user("theirs@example.com").await;
        let theirs = h.session_for(&other).await;
        for id in [&theirs.id, &unknown_id()] {
            fails(
                &h,
                h.core.admin_revoke_session(&admin(), &user.id, id).await,
                ErrorKind::NotFound,
                error_ids::SESSION_NOT_FOUND,
            );
        }
        assert!(!h.stored(&theirs.id).await.is_terminated(), "{h}");
    }
}

#[tokio::test]
async fn revoking_all_of_a_users_sessions_counts_the_live_ones_and_spares_other_users() {
    for h in harnesses().await {
        let user = h.user("all@example.com").await;
        let other = h.user("spared@example.com").await;
        let a = h.session_for(&user).await.id;
        let b = h.session_for(&user).await.id;
        let done = h.session_for(&user).await.id;
        h.delete(&done).await;
        let spared = h.session_for(&other).await.id;
        let revoked = h
            .core
            .admin_revoke_user_sessions(&admin(), &user.id, None, sessiond::core::RevokedBy::Admin)
            .await;
        assert_eq!(succeeds(&h, revoked), 2, "{h}");
        let again = h
            .core
            .admin_revoke_user_sessions(&admin(), &user.id, None, sessiond::core::RevokedBy::Admin)
            .await;
        assert_eq!(succeeds(&h, again), 0, "{h}");
        assert_ended(&h, &[&a, &b], "revoked_by_admin", "admin").await;
        assert_ended(&h, &[&done], "deleted", "login-ui").await;
        assert!(!h.stored(&spared).await.is_terminated(), "{h}");
    }
}

#[tokio::test]
async fn locking_and_deactivating_end_the_users_sessions_and_reactivating_does_not() {
    for h in harnesses().await {
        let cases = [
            (UserAction::Lock, UserState::Locked, "user_locked"),
            (
                UserAction::Deactivate,
                UserState::Inactive,
                "user_deactivated",
            ),
        ];
        for (action, state, reason) in cases {
            let user = h.user(&format!("{action:?}@example.com")).await;
            let a = h.session_for(&user).await;
            let b = h.session_for(&user).await;
            let (changed, revoked) = succeeds(
                &h,
                h.core.change_user_state(&admin(), &user.id, action).await,
            );
            assert_eq!((changed.state, revoked), (state, 2), "{h}: {action:?}");
            assert_eq!(h.stored_user(&user.id).await.state, state, "{h}");
            assert_ended(&h, &[&a.id, &b.id], reason, "admin").await;

            let (back, revoked) = succeeds(
                &h,
                h.core
                    .change_user_state(&admin(), &user.id, UserAction::Reactivate)
                    .await,
            );
            assert_eq!((back.state, revoked), (UserState::Active, 0), "{h}");
            assert!(
                h.stored(&a.id).await.is_terminated(),
                "{h}: ended stays ended"
            );
            let fresh = h.session_for(&user).await;
            assert!(!h.stored(&fresh.id).await.is_terminated(), "{h}");
        }
    }
}

#[tokio::test]
async fn a_deactivated_user_cannot_be_locked() {
    for h in harnesses().await {
        let user = h.user("inactive@example.com").await;
        succeeds(
            &h,
            h.core
                .change_user_state(&admin(), &user.id, UserAction::Deactivate)
                .await,
        );
        fails(
            &h,
            h.core
                .change_user_state(&admin(), &user.id, UserAction::Lock)
                .await,
            ErrorKind::FailedPrecondition,
            error_ids::USER_DEACTIVATED,
        );
        assert_eq!(
            h.stored_user(&user.id).await.state,
            UserState::Inactive,
            "{h}"
        );
    }
}

#[tokio::test]
async fn a_new_password_ends_the_users_sessions_unless_told_not_to() {
    for h in harnesses().await {
        let user = h.user_with_password("renew@example.com").await;
        let kept = h.session_for(&user).await;
        let password = Password::parse("a brand new password").expect("pw");
        let (_, revoked) = succeeds(
            &h,
            h.core
                .set_password(&admin(), &user.id, &password, false)
                .await,
        );
        assert_eq!(revoked, 0, "{h}");
        assert!(!h.stored(&kept.id).await.is_terminated(), "{h}");

        let (_, revoked) = succeeds(
            &h,
            h.core
                .set_password(&admin(), &user.id, &password, true)
                .await,
        );
        assert_eq!(revoked, 1, "{h}");
        assert_ended(&h, &[&kept.id], "password_changed", "admin").await;

        let old = h
            .core
            .create_session(
                &login_ui(),
                sessiond::core::CreateSession {
                    checks: login_check("renew@example.com", Some(PASSWORD)),
                    ..Default::default()
                },
            )
            .await;
        fails(
            &h,
            old,
            ErrorKind::InvalidArgument,
            error_ids::PASSWORD_INVALID,
        );
    }
}

#[tokio::test]
async fn login_names_are_unique_without_regard_to_case() {
    for h in harnesses().await {
        h.user("Unique@Example.com").await;
        let duplicate = h
            .core
            .create_user(
                &admin(),
                NewUser {
                    login_name: LoginName::parse("unique@example.COM").expect("name"),
                    display_name: None,
                    organization_id: None,
                    password: None,
                },
            )
            .await;
        fails(
            &h,
            duplicate,
            ErrorKind::AlreadyExists,
            error_ids::USER_EXISTS,
        );
    }
}
