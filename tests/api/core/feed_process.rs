//! The session event feed survives SIGKILL: a real `sessiond serve` writes sessions, a client
//! notes a cursor from the server's REST list, the server is killed mid-write and restarted,
//! and the client's Server-Sent Events stream resumed from that cursor (`Last-Event-ID`) on the
//! restarted server brings every acknowledged session after it, once and in order: what the
//! table holds, read through a core on the server's SQLite file.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sessiond::core::{Core, CoreSettings, PasswordHasher};
use sessiond::domain::{Clock, EventFilter, SessionEventType, SystemClock};
use sessiond::settings::Settings;

use crate::feed_faces::{Incoming, next_sse_event, open_sse};
use crate::process::{Server, process_bearer};

/// Creates sessions until the server stops answering; records the acknowledged ids.
async fn create_until_gone(base: String, auth: String, acked: Arc<Mutex<Vec<String>>>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    loop {
        let Ok(response) = http
            .post(format!("{base}/v2/sessions"))
            .header("authorization", &auth)
            .json(&json!({"checks": {"user": {"loginName": "durable"}}}))
            .send()
            .await
        else {
            return;
        };
        if response.status() != 201 {
            return;
        }
        let Ok(body) = response.json::<Value>().await else {
            return;
        };
        let id = body["sessionId"].as_str().unwrap_or_default().to_owned();
        acked.lock().expect("acked").push(id);
    }
}

async fn reader(data_dir: &std::path::Path) -> Core {
    let store = sessiond::app::open_store(&Settings::for_test(data_dir))
        .await
        .expect("opening the server's SQLite file");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let hasher = PasswordHasher::new(1024, 1, 4).expect("argon2 parameters");
    Core::new(store, clock, hasher, CoreSettings::default())
}

#[tokio::test]
async fn events_acknowledged_before_a_sigkill_are_all_there_after_a_restart() {
    let data_dir = tempfile::tempdir().expect("dir");
    let server = Server::start(data_dir.path(), &[], &[]).await;
    let auth = process_bearer(
        data_dir.path(),
        "chaos",
        &[
            "session.read",
            "session.write",
            "session.delete",
            "user.write",
        ],
    );
    let http = reqwest::Client::new();
    let user = http
        .post(server.url("/auth/admin/api/users"))
        .header("authorization", &auth)
        .json(&json!({"loginName": "durable", "password": "correct horse battery"}))
        .send()
        .await
        .expect("create user");
    assert_eq!(user.status(), 201);
    let before = Arc::new(Mutex::new(Vec::new()));
    let first = tokio::spawn(create_until_gone(
        server.base.clone(),
        auth.clone(),
        before.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A client of the server notes where it is.
    let admin = super::admin();
    let page: Value = http
        .get(server.url("/v1/session-events?after=0&limit=1000"))
        .header("authorization", &auth)
        .send()
        .await
        .expect("listing")
        .json()
        .await
        .expect("a page");
    let listed = page["events"].as_array().cloned().unwrap_or_default();
    let cursor = listed
        .last()
        .and_then(|e| e["cursor"].as_str())
        .expect("some events already")
        .to_owned();
    let seen: HashSet<String> = listed
        .iter()
        .filter_map(|e| e["sessionId"].as_str().map(str::to_owned))
        .collect();

    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill().await;
    first.await.expect("client");
    let acknowledged = before.lock().expect("acked").clone();
    assert!(
        acknowledged.len() > seen.len(),
        "the server wrote after the cursor"
    );

    // Restart on the same file; it serves again, and the feed resumes from the cursor.
    let server = Server::start(data_dir.path(), &[], &[]).await;
    let core = reader(data_dir.path()).await;
    let mut stream = Incoming::new(
        open_sse(
            &http,
            &server.url("/v1/session-events?types=added"),
            &[("authorization", &auth), ("last-event-id", &cursor)],
        )
        .await,
    );
    let expected: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !seen.contains(*id))
        .collect();
    // Anything written but not acknowledged before the kill may be there too; nothing is
    // written since, so the acknowledged ones are a subsequence of what follows.
    let mut stored: Vec<String> = Vec::new();
    let mut next = String::new();
    loop {
        let page = core
            .list_session_events(
                &admin,
                EventFilter {
                    after: Some(next.clone()),
                    types: vec![SessionEventType::Added],
                    limit: Some(1000),
                    ..EventFilter::default()
                },
            )
            .await
            .expect("listing");
        if page.events.is_empty() {
            break;
        }
        next = page.next_cursor;
        stored.extend(
            page.events
                .into_iter()
                .map(|e| e.session_id)
                .filter(|id| !seen.contains(id)),
        );
    }
    let mut resumed: Vec<String> = Vec::new();
    while resumed.len() < stored.len() {
        let event = next_sse_event(&mut stream)
            .await
            .expect("the resumed stream goes on");
        assert_eq!(event.event, "session.added");
        resumed.push(
            event.data["sessionId"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert_eq!(
        resumed, stored,
        "the watch from the cursor reads what the list does"
    );
    let resumed: HashSet<&String> = resumed.iter().collect();
    for id in &expected {
        assert!(
            resumed.contains(id),
            "acknowledged session {id} is in the feed after the restart"
        );
    }
    assert!(
        stored.len() <= expected.len() + 1,
        "at most one unacknowledged write per client"
    );
    drop(server);
}

#[tokio::test]
async fn a_server_shutting_down_ends_its_feed_streams_with_feed_shutdown() {
    use futures_util::StreamExt;
    let mut app = crate::helpers::spawn_app().await;
    let mut stream = app
        .core
        .watch_session_events(&super::admin(), EventFilter::default())
        .await
        .expect("watching");
    let server = app.trigger_shutdown();
    let item = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the stream ends as soon as shutdown starts");
    let error = item.expect("an item").expect_err("an error");
    assert_eq!(error.id(), sessiond::domain::error_ids::FEED_SHUTDOWN);
    assert!(stream.next().await.is_none(), "then nothing");
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve returns")
        .expect("no panic")
        .expect("serve succeeded");
}
