//! SetSession: more checks, metadata merged (an empty value deletes), a new lifetime counted
//! from now; a change is one `session.updated` event and a new token, a no-op neither.
//! Expired sessions refuse changes; terminated and unknown ones are not found.

use std::time::Duration;

use sessiond::core::{Checks, CreateSession};
use sessiond::domain::{ErrorKind, Password, error_ids};

use super::*;

#[tokio::test]
async fn more_checks_add_factors_one_event_at_a_time() {
    for h in harnesses().await {
        let user = h.user_with_password("later@example.com").await;
        let created = h.create(CreateSession::default()).await;
        assert_eq!(h.stored(&created.id).await.user_id(), None, "{h}");

        h.advance(Duration::from_secs(1));
        let change = h
            .set(SetSession {
                checks: user_check(&user),
                ..set(&created.id)
            })
            .await;
        assert_eq!(change.details.sequence, 2, "{h}");
        assert_eq!(change.details.change_date, Some(h.now()), "{h}");
        assert_eq!(h.stored(&created.id).await.user_id(), Some(&user.id), "{h}");

        // A password alone is checked against the user the session already has.
        h.advance(Duration::from_secs(1));
        let change = h
            .set(SetSession {
                checks: password_check(PASSWORD),
                ..set(&created.id)
            })
            .await;
        assert_eq!(change.details.sequence, 3, "{h}");
        let stored = h.stored(&created.id).await;
        assert_eq!(stored.factors.password_verified_at, Some(h.now()), "{h}");
        assert_eq!(stored.sequence, 3, "{h}");
        assert_eq!(
            h.event_types(&created.id).await,
            ["session.added", "session.updated", "session.updated"],
            "{h}"
        );
    }
}

#[tokio::test]
async fn metadata_is_merged_and_an_empty_value_deletes_its_key() {
    for h in harnesses().await {
        let created = h
            .create(CreateSession {
                metadata: metadata(&[("a", "1"), ("b", "2")]),
                ..CreateSession::default()
            })
            .await;
        h.set(SetSession {
            metadata: metadata(&[("b", ""), ("c", "3"), ("a", "1")]),
            ..set(&created.id)
        })
        .await;
        assert_eq!(
            h.stored(&created.id).await.metadata.0,
            metadata(&[("a", "1"), ("c", "3")]),
            "{h}"
        );
    }
}

#[tokio::test]
async fn a_new_lifetime_is_counted_from_now() {
    for h in harnesses().await {
        let user = h.user("long@example.com").await;
        let created = h.session_for_with_lifetime(&user, HOUR).await;
        h.advance(Duration::from_secs(1800));
        h.set(SetSession {
            lifetime: Some(HOUR),
            ..set(&created.id)
        })
        .await;
        h.assert_expires_in(&created.id, HOUR).await;
    }
}

#[tokio::test]
async fn a_change_rotates_the_token_and_the_old_one_stops_working() {
    for h in harnesses().await {
        let user = h.user("rotate@example.com").await;
        let created = h.session_for(&user).await;
        let change = h
            .set(SetSession {
                metadata: metadata(&[("k", "v")]),
                ..set(&created.id)
            })
            .await;
        let new = change.token.expect("a change hands out a new token");
        assert_ne!(new.expose(), created.token.expose(), "{h}");
        let stored = h.stored(&created.id).await;
        assert!(
            stored.token_hash == new.hash(),
            "{h}: the new token is stored"
        );
        fails(
            &h,
            h.core
                .get_session(&login_ui(), &created.id, Some(&created.token))
                .await,
            ErrorKind::PermissionDenied,
            error_ids::SESSION_READ_DENIED,
        );
        succeeds(
            &h,
            h.core
                .get_session(&login_ui(), &created.id, Some(&new))
                .await,
        );
    }
}

#[tokio::test]
async fn a_no_op_answers_the_current_details_without_a_token_or_an_event() {
    for h in harnesses().await {
        let created = h
            .create(CreateSession {
                metadata: metadata(&[("a", "1")]),
                ..CreateSession::default()
            })
            .await;
        let before = h.stored(&created.id).await;
        h.advance(Duration::from_secs(60));
        let no_ops = [
            set(&created.id),
            SetSession {
                metadata: metadata(&[("a", "1")]),
                ..set(&created.id)
            },
            SetSession {
                metadata: metadata(&[("never-set", "")]),
                ..set(&created.id)
            },
        ];
        for request in no_ops {
            let change = h.set(request).await;
            assert!(change.token.is_none(), "{h}: a no-op keeps the token");
            assert_eq!(change.details, before.details(), "{h}");
        }
        let after = h.stored(&created.id).await;
        assert!(after.token_hash == created.token.hash(), "{h}");
        assert_eq!(h.events(&created.id).await.len(), 1, "{h}");
    }
}

