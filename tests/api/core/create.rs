//! CreateSession: the user check (by id, by login name without regard to case, only active
//! users), the password check, metadata, user agent and lifetime; one `session.added` event.

use std::time::Duration;

use sessiond::core::{Checks, CreateSession, UserAction, UserLookup};
use sessiond::domain::{ErrorKind, UserAgent, UserId, error_ids};

use super::*;

#[tokio::test]
async fn a_session_checked_by_user_id_names_the_user_and_starts_at_sequence_one() {
    for h in harnesses().await {
        let user = h.user("alice@example.com").await;
        h.advance(Duration::from_secs(5));
        let now = h.now();
        let change = succeeds(
            &h,
            h.core
                .create_session(
                    &login_ui(),
                    CreateSession {
                        checks: user_check(&user),
                        ..CreateSession::default()
                    },
                )
                .await,
        );
        assert_eq!(change.details.sequence, 1, "{h}");
        assert_eq!(change.details.resource_owner, "sessiond", "{h}");
        assert_eq!(change.details.creation_date, Some(now), "{h}");
        assert_eq!(change.details.change_date, Some(now), "{h}");
        let token = change.token.expect("a token");

        let stored = h.stored(&change.session_id).await;
        let factor = stored.factors.user.as_ref().expect("a checked user");
        assert_eq!(factor.id, user.id, "{h}");
        assert_eq!(factor.verified_at, now, "{h}");
        assert_eq!(factor.login_name, "alice@example.com", "{h}");
        assert_eq!(stored.factors.password_verified_at, None, "{h}");
        assert_eq!(stored.creator, "login-ui", "{h}");
        assert_eq!(stored.expiration, None, "{h}: no lifetime, no expiration");
        assert!(
            stored.token_hash == token.hash(),
            "{h}: the token is stored hashed"
        );

        let events = h.events(&change.session_id).await;
        assert_eq!(events.len(), 1, "{h}");
        assert_eq!(events[0].event_type, "session.added", "{h}");
        assert_eq!(events[0].sequence, 1, "{h}");
        assert_eq!(events[0].editor, "login-ui", "{h}");
        assert_eq!(
            events[0].payload["checks"],
            serde_json::json!(["user"]),
            "{h}"
        );
    }
}

#[tokio::test]
async fn login_names_are_looked_up_without_regard_to_case() {
    for h in harnesses().await {
        let user = h.user_with_password("Alice@Example.com").await;
        for spelling in [
            "alice@example.com",
            "ALICE@EXAMPLE.COM",
            "Alice@Example.com",
        ] {
            let created = h
                .create(CreateSession {
                    checks: login_check(spelling, Some(PASSWORD)),
                    ..CreateSession::default()
                })
                .await;
            let stored = h.stored(&created.id).await;
            assert_eq!(stored.user_id(), Some(&user.id), "{h}: {spelling}");
            assert!(stored.factors.password_verified_at.is_some(), "{h}");
        }
    }
}

#[tokio::test]
async fn unknown_users_are_not_found_and_no_session_is_written() {
    for h in harnesses().await {
        let lookups = [
            UserLookup::Id(UserId::parse("404").expect("id")),
            UserLookup::LoginName(sessiond::domain::LoginName::parse("nobody").expect("name")),
        ];
        for lookup in lookups {
            let request = CreateSession {
                checks: Checks {
                    user: Some(lookup.clone()),
                    ..Checks::default()
                },
                ..CreateSession::default()
            };
            h.create_refused(request, ErrorKind::NotFound, error_ids::USER_NOT_FOUND)
                .await;
        }
    }
}

#[tokio::test]
async fn locked_and_deactivated_users_cannot_be_checked() {
    for h in harnesses().await {
        let cases = [
            (UserAction::Lock, error_ids::USER_LOCKED),
            (UserAction::Deactivate, error_ids::USER_INACTIVE),
        ];
        for (action, id) in cases {
            let user = h.user(&format!("{action:?}@example.com")).await;
            succeeds(
                &h,
                h.core.change_user_state(&admin(), &user.id, action).await,
            );
            for checks in [
                user_check(&user),
                login_check(user.login_name.as_str(), None),
            ] {
                let request = CreateSession {
                    checks,
                    ..CreateSession::default()
                };
                h.create_refused(request, ErrorKind::FailedPrecondition, id)
                    .await;
            }
        }
    }
}

#[tokio::test]
async fn a_reactivated_user_can_be_checked_again() {
    for h in harnesses().await {
        let user = h.user("back@example.com").await;
        for action in [UserAction::Deactivate, UserAction::Reactivate] {
            succeeds(
                &h,
                h.core.change_user_state(&admin(), &user.id, action).await,
            );
        }
        let created = h.session_for(&user).await;
        assert_eq!(h.stored(&created.id).await.user_id(), Some(&user.id), "{h}");
    }
}

