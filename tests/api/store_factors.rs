//! The storage contract of second factors, on every store (SQLite always, PostgreSQL when
//! configured): enrollments replace per kind; the record of a code's check refuses a locked
//! user before it spends or counts anything, spends a TOTP step, a recovery code or a
//! one-time code once (under races, across replicas) and counts every failure; parallel
//! wrong guesses are evaluated no more often than the limit, and wait for factor changes that
//! end sessions without deadlocking; and a write that ends sessions also works when there are
//! none (sessions ended by a factor change: `factors.rs`).

use std::sync::Arc;
use std::time::Duration;

use sessiond::domain::{FactorKind, FactorState, LoginName, Time, User, UserId, UserState};
use sessiond::store::{
    DynStore, FactorAttempt, FactorCheckOutcome, FactorRevocation, OtpChallenge, PasswordCheck,
    Revocation, StoredFactor,
};

use crate::backends::backends;
use crate::helpers::START;
use crate::store_passkeys::session;

async fn user(store: &DynStore, login: &str) -> User {
    let user = User {
        id: UserId::generate(),
        login_name: LoginName::parse(login).expect("login name"),
        display_name: login.into(),
        organization_id: "org-1".into(),
        state: UserState::Active,
        password_hash: None,
        failed_password_attempts: 0,
        created_at: START,
        updated_at: START,
        version: 1,
    };
    store.insert_user(&user).await.expect("insert user");
    user
}

/// Checks in progress begun before this are left over from a process that died.
fn stale() -> Time {
    Time::from_unix_micros(START.unix_micros() - 60_000_000)
}

/// Records `attempt` for `user` under `limit`, at `START`.
async fn record(
    store: &DynStore,
    user: &UserId,
    attempt: FactorAttempt,
    limit: u32,
) -> FactorCheckOutcome {
    store
        .record_factor_check(user, &attempt, limit, START, stale())
        .await
        .expect("record")
}

fn failed(failures: u32) -> FactorCheckOutcome {
    FactorCheckOutcome::Failed { failures }
}

/// The user's failure count and version, as stored.
async fn counters(store: &DynStore, user: &UserId) -> (u32, u64) {
    let stored = store.user(user).await.expect("read").expect("present");
    (stored.failed_password_attempts, stored.version)
}

/// The last accepted TOTP step and the unused recovery codes, as stored.
async fn spent(store: &DynStore, user: &UserId) -> (Option<i64>, u32) {
    let factors = store.user_factors(user).await.expect("factors");
    let of = |kind| factors.iter().find(|f| f.kind == kind);
    (
        of(FactorKind::Totp).and_then(|f| f.last_step),
        of(FactorKind::RecoveryCodes).map_or(0, |f| f.remaining_codes),
    )
}

fn totp(user: &UserId, state: FactorState) -> StoredFactor {
    StoredFactor {
        user_id: user.clone(),
        kind: FactorKind::Totp,
        state,
        secret: Some(vec![1, 2, 3, 4]),
        last_step: None,
        created_at: START,
        verified_at: (state == FactorState::Ready).then_some(START),
        remaining_codes: 0,
    }
}

fn codes(user: &UserId) -> StoredFactor {
    StoredFactor {
        kind: FactorKind::RecoveryCodes,
        state: FactorState::Ready,
        secret: None,
        ..totp(user, FactorState::Ready)
    }
}

