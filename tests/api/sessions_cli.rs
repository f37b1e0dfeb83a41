//! `sessiond sessions list|show|revoke` run as the real binary against a data directory
//! holding sessions, also while a server serves the same directory; and logs written to a
//! pipe carry no colour escape codes.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sessiond::core::{
    Checks, Core, CoreSettings, CreateSession, NewUser, PasswordHasher, UserLookup,
};
use sessiond::domain::{LoginName, ManualClock, Principal, SessionId, UserId};
use sessiond::settings::Settings;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::backends::clock;
use crate::process::Server;

fn sessiond(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("running sessiond")
}

/// Runs a command that must succeed and returns its stdout.
#[track_caller]
fn ok(data_dir: &Path, args: &[&str]) -> String {
    let out = sessiond(data_dir, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command that must fail with exit code 1 and returns its stderr.
#[track_caller]
fn fails(data_dir: &Path, args: &[&str]) -> String {
    let out = sessiond(data_dir, args);
    assert_eq!(out.status.code(), Some(1), "{args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

fn ids(sessions: &[Value]) -> Vec<String> {
    sessions
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_owned())
        .collect()
}

/// A data directory with alice's three sessions (the middle one expired) and bob's one,
/// each a second newer than the one before.
struct Fixture {
    dir: tempfile::TempDir,
    core: Core,
    alice: UserId,
    bob: UserId,
    /// alice's, oldest first: live, expired, live.
    alices: Vec<SessionId>,
    bobs: SessionId,
    /// The session tokens, by session id.
    tokens: Vec<(SessionId, String)>,
}

async fn core_on(dir: &Path, clock: ManualClock) -> Core {
    let store = sessiond::app::open_store(&Settings::for_test(dir))
        .await
        .expect("store");
    Core::new(
        store,
        Arc::new(clock),
        PasswordHasher::new(1024, 1, 1).expect("hasher"),
        CoreSettings::default(),
    )
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("dir");
    let clock = clock();
    let core = core_on(dir.path(), clock.clone()).await;
    let user = |name: &'static str| {
        let core = core.clone();
        async move {
            core.add_user(NewUser {
                login_name: LoginName::parse(name).expect("name"),
                display_name: None,
                organization_id: None,
                password: None,
            })
            .await
            .expect("user")
            .id
        }
    };
    let alice = user("alice@example.com").await;
    let bob = user("bob@example.com").await;
    let mut tokens = Vec::new();
    let mut session = async |user: &UserId, lifetime: Option<Duration>| {
        clock.advance(Duration::from_secs(1));
        let created = core
            .create_session(
                &Principal::system(),
                CreateSession {
                    checks: Checks {
                        user: Some(UserLookup::Id(user.clone())),
                        ..Default::default()
                    },
                    lifetime,
                    ..Default::default()
                },
            )
            .await
            .expect("create");
        let token = created.token.expect("token").expose().to_owned();
        tokens.push((created.session_id.clone(), token));
        created.session_id
    };
    let a1 = session(&alice, None).await;
    let a2 = session(&alice, Some(Duration::from_secs(60))).await;
    let a3 = session(&alice, None).await;
    let bobs = session(&bob, None).await;
    Fixture {
        dir,
        core,
        alice,
        bob,
        alices: vec![a1, a2, a3],
        bobs,
        tokens,
    }
}

impl Fixture {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn token(&self, id: &SessionId) -> &str {
        &self.tokens.iter().find(|(s, _)| s == id).expect("token").1
    }

    async fn terminations(&self, id: &SessionId) -> Vec<Value> {
        self.core
            .store()
            .session_events(id)
            .await
            .expect("events")
            .into_iter()
            .filter(|e| e.event_type == "session.terminated")
            .map(|e| e.payload)
            .collect()
    }
}

#[tokio::test]
async fn sessions_list_prints_an_aligned_table_newest_first() {
    let f = fixture().await;
    let out = ok(f.path(), &["sessions", "list"]);
    let lines: Vec<&str> = out.lines().collect();
    let header = lines[0];
    for column in [
        "ID",
        "USER",
        "LOGIN",
        "CREATED",
        "LAST ACTIVE",
        "EXPIRES",
        "STATE",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let state_at = header.find("STATE").expect("STATE");
    let login_at = header.find("LOGIN").expect("LOGIN");
    // Every live session, newest first, each cell under its heading.
    let expected = [
        (&f.bobs, "bob@example.com", "active"),
        (&f.alices[2], "alice@example.com", "active"),
        (&f.alices[1], "alice@example.com", "expired"),
        (&f.alices[0], "alice@example.com", "active"),
    ];
    assert_eq!(lines.len(), 1 + expected.len(), "{out}");
    for (line, (id, login, state)) in lines[1..].iter().zip(expected) {
        assert!(line.starts_with(id.as_str()), "{out}");
        assert_eq!(line[login_at..].split(' ').next(), Some(login), "{out}");
        assert_eq!(&line[state_at..], state, "{out}");
    }
}

#[tokio::test]
async fn sessions_list_filters_by_user_login_and_activity_as_json_lines() {
    let f = fixture().await;
    let alice = f.alice.as_str();
    let all = json_lines(&ok(
        f.path(),
        &["sessions", "list", "--json", "--user", alice],
    ));
    let newest_first: Vec<String> = f.alices.iter().rev().map(|s| s.to_string()).collect();
    assert_eq!(ids(&all), newest_first);
    assert_eq!(all[0]["loginName"], "alice@example.com");
    assert_eq!(all[0]["userId"], alice);
    assert_eq!(all[1]["state"], "expired");
    assert_eq!(all[0]["sequence"], 1);

    let by_login = json_lines(&ok(
        f.path(),
        &["sessions", "list", "--json", "--login", "bob@example.com"],
    ));
    assert_eq!(ids(&by_login), vec![f.bobs.to_string()]);
    assert_eq!(by_login[0]["userId"], f.bob.as_str());

    let active = json_lines(&ok(
        f.path(),
        &["sessions", "list", "--json", "--active", "--user", alice],
    ));
    assert_eq!(
        ids(&active),
        vec![f.alices[2].to_string(), f.alices[0].to_string()]
    );
    let everyone_active = json_lines(&ok(f.path(), &["sessions", "list", "--json", "--active"]));
    assert_eq!(everyone_active.len(), 3);
    assert!(everyone_active.iter().all(|s| s["state"] == "active"));

    let unknown = fails(
        f.path(),
        &["sessions", "list", "--login", "nobody@example.com"],
    );
    assert!(unknown.contains("no user with login name"), "{unknown}");
}

#[tokio::test]
async fn sessions_list_pages_with_the_printed_token() {
    let f = fixture().await;
    let alice = f.alice.as_str();
    for user in [&["--user", alice][..], &[][..]] {
        let mut args = vec!["sessions", "list", "--limit", "2"];
        args.extend_from_slice(user);
        let first = ok(f.path(), &args);
        let last = first.lines().last().expect("a line");
        let token = last
            .strip_prefix("next page: --page-token ")
            .unwrap_or_else(|| panic!("no page token: {first}"));
        assert_eq!(first.lines().count(), 1 + 2 + 1, "{first}");
        args.extend_from_slice(&["--page-token", token]);
        let second = ok(f.path(), &args);
        assert!(!second.contains("next page"), "{second}");
        let rows = second.lines().count() - 1;
        assert_eq!(rows, if user.is_empty() { 2 } else { 1 }, "{second}");
    }
}

/// A reader that stops early (`sessiond users list | head -1`) ends the command quietly: exit
/// status 0 and no panic message, for every command that prints to stdout.
#[tokio::test]
async fn a_closed_stdout_ends_printing_commands_quietly() {
    let f = fixture().await;
    let session = f.alices[0].as_str().to_owned();
    let alice = f.alice.as_str().to_owned();
    let commands: [&[&str]; 5] = [
        &["users", "list"],
        &["users", "show", &alice],
        &["sessions", "list"],
        &["sessions", "list", "--json"],
        &["sessions", "show", &session],
    ];
    for args in commands {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_sessiond"))
            .args(args)
            .arg("--data-dir")
            .arg(f.path())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("running sessiond");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn sessions_show_prints_one_session_in_full() {
    let f = fixture().await;
    let id = f.alices[1].as_str();
    let text = ok(f.path(), &["sessions", "show", id]);
    for line in [
        format!("id:            {id}"),
        format!("user id:       {}", f.alice),
        "login name:    alice@example.com".to_owned(),
        "state:         expired".to_owned(),
        "terminated at: -".to_owned(),
        "sequence:      1".to_owned(),
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
    }
    for field in [
        "created:",
        "last change:",
        "expires:",
        "user agent:",
        "ip:",
        "metadata keys:",
    ] {
        assert!(text.contains(field), "{field} in\n{text}");
    }
    let json: Value =
        serde_json::from_str(&ok(f.path(), &["sessions", "show", id, "--json"])).expect("json");
    assert_eq!(json["id"], id);
    assert_eq!(json["state"], "expired");
    assert!(json["expires"].is_string());

    let missing = fails(f.path(), &["sessions", "show", "123456789"]);
    assert!(
        missing.contains("no session with id 123456789"),
        "{missing}"
    );
}

#[tokio::test]
async fn sessions_revoke_ends_one_session_once_with_one_event() {
    let f = fixture().await;
    let id = &f.alices[0];
    let first = ok(f.path(), &["sessions", "revoke", id.as_str()]);
    assert!(
        first.starts_with(&format!("session {id} revoked")),
        "{first}"
    );
    let session = f
        .core
        .store()
        .session(id)
        .await
        .expect("read")
        .expect("kept");
    assert!(session.terminated_at.is_some());
    assert_eq!(session.sequence, 2);
    let events = f.terminations(id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["reason"], "revoked_by_operator");

    let again = ok(f.path(), &["sessions", "revoke", id.as_str()]);
    assert!(again.contains("was already ended"), "{again}");
    assert_eq!(f.terminations(id).await.len(), 1);
    let shown = ok(f.path(), &["sessions", "show", id.as_str()]);
    assert!(shown.contains("state:         terminated"), "{shown}");

    let missing = fails(f.path(), &["sessions", "revoke", "123456789"]);
    assert!(
        missing.contains("no session with id 123456789"),
        "{missing}"
    );
}

#[tokio::test]
async fn sessions_revoke_user_ends_all_live_sessions_but_the_one_kept() {
    let f = fixture().await;
    let keep = f.alices[2].as_str();
    let out = ok(
        f.path(),
        &[
            "sessions",
            "revoke",
            "--user",
            f.alice.as_str(),
            "--except",
            keep,
        ],
    );
    assert_eq!(
        out.trim(),
        format!("2 session(s) of user {} ended", f.alice)
    );
    let after = json_lines(&ok(
        f.path(),
        &["sessions", "list", "--json", "--user", f.alice.as_str()],
    ));
    let states: Vec<&str> = after
        .iter()
        .map(|s| s["state"].as_str().expect("state"))
        .collect();
    assert_eq!(states, ["active", "terminated", "terminated"]);
    for id in &f.alices[..2] {
        assert_eq!(f.terminations(id).await.len(), 1);
    }
    assert!(f.terminations(&f.bobs).await.is_empty());
    let again = ok(
        f.path(),
        &["sessions", "revoke", "--user", f.alice.as_str()],
    );
    assert_eq!(
        again.trim(),
        format!("1 session(s) of user {} ended", f.alice)
    );
}

#[tokio::test]
async fn a_revocation_from_the_command_line_takes_effect_on_a_running_server_at_once() {
    let f = fixture().await;
    let server = Server::start(f.path(), &[], &[]).await;
    let http = reqwest::Client::new();
    let whoami = async |id: &SessionId| {
        http.get(server.url("/auth/sessions/whoami"))
            .header("x-session-token", f.token(id))
            .send()
            .await
            .expect("whoami")
            .status()
            .as_u16()
    };
    assert_eq!(whoami(&f.bobs).await, 200);
    ok(f.path(), &["sessions", "revoke", f.bobs.as_str()]);
    assert_eq!(whoami(&f.bobs).await, 401);
    assert_eq!(whoami(&f.alices[0]).await, 200);
    ok(
        f.path(),
        &["sessions", "revoke", "--user", f.alice.as_str()],
    );
    assert_eq!(whoami(&f.alices[0]).await, 401);
    server.kill().await;
}

#[tokio::test]
async fn text_logs_written_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().expect("dir");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting sessiond");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut log = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("reading the log") {
            let listening = line.contains("listening");
            log.push(line);
            if listening {
                return;
            }
        }
        panic!("sessiond exited before listening: {log:?}");
    })
    .await
    .expect("sessiond did not start listening within 30 s");
    child.kill().await.expect("SIGKILL");
    let text = log.join("\n");
    assert!(text.contains("INFO"), "{text}");
    assert!(!text.contains("\x1b["), "{text:?}");
}