#[tokio::test]
async fn a_correct_password_is_recorded_as_verified_now() {
    for h in harnesses().await {
        let user = h.user_with_password("pw@example.com").await;
        h.advance(Duration::from_secs(7));
        let created = h
            .create(CreateSession {
                checks: Checks {
                    password: Some(sessiond::domain::Password::parse(PASSWORD).expect("pw")),
                    ..user_check(&user)
                },
                ..CreateSession::default()
            })
            .await;
        let stored = h.stored(&created.id).await;
        assert_eq!(stored.factors.password_verified_at, Some(h.now()), "{h}");
        let events = h.events(&created.id).await;
        assert_eq!(
            events[0].payload["checks"],
            serde_json::json!(["user", "password"]),
            "{h}"
        );
    }
}

#[tokio::test]
async fn a_wrong_password_fails_with_the_attempt_count_and_creates_no_session() {
    for h in harnesses().await {
        let user = h.user_with_password("wrong@example.com").await;
        for attempt in 1..=3 {
            let request = CreateSession {
                checks: login_check("wrong@example.com", Some("not the password")),
                ..CreateSession::default()
            };
            let error = h
                .create_refused(
                    request,
                    ErrorKind::InvalidArgument,
                    error_ids::PASSWORD_INVALID,
                )
                .await;
            assert_eq!(error.failed_attempts(), Some(attempt), "{h}");
        }
        assert_eq!(
            h.stored_user(&user.id).await.failed_password_attempts,
            3,
            "{h}"
        );
    }
}

#[tokio::test]
async fn a_password_check_needs_a_user_check_first() {
    for h in harnesses().await {
        let request = CreateSession {
            checks: password_check(PASSWORD),
            ..CreateSession::default()
        };
        h.create_refused(
            request,
            ErrorKind::FailedPrecondition,
            error_ids::USER_CHECK_FIRST,
        )
        .await;
    }
}

#[tokio::test]
async fn a_user_without_a_password_fails_the_password_check() {
    for h in harnesses().await {
        h.user("nopw@example.com").await;
        let request = CreateSession {
            checks: login_check("nopw@example.com", Some(PASSWORD)),
            ..CreateSession::default()
        };
        h.create_refused(
            request,
            ErrorKind::FailedPrecondition,
            error_ids::PASSWORD_NOT_SET,
        )
        .await;
    }
}

#[tokio::test]
async fn metadata_and_user_agent_are_stored_and_empty_metadata_values_are_dropped() {
    for h in harnesses().await {
        let agent = UserAgent {
            fingerprint_id: Some("fp-1".into()),
            ip: Some("192.0.2.1".into()),
            description: Some("a browser".into()),
            header: [("accept-language".to_owned(), vec!["en".to_owned()])].into(),
        };
        let created = h
            .create(CreateSession {
                metadata: metadata(&[("a", "1"), ("b", "")]),
                user_agent: agent.clone(),
                ..CreateSession::default()
            })
            .await;
        let stored = h.stored(&created.id).await;
        assert_eq!(stored.metadata.0, metadata(&[("a", "1")]), "{h}");
        assert_eq!(stored.user_agent, agent, "{h}");
        assert_eq!(stored.user_id(), None, "{h}: no user check, no user");
    }
}

#[tokio::test]
async fn a_lifetime_sets_the_expiration_counted_from_the_clock() {
    for h in harnesses().await {
        h.advance(Duration::from_secs(90));
        let created = h
            .create(CreateSession {
                lifetime: Some(HOUR),
                ..CreateSession::default()
            })
            .await;
        h.assert_expires_in(&created.id, HOUR).await;
    }
}

#[tokio::test]
async fn a_zero_lifetime_is_invalid() {
    for h in harnesses().await {
        let request = CreateSession {
            lifetime: Some(Duration::ZERO),
            ..CreateSession::default()
        };
        h.create_refused(
            request,
            ErrorKind::InvalidArgument,
            error_ids::LIFETIME_INVALID,
        )
        .await;
    }
}

#[tokio::test]
async fn unsupported_checks_are_refused_by_name() {
    for h in harnesses().await {
        let check = CreateSession {
            checks: Checks {
                unsupported: vec!["idpIntent"],
                ..Checks::default()
            },
            ..CreateSession::default()
        };
        let error = h
            .create_refused(
                check,
                ErrorKind::InvalidArgument,
                error_ids::CHECK_UNSUPPORTED,
            )
            .await;
        assert!(error.message().contains("idpIntent"), "{h}: {error:?}");
    }
}