#[tokio::test]
async fn enrollments_replace_per_kind_and_read_back_with_their_codes() {
    for b in backends().await {
        let store = &b.store;
        let alice = user(store, "alice").await;
        store
            .save_factor(&totp(&alice.id, FactorState::Pending), None, None)
            .await
            .expect("pending");
        store
            .save_factor(&totp(&alice.id, FactorState::Ready), None, None)
            .await
            .expect("ready");
        let hashes = vec![vec![7u8; 32], vec![8u8; 32], vec![9u8; 32]];
        store
            .save_factor(&codes(&alice.id), Some(&hashes), None)
            .await
            .expect("codes");
        let rows = store.user_factors(&alice.id).await.expect("rows");
        assert_eq!(rows.len(), 2, "{}", b.name);
        let kinds: Vec<_> = rows.iter().map(|f| (f.kind, f.state)).collect();
        assert_eq!(
            kinds,
            vec![
                (FactorKind::RecoveryCodes, FactorState::Ready),
                (FactorKind::Totp, FactorState::Ready)
            ],
            "{}",
            b.name
        );
        assert_eq!(rows[0].remaining_codes, 3, "{}", b.name);
        assert_eq!(
            rows[1].secret.as_deref(),
            Some(&[1u8, 2, 3, 4][..]),
            "{}",
            b.name
        );
        assert!(
            store
                .remove_factor(&alice.id, FactorKind::RecoveryCodes, None)
                .await
                .expect("remove")
                .is_some()
        );
        assert!(
            store
                .user_factors(&alice.id)
                .await
                .expect("factors")
                .iter()
                .all(|f| f.kind != FactorKind::RecoveryCodes)
        );
        assert_eq!(
            store
                .remove_factor(&alice.id, FactorKind::RecoveryCodes, None)
                .await
                .expect("remove again"),
            None,
            "{}",
            b.name
        );
    }
}

#[tokio::test]
async fn racing_checks_accept_a_totp_step_and_a_recovery_code_once_on_every_replica() {
    for b in backends().await {
        let store = &b.store;
        let replica: DynStore = sessiond::app::open_store(&b.config).await.expect("replica");
        let bob = user(store, "bob").await;
        // A pending TOTP accepts no step.
        store
            .save_factor(&totp(&bob.id, FactorState::Pending), None, None)
            .await
            .expect("pending");
        assert_eq!(
            record(store, &bob.id, FactorAttempt::TotpStep(10), 0).await,
            failed(1),
            "{}",
            b.name
        );
        store
            .save_factor(&totp(&bob.id, FactorState::Ready), Some(&[]), None)
            .await
            .expect("ready");
        store
            .save_factor(&codes(&bob.id), Some(&[vec![5u8; 32]]), None)
            .await
            .expect("codes");

        let mut tasks = Vec::new();
        for i in 0..8 {
            let s = if i % 2 == 0 {
                Arc::clone(store)
            } else {
                Arc::clone(&replica)
            };
            let id = bob.id.clone();
            tasks.push(tokio::spawn(async move {
                let step = record(&s, &id, FactorAttempt::TotpStep(100), 0).await;
                let code = record(&s, &id, FactorAttempt::RecoveryCode(vec![5u8; 32]), 0).await;
                (step, code)
            }));
        }
        let mut steps = 0;
        let mut codes_used = 0;
        for task in tasks {
            let (step, code) = task.await.expect("task");
            steps += usize::from(step == FactorCheckOutcome::Passed);
            codes_used += usize::from(code == FactorCheckOutcome::Passed);
        }
        assert_eq!((steps, codes_used), (1, 1), "{}", b.name);
        // Only later steps pass afterwards.
        assert!(matches!(
            record(store, &bob.id, FactorAttempt::TotpStep(99), 0).await,
            FactorCheckOutcome::Failed { .. }
        ));
        assert_eq!(
            record(&replica, &bob.id, FactorAttempt::TotpStep(101), 0).await,
            FactorCheckOutcome::Passed,
            "{}",
            b.name
        );
        assert_eq!(spent(store, &bob.id).await, (Some(101), 0), "{}", b.name);
    }
}

