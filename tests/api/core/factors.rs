//! Second factors in the core, on every store: TOTP enrolled and checked with the manual
//! clock, parallel wrong codes of every kind held to the one lockout limit, and what a code's
//! check costs the store.

use std::sync::{Arc, Mutex};

use sessiond::core::{CoreSettings, CreateSession, PasswordHasher};
use sessiond::domain::{ErrorKind, RecoveryCode, TotpCode, error_ids};
use sessiond::store::{DynStore, Traced};
use totp_rs::{Algorithm, Secret, TOTP};
use tracing::Instrument as _;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

use super::*;

fn code_at(secret: &str, at: Time) -> TotpCode {
    let seed = Secret::Encoded(secret.to_owned())
        .to_bytes()
        .expect("base32");
    let seconds = u64::try_from(at.unix_micros() / 1_000_000).expect("after 1970");
    TotpCode::parse(TOTP::new_unchecked(Algorithm::SHA1, 6, 1, 30, seed).generate(seconds))
        .expect("six digits")
}

fn checks(user: &User, totp: Option<TotpCode>, recovery: Option<&str>) -> Checks {
    Checks {
        totp,
        recovery_code: recovery.map(|c| RecoveryCode::parse(c.into()).expect("code")),
        ..user_check(user)
    }
}

