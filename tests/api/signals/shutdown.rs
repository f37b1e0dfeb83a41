//! Signals across a graceful shutdown: a push target's worker stores how far its receiver
//! took the event log before the server exits, and gives its lease back, so a restart sends
//! nothing again and another replica takes over at once. (A crash is `processes.rs`.)

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sessiond::domain::{FeedPosition, SessionEventType};
use sessiond::settings::Settings;
use sessiond::store::FeedQuery;
use sessiond::store::signals::{DynSignalStore, PgSignalStore, SqliteSignalStore, TargetKind};

use super::*;

/// The signals' own store on the app's database.
fn signal_store(settings: &Settings) -> DynSignalStore {
    let url = settings.store_url();
    if settings.is_postgres() {
        Arc::new(PgSignalStore::connect(&url, Duration::from_secs(5)).expect("the signal store"))
    } else {
        Arc::new(SqliteSignalStore::connect(&url).expect("the signal store"))
    }
}

/// The revocations after the stream's stored cursor: what a restart would send.
async fn unsent(app: &TestApp, store: &DynSignalStore) -> usize {
    let streams = store
        .targets(Some(TargetKind::Stream))
        .await
        .expect("the streams");
    assert_eq!(streams.len(), 1);
    let cursor = FeedPosition::parse(&streams[0].cursor).expect("a cursor");
    app.core
        .store()
        .feed_events(&FeedQuery {
            after: cursor,
            user_id: None,
            types: vec![SessionEventType::Terminated],
            limit: 100,
        })
        .await
        .expect("the event log")
        .rows
        .len()
}

/// Polls `done` every 5 ms, for at most 10 s.
async fn soon<F: Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    for _ in 0..2000 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("waited 10 s for {what}");
}

#[tokio::test]
async fn a_graceful_shutdown_stores_each_receivers_progress_so_a_restart_sends_nothing_again() {
    let mut settings = None;
    let mut app = signals_app_with(|s| settings = Some(s.clone())).await;
    let store = signal_store(&settings.expect("the settings"));
    let Some(receiver) = receiver(&app) else {
        return;
    };
    push_stream(&app, &receiver, "stopped", &[SESSION_REVOKED]).await;
    receiver.wait_for("stopped", 1).await;
    let ann = app.add_user("ann").await;
    let mut sessions = Vec::new();
    for _ in 0..6 {
        sessions.push(app.create_session_for(&ann).await.session_id);
    }
    let taken = |n: usize| {
        let receiver = &receiver;
        move || async move { receiver.received().await["stopped"].len() >= n }
    };
    // The worker stores its cursor at most every 250 ms: once it stored it past the first
    // revocation, the next ones are taken by the receiver well before it stores it again,
    // and the shutdown comes in between.
    admin_revoke(&app, ann.id.as_str(), &sessions[0]).await;
    soon("the first revocation's cursor", || async {
        unsent(&app, &store).await == 0
    })
    .await;
    for session in &sessions[1..] {
        admin_revoke(&app, ann.id.as_str(), session).await;
    }
    soon(
        "every revocation at the receiver",
        taken(1 + sessions.len()),
    )
    .await;

    let server = app.trigger_shutdown();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops")
        .expect("the server task did not panic")
        .expect("the server ended cleanly");

    // A restart continues after the stored cursor: nothing the receiver took is after it.
    assert_eq!(unsent(&app, &store).await, 0, "sent again after a restart");
    // The lease was given back: another replica takes the stream at once.
    let stream = &store
        .targets(Some(TargetKind::Stream))
        .await
        .expect("the streams")[0];
    let now = app.now();
    let leased = store
        .lease(
            TargetKind::Stream,
            &stream.id,
            "another replica",
            now,
            now.saturating_add(Duration::from_secs(15)),
        )
        .await
        .expect("a lease");
    assert!(leased, "the stopped server still holds the stream's lease");
    let got = receiver
        .received()
        .await
        .remove("stopped")
        .unwrap_or_default();
    assert_eq!(revoked_sessions(&got), sessions, "each once: {got:#?}");
}