#[tokio::test]
async fn a_recorded_pass_spends_what_it_names_once_and_clears_the_failures() {
    for b in backends().await {
        let store = &b.store;
        let dana = user(store, "dana").await;
        let session = session(store, &dana).await;
        store
            .save_factor(&totp(&dana.id, FactorState::Ready), None, None)
            .await
            .expect("totp");
        store
            .save_factor(
                &codes(&dana.id),
                Some(&[vec![1u8; 32], vec![2u8; 32]]),
                None,
            )
            .await
            .expect("codes");
        store
            .save_otp_challenge(&OtpChallenge {
                session_id: session.clone(),
                kind: FactorKind::OtpEmail,
                user_id: dana.id.clone(),
                code_hash: vec![3u8; 32],
                expires_at: START.saturating_add(Duration::from_secs(300)),
            })
            .await
            .expect("challenge");
        let otp = FactorAttempt::OtpCode {
            session: session.clone(),
            kind: FactorKind::OtpEmail,
            hash: vec![3u8; 32],
        };
        let passes = [
            FactorAttempt::TotpStep(100),
            FactorAttempt::RecoveryCode(vec![1u8; 32]),
            otp,
        ];
        for pass in passes {
            let (before, _) = counters(store, &dana.id).await;
            assert_eq!(
                record(store, &dana.id, FactorAttempt::Failed, 10).await,
                failed(before + 1),
                "{}: {pass:?}",
                b.name
            );
            let (_, version) = counters(store, &dana.id).await;
            assert_eq!(
                record(store, &dana.id, pass.clone(), 10).await,
                FactorCheckOutcome::Passed,
                "{}: {pass:?}",
                b.name
            );
            assert_eq!(
                counters(store, &dana.id).await,
                (0, version + 1),
                "{}: a pass clears the failures, a change of the count",
                b.name
            );
            // The same answer again: spent, so a failure.
            assert_eq!(
                record(store, &dana.id, pass.clone(), 10).await,
                failed(1),
                "{}: {pass:?} again",
                b.name
            );
        }
        assert!(
            store
                .otp_challenge(&session, FactorKind::OtpEmail)
                .await
                .expect("read")
                .is_none(),
            "{}: the challenge is consumed",
            b.name
        );
        // An earlier step, or a code no one was given, fails; a later step passes.
        assert_eq!(
            record(store, &dana.id, FactorAttempt::TotpStep(99), 10).await,
            failed(2),
            "{}",
            b.name
        );
        assert_eq!(
            record(
                store,
                &dana.id,
                FactorAttempt::RecoveryCode(vec![9u8; 32]),
                10
            )
            .await,
            failed(3),
            "{}",
            b.name
        );
        assert_eq!(
            record(store, &dana.id, FactorAttempt::TotpStep(101), 10).await,
            FactorCheckOutcome::Passed,
            "{}",
            b.name
        );
        // A pass with no failures to clear leaves the version alone.
        let (_, version) = counters(store, &dana.id).await;
        assert_eq!(
            record(store, &dana.id, FactorAttempt::TotpStep(102), 10).await,
            FactorCheckOutcome::Passed,
            "{}",
            b.name
        );
        assert_eq!(counters(store, &dana.id).await, (0, version), "{}", b.name);
        assert_eq!(spent(store, &dana.id).await, (Some(102), 1), "{}", b.name);
    }
}

#[tokio::test]
async fn a_locked_user_is_refused_before_anything_is_spent_or_counted() {
    const LIMIT: u32 = 3;
    for b in backends().await {
        let store = &b.store;
        let eve = user(store, "eve").await;
        store
            .save_factor(&totp(&eve.id, FactorState::Ready), None, None)
            .await
            .expect("totp");
        store
            .save_factor(&codes(&eve.id), Some(&[vec![1u8; 32]]), None)
            .await
            .expect("codes");
        for n in 1..=LIMIT {
            assert_eq!(
                record(store, &eve.id, FactorAttempt::Failed, LIMIT).await,
                failed(n),
                "{}",
                b.name
            );
        }
        let before = counters(store, &eve.id).await;
        // Right answers of every kind are refused now, and nothing is spent.
        for attempt in [
            FactorAttempt::TotpStep(100),
            FactorAttempt::RecoveryCode(vec![1u8; 32]),
            FactorAttempt::Failed,
        ] {
            assert_eq!(
                record(store, &eve.id, attempt, LIMIT).await,
                FactorCheckOutcome::Locked,
                "{}",
                b.name
            );
        }
        assert_eq!(counters(store, &eve.id).await, before, "{}", b.name);
        assert_eq!(spent(store, &eve.id).await, (None, 1), "{}", b.name);
        // A limit of 0 is no limit.
        assert_eq!(
            record(store, &eve.id, FactorAttempt::TotpStep(100), 0).await,
            FactorCheckOutcome::Passed,
            "{}",
            b.name
        );

        // A user that is no longer active, or no user at all, passes nothing.
        let mut locked = store.user(&eve.id).await.expect("read").expect("present");
        locked.state = UserState::Locked;
        let version = locked.version;
        locked.version += 1;
        store
            .update_user(&locked, version, None)
            .await
            .expect("lock");
        assert_eq!(
            record(store, &eve.id, FactorAttempt::TotpStep(101), LIMIT).await,
            FactorCheckOutcome::Locked,
            "{}",
            b.name
        );
        assert_eq!(
            record(store, &UserId::generate(), FactorAttempt::Failed, LIMIT).await,
            FactorCheckOutcome::Locked,
            "{}",
            b.name
        );
        assert_eq!(spent(store, &eve.id).await, (Some(100), 1), "{}", b.name);
    }
}

