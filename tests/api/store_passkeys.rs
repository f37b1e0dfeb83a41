//! The storage contract of passkeys, on every store (SQLite always, PostgreSQL when
//! configured): a registration completes once, a credential belongs to one user, and a
//! passed assertion consumes its challenge and moves the counter together, once, under races;
//! when the counter moved first, the challenge is left as it was.

use sessiond::domain::{
    Factors, LoginName, Session, SessionId, SessionToken, Time, User, UserFactor, UserId, UserState,
};
use sessiond::store::{
    DynStore, NewEvent, PasskeyChallenge, PasskeyUse, PendingPasskey, StoreError, StoredPasskey,
};

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

pub(crate) async fn session(store: &DynStore, user: &User) -> SessionId {
    let session = Session {
        id: SessionId::generate(),
        factors: Factors {
            user: Some(UserFactor {
                id: user.id.clone(),
                verified_at: START,
                login_name: String::new(),
                display_name: String::new(),
                organization_id: String::new(),
            }),
            ..Factors::default()
        },
        metadata: Default::default(),
        user_agent: Default::default(),
        expiration: None,
        creator: "tester".into(),
        resource_owner: "instance".into(),
        creation_date: START,
        change_date: START,
        sequence: 1,
        token_hash: SessionToken::generate().hash(),
        terminated_at: None,
    };
    let event = NewEvent {
        event_type: "session.added",
        payload: serde_json::json!({}),
        created_at: START,
        editor: "tester".into(),
    };
    store
        .insert_session(&session, &event)
        .await
        .expect("insert");
    session.id
}

fn pending(user: &UserId, id: &str) -> PendingPasskey {
    PendingPasskey {
        id: id.into(),
        user_id: user.clone(),
        state: "{}".into(),
        rp_id: "localhost".into(),
        created_at: START,
    }
}

fn passkey(user: &UserId, id: &str, credential_id: &[u8]) -> StoredPasskey {
    StoredPasskey {
        id: id.into(),
        user_id: user.clone(),
        credential_id: credential_id.to_vec(),
        credential: "{}".into(),
        public_key: "{}".into(),
        sign_count: 0,
        aaguid: vec![0; 16],
        name: "key".into(),
        user_verified: true,
        rp_id: "localhost".into(),
        created_at: START,
        last_used_at: None,
    }
}

#[tokio::test]
async fn a_registration_completes_once_and_a_credential_has_one_owner() {
    for b in backends().await {
        let store = &b.store;
        let alice = user(store, "alice").await;
        let bob = user(store, "bob").await;
        store
            .begin_passkey_registration(&pending(&alice.id, "1"))
            .await
            .expect("begin");
        // A new registration replaces the pending one.
        store
            .begin_passkey_registration(&pending(&alice.id, "2"))
            .await
            .expect("begin again");
        assert!(
            store
                .passkey_registration(&alice.id, "1")
                .await
                .expect("read")
                .is_none(),
            "{}",
            b.name
        );
        let done = store
            .complete_passkey_registration(&passkey(&alice.id, "2", b"cred-a"), None)
            .await
            .expect("complete");
        assert_eq!(done, Some(0), "{}", b.name);
        let again = store
            .complete_passkey_registration(&passkey(&alice.id, "2", b"cred-b"), None)
            .await
            .expect("complete again");
        assert_eq!(again, None, "{}: nothing pending any more", b.name);

        store
            .begin_passkey_registration(&pending(&bob.id, "3"))
            .await
            .expect("begin bob");
        let taken = store
            .complete_passkey_registration(&passkey(&bob.id, "3", b"cred-a"), None)
            .await;
        assert!(
            matches!(taken, Err(StoreError::Duplicate(_))),
            "{}: {taken:?}",
            b.name
        );
        assert!(
            store.passkeys(&bob.id).await.expect("bob").is_empty(),
            "{}",
            b.name
        );
        let keys = store.passkeys(&alice.id).await.expect("alice");
        assert_eq!(keys.len(), 1, "{}", b.name);
        assert_eq!(keys[0].credential_id, b"cred-a", "{}", b.name);
        assert_eq!(
            store
                .remove_passkey(&alice.id, "2", None)
                .await
                .expect("remove"),
            Some(0),
            "{}",
            b.name
        );
        assert_eq!(
            store
                .remove_passkey(&alice.id, "2", None)
                .await
                .expect("remove again"),
            None,
            "{}",
            b.name
        );
    }
}

