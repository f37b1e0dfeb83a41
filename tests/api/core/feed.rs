//! The session event feed on the core, on every store: what a page and a stream hold, in what
//! order, for whom, and how they fail.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use sessiond::core::{CoreSettings, EventStream, RevokedBy, UserAction};
use sessiond::domain::{
    Error, ErrorKind, EventFilter, Password, Principal, SessionEvent, SessionEventType,
    TerminationReason, error_ids,
};
use sessiond::feed::FeedSettings;

use super::{Harness, admin, as_user, fails, harnesses, harnesses_with, succeeds};

/// How long a test waits for an event that should come.
const PATIENCE: Duration = Duration::from_secs(20);

fn all() -> EventFilter {
    EventFilter::default()
}

fn after(cursor: &str) -> EventFilter {
    EventFilter {
        after: Some(cursor.to_owned()),
        ..EventFilter::default()
    }
}

/// The events of one user's sessions.
fn of_user(user: &sessiond::domain::User) -> EventFilter {
    EventFilter {
        user_id: Some(user.id.as_str().to_owned()),
        ..EventFilter::default()
    }
}

/// The next `n` events of `stream`; panics on an error, an end, or a wait past [`PATIENCE`].
pub async fn take(
    h: &impl std::fmt::Display,
    stream: &mut EventStream,
    n: usize,
) -> Vec<SessionEvent> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout(PATIENCE, stream.next()).await {
            Ok(Some(Ok(event))) => out.push(SessionEvent::clone(&event)),
            Ok(Some(Err(e))) => panic!("{h}: stream failed after {} events: {e:?}", out.len()),
            Ok(None) => panic!("{h}: stream ended after {} of {n} events", out.len()),
            Err(_) => panic!("{h}: only {} of {n} events within {PATIENCE:?}", out.len()),
        }
    }
    out
}

/// Asserts that nothing arrives on `stream` for a moment.
async fn quiet(h: &Harness, stream: &mut EventStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(300), stream.next()).await {
        panic!("{h}: expected nothing, got {item:?}");
    }
}

async fn watch(h: &Harness, principal: &Principal, filter: EventFilter) -> EventStream {
    succeeds(h, h.core.watch_session_events(principal, filter).await)
}

/// Every event of the log, read page by page from the start.
async fn list_all(h: &Harness, principal: &Principal, limit: u32) -> Vec<SessionEvent> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = succeeds(
            h,
            h.core
                .list_session_events(
                    principal,
                    EventFilter {
                        after: Some(cursor.clone()),
                        limit: Some(limit),
                        ..EventFilter::default()
                    },
                )
                .await,
        );
        if page.events.is_empty() {
            assert_eq!(
                page.next_cursor,
                cursor.max("0".into()),
                "{h}: an empty page stays"
            );
            return out;
        }
        assert!(page.events.len() <= limit as usize, "{h}");
        cursor = page.next_cursor;
        out.extend(page.events);
    }
}

/// The first `n` events from the start, once readable (on PostgreSQL an event is readable
/// once no older transaction, of any test on the server, is still running).
async fn readable(h: &Harness, n: usize) -> Vec<SessionEvent> {
    let mut stream = watch(h, &admin(), after("0")).await;
    take(h, &mut stream, n).await
}

/// Cursors strictly increase, in the feed's own order.
fn assert_in_cursor_order(h: &impl std::fmt::Display, events: &[SessionEvent]) {
    let positions: Vec<_> = events
        .iter()
        .map(|e| sessiond::domain::FeedPosition::parse(&e.cursor).expect("a cursor parses"))
        .collect();
    for pair in positions.windows(2) {
        assert!(pair[0] < pair[1], "{h}: {:?} then {:?}", pair[0], pair[1]);
    }
}

