//! Overload and shutdown of a real server process: far more concurrent requests than it can
//! serve are shed quickly in each face's shape, the accepted ones finish in bounded time,
//! memory stays bounded and service is back at once when the load drops; SIGTERM under load
//! finishes what was accepted and exits 0.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::process::{Server, process_bearer};

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

#[tokio::test]
async fn far_more_requests_than_capacity_are_shed_not_queued() {
    let data_dir = tempfile::tempdir().expect("dir");
    let server = Server::start(data_dir.path(), &["--max-concurrent-requests", "16"], &[]).await;
    let auth = process_bearer(
        data_dir.path(),
        "load",
        &[
            "session.read",
            "session.write",
            "session.delete",
            "user.write",
        ],
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .build()
        .expect("client");
    let user = http
        .post(server.url("/auth/admin/api/users"))
        .header("authorization", &auth)
        .json(&json!({"loginName": "popular", "password": "correct horse battery"}))
        .send()
        .await
        .expect("user");
    assert_eq!(user.status(), 201);
    let pid = server.child.id().expect("pid");
    let rss_before = peak_rss_kib(pid);

    // Password logins are slow on purpose (argon2id): 400 at once on a limit of 16.
    let served = Arc::new(AtomicUsize::new(0));
    let shed = Arc::new(AtomicUsize::new(0));
    let slowest = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    let mut tasks = Vec::new();
    for _ in 0..400 {
        let (http, auth, url) = (http.clone(), auth.clone(), server.url("/v2/sessions"));
        let (served, shed, slowest) = (served.clone(), shed.clone(), slowest.clone());
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let response = http
                .post(url)
                .header("authorization", auth)
                .json(&json!({"checks": {"user": {"loginName": "popular"}, "password": {"password": "correct horse battery"}}}))
                .send()
                .await
                .expect("request");
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.expect("json body");
            match status {
                201 => {
                    served.fetch_add(1, Ordering::Relaxed);
                    let mut s = slowest.lock().expect("slowest");
                    *s = (*s).max(started.elapsed());
                }
                503 | 429 => {
                    assert!(body["code"] == 8 || body["code"] == 14, "shed in the REST shape: {body}");
                    shed.fetch_add(1, Ordering::Relaxed);
                }
                other => panic!("unexpected status {other}: {body}"),
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let (served, shed) = (served.load(Ordering::Relaxed), shed.load(Ordering::Relaxed));
    let slowest = *slowest.lock().expect("slowest");
    assert!(served > 0 && shed > 0, "served {served}, shed {shed}");
    assert!(
        slowest < Duration::from_secs(10),
        "an accepted request took {slowest:?}"
    );
    let rss_after = peak_rss_kib(pid);
    assert!(rss_after < 256 * 1024, "peak RSS {rss_after} KiB");

    // Load gone: the next request is served at once.
    let started = Instant::now();
    let ok = http
        .post(server.url("/v2/sessions"))
        .header("authorization", &auth)
        .json(&json!({"checks": {"user": {"loginName": "popular"}}}))
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status(), 201);
    assert!(started.elapsed() < Duration::from_secs(2));
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "overload: 400 concurrent password logins on a limit of 16: {served} served (slowest {slowest:?}), {shed} shed; peak RSS {} → {} KiB",
        rss_before,
        rss_after
    );
    let _ = server.terminate().await;
}

#[tokio::test]
async fn sigterm_under_load_finishes_accepted_requests_and_exits_zero() {
    let data_dir = tempfile::tempdir().expect("dir");
    let server = Server::start(data_dir.path(), &["--shutdown-timeout", "20s"], &[]).await;
    let auth = process_bearer(
        data_dir.path(),
        "load",
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
        .json(&json!({"loginName": "leaving", "password": "correct horse battery"}))
        .send()
        .await
        .expect("user");
    assert_eq!(user.status(), 201);
    // Slow requests in flight (password checks queue behind each other).
    let mut in_flight = Vec::new();
    for _ in 0..8 {
        let (http, auth, url) = (http.clone(), auth.clone(), server.url("/v2/sessions"));
        in_flight.push(tokio::spawn(async move {
            http.post(url)
                .header("authorization", auth)
                .json(&json!({"checks": {"user": {"loginName": "leaving"}, "password": {"password": "correct horse battery"}}}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    // Let them reach the server before the signal.
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let base = server.base.clone();
    let data = data_dir.path().to_owned();
    let status = server.terminate().await;
    assert!(status.success(), "exit status {status:?}");
    let mut acknowledged = 0;
    for t in in_flight {
        if let Ok(201) = t.await.expect("task") {
            acknowledged += 1;
        }
    }
    assert!(acknowledged > 0, "no in-flight request was finished");
    // Refused after shutdown; and every acknowledged create is in the store.
    assert!(
        http.get(format!("{base}/healthz")).send().await.is_err(),
        "new requests are refused"
    );
    let store = sessiond::app::open_store(&sessiond::settings::Settings::for_test(&data))
        .await
        .expect("store");
    let live = store
        .count_live_sessions(sessiond::domain::Clock::now(&sessiond::domain::SystemClock))
        .await
        .expect("count");
    assert!(
        live >= acknowledged as u64,
        "{live} sessions stored, {acknowledged} acknowledged"
    );
}
