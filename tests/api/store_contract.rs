//! The storage contract: the same tests against every `Store` implementation (SQLite always,
//! PostgreSQL when configured; see `backends.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use sessiond::domain::{
    ActivityFilter, Factors, LoginName, Metadata, PageCursor, Session, SessionFilter, SessionId,
    SessionQuery, SessionToken, SortOrder, Time, TimeComparison, User, UserAgent, UserFactor,
    UserId, UserSessionsQuery, UserState,
};
use sessiond::store::{
    CheckOutcome, DynStore, NewEvent, PasswordCheck, Revocation, SessionEdit, StoreError,
    UserListQuery,
};

use crate::backends::{Backend, backends};
use crate::helpers::START;

fn at(seconds: i64) -> Time {
    Time::from_unix_micros(START.unix_micros() + seconds * 1_000_000)
}

fn user(login: &str) -> User {
    User {
        id: UserId::generate(),
        login_name: LoginName::parse(login).expect("login name"),
        display_name: format!("{login} display"),
        organization_id: "org-1".into(),
        state: UserState::Active,
        password_hash: Some(
            "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
        ),
        failed_password_attempts: 0,
        created_at: at(0),
        updated_at: at(0),
        version: 1,
    }
}

fn session(user: Option<&User>, created: Time, creator: &str) -> (Session, SessionToken) {
    let token = SessionToken::generate();
    let session = Session {
        id: SessionId::generate(),
        factors: Factors {
            user: user.map(|u| UserFactor {
                id: u.id.clone(),
                verified_at: created,
                login_name: String::new(),
                display_name: String::new(),
                organization_id: String::new(),
            }),
            password_verified_at: None,
            ..Factors::default()
        },
        metadata: Metadata(BTreeMap::from([("k".into(), b"v".to_vec())])),
        user_agent: UserAgent {
            fingerprint_id: Some("fp-1".into()),
            ip: Some("10.0.0.1".into()),
            ..Default::default()
        },
        expiration: None,
        creator: creator.into(),
        resource_owner: "instance".into(),
        creation_date: created,
        change_date: created,
        sequence: 1,
        token_hash: token.hash(),
        terminated_at: None,
    };
    (session, token)
}

fn event(kind: &'static str, t: Time) -> NewEvent {
    NewEvent {
        event_type: kind,
        payload: serde_json::json!({"test": true}),
        created_at: t,
        editor: "tester".into(),
    }
}

async fn insert(store: &DynStore, s: &Session) {
    store
        .insert_session(s, &event("session.added", s.creation_date))
        .await
        .expect("insert session");
}

#[tokio::test]
async fn a_session_reads_back_by_id_and_by_token_with_its_users_names() {
    for b in backends().await {
        let u = user("Alice");
        b.store.insert_user(&u).await.expect("insert user");
        let (s, token) = session(Some(&u), at(1), "creator-1");
        insert(&b.store, &s).await;
        let by_id = b
            .store
            .session(&s.id)
            .await
            .expect("read")
            .expect("present");
        assert_eq!(by_id.id, s.id, "{}", b.name);
        assert_eq!(by_id.sequence, 1, "{}", b.name);
        assert_eq!(by_id.metadata, s.metadata, "{}", b.name);
        assert_eq!(by_id.user_agent, s.user_agent, "{}", b.name);
        let factor = by_id.factors.user.expect("user factor");
        assert_eq!(factor.login_name, "Alice", "{}", b.name);
        assert_eq!(factor.display_name, "Alice display", "{}", b.name);
        assert_eq!(factor.organization_id, "org-1", "{}", b.name);
        let by_token = b
            .store
            .session_by_token(&token.hash())
            .await
            .expect("read")
            .expect("present");
        assert_eq!(by_token.id, s.id, "{}", b.name);
        assert!(
            b.store
                .session_by_token(&SessionToken::generate().hash())
                .await
                .expect("read")
                .is_none()
        );
        assert!(
            b.store
                .session(&SessionId::generate())
                .await
                .expect("read")
                .is_none()
        );
        let events = b.store.session_events(&s.id).await.expect("events");
        assert_eq!(events.len(), 1, "{}", b.name);
        assert_eq!(events[0].event_type, "session.added", "{}", b.name);
    }
}