#[tokio::test]
async fn a_watcher_sees_every_change_of_a_session_as_it_happens() {
    for h in harnesses().await {
        let user = h.user("ann@example.com").await;
        let mut stream = watch(&h, &admin(), all()).await;
        let created = h.session_for(&user).await;
        h.set(sessiond::core::SetSession {
            metadata: super::metadata(&[("device", "laptop")]),
            ..super::set(&created.id)
        })
        .await;
        h.delete(&created.id).await;
        let events = take(&h, &mut stream, 3).await;
        let types: Vec<_> = events.iter().map(|e| e.event_type).collect();
        assert_eq!(
            types,
            [
                SessionEventType::Added,
                SessionEventType::Updated,
                SessionEventType::Terminated
            ],
            "{h}"
        );
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event.session_id, created.id.as_str(), "{h}");
            assert_eq!(event.user_id.as_deref(), Some(user.id.as_str()), "{h}");
            assert_eq!(event.sequence, i as u64 + 1, "{h}");
            assert_eq!(event.resource_owner, "sessiond", "{h}");
            assert_eq!(event.occurred_at, h.now(), "{h}");
        }
        assert_eq!(events[0].reason, None, "{h}");
        assert_eq!(events[2].reason, Some(TerminationReason::Deleted), "{h}");
        assert_in_cursor_order(&h, &events);
        quiet(&h, &mut stream).await;
        // The list from the start holds the same events.
        assert_eq!(list_all(&h, &admin(), 2).await, events, "{h}");
    }
}

#[tokio::test]
async fn a_watch_from_now_starts_after_what_is_already_there() {
    for h in harnesses().await {
        let user = h.user("ann@example.com").await;
        h.session_for(&user).await;
        // Readable first (on PostgreSQL, "now" is after the last event nothing can precede).
        readable(&h, 1).await;
        let mut stream = watch(&h, &admin(), after("")).await;
        quiet(&h, &mut stream).await;
        let later = h.session_for(&user).await;
        let events = take(&h, &mut stream, 1).await;
        assert_eq!(events[0].session_id, later.id.as_str(), "{h}");
        // From "0": everything retained.
        let mut from_start = watch(&h, &admin(), after("0")).await;
        assert_eq!(take(&h, &mut from_start, 2).await.len(), 2, "{h}");
    }
}

#[tokio::test]
async fn fifty_concurrent_writers_are_seen_exactly_once_in_cursor_order() {
    for h in harnesses().await {
        let user = h.user("ann@example.com").await;
        let mut stream = watch(&h, &admin(), all()).await;
        let mut writers = Vec::new();
        for _ in 0..50 {
            let core = h.core.clone();
            let user = user.clone();
            writers.push(tokio::spawn(async move {
                let created = core
                    .create_session(
                        &super::login_ui(),
                        sessiond::core::CreateSession {
                            checks: super::user_check(&user),
                            ..Default::default()
                        },
                    )
                    .await
                    .expect("creating");
                core.delete_session(&super::login_ui(), &created.session_id, None)
                    .await
                    .expect("deleting");
                created.session_id
            }));
        }
        let mut ids = HashSet::new();
        for writer in writers {
            ids.insert(writer.await.expect("writer").as_str().to_owned());
        }
        let events = take(&h, &mut stream, 100).await;
        assert_in_cursor_order(&h, &events);
        let mut seen = HashSet::new();
        for event in &events {
            assert!(ids.contains(&event.session_id), "{h}: {event:?}");
            assert!(
                seen.insert((event.session_id.clone(), event.sequence)),
                "{h}: {event:?} twice"
            );
        }
        quiet(&h, &mut stream).await;
        assert_eq!(list_all(&h, &admin(), 7).await, events, "{h}");
    }
}

#[tokio::test]
async fn a_resumed_watch_and_chained_pages_lose_nothing() {
    for h in harnesses().await {
        let user = h.user("ann@example.com").await;
        let mut first = watch(&h, &admin(), all()).await;
        for _ in 0..3 {
            h.session_for(&user).await;
        }
        let seen = take(&h, &mut first, 3).await;
        drop(first);
        // Written while nobody watched.
        let mut missed = Vec::new();
        for _ in 0..4 {
            missed.push(h.session_for(&user).await.id);
        }
        let mut resumed = watch(&h, &admin(), after(&seen[2].cursor)).await;
        let caught_up = take(&h, &mut resumed, 4).await;
        let ids: Vec<_> = caught_up.iter().map(|e| e.session_id.clone()).collect();
        let missed: Vec<_> = missed.iter().map(|id| id.as_str().to_owned()).collect();
        assert_eq!(ids, missed, "{h}");
        let live = h.session_for(&user).await;
        assert_eq!(
            take(&h, &mut resumed, 1).await[0].session_id,
            live.id.as_str(),
            "{h}"
        );
        quiet(&h, &mut resumed).await;
        let listed = list_all(&h, &admin(), 3).await;
        assert_eq!(listed.len(), 8, "{h}");
        assert_in_cursor_order(&h, &listed);
    }
}

