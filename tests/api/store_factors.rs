//! The storage contract of second factors, on every store (SQLite always, PostgreSQL when
//! configured): enrollments replace per kind, the TOTP replay guard and recovery codes are
//! single use under races and across replicas, and a write that ends sessions also works when
//! there are none (sessions ended by a factor change: `factors.rs`).

use std::sync::Arc;

use sessiond::domain::{FactorKind, FactorState, LoginName, Time, User, UserId, UserState};
use sessiond::store::{DynStore, FactorRevocation, Revocation, StoredFactor};

use crate::backends::backends;
use crate::helpers::START;

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
        assert!(!store.accept_totp_step(&bob.id, 10).await.expect("step"));
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
                let step = s.accept_totp_step(&id, 100).await.expect("step");
                let code = s
                    .use_recovery_code(&id, &[5u8; 32], Time::from_unix_micros(1))
                    .await
                    .expect("code");
                (step, code)
            }));
        }
        let mut steps = 0;
        let mut codes_used = 0;
        for task in tasks {
            let (step, code) = task.await.expect("task");
            steps += usize::from(step);
            codes_used += usize::from(code);
        }
        assert_eq!((steps, codes_used), (1, 1), "{}", b.name);
        // Only later steps pass afterwards.
        assert!(!store.accept_totp_step(&bob.id, 99).await.expect("older"));
        assert!(replica.accept_totp_step(&bob.id, 101).await.expect("newer"));
        assert!(
            store
                .user_factors(&bob.id)
                .await
                .expect("factors")
                .iter()
                .filter(|f| f.kind == FactorKind::RecoveryCodes)
                .all(|f| f.remaining_codes == 0)
        );
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