/// Point reads asked all at once (which PostgreSQL answers in grouped statements): each gets
/// its own session or none, and a read asked after a write sees it.
#[tokio::test]
async fn many_point_reads_at_once_each_get_their_own_session() {
    for b in backends().await {
        let u = user("Many");
        b.store.insert_user(&u).await.expect("insert user");
        let mut made = Vec::new();
        for i in 0..64 {
            let (s, token) = session((i % 2 == 0).then_some(&u), at(i), "creator-1");
            insert(&b.store, &s).await;
            made.push((s, token));
        }
        let mut reads = tokio::task::JoinSet::new();
        for round in 0..3 {
            for (s, token) in &made {
                let (store, id, hash) = (b.store.clone(), s.id.clone(), token.hash());
                reads.spawn(async move {
                    let found = if round == 1 {
                        store.session_by_token(&hash).await
                    } else {
                        store.session(&id).await
                    };
                    (
                        Some(id),
                        found
                            .expect("read")
                            .map(|f| (f.id, f.token_hash.as_bytes().to_vec())),
                    )
                });
            }
            for _ in 0..20 {
                let store = b.store.clone();
                reads.spawn(async move {
                    let found = store.session(&SessionId::generate()).await.expect("read");
                    (
                        None,
                        found.map(|f| (f.id, f.token_hash.as_bytes().to_vec())),
                    )
                });
            }
        }
        let mut answered = 0;
        while let Some(read) = reads.join_next().await {
            let (asked, found) = read.expect("read task");
            answered += 1;
            match asked {
                None => assert!(found.is_none(), "{}: an unknown id found {found:?}", b.name),
                Some(id) => {
                    let (found_id, found_hash) = found.expect("present");
                    let (s, _) = made.iter().find(|(s, _)| s.id == id).expect("made");
                    assert_eq!(found_id, s.id, "{}", b.name);
                    assert_eq!(found_hash, s.token_hash.as_bytes().to_vec(), "{}", b.name);
                }
            }
        }
        assert_eq!(answered, 3 * (64 + 20), "{}", b.name);

        // A write acknowledged before a read is asked is seen by it, with others in flight.
        let mut s = made[5].0.clone();
        s.sequence = 2;
        s.change_date = at(100);
        s.terminated_at = Some(at(100));
        b.store
            .update_session(&s, 1, &event("session.terminated", at(100)))
            .await
            .expect("update");
        let mut reads = tokio::task::JoinSet::new();
        for (other, _) in made.iter().take(40) {
            let (store, id) = (b.store.clone(), other.id.clone());
            reads.spawn(async move { store.session(&id).await.expect("read") });
        }
        let after = b
            .store
            .session(&s.id)
            .await
            .expect("read")
            .expect("present");
        assert_eq!(after.sequence, 2, "{}", b.name);
        assert_eq!(after.terminated_at, Some(at(100)), "{}", b.name);
        while let Some(read) = reads.join_next().await {
            assert!(read.expect("read task").is_some(), "{}", b.name);
        }
    }
}

#[tokio::test]
async fn an_update_applies_only_at_the_sequence_it_was_read_at() {
    for b in backends().await {
        let (mut s, _) = session(None, at(1), "c");
        insert(&b.store, &s).await;
        s.sequence = 2;
        s.change_date = at(2);
        b.store
            .update_session(&s, 1, &event("session.updated", at(2)))
            .await
            .expect("first update");
        let stale = b
            .store
            .update_session(&s, 1, &event("session.updated", at(3)))
            .await;
        assert!(
            matches!(stale, Err(StoreError::Conflict)),
            "{}: {stale:?}",
            b.name
        );
        let events = b.store.session_events(&s.id).await.expect("events");
        assert_eq!(
            events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
            vec![1, 2],
            "{}",
            b.name
        );
    }
}

/// Twenty racing writes of one new session (`write(store, i)`: whether it wrote, or a
/// conflict): exactly one writes, and the session's log holds one event after its first.
async fn one_of_twenty_racers_writes<F, Fut>(b: &Backend, write: F)
where
    F: Fn(DynStore, Session, i64) -> Fut,
    Fut: std::future::Future<Output = Result<bool, StoreError>> + Send + 'static,
{
    let (s, _) = session(None, at(1), "c");
    insert(&b.store, &s).await;
    let tasks: Vec<_> = (0..20)
        .map(|i| tokio::spawn(write(b.store.clone(), s.clone(), i)))
        .collect();
    let mut wins = 0;
    for t in tasks {
        match t.await.expect("join") {
            Ok(wrote) => wins += usize::from(wrote),
            Err(StoreError::Conflict) => {}
            Err(e) => panic!("{}: unexpected {e:?}", b.name),
        }
    }
    assert_eq!(wins, 1, "{}", b.name);
    assert_eq!(
        b.store.session_events(&s.id).await.expect("events").len(),
        2,
        "{}",
        b.name
    );
}

#[tokio::test]
async fn racing_updates_of_one_session_have_exactly_one_winner() {
    for b in backends().await {
        one_of_twenty_racers_writes(&b, |store, mut next, i| async move {
            next.sequence = 2;
            next.change_date = at(2 + i);
            store
                .update_session(&next, 1, &event("session.updated", at(2)))
                .await
                .map(|()| true)
        })
        .await;
    }
}