#[tokio::test]
async fn an_expired_session_refuses_changes_with_failed_precondition() {
    for h in harnesses().await {
        let user = h.user("expired@example.com").await;
        let created = h.expired_session_for(&user, 60, 60).await;
        let request = SetSession {
            metadata: metadata(&[("k", "v")]),
            ..set(&created.id)
        };
        h.set_refused(
            request,
            ErrorKind::FailedPrecondition,
            error_ids::SESSION_EXPIRED,
        )
        .await;
        assert_eq!(h.events(&created.id).await.len(), 1, "{h}");
    }
}

/// The expiry is checked before the checks run: a wrong password on an expired session is
/// refused as expired and is not counted against the user.
#[tokio::test]
async fn an_expired_session_refuses_a_password_check_without_counting_it() {
    for h in harnesses().await {
        let user = h.user_with_password("late@example.com").await;
        let expired = h.expired_session_for(&user, 60, 60).await;
        let wrong = || Checks {
            password: Some(Password::parse("not it").expect("pw")),
            ..Checks::default()
        };
        let request = SetSession {
            checks: wrong(),
            ..set(&expired.id)
        };
        h.set_refused(
            request,
            ErrorKind::FailedPrecondition,
            error_ids::SESSION_EXPIRED,
        )
        .await;
        let live = h.session_for(&user).await;
        let request = SetSession {
            checks: wrong(),
            ..set(&live.id)
        };
        let error = h
            .set_refused(
                request,
                ErrorKind::InvalidArgument,
                error_ids::PASSWORD_INVALID,
            )
            .await;
        assert_eq!(error.failed_attempts(), Some(1), "{h}");
    }
}

#[tokio::test]
async fn terminated_and_unknown_sessions_are_not_found() {
    for h in harnesses().await {
        let created = h.create(CreateSession::default()).await;
        h.delete(&created.id).await;
        for id in [created.id.clone(), unknown_id()] {
            let request = SetSession {
                metadata: metadata(&[("k", "v")]),
                ..set(&id)
            };
            h.set_refused(request, ErrorKind::NotFound, error_ids::SESSION_NOT_FOUND)
                .await;
        }
        assert_eq!(h.events(&created.id).await.len(), 2, "{h}");
    }
}

#[tokio::test]
async fn the_checked_user_of_a_session_cannot_change() {
    for h in harnesses().await {
        let alice = h.user("alice@example.com").await;
        let bob = h.user("bob@example.com").await;
        let created = h.session_for(&alice).await;
        let request = SetSession {
            checks: user_check(&bob),
            ..set(&created.id)
        };
        h.set_refused(request, ErrorKind::InvalidArgument, error_ids::USER_CHANGE)
            .await;
        assert_eq!(
            h.stored(&created.id).await.user_id(),
            Some(&alice.id),
            "{h}"
        );
        assert_eq!(h.events(&created.id).await.len(), 1, "{h}");

        // Checking the same user again is a change: verified anew, a new token.
        h.advance(Duration::from_secs(1));
        let change = h
            .set(SetSession {
                checks: user_check(&alice),
                ..set(&created.id)
            })
            .await;
        assert!(change.token.is_some(), "{h}");
        let factor = h.stored(&created.id).await.factors.user.expect("user");
        assert_eq!(factor.verified_at, h.now(), "{h}");
    }
}

#[tokio::test]
async fn a_wrong_password_on_set_fails_and_changes_nothing() {
    for h in harnesses().await {
        let user = h.user_with_password("typo@example.com").await;
        let created = h.session_for(&user).await;
        let request = SetSession {
            checks: Checks {
                password: Some(Password::parse("not it").expect("pw")),
                ..Checks::default()
            },
            ..set(&created.id)
        };
        let error = h
            .set_refused(
                request,
                ErrorKind::InvalidArgument,
                error_ids::PASSWORD_INVALID,
            )
            .await;
        assert_eq!(error.failed_attempts(), Some(1), "{h}");
        let stored = h.stored(&created.id).await;
        assert_eq!(stored.sequence, 1, "{h}");
        assert_eq!(stored.factors.password_verified_at, None, "{h}");
        assert!(stored.token_hash == created.token.hash(), "{h}");
    }
}

#[tokio::test]
async fn a_password_check_on_a_session_without_a_user_is_refused() {
    for h in harnesses().await {
        let created = h.create(CreateSession::default()).await;
        let request = SetSession {
            checks: password_check(PASSWORD),
            ..set(&created.id)
        };
        h.set_refused(
            request,
            ErrorKind::FailedPrecondition,
            error_ids::USER_CHECK_FIRST,
        )
        .await;
    }
}

#[tokio::test]
async fn a_zero_lifetime_on_set_is_invalid() {
    for h in harnesses().await {
        let created = h.create(CreateSession::default()).await;
        let request = SetSession {
            lifetime: Some(Duration::ZERO),
            ..set(&created.id)
        };
        h.set_refused(
            request,
            ErrorKind::InvalidArgument,
            error_ids::LIFETIME_INVALID,
        )
        .await;
        assert_eq!(h.stored(&created.id).await.expiration, None, "{h}");
    }
}
