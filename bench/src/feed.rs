//! `sessiond-bench feed`: how fast a revocation reaches the event feed's subscribers, and what
//! subscribers cost. In process, on sessiond's core (the feed's own faces are measured by
//! the protocol benches): one node on SQLite with 1, 1,000 and 10,000 subscribers, and, with
//! `--postgres`, two replicas on one PostgreSQL database (delete on A, subscriber on B), a
//! database the run creates on that server and drops at its end.
//!
//! - Latency: sessions are deleted one at a time, 5 ms apart (so the figure is the feed's, not
//!   a queue's); for each, from the moment DeleteSession returned to the moment each
//!   subscriber holds the `session.terminated` event (0 if it held it before the return).
//! - Throughput: 32 DeleteSession calls in flight until a pool of sessions is gone, in two
//!   scenarios, each against the same deletes with no subscriber, in rounds of without and
//!   with subscribers, each round in the opposite order to the one before (medians
//!   reported): 1,000 subscribers each following every event (one user's sessions), and
//!   1,000 per-user subscribers, each watching one of 1,000 users whose sessions the deletes
//!   are spread over. Each subscriber
//!   does with what it gets what the SSE face does before the socket: takes a batch and asks
//!   for its Server-Sent Events chunk (made once per batch and shared); the copy of those
//!   bytes into a socket is the kernel's work and is not in these figures.
//! - Memory: resident set growth of this process per idle subscriber (10,000 of them).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use sessiond::core::{Checks, Core, CreateSession, Encoding, NewUser, PasswordHasher, UserLookup};
use sessiond::domain::{
    Clock, EventFilter, LoginName, Principal, SessionEventType, SessionId, SystemClock,
};
use sessiond::settings::Settings;
use tokio::task::JoinHandle;

use crate::procfs;

/// Deletes in flight in the throughput runs.
const DELETERS: usize = 32;
/// Time between two deletes of a latency run.
const SPACING: Duration = Duration::from_millis(5);