#[tokio::test]
async fn an_insert_returns_the_sessions_user_as_it_stands_after_it() {
    for b in backends().await {
        let (anonymous, _) = session(None, at(1), "c");
        let none = b
            .store
            .insert_session(&anonymous, &event("session.added", at(1)))
            .await
            .expect("insert without a user");
        assert!(none.is_none(), "{}", b.name);

        let u = user("inserted@example.com");
        b.store.insert_user(&u).await.expect("user");
        let (first, _) = session(Some(&u), at(2), "c");
        let read = b
            .store
            .insert_session(&first, &event("session.added", at(2)))
            .await
            .expect("insert")
            .expect("the user");
        assert_eq!(
            (read.id.as_str(), read.version),
            (u.id.as_str(), 1),
            "{}",
            b.name
        );

        // A change to the user committed before the next insert shows in what it returns.
        let mut locked = read.clone();
        locked.state = UserState::Locked;
        locked.version = 2;
        b.store.update_user(&locked, 1, None).await.expect("lock");
        let (second, _) = session(Some(&u), at(3), "c");
        let read = b
            .store
            .insert_session(&second, &event("session.added", at(3)))
            .await
            .expect("insert")
            .expect("the user");
        assert_eq!(
            (read.state, read.version),
            (UserState::Locked, 2),
            "{}",
            b.name
        );
    }
}

/// An edit that ends the session it is shown, unless it has already ended.
fn end_at(t: Time) -> SessionEdit {
    Box::new(move |s: &Session| {
        (s.terminated_at.is_none()).then(|| {
            let mut ended = s.clone();
            ended.sequence += 1;
            ended.change_date = t;
            ended.terminated_at = Some(t);
            (ended, event("session.terminated", t))
        })
    })
}

#[tokio::test]
async fn an_edit_sees_the_stored_session_and_writes_what_it_returns() {
    for b in backends().await {
        let owner = user("editor@example.com");
        b.store.insert_user(&owner).await.expect("user");
        let (s, _) = session(Some(&owner), at(1), "c");
        insert(&b.store, &s).await;

        // Unknown id: nothing read, nothing written.
        let missing = b
            .store
            .edit_session(&SessionId::generate(), end_at(at(2)))
            .await
            .expect("edit of an unknown id");
        assert!(missing.is_none(), "{}", b.name);

        // An edit that declines writes nothing, and is shown the row with its user's names.
        let declined = b
            .store
            .edit_session(
                &s.id,
                Box::new(|seen: &Session| {
                    assert_eq!(
                        seen.factors.user.as_ref().map(|u| u.login_name.as_str()),
                        Some("editor@example.com")
                    );
                    None
                }),
            )
            .await
            .expect("declined edit")
            .expect("found");
        assert_eq!(declined.before.sequence, 1, "{}", b.name);
        assert!(declined.after.is_none(), "{}", b.name);

        let ended = b
            .store
            .edit_session(&s.id, end_at(at(2)))
            .await
            .expect("edit")
            .expect("found");
        assert_eq!(ended.before.sequence, 1, "{}", b.name);
        let after = ended.after.expect("written");
        assert_eq!(after.terminated_at, Some(at(2)), "{}", b.name);
        let stored = b.store.session(&s.id).await.expect("read").expect("found");
        assert_eq!((stored.sequence, stored.terminated_at), (2, Some(at(2))));

        // The next edit is shown the ended session, so it declines.
        let again = b
            .store
            .edit_session(&s.id, end_at(at(3)))
            .await
            .expect("second edit")
            .expect("found");
        assert_eq!(again.before.terminated_at, Some(at(2)), "{}", b.name);
        assert!(again.after.is_none(), "{}", b.name);
        let events = b.store.session_events(&s.id).await.expect("events");
        assert_eq!(
            events
                .iter()
                .map(|e| e.event_type.as_str())
                .collect::<Vec<_>>(),
            vec!["session.added", "session.terminated"],
            "{}",
            b.name
        );
    }
}

#[tokio::test]
async fn racing_edits_of_one_session_write_it_once() {
    for b in backends().await {
        // SQLite runs every edit on its writer, so all but one see the ended session; on
        // PostgreSQL a racer may also lose at the write, a conflict its caller retries.
        one_of_twenty_racers_writes(&b, |store, s, i| async move {
            let edited = store.edit_session(&s.id, end_at(at(2 + i))).await?;
            Ok(edited.expect("the session is there").after.is_some())
        })
        .await;
    }
}