#[tokio::test]
async fn password_checks_in_progress_count_toward_the_limit_until_they_are_stale() {
    const LIMIT: u32 = 3;
    for b in backends().await {
        let store = &b.store;
        let finn = user(store, "finn").await;
        store
            .save_factor(&totp(&finn.id, FactorState::Ready), None, None)
            .await
            .expect("totp");
        for _ in 0..2 {
            assert!(matches!(
                store
                    .begin_password_check(&finn.id, LIMIT, START, stale())
                    .await
                    .expect("begin"),
                PasswordCheck::Granted { .. }
            ));
        }
        assert_eq!(
            record(store, &finn.id, FactorAttempt::Failed, LIMIT).await,
            failed(1),
            "{}: 2 in progress + 0 failures are below the limit",
            b.name
        );
        assert_eq!(
            record(store, &finn.id, FactorAttempt::TotpStep(100), LIMIT).await,
            FactorCheckOutcome::Busy,
            "{}: 2 in progress + 1 failure reach it",
            b.name
        );
        assert_eq!(spent(store, &finn.id).await, (None, 0), "{}", b.name);
        assert_eq!(counters(store, &finn.id).await.0, 1, "{}", b.name);
        // A minute later the two checks are taken for dead, and the code goes through; the
        // checks in progress are not the record's to end.
        let later = START.saturating_add(Duration::from_secs(120));
        let outcome = store
            .record_factor_check(
                &finn.id,
                &FactorAttempt::TotpStep(100),
                LIMIT,
                later,
                START.saturating_add(Duration::from_secs(1)),
            )
            .await
            .expect("record");
        assert_eq!(outcome, FactorCheckOutcome::Passed, "{}", b.name);
        // Measured from START they still count: a third fits, a fourth does not.
        let begin = || store.begin_password_check(&finn.id, LIMIT, START, stale());
        assert!(matches!(
            begin().await.expect("begin"),
            PasswordCheck::Granted { failures: 0 }
        ));
        assert_eq!(
            begin().await.expect("begin"),
            PasswordCheck::Busy,
            "{}",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_wrong_codes_are_evaluated_no_more_often_than_the_limit() {
    const LIMIT: u32 = 5;
    for b in backends().await {
        let store = &b.store;
        let replica: DynStore = sessiond::app::open_store(&b.config).await.expect("replica");
        let gus = user(store, "gus").await;
        store
            .save_factor(&totp(&gus.id, FactorState::Ready), None, None)
            .await
            .expect("totp");
        store
            .save_factor(&codes(&gus.id), Some(&[vec![1u8; 32]]), None)
            .await
            .expect("codes");
        let mut tasks = Vec::new();
        for i in 0..24u8 {
            let s = if i % 2 == 0 {
                Arc::clone(store)
            } else {
                Arc::clone(&replica)
            };
            let id = gus.id.clone();
            let attempt = if i % 3 == 0 {
                FactorAttempt::Failed
            } else {
                FactorAttempt::RecoveryCode(vec![100 + i; 32])
            };
            tasks.push(tokio::spawn(async move {
                record(&s, &id, attempt, LIMIT).await
            }));
        }
        let (mut evaluated, mut locked) = (Vec::new(), 0);
        for task in tasks {
            match task.await.expect("task") {
                FactorCheckOutcome::Failed { failures } => evaluated.push(failures),
                FactorCheckOutcome::Locked => locked += 1,
                other => panic!("{}: {other:?} for a wrong code", b.name),
            }
        }
        evaluated.sort_unstable();
        assert_eq!(
            evaluated,
            (1..=LIMIT).collect::<Vec<_>>(),
            "{}: each evaluated guess saw the count the one before it left",
            b.name
        );
        assert_eq!(locked, 24 - LIMIT, "{}", b.name);
        assert_eq!(counters(store, &gus.id).await.0, LIMIT, "{}", b.name);
        // The right answers come too late.
        for attempt in [
            FactorAttempt::TotpStep(100),
            FactorAttempt::RecoveryCode(vec![1u8; 32]),
        ] {
            assert_eq!(
                record(&replica, &gus.id, attempt, LIMIT).await,
                FactorCheckOutcome::Locked,
                "{}",
                b.name
            );
        }
        assert_eq!(spent(store, &gus.id).await, (None, 1), "{}", b.name);
    }
}

#[tokio::test]
async fn a_factor_change_with_a_revocation_writes_when_no_session_is_left_to_end() {
    for b in backends().await {
        let store = &b.store;
        let carol = user(store, "carol").await;
        let revoke = FactorRevocation {
            except: None,
            revocation: Revocation {
                at: START,
                editor: "carol".into(),
                reason: "factors_changed",
            },
        };
        // No sessions: nothing ended, the write still happens.
        let ended = store
            .save_factor(&codes(&carol.id), Some(&[vec![1u8; 32]]), Some(&revoke))
            .await
            .expect("save");
        assert_eq!(ended, 0, "{}", b.name);
        let removed = store
            .remove_factor(&carol.id, FactorKind::RecoveryCodes, Some(&revoke))
            .await
            .expect("remove");
        assert_eq!(removed, Some(0), "{}", b.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_checks_and_factor_changes_that_end_sessions_never_deadlock() {
    for b in backends().await {
        let store = &b.store;
        let hana = user(store, "hana").await;
        store
            .save_factor(&totp(&hana.id, FactorState::Ready), None, None)
            .await
            .expect("totp");
        store
            .save_factor(&codes(&hana.id), Some(&[vec![1u8; 32]]), None)
            .await
            .expect("codes");
        // Both lock the user's row and rows of its factors: each waits for the other, and
        // neither fails.
        let checks = {
            let (s, id) = (Arc::clone(store), hana.id.clone());
            tokio::spawn(async move {
                for step in 0..40 {
                    let attempt = if step % 2 == 0 {
                        FactorAttempt::TotpStep(step)
                    } else {
                        FactorAttempt::RecoveryCode(vec![1u8; 32])
                    };
                    s.record_factor_check(&id, &attempt, 0, START, stale())
                        .await
                        .expect("record");
                }
            })
        };
        let changes = {
            let (s, id) = (Arc::clone(store), hana.id.clone());
            tokio::spawn(async move {
                let revoke = FactorRevocation {
                    except: None,
                    revocation: Revocation {
                        at: START,
                        editor: "admin".into(),
                        reason: "factors_changed",
                    },
                };
                for _ in 0..40 {
                    s.save_factor(&codes(&id), Some(&[vec![1u8; 32]]), Some(&revoke))
                        .await
                        .expect("new codes");
                    s.save_factor(&totp(&id, FactorState::Ready), None, Some(&revoke))
                        .await
                        .expect("new totp");
                }
            })
        };
        checks.await.expect("checks");
        changes.await.expect("changes");
    }
}
