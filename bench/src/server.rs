//! Starting and stopping the servers under test, and the sessiond CLI steps that prepare a
//! data directory (`migrate`, `users add`, `token mint`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;

use crate::client;

pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A server process this bench started; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub pid: u32,
    pub log: PathBuf,
}

impl Server {
    /// Starts `program args…` with its output in `log`, and waits until `ready_path` answers 200.
    pub async fn start(
        program: &Path,
        args: &[String],
        port: u16,
        log: PathBuf,
        ready_path: &str,
    ) -> anyhow::Result<Self> {
        let out = std::fs::File::create(&log)?;
        let child = Command::new(program)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let pid = child.id();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut server = Self {
            child,
            addr,
            pid,
            log,
        };
        server.wait_ready(ready_path).await?;
        Ok(server)
    }

    async fn wait_ready(&mut self, path: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                anyhow::bail!("server exited with {status} before it was ready:\n{log}");
            }
            if let Ok(mut sender) = client::http_connect(self.addr).await {
                let request = http::Request::get(path)
                    .header(http::header::HOST, "127.0.0.1")
                    .body(Full::new(Bytes::new()))?;
                if let Ok(response) = sender.send_request(request).await
                    && response.status().is_success()
                {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                anyhow::bail!("server on {} not ready after 60 s", self.addr);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `sessiond <args…>` to completion (with `stdin` fed), returning its standard output.
pub fn sessiond(bin: &Path, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    let mut child = Command::new(bin)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {} {}", bin.display(), args.join(" ")))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        anyhow::bail!(
            "sessiond {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// A fresh data directory: migrated, with a JWT for the bench (subject `bench`, all session
/// permissions) minted from its embedded key.
pub fn prepare_data_dir(bin: &Path, dir: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir)?;
    let d = dir.to_string_lossy().into_owned();
    sessiond(bin, &["migrate", "--data-dir", &d], None)?;
    mint(
        bin,
        dir,
        "bench",
        "session.read,session.write,session.delete",
    )
}

/// `sessiond token mint`: a JWT for `subject` with `permissions` (comma-separated), valid for a
/// day, signed by the data directory's key.
pub fn mint(bin: &Path, dir: &Path, subject: &str, permissions: &str) -> anyhow::Result<String> {
    let d = dir.to_string_lossy().into_owned();
    sessiond(
        bin,
        &[
            "token",
            "mint",
            "--subject",
            subject,
            "--permissions",
            permissions,
            "--ttl",
            "24h",
            "--data-dir",
            &d,
        ],
        None,
    )
}

/// `sessiond users add`, returning the new user's id.
pub fn add_user(
    bin: &Path,
    dir: &Path,
    login: &str,
    password: Option<&str>,
) -> anyhow::Result<String> {
    let d = dir.to_string_lossy().into_owned();
    let mut args = vec!["users", "add", "--login-name", login, "--data-dir", &d];
    if password.is_some() {
        args.push("--password-stdin");
    }
    sessiond(bin, &args, password.map(|p| format!("{p}\n")).as_deref())
}