#[tokio::test]
async fn session_search_filters_orders_pages_and_counts() {
    for b in backends().await {
        let u = user("searcher");
        b.store.insert_user(&u).await.expect("user");
        let mut ids = Vec::new();
        for i in 0..5 {
            let (mut s, _) = session(
                if i % 2 == 0 { Some(&u) } else { None },
                at(10 + i),
                if i < 3 { "c1" } else { "c2" },
            );
            if i == 4 {
                s.expiration = Some(at(100));
            }
            insert(&b.store, &s).await;
            ids.push(s.id.as_str().to_owned());
        }
        let (mut dead, _) = session(Some(&u), at(50), "c1");
        insert(&b.store, &dead).await;
        dead.sequence = 2;
        dead.terminated_at = Some(at(51));
        b.store
            .update_session(&dead, 1, &event("session.terminated", at(51)))
            .await
            .expect("terminate");

        let page = |queries: Vec<SessionQuery>| SessionFilter {
            queries,
            visible_to: None,
            offset: 0,
            limit: 100,
            order: SortOrder::CreationDesc,
        };
        let found = |p: &sessiond::store::SessionPage| {
            p.sessions
                .iter()
                .map(|s| s.id.as_str().to_owned())
                .collect::<Vec<_>>()
        };

        let all = b.store.list_sessions(&page(vec![])).await.expect("list");
        assert_eq!(all.total, 5, "{}: terminated sessions never appear", b.name);
        assert_eq!(
            found(&all),
            ids.iter().rev().cloned().collect::<Vec<_>>(),
            "{}: newest first",
            b.name
        );

        let mut asc = page(vec![]);
        asc.order = SortOrder::CreationAsc;
        asc.offset = 1;
        asc.limit = 2;
        let window = b.store.list_sessions(&asc).await.expect("list");
        assert_eq!(found(&window), ids[1..3].to_vec(), "{}", b.name);
        assert_eq!(window.total, 5, "{}", b.name);

        let by_user = b
            .store
            .list_sessions(&page(vec![SessionQuery::UserId(u.id.as_str().into())]))
            .await
            .expect("list");
        assert_eq!(by_user.total, 3, "{}", b.name);
        let by_ids = b
            .store
            .list_sessions(&page(vec![SessionQuery::Ids(vec![
                ids[0].clone(),
                ids[3].clone(),
                "nope".into(),
            ])]))
            .await
            .expect("list");
        assert_eq!(by_ids.total, 2, "{}", b.name);
        let none = b
            .store
            .list_sessions(&page(vec![SessionQuery::Ids(vec![])]))
            .await
            .expect("list");
        assert_eq!(none.total, 0, "{}", b.name);
        let by_creator = b
            .store
            .list_sessions(&page(vec![SessionQuery::Creator("c2".into())]))
            .await
            .expect("list");
        assert_eq!(by_creator.total, 2, "{}", b.name);
        let by_fp = b
            .store
            .list_sessions(&page(vec![SessionQuery::UserAgentFingerprint(
                "fp-1".into(),
            )]))
            .await
            .expect("list");
        assert_eq!(by_fp.total, 5, "{}", b.name);
        let created = b
            .store
            .list_sessions(&page(vec![SessionQuery::CreationDate(
                TimeComparison::GreaterOrEquals,
                at(12),
            )]))
            .await
            .expect("list");
        assert_eq!(created.total, 3, "{}", b.name);
        let created_eq = b
            .store
            .list_sessions(&page(vec![SessionQuery::CreationDate(
                TimeComparison::Equals,
                at(12),
            )]))
            .await
            .expect("list");
        assert_eq!(created_eq.total, 1, "{}", b.name);
        let exp_greater = b
            .store
            .list_sessions(&page(vec![SessionQuery::ExpirationDate(
                TimeComparison::Greater,
                at(50),
            )]))
            .await
            .expect("list");
        assert_eq!(
            exp_greater.total, 5,
            "{}: GREATER includes sessions that never expire",
            b.name
        );
        let exp_less = b
            .store
            .list_sessions(&page(vec![SessionQuery::ExpirationDate(
                TimeComparison::Less,
                at(200),
            )]))
            .await
            .expect("list");
        assert_eq!(
            exp_less.total, 1,
            "{}: LESS only matches sessions with an expiration",
            b.name
        );
        let mut visible = page(vec![]);
        visible.visible_to = Some("c2".into());
        assert_eq!(
            b.store.list_sessions(&visible).await.expect("list").total,
            2,
            "{}",
            b.name
        );
        visible.visible_to = Some(u.id.as_str().into());
        assert_eq!(
            b.store.list_sessions(&visible).await.expect("list").total,
            3,
            "{}",
            b.name
        );
        let sql_injection = b
            .store
            .list_sessions(&page(vec![SessionQuery::UserId("' OR 1=1 --".into())]))
            .await
            .expect("list");
        assert_eq!(sql_injection.total, 0, "{}", b.name);
    }
}

