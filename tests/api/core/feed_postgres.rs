//! The session event feed where PostgreSQL makes it hard: transactions that commit out of
//! order, and replicas that learn of each other's writes by `NOTIFY` or, failing that, by
//! polling. Run only with PostgreSQL (`SESSIOND_TEST_POSTGRES_URL`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sessiond::core::{Core, CoreSettings, PasswordHasher};
use sessiond::domain::{Clock, EventFilter, SessionEventType};
use sessiond::feed::FeedSettings;
use sqlx::Connection;

use super::feed::take;
use super::{Harness, admin, harnesses_with, succeeds};

fn postgres_only(harnesses: Vec<Harness>) -> Vec<Harness> {
    harnesses
        .into_iter()
        .filter(|h| h.backend.name == "postgres")
        .collect()
}

fn with_poll(poll_interval: Duration) -> CoreSettings {
    CoreSettings {
        feed: FeedSettings {
            poll_interval,
            ..FeedSettings::default()
        },
        ..CoreSettings::default()
    }
}

/// A direct connection to the harness's database (its own schema).
async fn connect(h: &Harness) -> sqlx::PgConnection {
    connect_to(&h.backend.config.store_url()).await
}

/// A direct connection to `url`, waiting while the server has no connection slot free (the
/// suite's tests run in parallel and each opens pools of its own).
async fn connect_to(url: &str) -> sqlx::PgConnection {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match sqlx::PgConnection::connect(url).await {
            Ok(conn) => return conn,
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("53300") && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("connecting to the test database: {e}"),
        }
    }
}

/// A second replica: its own store (pool, listener) on the same database, its own hub.
async fn replica(h: &Harness, settings: CoreSettings) -> Core {
    let store = sessiond::app::open_store(&h.backend.config)
        .await
        .expect("opening a second store");
    let clock: Arc<dyn Clock> = Arc::new(h.clock.clone());
    let hasher = PasswordHasher::new(1024, 1, 4).expect("argon2 parameters");
    Core::new(store, clock, hasher, settings)
}

/// Appends an event by hand, as a writer that sends no notification would.
const RAW_EVENT: &str = "INSERT INTO session_events (session_id, sequence, event_type, payload, \
     created_at, editor, user_id, resource_owner) VALUES ($1, $2, 'session.updated', '{}', 0, \
     'test', $3, 'sessiond')";

#[tokio::test]
async fn an_event_committed_late_with_a_lower_transaction_id_is_never_skipped() {
    for h in postgres_only(harnesses_with(with_poll(Duration::from_millis(100))).await) {
        let user = h.user("ann@example.com").await;
        let first = h.session_for(&user).await;
        // From the start, once the first session's creation is readable: nothing else is.
        let mut stream = succeeds(
            &h,
            h.core
                .watch_session_events(
                    &admin(),
                    EventFilter {
                        after: Some("0".into()),
                        ..EventFilter::default()
                    },
                )
                .await,
        );
        assert_eq!(
            take(&h, &mut stream, 1).await[0].session_id,
            first.id.as_str()
        );

        // A transaction takes its id and stays open while later ones commit.
        let mut conn = connect(&h).await;
        let mut slow = conn.begin().await.expect("begin");
        sqlx::query(RAW_EVENT)
            .bind(first.id.as_str())
            .bind(2i64)
            .bind(user.id.as_str())
            .execute(&mut *slow)
            .await
            .expect("the slow insert");
        let mut later = Vec::new();
        for _ in 0..5 {
            later.push(h.session_for(&user).await.id);
        }
        // Nothing may be handed out past the open transaction: it would be skipped.
        if let Ok(item) = tokio::time::timeout(Duration::from_millis(600), stream.next()).await {
            panic!("{h}: an event passed an open older transaction: {item:?}");
        }
        let listed = succeeds(
            &h,
            h.core
                .list_session_events(&admin(), EventFilter::default())
                .await,
        );
        assert_eq!(
            listed.events.len(),
            1,
            "{h}: only the first session's creation is readable"
        );

        slow.commit().await.expect("commit");
        let events = take(&h, &mut stream, 6).await;
        assert_eq!(events[0].session_id, first.id.as_str(), "{h}");
        assert_eq!(events[0].event_type, SessionEventType::Updated, "{h}");
        let ids: Vec<_> = events[1..].iter().map(|e| e.session_id.clone()).collect();
        let later: Vec<_> = later.iter().map(|id| id.as_str().to_owned()).collect();
        assert_eq!(ids, later, "{h}");
    }
}