#[tokio::test]
async fn racing_assertions_consume_a_challenge_once_and_never_move_the_counter_back() {
    for b in backends().await {
        let store = &b.store;
        let alice = user(store, "alice").await;
        store
            .begin_passkey_registration(&pending(&alice.id, "1"))
            .await
            .expect("begin");
        store
            .complete_passkey_registration(&passkey(&alice.id, "1", b"cred"), None)
            .await
            .expect("complete");
        let sid = session(store, &alice).await;
        let challenged_at = Time::from_unix_micros(START.unix_micros() + 1);
        store
            .set_passkey_challenge(&PasskeyChallenge {
                session_id: sid.clone(),
                user_id: alice.id.clone(),
                state: "{}".into(),
                rp_id: "localhost".into(),
                created_at: challenged_at,
            })
            .await
            .expect("challenge");
        let (challenge, key) = store
            .passkey_check(&sid, b"cred")
            .await
            .expect("read")
            .expect("a challenge");
        assert_eq!(challenge.created_at, challenged_at, "{}", b.name);
        assert_eq!(key.map(|k| k.id), Some("1".to_owned()), "{}", b.name);
        let (_, unknown) = store
            .passkey_check(&sid, b"other")
            .await
            .expect("read")
            .expect("a challenge");
        assert!(
            unknown.is_none(),
            "{}: no passkey of that credential",
            b.name
        );

        let used = |expected: i64, count: i64| PasskeyUse {
            user_id: alice.id.clone(),
            session_id: sid.clone(),
            challenge_created_at: challenged_at,
            passkey_id: "1".into(),
            expected_sign_count: expected,
            sign_count: count,
            at: challenged_at,
        };
        let stored = store.session(&sid).await.expect("read").expect("session");
        let checked = |sequence: u64| {
            let mut next = stored.clone();
            next.sequence = sequence + 1;
            next
        };
        let event = NewEvent {
            event_type: "session.updated",
            payload: serde_json::json!({}),
            created_at: challenged_at,
            editor: "tester".into(),
        };

        // The counter moved elsewhere first: nothing is written, the challenge stays.
        assert!(
            !store
                .update_session_with_passkey(&checked(1), 1, &event, &used(7, 9))
                .await
                .expect("stale"),
            "{}",
            b.name
        );
        assert!(
            store
                .passkey_check(&sid, b"cred")
                .await
                .expect("read")
                .is_some(),
            "{}: a refused use leaves the challenge",
            b.name
        );
        assert_eq!(
            store.session(&sid).await.expect("read").map(|s| s.sequence),
            Some(1),
            "{}: nor the session",
            b.name
        );

        // The session moved first: a conflict, and nothing of the use is written.
        assert!(
            matches!(
                store
                    .update_session_with_passkey(&checked(5), 5, &event, &used(0, 1))
                    .await,
                Err(StoreError::Conflict)
            ),
            "{}",
            b.name
        );
        assert_eq!(
            store.passkeys(&alice.id).await.expect("keys")[0].sign_count,
            0,
            "{}",
            b.name
        );

        let shared: DynStore = store.clone();
        let mut racers = Vec::new();
        for _ in 0..8 {
            let (store, session, event, u) =
                (shared.clone(), checked(1), event.clone(), used(0, 1));
            racers.push(tokio::spawn(async move {
                store
                    .update_session_with_passkey(&session, 1, &event, &u)
                    .await
            }));
        }
        let mut wins = 0;
        for r in racers {
            match r.await.expect("join") {
                Ok(true) => wins += 1,
                Ok(false) | Err(StoreError::Conflict) => {}
                Err(e) => panic!("{}: {e}", b.name),
            }
        }
        assert_eq!(wins, 1, "{}: one assertion per challenge", b.name);
        // Even with the session's sequence right, a used challenge is not used again.
        assert!(
            !store
                .update_session_with_passkey(&checked(2), 2, &event, &used(1, 2))
                .await
                .expect("used"),
            "{}",
            b.name
        );
        assert!(
            store
                .passkey_check(&sid, b"cred")
                .await
                .expect("read")
                .is_none(),
            "{}",
            b.name
        );
        assert_eq!(
            store.session(&sid).await.expect("read").map(|s| s.sequence),
            Some(2),
            "{}",
            b.name
        );
        let keys = store.passkeys(&alice.id).await.expect("keys");
        assert_eq!(keys[0].sign_count, 1, "{}", b.name);
        assert_eq!(keys[0].last_used_at, Some(challenged_at), "{}", b.name);
    }
}