#[tokio::test]
async fn every_page_of_a_search_carries_the_whole_total() {
    for b in backends().await {
        let u = user("counted");
        b.store.insert_user(&u).await.expect("user");
        for i in 0..5 {
            let (s, _) = session(Some(&u), at(10 + i), "c");
            insert(&b.store, &s).await;
        }
        // Pages that end short, end exactly at the last session, stop before it, start at
        // the end and start past it: each must report all five.
        for offset in 0..8u64 {
            for limit in 1..8u32 {
                let page = b
                    .store
                    .list_sessions(&SessionFilter {
                        queries: vec![SessionQuery::UserId(u.id.as_str().into())],
                        visible_to: None,
                        offset,
                        limit,
                        order: SortOrder::CreationAsc,
                    })
                    .await
                    .expect("list");
                let expected_rows = 5u64.saturating_sub(offset).min(u64::from(limit));
                assert_eq!(
                    (page.sessions.len() as u64, page.total),
                    (expected_rows, 5),
                    "{}: offset {offset}, limit {limit}",
                    b.name
                );
            }
        }
        for limit in 1..8u32 {
            let page = b
                .store
                .user_sessions(&UserSessionsQuery {
                    user_id: Some(u.id.clone()),
                    exclude: None,
                    activity: ActivityFilter::All,
                    after: None,
                    limit,
                })
                .await
                .expect("page");
            assert_eq!(
                (page.sessions.len() as u32, page.total),
                (limit.min(5), 5),
                "{}: first page of {limit}",
                b.name
            );
        }
    }
}

#[tokio::test]
async fn a_users_sessions_page_by_keyset_each_exactly_once() {
    for b in backends().await {
        let u = user("pager");
        b.store.insert_user(&u).await.expect("user");
        let mut all = Vec::new();
        for i in 0..7 {
            // Two sessions share each creation time, so the id breaks ties.
            let (s, _) = session(Some(&u), at(i / 2), "c");
            insert(&b.store, &s).await;
            all.push(s.id.clone());
        }
        let mut seen = Vec::new();
        let mut after: Option<PageCursor> = None;
        loop {
            let page = b
                .store
                .user_sessions(&UserSessionsQuery {
                    user_id: Some(u.id.clone()),
                    exclude: Some(all[0].clone()),
                    activity: ActivityFilter::Active(at(1000)),
                    after: after.clone(),
                    limit: 3,
                })
                .await
                .expect("page");
            assert_eq!(page.total, 6, "{}", b.name);
            let Some(last) = page.sessions.last() else {
                break;
            };
            after = Some(PageCursor {
                creation_date: last.creation_date,
                id: last.id.clone(),
            });
            seen.extend(page.sessions.iter().map(|s| s.id.clone()));
        }
        let mut expected = all[1..].to_vec();
        expected.sort();
        let mut got = seen.clone();
        got.sort();
        assert_eq!(got, expected, "{}: every session exactly once", b.name);
    }
}

#[tokio::test]
async fn all_sessions_page_by_keyset_newest_first_across_users() {
    for b in backends().await {
        let (a, c) = (user("everyone-a"), user("everyone-b"));
        b.store.insert_user(&a).await.expect("user");
        b.store.insert_user(&c).await.expect("user");
        let mut all = Vec::new();
        for i in 0..6 {
            let owner = if i % 2 == 0 { &a } else { &c };
            let (s, _) = session(Some(owner), at(i / 2), "c");
            insert(&b.store, &s).await;
            all.push((s.creation_date, s.id.clone()));
        }
        let (anonymous, _) = session(None, at(10), "c");
        insert(&b.store, &anonymous).await;
        all.push((anonymous.creation_date, anonymous.id.clone()));
        let mut seen = Vec::new();
        let mut after: Option<PageCursor> = None;
        loop {
            let page = b
                .store
                .user_sessions(&UserSessionsQuery {
                    user_id: None,
                    exclude: None,
                    activity: ActivityFilter::All,
                    after: after.clone(),
                    limit: 2,
                })
                .await
                .expect("page");
            let Some(last) = page.sessions.last() else {
                break;
            };
            after = Some(PageCursor {
                creation_date: last.creation_date,
                id: last.id.clone(),
            });
            seen.extend(page.sessions.iter().map(|s| s.id.clone()));
        }
        all.sort();
        let expected: Vec<SessionId> = all.into_iter().rev().map(|(_, id)| id).collect();
        assert_eq!(seen, expected, "{}: newest first, each once", b.name);
    }
}