#[tokio::test]
async fn fifty_writers_with_out_of_order_commits_are_seen_exactly_once_in_order() {
    for h in postgres_only(harnesses_with(with_poll(Duration::from_millis(100))).await) {
        let user = h.user("ann@example.com").await;
        let anchor = h.session_for(&user).await;
        // "From now" is from the last event no running transaction can precede, which may be
        // just before the anchor's creation: only the updates written below are counted.
        let updates = EventFilter {
            types: vec![SessionEventType::Updated],
            ..EventFilter::default()
        };
        let mut stream = succeeds(&h, h.core.watch_session_events(&admin(), updates).await);
        let mut writers = Vec::new();
        for w in 0..50i64 {
            let url = h.backend.config.store_url();
            let session = anchor.id.as_str().to_owned();
            let user = user.id.as_str().to_owned();
            writers.push(tokio::spawn(async move {
                let mut conn = connect_to(&url).await;
                let mut tx = conn.begin().await.expect("begin");
                sqlx::query(RAW_EVENT)
                    .bind(&session)
                    .bind(100 + w)
                    .bind(&user)
                    .execute(&mut *tx)
                    .await
                    .expect("insert");
                // Commit in an order unrelated to the order ids were taken.
                tokio::time::sleep(Duration::from_millis(((w * 37) % 50) as u64 * 4)).await;
                tx.commit().await.expect("commit");
            }));
        }
        for writer in writers {
            writer.await.expect("writer");
        }
        let events = take(&h, &mut stream, 50).await;
        let mut sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
        let positions: Vec<_> = events
            .iter()
            .map(|e| sessiond::domain::FeedPosition::parse(&e.cursor).expect("cursor"))
            .collect();
        assert!(
            positions.windows(2).all(|p| p[0] < p[1]),
            "{h}: cursor order"
        );
        sequences.sort_unstable();
        assert_eq!(
            sequences,
            (100..150).collect::<Vec<u64>>(),
            "{h}: each once"
        );
        if let Ok(item) = tokio::time::timeout(Duration::from_millis(300), stream.next()).await {
            panic!("{h}: unexpected {item:?}");
        }
    }
}

#[tokio::test]
async fn a_delete_on_one_replica_reaches_a_subscriber_on_another_by_notify() {
    // Polling every minute: only a notification can be this fast.
    let settings = with_poll(Duration::from_secs(60));
    for h in postgres_only(harnesses_with(settings.clone()).await) {
        let b = replica(&h, settings.clone()).await;
        let user = h.user("ann@example.com").await;
        let filter = EventFilter {
            types: vec![SessionEventType::Terminated],
            ..EventFilter::default()
        };
        let mut stream = succeeds(&h, b.watch_session_events(&admin(), filter).await);
        // Let B's listener be in place (it wakes once when it is).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut worst = Duration::ZERO;
        for _ in 0..5 {
            let session = h.session_for(&user).await;
            h.delete(&session.id).await;
            let acknowledged = Instant::now();
            let event = take(&h, &mut stream, 1).await.remove(0);
            worst = worst.max(acknowledged.elapsed());
            assert_eq!(event.session_id, session.id.as_str(), "{h}");
        }
        assert!(
            worst < Duration::from_secs(1),
            "{h}: a revocation took {worst:?} to reach the other replica"
        );
    }
}

#[tokio::test]
async fn a_write_nobody_announces_reaches_a_subscriber_within_the_poll_interval() {
    let poll = Duration::from_millis(400);
    for h in postgres_only(harnesses_with(with_poll(poll)).await) {
        let user = h.user("ann@example.com").await;
        let session = h.session_for(&user).await;
        let updates = EventFilter {
            types: vec![SessionEventType::Updated],
            ..EventFilter::default()
        };
        let mut stream = succeeds(&h, h.core.watch_session_events(&admin(), updates).await);
        let mut conn = connect(&h).await;
        for n in 0..3i64 {
            // Written behind the store's back: no wake-up in process, no NOTIFY.
            let written = Instant::now();
            sqlx::query(RAW_EVENT)
                .bind(session.id.as_str())
                .bind(10 + n)
                .bind(user.id.as_str())
                .execute(&mut conn)
                .await
                .expect("insert");
            let event = take(&h, &mut stream, 1).await.remove(0);
            assert_eq!(event.sequence, 10 + n as u64, "{h}");
            let took = written.elapsed();
            assert!(
                took < poll + Duration::from_millis(600),
                "{h}: {took:?} with a poll interval of {poll:?}"
            );
        }
    }
}

#[tokio::test]
async fn the_listener_reconnects_after_its_connection_is_killed() {
    let settings = with_poll(Duration::from_secs(60));
    for h in postgres_only(harnesses_with(settings.clone()).await) {
        let b = replica(&h, settings.clone()).await;
        let user = h.user("ann@example.com").await;
        let filter = EventFilter {
            types: vec![SessionEventType::Terminated],
            ..EventFilter::default()
        };
        let mut stream = succeeds(&h, b.watch_session_events(&admin(), filter).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Every listening connection on the server (other tests' listeners reconnect too).
        let mut conn = connect(&h).await;
        let killed: Vec<(bool,)> = sqlx::query_as(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE query LIKE 'LISTEN %' AND datname = current_database() \
             AND pid <> pg_backend_pid()",
        )
        .fetch_all(&mut conn)
        .await
        .expect("terminating the listeners");
        assert!(!killed.is_empty(), "{h}: a listener was connected");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let session = h.session_for(&user).await;
        h.delete(&session.id).await;
        let acknowledged = Instant::now();
        let event = take(&h, &mut stream, 1).await.remove(0);
        assert_eq!(event.session_id, session.id.as_str(), "{h}");
        assert!(
            acknowledged.elapsed() < Duration::from_secs(2),
            "{h}: {:?} with a one-minute poll: the listener did not come back",
            acknowledged.elapsed()
        );
    }
}