#[tokio::test]
async fn a_totp_code_passes_once_and_the_clock_decides_which_codes_are_current() {
    for h in harnesses().await {
        let user = h.user("totp-core").await;
        let enrollment = h
            .core
            .register_totp(&admin(), &user.id)
            .await
            .expect("register");
        h.core
            .verify_totp_registration(
                &admin(),
                &user.id,
                &code_at(&enrollment.secret, h.now()),
                false,
            )
            .await
            .expect("verify");
        // Two steps ahead is outside the skew; one step ahead is inside, once.
        let far = code_at(
            &enrollment.secret,
            Time::from_unix_micros(h.now().unix_micros() + 60_000_000),
        );
        let near = code_at(
            &enrollment.secret,
            Time::from_unix_micros(h.now().unix_micros() + 30_000_000),
        );
        let create = |c| CreateSession {
            checks: c,
            ..CreateSession::default()
        };
        let far_result = h
            .core
            .create_session(&admin(), create(checks(&user, Some(far.clone()), None)))
            .await;
        if far != near {
            fails(
                &h,
                far_result,
                ErrorKind::InvalidArgument,
                error_ids::TOTP_INVALID,
            );
        }
        h.core
            .create_session(&admin(), create(checks(&user, Some(near.clone()), None)))
            .await
            .unwrap_or_else(|e| panic!("{h}: {e:?}"));
        let again = h
            .core
            .create_session(&admin(), create(checks(&user, Some(near), None)))
            .await;
        fails(
            &h,
            again,
            ErrorKind::InvalidArgument,
            error_ids::TOTP_INVALID,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_wrong_codes_of_every_kind_never_exceed_the_one_limit() {
    const LIMIT: u32 = 4;
    for h in harnesses_with(CoreSettings {
        max_password_attempts: LIMIT,
        ..CoreSettings::default()
    })
    .await
    {
        let user = h.user_with_password("racer").await;
        let enrollment = h
            .core
            .register_totp(&admin(), &user.id)
            .await
            .expect("register");
        h.core
            .verify_totp_registration(
                &admin(),
                &user.id,
                &code_at(&enrollment.secret, h.now()),
                false,
            )
            .await
            .expect("verify");
        h.core
            .generate_recovery_codes(&admin(), &user.id, 1, false)
            .await
            .expect("codes");
        let good = code_at(&enrollment.secret, h.now());
        let bad = TotpCode::parse(
            if good.as_str() == "000000" {
                "111111"
            } else {
                "000000"
            }
            .into(),
        )
        .expect("code");
        let mut tasks = Vec::new();
        for i in 0..12 {
            let core = h.core.clone();
            let checks = match i % 3 {
                0 => checks(&user, Some(bad.clone()), None),
                1 => checks(&user, None, Some("WRONG-CODE0")),
                _ => Checks {
                    password: Some(Password::parse("not the password").expect("password")),
                    ..user_check(&user)
                },
            };
            tasks.push(tokio::spawn(async move {
                core.create_session(
                    &admin(),
                    CreateSession {
                        checks,
                        ..CreateSession::default()
                    },
                )
                .await
            }));
        }
        for task in tasks {
            assert!(
                task.await.expect("task").is_err(),
                "{h}: a wrong answer passed"
            );
        }
        let stored = h.stored_user(&user.id).await;
        assert!(
            stored.failed_password_attempts <= LIMIT,
            "{h}: {} failures counted past the limit of {LIMIT}",
            stored.failed_password_attempts
        );
        assert_eq!(stored.failed_password_attempts, LIMIT, "{h}");
        // Locked for every kind, even with a right answer.
        let locked = h
            .core
            .create_session(
                &admin(),
                CreateSession {
                    checks: checks(&user, Some(good), None),
                    ..CreateSession::default()
                },
            )
            .await;
        fails(
            &h,
            locked,
            ErrorKind::FailedPrecondition,
            error_ids::FACTOR_LOCKED,
        );
    }
}

/// The names of the store calls made, in order: `Traced` opens a span per call, naming it in
/// `db.operation.name`, while a span is current.
#[derive(Clone, Default)]
struct StoreCalls(Arc<Mutex<Vec<String>>>);

impl StoreCalls {
    /// The calls since the last time, but the reads.
    fn writes(&self) -> Vec<String> {
        const READS: &[&str] = &["session", "user", "user_factors", "otp_challenge"];
        let mut calls = self.0.lock().expect("calls");
        calls
            .drain(..)
            .filter(|name| !READS.contains(&name.as_str()))
            .collect()
    }
}

impl<S: tracing::Subscriber> Layer<S> for StoreCalls {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: Context<'_, S>,
    ) {
        struct Operation(Option<String>);
        impl Visit for Operation {
            fn record_str(&mut self, field: &Field, value: &str) {
                if field.name() == "db.operation.name" {
                    self.0 = Some(value.to_owned());
                }
            }
            fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
        }
        let mut operation = Operation(None);
        attrs.record(&mut operation);
        if let Some(name) = operation.0 {
            self.0.lock().expect("calls").push(name);
        }
    }
}

#[tokio::test]
async fn a_code_check_in_set_session_costs_two_writes_its_record_and_the_session() {
    for h in harnesses().await {
        let calls = StoreCalls::default();
        // This test's runtime polls everything on this thread: the subscriber sees only it.
        let _spans =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(calls.clone()));
        let traced: DynStore = Arc::new(Traced::new(h.backend.store.clone(), h.backend.name));
        let hasher = PasswordHasher::new(1024, 1, 4).expect("argon2 parameters");
        let core = Core::new(
            traced,
            Arc::new(h.clock.clone()),
            hasher,
            CoreSettings::default(),
        )
        .with_factor_key(&[7; 32]);
        let user = h.user("counted").await;
        let enrollment = core
            .register_totp(&admin(), &user.id)
            .await
            .expect("register");
        core.verify_totp_registration(
            &admin(),
            &user.id,
            &code_at(&enrollment.secret, h.now()),
            false,
        )
        .await
        .expect("verify");
        // The recovery codes' key is read (and on first use written) once per core.
        let (codes, _) = core
            .generate_recovery_codes(&admin(), &user.id, 1, false)
            .await
            .expect("codes");
        let session = h.session_for(&user).await;
        let next = code_at(
            &enrollment.secret,
            Time::from_unix_micros(h.now().unix_micros() + 30_000_000),
        );
        let set_with = |checks: Checks| {
            let (core, request) = (
                &core,
                SetSession {
                    checks,
                    ..set(&session.id)
                },
            );
            async move { core.set_session(&login_ui(), request).await }
                .instrument(tracing::info_span!("request"))
        };

        calls.writes();
        set_with(Checks {
            totp: Some(next),
            ..Checks::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{h}: {e:?}"));
        assert_eq!(
            calls.writes(),
            ["record_factor_check", "update_session"],
            "{h}: a TOTP check"
        );
        set_with(Checks {
            recovery_code: Some(RecoveryCode::parse(codes[0].clone()).expect("code")),
            ..Checks::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{h}: {e:?}"));
        assert_eq!(
            calls.writes(),
            ["record_factor_check", "update_session"],
            "{h}: a recovery code"
        );
        // A wrong code: its record, and nothing else.
        let wrong = TotpCode::parse("000000".into()).expect("code");
        let again = set_with(Checks {
            totp: Some(wrong),
            ..Checks::default()
        })
        .await;
        assert!(again.is_err(), "{h}");
        assert_eq!(calls.writes(), ["record_factor_check"], "{h}: a wrong code");
    }
}