#[tokio::test]
async fn revoking_a_users_sessions_spares_the_current_one_and_logs_each() {
    for b in backends().await {
        let u = user("revoker");
        let other = user("bystander");
        b.store.insert_user(&u).await.expect("user");
        b.store.insert_user(&other).await.expect("user");
        let (current, _) = session(Some(&u), at(1), "c");
        insert(&b.store, &current).await;
        let mut victims = Vec::new();
        for i in 0..3 {
            let (s, _) = session(Some(&u), at(2 + i), "c");
            insert(&b.store, &s).await;
            victims.push(s.id);
        }
        let (theirs, _) = session(Some(&other), at(2), "c");
        insert(&b.store, &theirs).await;
        let revocation = Revocation {
            at: at(10),
            editor: "tester".into(),
            reason: "test",
        };
        let n = b
            .store
            .terminate_user_sessions(&u.id, Some(&current.id), &revocation)
            .await
            .expect("revoke");
        assert_eq!(n, 3, "{}", b.name);
        let again = b
            .store
            .terminate_user_sessions(&u.id, Some(&current.id), &revocation)
            .await
            .expect("revoke");
        assert_eq!(
            again, 0,
            "{}: already revoked sessions are not counted again",
            b.name
        );
        for id in &victims {
            let s = b.store.session(id).await.expect("read").expect("kept");
            assert_eq!(s.terminated_at, Some(at(10)), "{}", b.name);
            assert_eq!(s.sequence, 2, "{}", b.name);
            let events = b.store.session_events(id).await.expect("events");
            assert_eq!(
                events.last().map(|e| (e.sequence, e.event_type.as_str())),
                Some((2, "session.terminated")),
                "{}",
                b.name
            );
        }
        assert!(
            b.store
                .session(&current.id)
                .await
                .expect("read")
                .expect("kept")
                .terminated_at
                .is_none(),
            "{}",
            b.name
        );
        assert!(
            b.store
                .session(&theirs.id)
                .await
                .expect("read")
                .expect("kept")
                .terminated_at
                .is_none(),
            "{}",
            b.name
        );
    }
}

#[tokio::test]
async fn a_user_update_can_end_all_its_sessions_in_the_same_transaction() {
    for b in backends().await {
        let mut u = user("locker");
        b.store.insert_user(&u).await.expect("user");
        let (s, _) = session(Some(&u), at(1), "c");
        insert(&b.store, &s).await;
        u.state = UserState::Locked;
        u.updated_at = at(5);
        let revocation = Revocation {
            at: at(5),
            editor: "admin".into(),
            reason: "user_locked",
        };
        assert_eq!(
            b.store
                .update_user(&u, 1, Some(&revocation))
                .await
                .expect("update"),
            1,
            "{}",
            b.name
        );
        let read = b.store.user(&u.id).await.expect("read").expect("present");
        assert_eq!(read.state, UserState::Locked, "{}", b.name);
        assert!(
            b.store
                .session(&s.id)
                .await
                .expect("read")
                .expect("kept")
                .is_terminated(),
            "{}",
            b.name
        );
        let ghost = user("ghost");
        assert!(
            matches!(
                b.store.update_user(&ghost, 1, None).await,
                Err(StoreError::Conflict)
            ),
            "{}",
            b.name
        );
    }
}

#[tokio::test]
async fn a_user_update_applies_only_at_the_version_it_was_read_at() {
    for b in backends().await {
        let u = user("versioned");
        b.store.insert_user(&u).await.expect("user");
        let read = b.store.user(&u.id).await.expect("read").expect("present");
        assert_eq!(read.version, 1, "{}", b.name);
        // Two writers read version 1: the first write wins, the second conflicts.
        let mut renamed = read.clone();
        renamed.display_name = "renamed".into();
        renamed.version = 2;
        let mut locked = read.clone();
        locked.state = UserState::Locked;
        locked.version = 2;
        assert_eq!(
            b.store.update_user(&renamed, 1, None).await.expect("first"),
            0,
            "{}",
            b.name
        );
        assert!(
            matches!(
                b.store.update_user(&locked, 1, None).await,
                Err(StoreError::Conflict)
            ),
            "{}: a write at a stale version conflicts",
            b.name
        );
        let stored = b.store.user(&u.id).await.expect("read").expect("present");
        assert_eq!(stored.display_name, "renamed", "{}", b.name);
        assert_eq!(stored.state, UserState::Active, "{}", b.name);
        assert_eq!(stored.version, 2, "{}", b.name);

        // Starting a check, or ending one without changing the count, keeps the version;
        // a failure changes the count and bumps it, so a write read before it conflicts
        // instead of writing the old count back.
        for outcome in [
            CheckOutcome::Aborted,
            CheckOutcome::Passed,
            CheckOutcome::Failed,
        ] {
            assert!(
                matches!(
                    b.store.begin_password_check(&u.id, 10, at(1), at(0)).await,
                    Ok(PasswordCheck::Granted { .. })
                ),
                "{}",
                b.name
            );
            b.store
                .end_password_check(&u.id, outcome)
                .await
                .expect("end check");
        }
        let after = b.store.user(&u.id).await.expect("read").expect("present");
        assert_eq!(after.failed_password_attempts, 1, "{}", b.name);
        assert_eq!(after.version, 3, "{}: only the failure bumped it", b.name);
        let mut stale = stored.clone();
        stale.state = UserState::Locked;
        stale.version = 3;
        assert!(
            matches!(
                b.store.update_user(&stale, 2, None).await,
                Err(StoreError::Conflict)
            ),
            "{}",
            b.name
        );
        // A pass clears the count: a change too.
        b.store
            .begin_password_check(&u.id, 10, at(2), at(0))
            .await
            .expect("begin");
        assert_eq!(
            b.store
                .end_password_check(&u.id, CheckOutcome::Passed)
                .await
                .expect("end"),
            0,
            "{}",
            b.name
        );
        let cleared = b.store.user(&u.id).await.expect("read").expect("present");
        assert_eq!(cleared.version, 4, "{}", b.name);
        assert_eq!(cleared.state, UserState::Active, "{}", b.name);
    }
}

