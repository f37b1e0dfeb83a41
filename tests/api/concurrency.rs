//! Concurrency of the core on every backend: racing deletes, racing updates, and "revoke my
//! other sessions" racing new logins.

use std::collections::BTreeMap;
use std::time::Instant;

use sessiond::core::{
    Checks, CoreSettings, CreateSession, CurrentSession, NewUser, SetSession, UserAction,
    UserLookup,
};
use sessiond::domain::{
    LoginName, Password, Permission, Permissions, Principal, PrincipalKind, UserState,
};

use crate::backends::{backends, clock};

fn service() -> Principal {
    Principal {
        user_id: "login-ui".into(),
        permissions: Permissions::none()
            .with(Permission::SessionRead)
            .with(Permission::SessionWrite)
            .with(Permission::SessionDelete),
        kind: PrincipalKind::Jwt,
    }
}

fn admin() -> Principal {
    Principal {
        user_id: "admin".into(),
        permissions: Permissions::none()
            .with(Permission::UserRead)
            .with(Permission::UserWrite),
        kind: PrincipalKind::Jwt,
    }
}

fn login(user: &sessiond::domain::User) -> CreateSession {
    CreateSession {
        checks: Checks {
            user: Some(UserLookup::Id(user.id.clone())),
            ..Checks::default()
        },
        ..CreateSession::default()
    }
}

#[tokio::test]
async fn a_hundred_concurrent_deletes_all_succeed_with_one_termination_event() {
    for b in backends().await {
        let core = b.core(&clock(), CoreSettings::default());
        let user = core
            .add_user(NewUser {
                login_name: LoginName::parse("racer").expect("name"),
                display_name: None,
                organization_id: None,
                password: None,
            })
            .await
            .expect("user");
        let created = core
            .create_session(&service(), login(&user))
            .await
            .expect("create");
        let id = created.session_id.clone();
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let core = core.clone();
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                core.delete_session(&service(), &id, None).await
            }));
        }
        let mut sequences = Vec::new();
        for t in tasks {
            let details = t
                .await
                .expect("join")
                .unwrap_or_else(|e| panic!("{}: delete failed: {e:?}", b.name));
            sequences.push(details.sequence);
        }
        assert!(
            sequences.iter().all(|s| *s == 2),
            "{}: every delete reports sequence 2: {sequences:?}",
            b.name
        );
        let events = core.store().session_events(&id).await.expect("events");
        let terminations = events
            .iter()
            .filter(|e| e.event_type == "session.terminated")
            .count();
        assert_eq!(terminations, 1, "{}", b.name);
        assert_eq!(events.len(), 2, "{}", b.name);
    }
}

#[tokio::test]
async fn concurrent_updates_each_land_with_a_consistent_sequence() {
    for b in backends().await {
        let core = b.core(&clock(), CoreSettings::default());
        let user = core
            .add_user(NewUser {
                login_name: LoginName::parse("writer").expect("name"),
                display_name: None,
                organization_id: None,
                password: None,
            })
            .await
            .expect("user");
        let created = core
            .create_session(&service(), login(&user))
            .await
            .expect("create");
        let n = 25;
        let mut tasks = Vec::new();
        for i in 0..n {
            let core = core.clone();
            let id = created.session_id.clone();
            tasks.push(tokio::spawn(async move {
                core.set_session(
                    &service(),
                    SetSession {
                        session_id: id,
                        checks: Checks::default(),
                        metadata: BTreeMap::from([(format!("key-{i}"), b"v".to_vec())]),
                        lifetime: None,
                        otp_challenges: Default::default(),
                        web_auth_n_challenge: None,
                    },
                )
                .await
            }));
        }
        let mut seen = Vec::new();
        for t in tasks {
            let change = t
                .await
                .expect("join")
                .unwrap_or_else(|e| panic!("{}: set failed: {e:?}", b.name));
            assert!(change.token.is_some(), "{}", b.name);
            seen.push(change.details.sequence);
        }
        seen.sort_unstable();
        assert_eq!(
            seen,
            (2..2 + n as u64).collect::<Vec<_>>(),
            "{}: each update got its own sequence",
            b.name
        );
        let session = core
            .store()
            .session(&created.session_id)
            .await
            .expect("read")
            .expect("present");
        assert_eq!(session.sequence, 1 + n as u64, "{}", b.name);
        assert_eq!(
            session.metadata.0.len(),
            n,
            "{}: no update was lost",
            b.name
        );
    }
}