#[derive(Clone, Debug, serde::Serialize)]
pub struct LatencyRow {
    pub setup: String,
    pub subscribers: usize,
    pub revocations: usize,
    pub deliveries: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct FeedReport {
    pub latency: Vec<LatencyRow>,
    /// All-events scenario: one user's sessions, 1,000 subscribers of every event; one
    /// figure per round.
    pub deletes_per_s_without: Vec<f64>,
    pub deletes_per_s_with_1000: Vec<f64>,
    /// Per-user scenario: sessions spread over 1,000 users, one subscriber per user.
    pub per_user_deletes_per_s_without: Vec<f64>,
    pub per_user_deletes_per_s_with_1000: Vec<f64>,
    pub bytes_per_idle_subscriber: f64,
}

/// One node: a core over a fresh store.
async fn node(settings: &Settings) -> anyhow::Result<Core> {
    let store = sessiond::app::open_store(settings).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Ok(Core::new(
        store,
        clock,
        PasswordHasher::new(1024, 1, 2)?,
        sessiond::app::core_settings(settings),
    ))
}

fn settings_in(dir: &std::path::Path, database_url: Option<String>) -> Settings {
    Settings {
        database_url: database_url.map(Into::into),
        feed_max_subscribers: 20_000,
        ..Settings::for_test(dir)
    }
}

async fn sessions(core: &Core, checks: &Checks, n: usize) -> anyhow::Result<Vec<SessionId>> {
    sessions_over(core, std::slice::from_ref(checks), n).await
}

/// `n` sessions, taking `checks` (one per user) in turn.
async fn sessions_over(core: &Core, checks: &[Checks], n: usize) -> anyhow::Result<Vec<SessionId>> {
    let principal = Principal::system();
    let mut out = Vec::with_capacity(n);
    for checks in checks.iter().cycle().take(n) {
        let created = core
            .create_session(
                &principal,
                CreateSession {
                    checks: checks.clone(),
                    ..CreateSession::default()
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("creating a session: {e}"))?;
        out.push(created.session_id);
    }
    Ok(out)
}

/// Subscribers to terminations, each recording when it held each of `wanted` (by index).
struct Subscribers {
    tasks: Vec<JoinHandle<Vec<(usize, Instant)>>>,
}

/// What a subscriber does with the events it gets.
#[derive(Clone)]
enum Consumer {
    /// Notes when it held each of these sessions' terminations (by index), until it has all.
    Latency(Arc<HashMap<String, usize>>),
    /// What the SSE face does before writing to its socket: takes the batch's chunk and reads
    /// it; until the stream ends.
    Face,
}

async fn subscribe(core: &Core, n: usize, consumer: Consumer) -> anyhow::Result<Subscribers> {
    subscribe_to(core, &vec![None; n], consumer).await
}

/// One subscriber to terminations per entry of `users`: of that user, or of every user.
async fn subscribe_to(
    core: &Core,
    users: &[Option<String>],
    consumer: Consumer,
) -> anyhow::Result<Subscribers> {
    let principal = Principal::system();
    let mut tasks = Vec::with_capacity(users.len());
    for user in users {
        let filter = EventFilter {
            user_id: user.clone(),
            types: vec![SessionEventType::Terminated],
            ..EventFilter::default()
        };
        let mut stream = core
            .watch_session_event_batches(&principal, filter)
            .await
            .map_err(|e| anyhow::anyhow!("subscribing: {e}"))?;
        let consumer = consumer.clone();
        tasks.push(tokio::spawn(async move {
            let mut held = Vec::new();
            match consumer {
                Consumer::Latency(wanted) => {
                    while held.len() < wanted.len() {
                        let Some(Ok(events)) = stream.next().await else {
                            break;
                        };
                        let at = Instant::now();
                        for event in events.iter() {
                            if let Some(&i) = wanted.get(&event.session_id) {
                                held.push((i, at));
                            }
                        }
                    }
                }
                Consumer::Face => {
                    let mut bytes = 0usize;
                    while let Some(Ok(events)) = stream.next().await {
                        let chunk = events
                            .encoded(Encoding::Sse, sessiond::faces::sse::frame)
                            .unwrap_or_default();
                        // The socket's copy of the bytes is the kernel's cost, not the feed's.
                        bytes += chunk.len() + usize::from(chunk.last() == Some(&b'\n'));
                    }
                    std::hint::black_box(bytes);
                }
            }
            held
        }));
    }
    Ok(Subscribers { tasks })
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Deletes `ids` on `writer` one at a time while `subscribers` (on `reader`'s feed) follow.
async fn latency(
    setup: &str,
    writer: &Core,
    reader: &Core,
    checks: &Checks,
    subscribers: usize,
    revocations: usize,
) -> anyhow::Result<LatencyRow> {
    let ids = sessions(writer, checks, revocations).await?;
    let wanted: Arc<HashMap<String, usize>> = Arc::new(
        ids.iter()
            .enumerate()
            .map(|(i, id)| (id.as_str().to_owned(), i))
            .collect(),
    );
    let subs = subscribe(reader, subscribers, Consumer::Latency(wanted)).await?;
    // Let every subscriber reach its first wait, and a replica's listener connect.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let principal = Principal::system();
    let mut acks = Vec::with_capacity(ids.len());
    for id in &ids {
        writer
            .delete_session(&principal, id, None)
            .await
            .map_err(|e| anyhow::anyhow!("deleting: {e}"))?;
        acks.push(Instant::now());
        tokio::time::sleep(SPACING).await;
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut deliveries = 0u64;
    for task in subs.tasks {
        let held = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .context("a subscriber did not get every revocation within 60 s")??;
        for (i, at) in held {
            let us = at.saturating_duration_since(acks[i]).as_micros();
            hist.record(u64::try_from(us).unwrap_or(u64::MAX).max(1))?;
            deliveries += 1;
        }
    }
    Ok(LatencyRow {
        setup: setup.to_owned(),
        subscribers,
        revocations,
        deliveries,
        p50_ms: ms(hist.value_at_quantile(0.5)),
        p99_ms: ms(hist.value_at_quantile(0.99)),
        max_ms: ms(hist.max()),
    })
}

/// DeleteSession calls per second, `DELETERS` in flight, over `n` sessions.
async fn delete_rate(core: &Core, checks: &[Checks], n: usize) -> anyhow::Result<f64> {
    let ids = sessions_over(core, checks, n).await?;
    let queue = Arc::new(std::sync::Mutex::new(ids));
    let started = Instant::now();
    let mut workers: Vec<JoinHandle<anyhow::Result<()>>> = Vec::new();
    for _ in 0..DELETERS {
        let (core, queue) = (core.clone(), queue.clone());
        workers.push(tokio::spawn(async move {
            let principal = Principal::system();
            loop {
                let next = queue.lock().map(|mut q| q.pop()).ok().flatten();
                let Some(id) = next else { return Ok(()) };
                core.delete_session(&principal, &id, None)
                    .await
                    .map_err(|e| anyhow::anyhow!("deleting: {e}"))?;
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Rounds of each throughput comparison. Each round measures without and with subscribers,
/// in the opposite order to the round before (without–with, then with–without, …): the
/// database grows and the machine drifts during a run, and a fixed order would charge that
/// drift to whichever side always comes second.
const ROUNDS: usize = 4;

/// DeleteSession calls per second over `n` sessions of `checks`' users, in [`ROUNDS`] rounds
/// of no subscriber and one per entry of `users`, in alternating order: each round's figure,
/// without and with.
async fn compare(
    core: &Core,
    label: &str,
    checks: &[Checks],
    users: &[Option<String>],
    n: usize,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        for subscribed in if round % 2 == 1 {
            [false, true]
        } else {
            [true, false]
        } {
            if !subscribed {
                eprintln!("feed: DeleteSession throughput, {label}: round {round}, without");
                without.push(delete_rate(core, checks, n).await?);
                continue;
            }
            eprintln!("feed: DeleteSession throughput, {label}: round {round}, with");
            let subs = subscribe_to(core, users, Consumer::Face).await?;
            with.push(delete_rate(core, checks, n).await?);
            for task in subs.tasks {
                task.abort();
            }
            // The subscribers go before the next measurement.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok((without, with))
}

/// The median of `figures` (the mean of the middle two for an even count; 0 when empty).
pub(crate) fn median(figures: &[f64]) -> f64 {
    let mut sorted = figures.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn rounds(figures: &[f64]) -> String {
    figures
        .iter()
        .map(|f| format!("{f:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Resident set growth per idle subscriber, over `n` of them.
async fn idle_cost(core: &Core, n: usize) -> anyhow::Result<f64> {
    let pid = std::process::id();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = procfs::rss(pid);
    let subs = subscribe(core, n, Consumer::Face).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = procfs::rss(pid);
    for task in subs.tasks {
        task.abort();
    }
    Ok(after.saturating_sub(before) as f64 / n as f64)
}

pub async fn run(
    counts: &[usize],
    revocations: usize,
    throughput_sessions: usize,
    postgres: Option<String>,
) -> anyhow::Result<FeedReport> {
    let dir = tempfile_dir()?;
    let settings = settings_in(&dir, None);
    let core = node(&settings).await?;
    let user = core
        .add_user(NewUser {
            login_name: LoginName::parse("feed-bench").map_err(|e| anyhow::anyhow!("{e}"))?,
            display_name: None,
            organization_id: None,
            password: None,
        })
        .await
        .map_err(|e| anyhow::anyhow!("adding a user: {e}"))?;
    let checks = Checks {
        user: Some(UserLookup::Id(user.id.clone())),
        ..Checks::default()
    };
    // First, while the allocator has nothing freed to hand out again.
    eprintln!("feed: memory of 10,000 idle subscribers");
    let bytes = idle_cost(&core, 10_000).await?;
    let mut latency_rows = Vec::new();
    for &n in counts {
        eprintln!("feed: latency with {n} subscribers (SQLite, one node)");
        let k = if n >= 10_000 {
            revocations / 2
        } else {
            revocations
        };
        latency_rows.push(latency("SQLite, one node", &core, &core, &checks, n, k.max(1)).await?);
    }
    let one_user = std::slice::from_ref(&checks);
    let all_events = vec![None; 1000];
    let (without, with) = compare(
        &core,
        "1,000 subscribers of every event",
        one_user,
        &all_events,
        throughput_sessions,
    )
    .await?;
    let mut per_user = Vec::with_capacity(1000);
    let mut user_ids = Vec::with_capacity(1000);
    for i in 0..1000 {
        let user = core
            .add_user(NewUser {
                login_name: LoginName::parse(format!("feed-bench-{i}"))
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
                display_name: None,
                organization_id: None,
                password: None,
            })
            .await
            .map_err(|e| anyhow::anyhow!("adding a user: {e}"))?;
        user_ids.push(Some(user.id.as_str().to_owned()));
        per_user.push(Checks {
            user: Some(UserLookup::Id(user.id.clone())),
            ..Checks::default()
        });
    }
    let (per_user_without, per_user_with) = compare(
        &core,
        "1,000 users, one subscriber per user",
        &per_user,
        &user_ids,
        throughput_sessions,
    )
    .await?;
    drop(core);

    if let Some(admin) = postgres {
        eprintln!("feed: latency across two PostgreSQL replicas");
        let database = Database::create(&admin)?;
        let a_settings = settings_in(&dir, Some(database.url.clone()));
        let a = node(&a_settings).await?;
        let b = node(&a_settings).await?;
        let user = a
            .add_user(NewUser {
                login_name: LoginName::parse(format!("feed-bench-{}", std::process::id()))
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
                display_name: None,
                organization_id: None,
                password: None,
            })
            .await
            .map_err(|e| anyhow::anyhow!("adding a user: {e}"))?;
        let checks = Checks {
            user: Some(UserLookup::Id(user.id.clone())),
            ..Checks::default()
        };
        for n in [1, 1000] {
            latency_rows.push(
                latency(
                    "PostgreSQL, delete on A, subscribers on B",
                    &a,
                    &b,
                    &checks,
                    n,
                    revocations,
                )
                .await?,
            );
        }
        // Both replicas' pools close before their database goes.
        drop((a, b));
        drop(database);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(FeedReport {
        latency: latency_rows,
        deletes_per_s_without: without,
        deletes_per_s_with_1000: with,
        per_user_deletes_per_s_without: per_user_without,
        per_user_deletes_per_s_with_1000: per_user_with,
        bytes_per_idle_subscriber: bytes,
    })
}

/// A database of its own for the replica run, dropped with this.
struct Database {
    admin: String,
    name: String,
    url: String,
}

impl Database {
    fn create(admin: &str) -> anyhow::Result<Self> {
        let name = format!("sessiond_feed_bench_{}", std::process::id());
        crate::pg::psql(admin, &format!("CREATE DATABASE {name}"))?;
        Ok(Self {
            admin: admin.to_owned(),
            url: crate::pg::with_database(admin, &name)?,
            name,
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = crate::pg::psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("sessiond-feed-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The report's Markdown section.
pub fn markdown(report: &FeedReport) -> String {
    let mut out = String::from(
        "| setup | subscribers | revocations | deliveries | p50 | p99 | max |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in &report.latency {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.2} ms | {:.2} ms | {:.2} ms |\n",
            r.setup, r.subscribers, r.revocations, r.deliveries, r.p50_ms, r.p99_ms, r.max_ms
        ));
    }
    let ratio = |with: &[f64], without: &[f64]| median(with) / median(without);
    out.push_str(&format!(
        "\nDeleteSession throughput ({DELETERS} in flight; median of {ROUNDS} rounds, each \
         without and with subscribers in the opposite order to the round before), all-events scenario (one user's sessions; \
         1,000 subscribers each following every event): {:.0}/s without subscribers, {:.0}/s \
         with them ({:.2}×); rounds without: {}; with: {}.\n\nDeleteSession throughput, \
         per-user scenario (sessions spread over 1,000 users; 1,000 subscribers each watching \
         one of those users): {:.0}/s without subscribers, {:.0}/s with them ({:.2}×); rounds \
         without: {}; with: {}.\n\nResident memory per idle subscriber (10,000): {:.1} KiB.\n",
        median(&report.deletes_per_s_without),
        median(&report.deletes_per_s_with_1000),
        ratio(
            &report.deletes_per_s_with_1000,
            &report.deletes_per_s_without
        ),
        rounds(&report.deletes_per_s_without),
        rounds(&report.deletes_per_s_with_1000),
        median(&report.per_user_deletes_per_s_without),
        median(&report.per_user_deletes_per_s_with_1000),
        ratio(
            &report.per_user_deletes_per_s_with_1000,
            &report.per_user_deletes_per_s_without
        ),
        rounds(&report.per_user_deletes_per_s_without),
        rounds(&report.per_user_deletes_per_s_with_1000),
        report.bytes_per_idle_subscriber / 1024.0
    ));
    out
}

/// Where the section sits in `RESULTS.md`: everything between the markers is replaced.
const START: &str = "<!-- revocation feed: start -->";
const END: &str = "<!-- revocation feed: end -->";

/// The Issue's targets, with a verdict computed from the figures.
fn verdicts(report: &FeedReport) -> String {
    let verdict = |met: bool| if met { "**met**" } else { "**missed**" };
    let mut out = String::from("| Target | Measured | Verdict |\n|---|---|---|\n");
    let one_node = report
        .latency
        .iter()
        .filter(|r| r.setup.starts_with("SQLite") && r.subscribers == 1000)
        .map(|r| r.p99_ms)
        .fold(None, |worst: Option<f64>, p| {
            Some(worst.map_or(p, |w| w.max(p)))
        });
    out.push_str(&match one_node {
        Some(p99) => format!(
            "| p99 ≤ 50 ms with 1,000 subscribers on one node | {p99:.2} ms | {} |\n",
            verdict(p99 <= 50.0)
        ),
        None => "| p99 ≤ 50 ms with 1,000 subscribers on one node | not measured | — |\n".into(),
    });
    let replicas = report
        .latency
        .iter()
        .filter(|r| r.setup.starts_with("PostgreSQL"))
        .map(|r| r.p99_ms)
        .fold(None, |worst: Option<f64>, p| {
            Some(worst.map_or(p, |w| w.max(p)))
        });
    out.push_str(&match replicas {
        Some(p99) => format!(
            "| p99 ≤ 1 s across replicas | {p99:.2} ms (worst run) | {} |\n",
            verdict(p99 <= 1000.0)
        ),
        None => "| p99 ≤ 1 s across replicas | not measured (no `--postgres`) | — |\n".into(),
    });
    let all = median(&report.deletes_per_s_with_1000) / median(&report.deletes_per_s_without);
    let per_user = median(&report.per_user_deletes_per_s_with_1000)
        / median(&report.per_user_deletes_per_s_without);
    out.push_str(&format!(
        "| DeleteSession throughput with 1,000 subscribers ≥ 0.9 × without, all-events \
         scenario | {all:.2}× | {} |\n\
         | the same, per-user scenario | {per_user:.2}× | {} |\n",
        verdict(all >= 0.9),
        verdict(per_user >= 0.9)
    ));
    let kib = report.bytes_per_idle_subscriber / 1024.0;
    out.push_str(&format!(
        "| Memory per idle subscriber ≤ 64 KiB | {kib:.1} KiB | {} |\n",
        verdict(kib <= 64.0)
    ));
    out
}

/// The load average of the machine (1, 5 and 15 minutes), as `/proc/loadavg` says.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" / "))
        .unwrap_or_else(|| "unknown".into())
}

/// The whole section, between its markers.
pub fn section(report: &FeedReport, command: &str, load_before: &str, load_after: &str) -> String {
    format!(
        "{START}\n## Revocation feed (`sessiond-bench feed`)\n\n\
         Written by `{command}` (`bench/run.sh feed`) on {date}; load average of the machine \
         (1 / 5 / 15 min) {load_before} before the run and {load_after} after it. In \
         process, on sessiond's core (the feed's HTTP and gRPC faces are not in these \
         figures): what a subscriber costs the write path is the hub's and the \
         subscriber's work, measured here without sockets; the faces add one write of a \
         shared chunk per batch and the kernel's copy of its bytes (at the all-events rate, \
         1,000 streams would carry several GB/s, more than two cores can push through \
         sockets whatever the feed does). Sessions are revoked one at a time, 5 ms apart, \
         and latency runs from DeleteSession's return to each subscriber holding the \
         `session.terminated` event. \
         Latency subscribers follow every revocation (a `session.read` caller), the worst \
         case for fan-out. Throughput: {DELETERS} DeleteSession calls in flight; the \
         all-events scenario has 1,000 subscribers each following every event (one user's \
         sessions), the per-user one 1,000 subscribers each watching one of the 1,000 users \
         the deletes are spread over; each \"without\" deletes the same kind of sessions \
         just before its \"with\" run. Throughput subscribers do with each batch what the \
         SSE face does before its socket: take the batch's Server-Sent Events chunk (made \
         once per batch, shared by every stream). Verdicts are computed from these \
         figures.\n\n\
         {table}\n{verdicts}{END}\n",
        date = today(),
        table = markdown(report),
        verdicts = verdicts(report),
    )
}

/// Today's date (UTC).
fn today() -> String {
    SystemClock.now().to_rfc3339().chars().take(10).collect()
}

/// Replaces the section in the Markdown file at `path` (appended if the markers are not
/// there), and writes the figures beside it as `RESULTS-feed.json`.
pub fn merge_into(
    path: &std::path::Path,
    section: &str,
    report: &FeedReport,
) -> anyhow::Result<()> {
    crate::report::replace_section(path, START, END, section)?;
    std::fs::write(
        path.with_file_name("RESULTS-feed.json"),
        serde_json::to_string_pretty(report)? + "\n",
    )?;
    Ok(())
}