#[tokio::test]
async fn login_names_are_unique_without_regard_to_case() {
    for b in backends().await {
        b.store
            .insert_user(&user("Carol@Example.com"))
            .await
            .expect("user");
        let dup = b.store.insert_user(&user("carol@example.COM")).await;
        assert!(
            matches!(dup, Err(StoreError::Duplicate("login name"))),
            "{}: {dup:?}",
            b.name
        );
        let name = LoginName::parse("CAROL@example.com").expect("name");
        let found = b
            .store
            .user_by_login_name(&name)
            .await
            .expect("read")
            .expect("found");
        assert_eq!(found.login_name.as_str(), "Carol@Example.com", "{}", b.name);
        let (list, total) = b
            .store
            .list_users(&UserListQuery {
                login_name: Some(name),
                offset: 0,
                limit: 10,
            })
            .await
            .expect("list");
        assert_eq!((list.len(), total), (1, 1), "{}", b.name);
        let (_, all) = b
            .store
            .list_users(&UserListQuery {
                login_name: None,
                offset: 0,
                limit: 10,
            })
            .await
            .expect("list");
        assert_eq!(all, 1, "{}", b.name);
    }
}

#[tokio::test]
async fn unregistered_outcomes_count_failures_and_leave_checks_in_progress_alone() {
    use sessiond::store::{CheckOutcome, PasswordCheck};
    for b in backends().await {
        let u = user("passkey-owner");
        b.store.insert_user(&u).await.expect("user");
        let (now, stale) = (at(100), at(40));
        let (store, id) = (&b.store, &u.id);
        let begin = || async move {
            store
                .begin_password_check(id, 3, now, stale)
                .await
                .expect("begin")
        };
        let end =
            |outcome| async move { store.end_password_check(id, outcome).await.expect("end") };
        // Two password checks in progress on a limit of 3.
        for _ in 0..2 {
            assert!(matches!(begin().await, PasswordCheck::Granted { .. }));
        }
        // A failed passkey assertion counts once and frees no slot of the two.
        assert_eq!(end(CheckOutcome::FailedUnregistered).await, 1, "{}", b.name);
        assert_eq!(
            begin().await,
            PasswordCheck::Busy,
            "{}: 1 failure + 2 in progress reach the limit",
            b.name
        );
        // A passed one clears the failures and still leaves both checks in progress.
        assert_eq!(end(CheckOutcome::PassedUnregistered).await, 0, "{}", b.name);
        assert!(matches!(begin().await, PasswordCheck::Granted { .. }));
        assert_eq!(
            begin().await,
            PasswordCheck::Busy,
            "{}: three checks in progress",
            b.name
        );
        // With no failures to clear, a passed one changes nothing.
        assert_eq!(end(CheckOutcome::PassedUnregistered).await, 0, "{}", b.name);
        assert_eq!(
            begin().await,
            PasswordCheck::Busy,
            "{}: still three checks in progress",
            b.name
        );
    }
}