#[tokio::test]
async fn revoking_other_sessions_leaves_no_session_that_was_created_before_the_call() {
    for b in backends().await {
        let core = b.core(&clock(), CoreSettings::default());
        let user = core
            .add_user(NewUser {
                login_name: LoginName::parse("busy").expect("name"),
                display_name: None,
                organization_id: None,
                password: None,
            })
            .await
            .expect("user");
        let current = core
            .create_session(&service(), login(&user))
            .await
            .expect("create");
        let current = core
            .current_session(current.token.as_ref().expect("token"))
            .await
            .expect("current");
        // Logins keep arriving while the user revokes the others.
        let mut logins = Vec::new();
        for _ in 0..4 {
            let core = core.clone();
            let user = user.clone();
            logins.push(tokio::spawn(async move {
                let mut done = Vec::new();
                for _ in 0..15 {
                    let change = core
                        .create_session(&service(), login(&user))
                        .await
                        .expect("login");
                    done.push((change.session_id, Instant::now()));
                    tokio::task::yield_now().await;
                }
                done
            }));
        }
        tokio::task::yield_now().await;
        let called = Instant::now();
        let revoked = revoke(&core, &current).await;
        let mut created = Vec::new();
        for l in logins {
            created.extend(l.await.expect("join"));
        }
        let mut before = 0;
        for (id, returned) in &created {
            let s = core.store().session(id).await.expect("read").expect("kept");
            if *returned < called {
                before += 1;
                assert!(
                    s.is_terminated(),
                    "{}: session {id:?} created before the call survived it",
                    b.name
                );
            }
        }
        assert!(
            revoked as usize >= before,
            "{}: revoked {revoked}, {before} created before the call",
            b.name
        );
        let current_row = core
            .store()
            .session(&current.session.id)
            .await
            .expect("read")
            .expect("kept");
        assert!(
            !current_row.is_terminated(),
            "{}: the current session stays",
            b.name
        );
    }
}

async fn revoke(core: &sessiond::core::Core, current: &CurrentSession) -> u64 {
    core.revoke_other_sessions(current)
        .await
        .expect("revoke others")
}

#[tokio::test]
async fn racing_user_changes_each_take_effect_in_some_order() {
    for b in backends().await {
        let core = b.core(&clock(), CoreSettings::default());
        let user = core
            .add_user(NewUser {
                login_name: LoginName::parse("contested").expect("name"),
                display_name: None,
                organization_id: None,
                password: Some(Password::parse_new("first password").expect("password")),
            })
            .await
            .expect("user");
        // Eight password changes and a lock, all at once.
        let mut passwords = Vec::new();
        for i in 0..8 {
            let (core, id) = (core.clone(), user.id.clone());
            passwords.push(tokio::spawn(async move {
                let password = Password::parse_new(format!("new password {i}")).expect("pw");
                core.set_password(&admin(), &id, &password, false).await
            }));
        }
        let lock = {
            let (core, id) = (core.clone(), user.id.clone());
            tokio::spawn(async move {
                core.change_user_state(&admin(), &id, UserAction::Lock)
                    .await
            })
        };
        let mut written = Vec::new();
        for task in passwords {
            let (written_user, _) = task
                .await
                .expect("join")
                .unwrap_or_else(|e| panic!("{}: set password failed: {e:?}", b.name));
            written.push(written_user);
        }
        let (locked, _) = lock
            .await
            .expect("join")
            .unwrap_or_else(|e| panic!("{}: lock failed: {e:?}", b.name));
        assert_eq!(locked.state, UserState::Locked, "{}", b.name);
        let stored = core
            .store()
            .user(&user.id)
            .await
            .expect("read")
            .expect("present");
        // Each change was applied to the state the one before it left: nine versions on
        // top of the first, the lock kept, and the password of the last change stored.
        let mut versions: Vec<u64> = written.iter().map(|u| u.version).collect();
        versions.push(locked.version);
        versions.sort_unstable();
        assert_eq!(versions, (2..=10).collect::<Vec<_>>(), "{}", b.name);
        assert_eq!(stored.version, 10, "{}", b.name);
        assert_eq!(
            stored.state,
            UserState::Locked,
            "{}: the lock was not lost",
            b.name
        );
        let last_password = written
            .iter()
            .max_by_key(|u| u.version)
            .and_then(|u| u.password_hash.clone());
        assert_eq!(
            stored.password_hash, last_password,
            "{}: the last password change was not lost",
            b.name
        );
        assert_ne!(stored.password_hash, user.password_hash, "{}", b.name);
    }
}
