//! Crash durability: clients create and delete sessions while the server is killed with
//! SIGKILL at a random moment; after a restart on the same data every acknowledged create is
//! there and every acknowledged delete is still a delete. Repeated, on SQLite and (when
//! configured) PostgreSQL. Prints how many acknowledged operations were checked.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};

use crate::backends::{postgres_schema_url, postgres_url};
use crate::process::{Server, process_bearer};

#[derive(Default)]
struct Acked {
    /// (session id, token) of creates the server answered 201.
    created: Vec<(String, String)>,
    /// Ids of deletes the server answered 200.
    deleted: Vec<String>,
    /// Ids of deletes sent without an answer: either outcome is right.
    unanswered: Vec<String>,
}

/// One client: creates sessions and deletes some of them until the server goes away.
async fn client(base: String, auth: String, acked: Arc<Mutex<Acked>>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let mut mine: Vec<String> = Vec::new();
    loop {
        let delete = !mine.is_empty() && rand::thread_rng().gen_bool(0.3);
        if delete {
            let id = mine.swap_remove(rand::thread_rng().gen_range(0..mine.len()));
            let response = http
                .delete(format!("{base}/v2/sessions/{id}"))
                .header("authorization", &auth)
                .json(&json!({}))
                .send()
                .await;
            match response {
                Ok(r) if r.status() == 200 => acked.lock().expect("acked").deleted.push(id),
                _ => {
                    acked.lock().expect("acked").unanswered.push(id);
                    return;
                }
            }
        } else {
            let Ok(response) = http
                .post(format!("{base}/v2/sessions"))
                .header("authorization", &auth)
                .json(&json!({"checks": {"user": {"loginName": "durable"}}, "metadata": {"k": "dg=="}}))
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
            let token = body["sessionToken"].as_str().unwrap_or_default().to_owned();
            acked
                .lock()
                .expect("acked")
                .created
                .push((id.clone(), token));
            mine.push(id);
        }
    }
}

async fn crash_and_check(name: &str, database_url: Option<String>) {
    let data_dir = tempfile::tempdir().expect("dir");
    let env: Vec<(&str, &str)> = database_url
        .as_deref()
        .map(|u| vec![("SESSIOND_DATABASE_URL", u)])
        .unwrap_or_default();
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut checked = 0usize;
    for round in 0..4 {
        let server = Server::start(data_dir.path(), &[], &env).await;
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
        if round == 0 {
            let user = http
                .post(server.url("/auth/admin/api/users"))
                .header("authorization", &auth)
                .json(&json!({"loginName": "durable", "password": "correct horse battery"}))
                .send()
                .await
                .expect("create user");
            assert_eq!(user.status(), 201);
        }
        // After a restart, everything acknowledged before is there (or still deleted).
        {
            let snapshot = {
                let a = acked.lock().expect("acked");
                (a.created.clone(), a.deleted.clone(), a.unanswered.clone())
            };
            for (id, token) in &snapshot.0 {
                let status = http
                    .get(server.url(&format!("/v2/sessions/{id}")))
                    .header("authorization", &auth)
                    .send()
                    .await
                    .expect("get")
                    .status()
                    .as_u16();
                if snapshot.2.contains(id) {
                    // A delete was sent but never answered: either outcome is right.
                    continue;
                }
                let expected = if snapshot.1.contains(id) { 404 } else { 200 };
                assert_eq!(
                    status, expected,
                    "{name} round {round}: session {id} after the crash"
                );
                let whoami = http
                    .get(server.url("/auth/sessions/whoami"))
                    .header("x-session-token", token)
                    .send()
                    .await
                    .expect("whoami")
                    .status()
                    .as_u16();
                assert_eq!(
                    whoami,
                    if expected == 200 { 200 } else { 401 },
                    "{name}: token of {id}"
                );
                checked += 1;
            }
        }
        let clients: Vec<_> = (0..6)
            .map(|_| tokio::spawn(client(server.base.clone(), auth.clone(), acked.clone())))
            .collect();
        let run_for = Duration::from_millis(rand::thread_rng().gen_range(200..800));
        tokio::time::sleep(run_for).await;
        server.kill().await;
        for c in clients {
            c.await.expect("client");
        }
    }
    let a = acked.lock().expect("acked");
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "durability[{name}]: 4 SIGKILLs, {} acknowledged creates and {} acknowledged deletes, {checked} checks after restarts",
        a.created.len(),
        a.deleted.len()
    );
    assert!(
        !a.created.is_empty() && !a.deleted.is_empty(),
        "{name}: the workload did nothing"
    );
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill_on_sqlite() {
    crash_and_check("sqlite", None).await;
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill_on_postgres() {
    let Some(base) = postgres_url() else { return };
    crash_and_check("postgres", Some(postgres_schema_url(&base).await)).await;
}
