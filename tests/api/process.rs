//! `sessiond serve` as a child process: started on an OS-chosen port (read from its JSON
//! "listening" log line), its whole log kept, killed with SIGKILL or stopped with SIGTERM.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct Server {
    pub base: String,
    pub child: Child,
    /// Every log line so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `sessiond serve` with `data_dir`, extra arguments and environment.
    pub async fn start(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sessiond"));
        command
            .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("starting sessiond");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let address = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("reading the log") {
                let address = serde_json::from_str::<Value>(&line)
                    .ok()
                    .and_then(|entry| entry["fields"]["address"].as_str().map(str::to_owned));
                log.lock().expect("log").push(line);
                if let Some(address) = address {
                    return address;
                }
            }
            panic!(
                "sessiond exited before listening: {:?}",
                log.lock().expect("log")
            );
        })
        .await
        .expect("sessiond did not start listening within 30 s");
        let keep = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                keep.lock().expect("log").push(line);
            }
        });
        Server {
            base: format!("http://{address}"),
            child,
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGKILL: no chance to flush or finish anything.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL");
    }

    /// SIGTERM, then wait for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("pid");
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("kill");
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("sessiond did not exit within 30 s of SIGTERM")
            .expect("exit status")
    }

    pub fn log_text(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }
}

/// `Bearer <JWT>` for a server process, signed with the embedded key in its data directory
/// by the wall clock (the process runs on real time), valid for ten minutes.
pub fn process_bearer(data_dir: &Path, subject: &str, permissions: &[&str]) -> String {
    let key = sessiond::auth::EmbeddedKey::load(data_dir).expect("the embedded key");
    let settings = sessiond::auth::JwtSettings {
        issuer: "sessiond".into(),
        audience: "sessiond".into(),
    };
    let permissions: Vec<String> = permissions.iter().map(|p| p.to_string()).collect();
    let now = sessiond::domain::Clock::now(&sessiond::domain::SystemClock);
    let jwt = sessiond::auth::mint(
        &key,
        &settings,
        subject,
        &permissions,
        Duration::from_secs(600),
        now,
    )
    .expect("minting a JWT");
    format!("Bearer {jwt}")
}