#[tokio::test]
async fn a_user_sees_only_its_own_events() {
    for h in harnesses().await {
        let ann = h.user("ann@example.com").await;
        let bob = h.user("bob@example.com").await;
        let mut anns = watch(&h, &as_user(&ann), all()).await;
        let mut bobs_by_admin = watch(&h, &admin(), of_user(&bob)).await;
        let bob_session = h.session_for(&bob).await;
        let ann_session = h.session_for(&ann).await;
        let events = take(&h, &mut anns, 1).await;
        assert_eq!(events[0].session_id, ann_session.id.as_str(), "{h}");
        let events = take(&h, &mut bobs_by_admin, 1).await;
        assert_eq!(events[0].session_id, bob_session.id.as_str(), "{h}");
        quiet(&h, &mut anns).await;
        let page = succeeds(&h, h.core.list_session_events(&as_user(&ann), all()).await);
        assert_eq!(page.events.len(), 1, "{h}");
        assert_eq!(page.events[0].session_id, ann_session.id.as_str(), "{h}");
        // Asking for another user's events without session.read is refused.
        let bobs = of_user(&bob);
        fails(
            &h,
            h.core
                .list_session_events(&as_user(&ann), bobs.clone())
                .await,
            ErrorKind::PermissionDenied,
            error_ids::PERMISSION_MISSING,
        );
        fails(
            &h,
            h.core
                .watch_session_events(&as_user(&ann), bobs)
                .await
                .map(|_| ()),
            ErrorKind::PermissionDenied,
            error_ids::PERMISSION_MISSING,
        );
    }
}

#[tokio::test]
async fn a_type_filter_keeps_only_those_types() {
    for h in harnesses().await {
        let user = h.user("ann@example.com").await;
        let filter = EventFilter {
            types: vec![SessionEventType::Terminated],
            ..EventFilter::default()
        };
        let mut stream = watch(&h, &admin(), filter.clone()).await;
        let created = h.session_for(&user).await;
        h.set(sessiond::core::SetSession {
            metadata: super::metadata(&[("device", "laptop")]),
            ..super::set(&created.id)
        })
        .await;
        h.delete(&created.id).await;
        let events = take(&h, &mut stream, 1).await;
        assert_eq!(events[0].event_type, SessionEventType::Terminated, "{h}");
        quiet(&h, &mut stream).await;
        let page = succeeds(&h, h.core.list_session_events(&admin(), filter).await);
        assert_eq!(page.events, events, "{h}");
    }
}

#[tokio::test]
async fn malformed_and_unissued_cursors_are_invalid_arguments() {
    for h in harnesses().await {
        let user = h.user("ann@example.com").await;
        h.session_for(&user).await;
        for bad in [
            "abc",
            "-1",
            "1.",
            "1.2.3",
            " 1",
            "99999999999999999999999",
            "99999999999.1",
        ] {
            fails(
                &h,
                h.core.list_session_events(&admin(), after(bad)).await,
                ErrorKind::InvalidArgument,
                error_ids::FEED_CURSOR_INVALID,
            );
            fails(
                &h,
                h.core
                    .watch_session_events(&admin(), after(bad))
                    .await
                    .map(|_| ()),
                ErrorKind::InvalidArgument,
                error_ids::FEED_CURSOR_INVALID,
            );
        }
        fails(
            &h,
            h.core
                .list_session_events(
                    &admin(),
                    EventFilter {
                        limit: Some(1001),
                        ..EventFilter::default()
                    },
                )
                .await,
            ErrorKind::InvalidArgument,
            error_ids::FEED_FILTER_INVALID,
        );
    }
}