#[tokio::test]
async fn parallel_password_attempts_never_exceed_the_limit() {
    use sessiond::store::{CheckOutcome, PasswordCheck};
    for b in backends().await {
        let u = user("guessed");
        b.store.insert_user(&u).await.expect("user");
        let (now, stale) = (at(100), at(40));
        // 40 guesses at once on a limit of 5: exactly 5 may run, the others are busy.
        let mut tasks = Vec::new();
        for _ in 0..40 {
            let store = b.store.clone();
            let id = u.id.clone();
            tasks.push(tokio::spawn(async move {
                store.begin_password_check(&id, 5, now, stale).await
            }));
        }
        let mut granted = 0;
        for t in tasks {
            match t.await.expect("join").expect("begin") {
                PasswordCheck::Granted { .. } => granted += 1,
                PasswordCheck::Busy => {}
                PasswordCheck::Locked => panic!("{}: nothing has failed yet", b.name),
            }
        }
        assert_eq!(granted, 5, "{}", b.name);
        // All five fail: the user is now locked, not merely busy.
        for _ in 0..5 {
            b.store
                .end_password_check(&u.id, CheckOutcome::Failed)
                .await
                .expect("end");
        }
        assert_eq!(
            b.store
                .begin_password_check(&u.id, 5, now, stale)
                .await
                .expect("begin"),
            PasswordCheck::Locked,
            "{}",
            b.name
        );
        assert!(
            matches!(
                b.store
                    .begin_password_check(&u.id, 0, now, stale)
                    .await
                    .expect("begin"),
                PasswordCheck::Granted { .. }
            ),
            "{}: 0 = no limit",
            b.name
        );
        b.store
            .end_password_check(&u.id, CheckOutcome::Aborted)
            .await
            .expect("end");

        // Correct passwords in a burst never read as a lockout, and a pass clears failures.
        let other = user("popular");
        b.store.insert_user(&other).await.expect("user");
        for _ in 0..5 {
            assert!(matches!(
                b.store
                    .begin_password_check(&other.id, 5, now, stale)
                    .await
                    .expect("begin"),
                PasswordCheck::Granted { .. }
            ));
        }
        assert_eq!(
            b.store
                .begin_password_check(&other.id, 5, now, stale)
                .await
                .expect("begin"),
            PasswordCheck::Busy,
            "{}",
            b.name
        );
        assert_eq!(
            b.store
                .end_password_check(&other.id, CheckOutcome::Failed)
                .await
                .expect("end"),
            1
        );
        assert_eq!(
            b.store
                .end_password_check(&other.id, CheckOutcome::Passed)
                .await
                .expect("end"),
            0,
            "{}",
            b.name
        );
        // Checks left in progress by a process that died stop counting once stale.
        let later = at(1000);
        assert!(
            matches!(
                b.store
                    .begin_password_check(&other.id, 5, later, at(900))
                    .await
                    .expect("begin"),
                PasswordCheck::Granted { failures: 0 }
            ),
            "{}",
            b.name
        );
    }
}

#[tokio::test]
async fn secrets_are_created_once_and_shared() {
    for b in backends().await {
        let first = b.store.secret("page-token").await.expect("secret");
        let second = b.store.secret("page-token").await.expect("secret");
        let other = b.store.secret("other").await.expect("secret");
        assert_eq!(first, second, "{}", b.name);
        assert_ne!(first, other, "{}", b.name);
        // A second handle on the same database (another replica) sees the same secret.
        let replica = sessiond::app::open_store(&b.config).await.expect("reopen");
        assert_eq!(
            replica.secret("page-token").await.expect("secret"),
            first,
            "{}",
            b.name
        );
    }
}

#[tokio::test]
async fn prune_deletes_old_terminated_and_expired_sessions_in_batches() {
    for b in backends().await {
        let mut keep = Vec::new();
        let mut old = Vec::new();
        for i in 0..5 {
            let (mut s, _) = session(None, at(i), "c");
            insert(&b.store, &s).await;
            s.sequence = 2;
            s.terminated_at = Some(at(10));
            b.store
                .update_session(&s, 1, &event("session.terminated", at(10)))
                .await
                .expect("terminate");
            old.push(s.id);
        }
        let (mut expired, _) = session(None, at(0), "c");
        expired.expiration = Some(at(20));
        insert(&b.store, &expired).await;
        old.push(expired.id);
        let (mut fresh, _) = session(None, at(0), "c");
        fresh.expiration = Some(at(500));
        insert(&b.store, &fresh).await;
        keep.push(fresh.id);
        let (live, _) = session(None, at(0), "c");
        insert(&b.store, &live).await;
        keep.push(live.id);

        let mut total = 0;
        loop {
            let batch = b.store.prune(at(100), at(100), 2).await.expect("prune");
            assert!(batch.sessions <= 2, "{}", b.name);
            if batch.sessions == 0 {
                break;
            }
            total += batch.sessions;
        }
        assert_eq!(total, 6, "{}", b.name);
        for id in &old {
            assert!(
                b.store.session(id).await.expect("read").is_none(),
                "{}",
                b.name
            );
            assert!(
                b.store.session_events(id).await.expect("events").is_empty(),
                "{}",
                b.name
            );
        }
        for id in &keep {
            assert!(
                b.store.session(id).await.expect("read").is_some(),
                "{}",
                b.name
            );
        }
    }
}

#[tokio::test]
async fn a_fresh_store_is_reachable_and_fully_migrated() {
    for b in backends().await {
        b.store.ping().await.expect("ping");
        assert!(b.store.schema_ready().await.expect("schema"), "{}", b.name);
        let store: Arc<dyn sessiond::store::Store> = b.store.clone();
        drop(store);
    }
}
