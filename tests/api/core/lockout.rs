//! Password lockout: failed checks add up per user on Create and Set alike; at the limit
//! every password check is refused with `PASSWORD_LOCKED` until an administrator reactivates
//! the user or sets a new password; a pass clears the count; a limit of 0 turns lockout off.

use sessiond::core::{CoreSettings, CreateSession, UserAction};
use sessiond::domain::{Error, ErrorKind, Password, error_ids};

use super::*;

const LIMIT: u32 = 3;

async fn lockout_harnesses(limit: u32) -> Vec<Harness> {
    harnesses_with(CoreSettings {
        max_password_attempts: limit,
        ..CoreSettings::default()
    })
    .await
}

/// A login of `user` with `password`.
async fn login(h: &Harness, user: &User, password: &str) -> Result<SessionChange, Error> {
    h.core
        .create_session(
            &login_ui(),
            CreateSession {
                checks: login_check(user.login_name.as_str(), Some(password)),
                ..CreateSession::default()
            },
        )
        .await
}

/// A failed login; asserts the count it reports.
async fn fail_login(h: &Harness, user: &User, attempts: u32) {
    let error = fails(
        h,
        login(h, user, "not the password").await,
        ErrorKind::InvalidArgument,
        error_ids::PASSWORD_INVALID,
    );
    assert_eq!(error.failed_attempts(), Some(attempts), "{h}");
}

async fn assert_locked_out(h: &Harness, user: &User) {
    for password in [PASSWORD, "not the password"] {
        fails(
            h,
            login(h, user, password).await,
            ErrorKind::FailedPrecondition,
            error_ids::PASSWORD_LOCKED,
        );
    }
    assert_eq!(
        h.stored_user(&user.id).await.failed_password_attempts,
        LIMIT,
        "{h}: refused checks are not failures"
    );
}

#[tokio::test]
async fn failed_checks_add_up_until_the_limit_refuses_every_password() {
    for h in lockout_harnesses(LIMIT).await {
        let user = h.user_with_password("guessed@example.com").await;
        for attempt in 1..=LIMIT {
            fail_login(&h, &user, attempt).await;
        }
        assert_locked_out(&h, &user).await;
        assert_eq!(h.live_sessions().await, 0, "{h}");
    }
}

#[tokio::test]
async fn failed_checks_on_set_count_towards_the_same_limit() {
    for h in lockout_harnesses(LIMIT).await {
        let user = h.user_with_password("set@example.com").await;
        let session = h.session_for(&user).await;
        fail_login(&h, &user, 1).await;
        for attempt in 2..=LIMIT {
            let error = fails(
                &h,
                h.core
                    .set_session(
                        &login_ui(),
                        SetSession {
                            checks: password_check("not the password"),
                            ..set(&session.id)
                        },
                    )
                    .await,
                ErrorKind::InvalidArgument,
                error_ids::PASSWORD_INVALID,
            );
            assert_eq!(error.failed_attempts(), Some(attempt), "{h}");
        }
        fails(
            &h,
            h.core
                .set_session(
                    &login_ui(),
                    SetSession {
                        checks: password_check(PASSWORD),
                        ..set(&session.id)
                    },
                )
                .await,
            ErrorKind::FailedPrecondition,
            error_ids::PASSWORD_LOCKED,
        );
    }
}

#[tokio::test]
async fn a_passed_check_clears_the_count() {
    for h in lockout_harnesses(LIMIT).await {
        let user = h.user_with_password("careless@example.com").await;
        for attempt in 1..LIMIT {
            fail_login(&h, &user, attempt).await;
        }
        succeeds(&h, login(&h, &user, PASSWORD).await);
        assert_eq!(
            h.stored_user(&user.id).await.failed_password_attempts,
            0,
            "{h}"
        );
        for attempt in 1..LIMIT {
            fail_login(&h, &user, attempt).await;
        }
        succeeds(&h, login(&h, &user, PASSWORD).await);
    }
}

#[tokio::test]
async fn reactivating_the_user_or_setting_a_new_password_lifts_the_lockout() {
    for h in lockout_harnesses(LIMIT).await {
        let reactivated = h.user_with_password("reactivated@example.com").await;
        let new_password = h.user_with_password("renewed@example.com").await;
        for user in [&reactivated, &new_password] {
            for attempt in 1..=LIMIT {
                fail_login(&h, user, attempt).await;
            }
            assert_locked_out(&h, user).await;
        }

        succeeds(
            &h,
            h.core
                .change_user_state(&admin(), &reactivated.id, UserAction::Reactivate)
                .await,
        );
        succeeds(&h, login(&h, &reactivated, PASSWORD).await);

        let password = Password::parse("a brand new password").expect("pw");
        succeeds(
            &h,
            h.core
                .set_password(&admin(), &new_password.id, &password, false)
                .await,
        );
        assert_eq!(
            h.stored_user(&new_password.id)
                .await
                .failed_password_attempts,
            0,
            "{h}"
        );
        fail_login(&h, &new_password, 1).await;
        succeeds(&h, login(&h, &new_password, "a brand new password").await);
    }
}

#[tokio::test]
async fn a_limit_of_zero_never_locks_out() {
    for h in lockout_harnesses(0).await {
        let user = h.user_with_password("unlimited@example.com").await;
        for attempt in 1..=LIMIT + 2 {
            fail_login(&h, &user, attempt).await;
        }
        succeeds(&h, login(&h, &user, PASSWORD).await);
    }
}