#[tokio::test]
async fn a_cursor_older_than_a_prune_has_expired_and_zero_still_reads_what_is_left() {
    for h in harnesses().await {
        let user = h.user("ann@example.com").await;
        let old = h.session_for(&user).await;
        let early = readable(&h, 1).await[0].cursor.clone();
        h.delete(&old.id).await;
        let kept = h.session_for(&user).await;
        h.advance(Duration::from_secs(3600));
        let pruned = h
            .backend
            .store
            .prune(h.now(), sessiond::domain::Time::from_unix_micros(0), 100)
            .await
            .expect("pruning");
        assert_eq!(pruned.sessions, 1, "{h}");
        let expired = fails(
            &h,
            h.core.list_session_events(&admin(), after(&early)).await,
            ErrorKind::FailedPrecondition,
            error_ids::FEED_CURSOR_EXPIRED,
        );
        assert!(expired.message().contains("resync"), "{h}: {expired:?}");
        fails(
            &h,
            h.core
                .watch_session_events(&admin(), after(&early))
                .await
                .map(|_| ()),
            ErrorKind::FailedPrecondition,
            error_ids::FEED_CURSOR_EXPIRED,
        );
        // Once the kept session's creation is readable (on PostgreSQL, once no older
        // transaction in the cluster is open), it is all that is left.
        let rest = readable(&h, 1).await;
        assert_eq!(rest[0].session_id, kept.id.as_str(), "{h}");
        assert_eq!(list_all(&h, &admin(), 10).await, rest, "{h}");
    }
}

#[tokio::test]
async fn subscribers_past_the_limit_are_refused_until_one_leaves() {
    let settings = CoreSettings {
        feed: FeedSettings {
            max_subscribers: 2,
            ..FeedSettings::default()
        },
        ..CoreSettings::default()
    };
    for h in harnesses_with(settings).await {
        let first = watch(&h, &admin(), all()).await;
        let _second = watch(&h, &admin(), all()).await;
        fails(
            &h,
            h.core
                .watch_session_events(&admin(), all())
                .await
                .map(|_| ()),
            ErrorKind::ResourceExhausted,
            error_ids::FEED_SUBSCRIBERS_FULL,
        );
        assert_eq!(h.core.feed().subscribers(), 2, "{h}");
        drop(first);
        assert_eq!(h.core.feed().subscribers(), 1, "{h}");
        let _third = watch(&h, &admin(), all()).await;
    }
}

#[tokio::test]
async fn shutdown_ends_every_stream_with_feed_shutdown() {
    for h in harnesses().await {
        let user = h.user("ann@example.com").await;
        let mut streams = vec![
            watch(&h, &admin(), all()).await,
            watch(&h, &as_user(&user), all()).await,
        ];
        h.core.feed().shutdown();
        for stream in &mut streams {
            let item = tokio::time::timeout(PATIENCE, stream.next())
                .await
                .expect("the stream answers at once");
            let error: Error = item.expect("an item").expect_err("an error");
            assert_eq!(error.kind(), ErrorKind::Unavailable, "{h}");
            assert_eq!(error.id(), error_ids::FEED_SHUTDOWN, "{h}");
            assert!(stream.next().await.is_none(), "{h}: then the stream ends");
        }
        fails(
            &h,
            h.core
                .watch_session_events(&admin(), all())
                .await
                .map(|_| ()),
            ErrorKind::Unavailable,
            error_ids::FEED_SHUTDOWN,
        );
    }
}

#[tokio::test]
async fn every_kind_of_revocation_has_its_reason() {
    for h in harnesses().await {
        let ann = h.user("ann@example.com").await;
        let mut stream = watch(
            &h,
            &admin(),
            EventFilter {
                types: vec![SessionEventType::Terminated],
                ..EventFilter::default()
            },
        )
        .await;
        let mut reasons = Vec::new();

        // DeleteSession.
        let s = h.session_for(&ann).await;
        h.delete(&s.id).await;
        reasons.push(TerminationReason::Deleted);
        // Self-service: one other session, then all others.
        let current = h.session_for(&ann).await;
        let other = h.session_for(&ann).await;
        let me = h.current(&current.token).await;
        succeeds(&h, h.core.revoke_own_session(&me, &other.id).await);
        reasons.push(TerminationReason::Deleted);
        h.session_for(&ann).await;
        succeeds(&h, h.core.revoke_other_sessions(&me).await);
        reasons.push(TerminationReason::RevokedOthers);
        // Admin API, and the operator's command line.
        let s = h.session_for(&ann).await;
        succeeds(
            &h,
            h.core.admin_revoke_session(&admin(), &ann.id, &s.id).await,
        );
        reasons.push(TerminationReason::RevokedByAdmin);
        let s = h.session_for(&ann).await;
        succeeds(&h, h.core.operator_revoke_session(&admin(), &s.id).await);
        reasons.push(TerminationReason::RevokedByAdmin);
        h.session_for(&ann).await;
        succeeds(
            &h,
            h.core
                .admin_revoke_user_sessions(&admin(), &ann.id, Some(&current.id), RevokedBy::Admin)
                .await,
        );
        reasons.push(TerminationReason::RevokedByAdmin);
        // Password change, lock, deactivation: each ends the user's sessions (one live: current
        // is revoked by the password change, then one new session per step).
        let password = Password::parse("a whole new password").expect("password");
        succeeds(
            &h,
            h.core
                .set_password(&admin(), &ann.id, &password, true)
                .await,
        );
        reasons.push(TerminationReason::PasswordChanged);
        h.session_for(&ann).await;
        succeeds(
            &h,
            h.core
                .change_user_state(&admin(), &ann.id, UserAction::Lock)
                .await,
        );
        reasons.push(TerminationReason::UserLocked);
        succeeds(
            &h,
            h.core
                .change_user_state(&admin(), &ann.id, UserAction::Reactivate)
                .await,
        );
        h.session_for(&ann).await;
        succeeds(
            &h,
            h.core
                .change_user_state(&admin(), &ann.id, UserAction::Deactivate)
                .await,
        );
        reasons.push(TerminationReason::UserDeactivated);

        let events = take(&h, &mut stream, reasons.len()).await;
        let got: Vec<_> = events.iter().map(|e| e.reason).collect();
        let want: Vec<_> = reasons.into_iter().map(Some).collect();
        assert_eq!(got, want, "{h}");
        quiet(&h, &mut stream).await;
    }
}

#[tokio::test]
async fn a_stalled_subscriber_slows_no_writer_and_later_reads_everything_from_the_store() {
    let settings = CoreSettings {
        feed: FeedSettings {
            buffer: 256,
            ..FeedSettings::default()
        },
        ..CoreSettings::default()
    };
    for h in harnesses_with(settings).await {
        let user = h.user("ann@example.com").await;
        // Never polled while the writes happen.
        let mut stalled = watch(&h, &admin(), all()).await;
        let mut live = watch(&h, &admin(), all()).await;
        let total = if h.backend.name == "sqlite" {
            20_000
        } else {
            4_000
        };
        let reader = tokio::spawn(async move {
            let mut n = 0usize;
            while n < total {
                match tokio::time::timeout(PATIENCE, live.next()).await {
                    Ok(Some(Ok(_))) => n += 1,
                    other => panic!("live subscriber: {other:?} after {n}"),
                }
            }
            n
        });
        let mut writers = Vec::new();
        for w in 0..8 {
            let core = h.core.clone();
            let user = user.clone();
            writers.push(tokio::spawn(async move {
                for _ in 0..total / 8 {
                    core.create_session(
                        &super::login_ui(),
                        sessiond::core::CreateSession {
                            checks: super::user_check(&user),
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap_or_else(|e| panic!("writer {w}: {e:?}"));
                }
            }));
        }
        for writer in writers {
            writer.await.expect("writer");
        }
        assert_eq!(reader.await.expect("reader"), total, "{h}");
        // The stalled one catches up from the store: every event once, in order.
        let events = take(&h, &mut stalled, total).await;
        assert_in_cursor_order(&h, &events);
        quiet(&h, &mut stalled).await;
    }
}

#[tokio::test]
async fn a_per_user_subscriber_is_woken_only_by_its_own_users_events() {
    for h in harnesses().await {
        let ann = h.user("ann@example.com").await;
        let bob = h.user("bob@example.com").await;
        let mut anns = watch(&h, &as_user(&ann), all()).await;
        let mut bobs_by_admin = watch(&h, &admin(), of_user(&bob)).await;
        let mut everything = watch(&h, &admin(), all()).await;
        // Each has caught up with the (empty) store and follows its ring.
        quiet(&h, &mut anns).await;
        quiet(&h, &mut bobs_by_admin).await;
        quiet(&h, &mut everything).await;
        let before = h.core.feed().ring_receipts();
        let mut ann_sessions = Vec::new();
        let mut bob_sessions = Vec::new();
        for i in 0..30 {
            bob_sessions.push(h.session_for(&bob).await.id.as_str().to_owned());
            if i % 6 == 0 {
                ann_sessions.push(h.session_for(&ann).await.id.as_str().to_owned());
            }
        }
        let total = ann_sessions.len() + bob_sessions.len();
        let seen = take(&h, &mut everything, total).await;
        assert_in_cursor_order(&h, &seen);
        let got: Vec<_> = take(&h, &mut anns, ann_sessions.len()).await;
        assert_in_cursor_order(&h, &got);
        let got: Vec<_> = got.into_iter().map(|e| e.session_id).collect();
        assert_eq!(got, ann_sessions, "{h}");
        let got: Vec<_> = take(&h, &mut bobs_by_admin, bob_sessions.len()).await;
        assert_in_cursor_order(&h, &got);
        let got: Vec<_> = got.into_iter().map(|e| e.session_id).collect();
        assert_eq!(got, bob_sessions, "{h}");
        quiet(&h, &mut anns).await;
        quiet(&h, &mut bobs_by_admin).await;
        // Ann's subscriber was woken by Ann's events only, Bob's by Bob's only; the one of
        // every event by all of them.
        assert_eq!(
            h.core.feed().ring_receipts() - before,
            (ann_sessions.len() + bob_sessions.len() + total) as u64,
            "{h}"
        );
    }
}

#[tokio::test]
async fn a_per_user_subscriber_past_its_ring_reads_its_own_events_from_the_store() {
    for h in harnesses().await {
        let ann = h.user("ann@example.com").await;
        let bob = h.user("bob@example.com").await;
        // Never polled while the writes happen, and the writes outrun its ring.
        let mut anns = watch(&h, &as_user(&ann), all()).await;
        let mut ann_sessions = Vec::new();
        for _ in 0..150 {
            ann_sessions.push(h.session_for(&ann).await.id.as_str().to_owned());
            h.session_for(&bob).await;
        }
        let got = take(&h, &mut anns, ann_sessions.len()).await;
        assert_in_cursor_order(&h, &got);
        let got: Vec<_> = got.into_iter().map(|e| e.session_id).collect();
        assert_eq!(got, ann_sessions, "{h}");
        quiet(&h, &mut anns).await;
        // Another subscriber of the same user, after the first is gone, follows a new ring.
        drop(anns);
        let mut again = watch(&h, &as_user(&ann), all()).await;
        quiet(&h, &mut again).await;
        let next = h.session_for(&ann).await;
        h.session_for(&bob).await;
        let got = take(&h, &mut again, 1).await;
        assert_eq!(got[0].session_id, next.id.as_str(), "{h}");
        quiet(&h, &mut again).await;
    }
}

#[tokio::test]
async fn sessions_a_factor_change_ends_reach_a_watcher_at_once() {
    // A poll far beyond the wait: only the store's own wake-up can deliver in time.
    let settings = CoreSettings {
        feed: FeedSettings {
            poll_interval: Duration::from_secs(600),
            ..FeedSettings::default()
        },
        ..CoreSettings::default()
    };
    for h in harnesses_with(settings).await {
        let ann = h.user("ann@example.com").await;
        let session = h.session_for(&ann).await;
        let mut stream = watch(&h, &admin(), of_user(&ann)).await;
        quiet(&h, &mut stream).await;
        succeeds(
            &h,
            h.core
                .generate_recovery_codes(&admin(), &ann.id, 1, true)
                .await,
        );
        let event = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap_or_else(|_| panic!("{h}: no wake-up for the factor change's revocation"))
            .expect("an item")
            .expect("an event");
        assert_eq!(event.session_id, session.id.as_str(), "{h}");
        assert_eq!(event.reason, Some(TerminationReason::FactorsChanged), "{h}");
    }
}
