//! `sessiond-bench ceilings`: sessiond's writes against what its store can do.
//!
//! SQLite: DeleteSession, CreateSession (user check) and GetSession over gRPC, each round
//! alternating sessiond, the no-op server and the bare rusqlite loop of `ceiling` on a copy
//! of the same seeded file. PostgreSQL: the same operations over gRPC and REST against one
//! replica and three (three sessiond processes on one database), alternating with pgbench
//! running the same statements (`pg`), and `pgbench -S`.
//!
//! The report is a Markdown section merged into RESULTS.md between markers (the other
//! sections stay), and its numbers under `ceilings` in RESULTS.json.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use sessiond::store::sqlite_tuning;

use crate::ceiling::{Ceiling, CeilingRound};
use crate::client::{Op, Proto, Workload};
use crate::load::{self, Mode, RunSpec, Target};
use crate::pg::{self, PgbenchRound};
use crate::{Round, log, median, server};

pub const START: &str = "<!-- storage ceilings: start -->";
pub const END: &str = "<!-- storage ceilings: end -->";

#[derive(Clone, Debug)]
pub struct Options {
    pub sessiond: PathBuf,
    pub rounds: usize,
    pub duration: f64,
    pub concurrency: usize,
    pub grpc_connections: usize,
    pub delete_pool: usize,
    pub sqlite: bool,
    pub postgres: Option<String>,
    pub pg_connections: usize,
    pub work: PathBuf,
    pub command: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct SqliteOp {
    pub op: Op,
    pub real: Vec<Round>,
    pub noop: Vec<Round>,
    /// The bare loop with batches as large as the requests in flight.
    pub ceiling: Vec<CeilingRound>,
    /// The bare loop with other batch sizes (one round each).
    pub by_batch: Vec<CeilingRound>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PgOp {
    pub op: Op,
    pub proto: Proto,
    pub replicas: usize,
    /// Per replica, per round.
    pub real: Vec<Vec<Round>>,
    pub pgbench: Vec<PgbenchRound>,
    /// For GetSession: `pgbench -S` beside each round.
    pub select_only: Vec<PgbenchRound>,
}

#[derive(Clone, Debug, Serialize, Default)]
pub struct Report {
    pub date: String,
    pub command: String,
    pub settings: String,
    pub sqlite: Vec<SqliteOp>,
    pub postgres: Vec<PgOp>,
    pub postgres_version: String,
    pub postgres_note: String,
    pub seconds: f64,
}

fn spec(op: Op, proto: Proto, o: &Options) -> RunSpec {
    RunSpec {
        op,
        proto,
        mode: Mode::Closed {
            concurrency: o.concurrency,
        },
        warmup: Duration::from_millis(500),
        duration: Duration::from_secs_f64(o.duration),
        max_requests: None,
        grpc_connections: o.grpc_connections,
    }
}

fn target(s: &server::Server, noop: bool) -> Target {
    Target {
        addr: s.addr,
        pid: s.pid,
        noop,
    }
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Delete => "delete",
        Op::Create => "create",
        _ => "get",
    }
}

pub async fn run(o: Options) -> anyhow::Result<Report> {
    let t0 = Instant::now();
    std::fs::create_dir_all(&o.work)?;
    let mut report = Report {
        date: sessiond::domain::Time::from_unix_micros(crate::now_micros()).to_rfc3339(),
        command: o.command.clone(),
        settings: format!(
            "{} round(s) of {:.1} s per server and operation (after 0.5 s warm-up), {} requests \
             in flight, gRPC over {} HTTP/2 connections; pgbench with {} connections",
            o.rounds, o.duration, o.concurrency, o.grpc_connections, o.pg_connections
        ),
        ..Default::default()
    };
    if o.sqlite {
        report.sqlite = sqlite(&o, t0).await?;
    }
    if let Some(url) = &o.postgres {
        let (ops, version) = postgres(&o, url, t0).await?;
        report.postgres = ops;
        report.postgres_version = version;
    }
    report.seconds = t0.elapsed().as_secs_f64();
    Ok(report)
}

async fn sqlite(o: &Options, t0: Instant) -> anyhow::Result<Vec<SqliteOp>> {
    let dir = o.work.join("ceiling-sqlite");
    let _ = std::fs::remove_dir_all(&dir);
    let jwt = server::prepare_data_dir(&o.sessiond, &dir)?;
    let mut logins = Vec::new();
    for i in 0..4 {
        let login = format!("bench-create-{i}@bench.example");
        server::add_user(&o.sessiond, &dir, &login, None)?;
        logins.push(login);
    }
    let db = dir.join("sessiond.db");
    let mut conn = crate::seed::open(&db).await?;
    let spec_of = |prefix, sessions| crate::seed::SeedSpec {
        prefix,
        sessions,
        sessions_per_user: crate::SESSIONS_PER_USER,
        sample: sessions,
        creator: "bench",
        instance_id: "sessiond",
        password_hash: None,
        lifetime_secs: 7 * 86_400,
    };
    let newest = crate::now_micros();
    let read = crate::seed::seed(
        &mut conn,
        &spec_of("read", crate::seed::READ_SESSIONS),
        newest,
    )
    .await?;
    let deletes = crate::seed::seed(
        &mut conn,
        &spec_of("delete", o.delete_pool),
        crate::seed::ending_before(newest, crate::seed::READ_SESSIONS),
    )
    .await?;
    drop(conn);
    // The loop's own copy of the same data: both start from the same file, and both stay in
    // the page cache while they are measured (see `resident`).
    let copy = o.work.join("ceiling-copy.db");
    std::fs::copy(&db, &copy)?;
    let resident = (
        crate::resident::pin_async(&db).await?,
        crate::resident::pin_async(&copy).await?,
    );
    log(
        t0,
        format!(
            "sqlite: seeded 10,000 read and {} delete sessions; copied for the bare loop; both {}",
            deletes.sessions.len(),
            resident.0.describe()
        ),
    );
    let mut delete_pool = deletes.sessions;
    {
        use rand::seq::SliceRandom;
        delete_pool.shuffle(&mut rand::thread_rng());
    }
    let loop_deletes = Arc::new(delete_pool.clone());
    let loop_reads = Arc::new(read.sessions.clone());
    let loop_logins = Arc::new(logins.clone());
    let wl = Arc::new(Workload::new(
        format!("Bearer {jwt}"),
        logins,
        String::new(),
        String::new(),
        read.sessions,
        read.users,
        delete_pool,
    ));
    let real = crate::start_sessiond(&o.sessiond, &dir, "sessiond").await?;
    let noop = crate::start_noop(&dir).await?;
    let mut ceiling = Some(Ceiling::open(&copy)?);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut out = Vec::new();
    for op in [Op::Delete, Op::Create, Op::Get] {
        procfs_quiet().await;
        let s = spec(op, Proto::Grpc, o);
        let mut cell = SqliteOp {
            op,
            real: Vec::new(),
            noop: Vec::new(),
            ceiling: Vec::new(),
            by_batch: Vec::new(),
        };
        let batches: Vec<usize> = std::iter::repeat_n(o.concurrency, o.rounds)
            .chain(if op == Op::Get {
                Vec::new()
            } else {
                vec![1, 8, 256]
            })
            .collect();
        for (k, &batch) in batches.iter().enumerate() {
            if k < o.rounds {
                cell.real.push(Round::from(
                    &load::run(&target(&real, false), wl.clone(), &s).await?,
                ));
                cell.noop.push(Round::from(
                    &load::run(&target(&noop, true), wl.clone(), &s).await?,
                ));
            }
            let mut c = ceiling
                .take()
                .ok_or_else(|| anyhow::anyhow!("the bare loop failed earlier"))?;
            let (reads, deletes, logins) = (
                loop_reads.clone(),
                loop_deletes.clone(),
                loop_logins.clone(),
            );
            let seconds = if k < o.rounds { o.duration } else { 1.0 };
            let (c, r) = tokio::task::spawn_blocking(move || {
                let r = c.run(op_name(op), batch, seconds, &reads, &deletes, &logins);
                (c, r)
            })
            .await?;
            ceiling = Some(c);
            let r = r?;
            if k < o.rounds {
                cell.ceiling.push(r);
            } else {
                cell.by_batch.push(r);
            }
        }
        log(
            t0,
            format!(
                "sqlite {:<22} sessiond {:>7.0}/s, no-op {:>7.0}/s, bare loop {:>7.0}/s (batch {}); by batch {}",
                op.name(),
                median(cell.real.iter().map(|r| r.rps).collect()),
                median(cell.noop.iter().map(|r| r.rps).collect()),
                median(cell.ceiling.iter().map(|r| r.ops_per_s).collect()),
                o.concurrency,
                cell.by_batch
                    .iter()
                    .map(|r| format!("{}: {:.0}/s", r.batch, r.ops_per_s))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        out.push(cell);
    }
    drop(real);
    drop(noop);
    drop(ceiling);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&copy);
    Ok(out)
}

async fn procfs_quiet() {
    crate::procfs::wait_quiet(Duration::from_secs(10), 0.10).await;
}

async fn start_replica(
    bin: &Path,
    dir: &Path,
    url: &str,
    name: &str,
) -> anyhow::Result<server::Server> {
    let port = server::free_port()?;
    let args = vec![
        "serve".to_owned(),
        "--listen".to_owned(),
        format!("127.0.0.1:{port}"),
        "--data-dir".to_owned(),
        dir.to_string_lossy().into_owned(),
        "--database-url".to_owned(),
        url.to_owned(),
    ];
    server::Server::start(
        bin,
        &args,
        port,
        dir.join(format!("{name}.log")),
        "/healthz",
    )
    .await
}

/// A database this run creates and drops.
struct Database {
    admin: String,
    name: String,
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = pg::psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

async fn postgres(o: &Options, admin: &str, t0: Instant) -> anyhow::Result<(Vec<PgOp>, String)> {
    let version = pg::psql(admin, "SHOW server_version")?;
    let name = format!("sessiond_bench_{}", std::process::id());
    pg::psql(admin, &format!("CREATE DATABASE {name}"))?;
    let database = Database {
        admin: admin.to_owned(),
        name: name.clone(),
    };
    let url = pg::with_database(admin, &name)?;
    let dir = o.work.join("pg");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let d = dir.to_string_lossy().into_owned();
    server::sessiond(
        &o.sessiond,
        &["migrate", "--data-dir", &d, "--database-url", &url],
        None,
    )?;
    let jwt = server::mint(
        &o.sessiond,
        &dir,
        "bench",
        "session.read,session.write,session.delete",
    )?;
    // Sessions: 10,000 to read, then sessiond's delete pool, then pgbench's.
    let reads = 10_000i64;
    let sessiond_deletes = o.delete_pool as i64 / 2;
    let per = 6_000i64; // deletes per pgbench client and round, well above what one does
    let clients = o.pg_connections as i64;
    let pgbench_base = reads + sessiond_deletes;
    // Two protocols, `rounds` delete runs each.
    let total = pgbench_base + per * clients * 2 * o.rounds as i64 + 1;
    let seeded = Instant::now();
    pg::seed(&url, 0, total, crate::now_micros())?;
    // The tables `pgbench -S` reads (scale 10: 1,000,000 accounts).
    let init = std::process::Command::new("pgbench")
        .args(["-i", "-q", "-s", "10", "-I", "dtgvp", &url])
        .output()?;
    anyhow::ensure!(
        init.status.success(),
        "pgbench -i failed: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    log(
        t0,
        format!(
            "postgres {version}: database {name} seeded with {total} sessions in {:.1}s",
            seeded.elapsed().as_secs_f64()
        ),
    );
    let scripts = pg::scripts(&dir)?;
    let script = |op: Op| {
        scripts
            .iter()
            .find(|(n, _)| *n == op_name(op))
            .map(|(_, p)| p.clone())
    };
    let mut delete_pool: Vec<_> = (reads..pgbench_base).map(pg::session).collect();
    {
        use rand::seq::SliceRandom;
        delete_pool.shuffle(&mut rand::thread_rng());
    }
    let wl = Arc::new(Workload::new(
        format!("Bearer {jwt}"),
        (0..100).map(pg::login).collect(),
        String::new(),
        String::new(),
        (0..reads).map(pg::session).collect(),
        Vec::new(),
        delete_pool,
    ));
    // All three replicas run from the start; each round runs one replica alone (the other two
    // idle), then all three at once, so the machine's drift between rounds reaches both sides
    // of the three-replica ratio alike.
    let mut replicas = Vec::new();
    for n in 1..=3 {
        let name = format!("replica-{n}");
        replicas.push(start_replica(&o.sessiond, &dir, &url, &name).await?);
    }
    let users = total / 10;
    let seconds = o.duration.ceil() as u64;
    let (mut one_replica, mut three_replicas) = (Vec::new(), Vec::new());
    let (mut delete_round, mut create_round) = (0i64, 0i64);
    for op in [Op::Get, Op::Create, Op::Delete] {
        for proto in [Proto::Grpc, Proto::Rest] {
            procfs_quiet().await;
            let s = spec(op, proto, o);
            let cell = |count: usize| PgOp {
                op,
                proto,
                replicas: count,
                real: vec![Vec::new(); count],
                pgbench: Vec::new(),
                select_only: Vec::new(),
            };
            let mut cells = [cell(1), cell(3)];
            for _ in 0..o.rounds {
                for cell in &mut cells {
                    let count = cell.replicas;
                    let runs = replicas[..count].iter().map(|r| {
                        let t = target(r, false);
                        let (wl, s) = (wl.clone(), s.clone());
                        async move { load::run(&t, wl, &s).await }
                    });
                    for (k, r) in futures_util::future::join_all(runs)
                        .await
                        .into_iter()
                        .enumerate()
                    {
                        let r = r?;
                        // A round that ran out of sessions to delete measures the pool, not
                        // sessiond: stop rather than report its rate.
                        anyhow::ensure!(
                            !r.exhausted,
                            "postgres: the delete pool ran out during {} over {} with {count} \
                             replica(s); pass a larger --delete-pool (now {})",
                            op.name(),
                            proto.name(),
                            o.delete_pool
                        );
                        cell.real[k].push(Round::from(&r));
                    }
                    // The ceiling beside each one-replica round.
                    if count == 1 {
                        let path = script(op);
                        let base = match op {
                            Op::Delete => pgbench_base + delete_round * per * clients,
                            _ => create_round * 100_000_000_000,
                        };
                        match op {
                            Op::Delete => delete_round += 1,
                            Op::Create => create_round += 1,
                            _ => {}
                        }
                        let vars = [
                            ("i", 0),
                            ("base", base),
                            ("per", per),
                            ("reads", reads),
                            ("users", users),
                        ];
                        let db = url.clone();
                        let clients = o.pg_connections;
                        let r = tokio::task::spawn_blocking(move || {
                            pg::pgbench(&db, path.as_deref(), clients, seconds, &vars)
                        })
                        .await??;
                        cell.pgbench.push(r);
                        if op == Op::Get {
                            let db = url.clone();
                            let r = tokio::task::spawn_blocking(move || {
                                pg::pgbench(&db, None, clients, seconds, &[])
                            })
                            .await??;
                            cell.select_only.push(r);
                        }
                    }
                }
            }
            for cell in &cells {
                log_cell(t0, cell, o.rounds);
            }
            let [one, three] = cells;
            one_replica.push(one);
            three_replicas.push(three);
        }
    }
    let mut out = one_replica;
    out.extend(three_replicas);
    drop(replicas);
    drop(database);
    let _ = std::fs::remove_dir_all(&dir);
    Ok((out, version))
}

/// One PostgreSQL cell's line in the progress log.
fn log_cell(t0: Instant, cell: &PgOp, rounds: usize) {
    let totals: Vec<f64> = (0..rounds)
        .map(|i| cell.real.iter().map(|r| r[i].rps).sum())
        .collect();
    log(
        t0,
        format!(
            "postgres x{} {:<22} {:<5} {:>7.0} req/s total, p99 {} ms; pgbench {:>7.0} tps{}",
            cell.replicas,
            cell.op.name(),
            cell.proto.name(),
            median(totals),
            cell.real
                .iter()
                .map(|r| format!("{:.2}", median(r.iter().map(|x| x.p99_ms).collect())))
                .collect::<Vec<_>>()
                .join(" / "),
            median(cell.pgbench.iter().map(|r| r.tps).collect()),
            cell.real
                .iter()
                .flatten()
                .flat_map(|r| r.sample_errors.iter())
                .take(1)
                .map(|e| format!("; error: {e}"))
                .collect::<String>()
        ),
    );
}

fn ratios(a: &[f64], b: &[f64]) -> f64 {
    median(a.iter().zip(b).map(|(x, y)| x / y).collect())
}

fn n0(v: f64) -> String {
    crate::report::f0(v)
}

fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.0}%", v * 100.0)
    } else {
        "n/a".to_owned()
    }
}

/// What a one-replica PostgreSQL cell is measured against: `pgbench -S` for GetSession, the
/// pgbench script of the same statements for the writes; its name and the target ratio.
struct Reference<'a> {
    rounds: &'a [PgbenchRound],
    name: &'static str,
    goal: f64,
}

fn reference(c: &PgOp) -> Reference<'_> {
    if c.op == Op::Get {
        Reference {
            rounds: &c.select_only,
            name: "`pgbench -S`",
            goal: 0.5,
        }
    } else {
        Reference {
            rounds: &c.pgbench,
            name: "the pgbench script",
            goal: 0.7,
        }
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "**met**" } else { "**missed**" }
}

fn rounds_of(v: &[Round]) -> String {
    v.iter().map(|r| n0(r.rps)).collect::<Vec<_>>().join(" / ")
}

/// The Markdown section (between the markers).
pub fn markdown(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let _ = writeln!(s, "{START}\n## Storage ceilings (SQLite and PostgreSQL)\n");
    let _ = writeln!(
        s,
        "Generated by `sessiond-bench ceilings` (see bench/README.md), separately from the \
         sections above.\n\n- Command: `{}`\n- Date: {}\n- Settings: {}\n- Run time: {:.0} s\n\
         - The machine has 2 cores shared by the load generator, the servers, PostgreSQL, \
         pgbench and other engineers' builds and tests; \"others\" columns say how much CPU \
         other processes took during each measurement.\n",
        r.command, r.date, r.settings, r.seconds
    );
    let sqlite_op = |op: Op| r.sqlite.iter().find(|c| c.op == op);
    let pg_op = |op: Op, proto: Proto, n: usize| {
        r.postgres
            .iter()
            .find(|c| c.op == op && c.proto == proto && c.replicas == n)
    };
    let total = |c: &PgOp| -> Vec<f64> {
        (0..c.real.first().map_or(0, Vec::len))
            .map(|i| c.real.iter().map(|rs| rs[i].rps).sum())
            .collect()
    };
    // Targets.
    let _ = writeln!(
        s,
        "### Targets\n\n| Target | Measured | Verdict |\n|---|---|---|"
    );
    if let Some(c) = sqlite_op(Op::Delete) {
        let real: Vec<f64> = c.real.iter().map(|x| x.rps).collect();
        let ceil: Vec<f64> = c.ceiling.iter().map(|x| x.ops_per_s).collect();
        let noop: Vec<f64> = c.noop.iter().map(|x| x.rps).collect();
        let (rc, rn) = (ratios(&real, &ceil), ratios(&real, &noop));
        let _ = writeln!(
            s,
            "| DeleteSession over gRPC on SQLite ≥ 70% of its storage ceiling and ≥ 35% of the \
             no-op | {} of the bare loop ({} vs {}/s), {} of the no-op ({} req/s) | {} |",
            pct(rc),
            n0(median(real.clone())),
            n0(median(ceil)),
            pct(rn),
            n0(median(noop)),
            verdict(rc >= 0.7 && rn >= 0.35)
        );
    }
    if let Some(c) = sqlite_op(Op::Create) {
        let real: Vec<f64> = c.real.iter().map(|x| x.rps).collect();
        let ceil: Vec<f64> = c.ceiling.iter().map(|x| x.ops_per_s).collect();
        let rc = ratios(&real, &ceil);
        let _ = writeln!(
            s,
            "| CreateSession (user) over gRPC on SQLite ≥ 70% of its storage ceiling | {} ({} vs \
             {}/s) | {} |",
            pct(rc),
            n0(median(real)),
            n0(median(ceil)),
            verdict(rc >= 0.7)
        );
    }
    for op in [Op::Delete, Op::Create, Op::Get] {
        let mut cells = Vec::new();
        let mut met = true;
        for proto in [Proto::Grpc, Proto::Rest] {
            let Some(c) = pg_op(op, proto, 1) else {
                continue;
            };
            let real = total(c);
            let reference = reference(c);
            let ceil: Vec<f64> = reference.rounds.iter().map(|x| x.tps).collect();
            let ratio = ratios(&real, &ceil);
            met &= ratio >= reference.goal;
            cells.push(format!(
                "{}: {} ({} req/s vs {} tps of {})",
                proto.name(),
                pct(ratio),
                n0(median(real)),
                n0(median(ceil)),
                reference.name
            ));
        }
        if cells.is_empty() {
            continue;
        }
        let goal = if op == Op::Get {
            "≥ 50% of `pgbench -S`"
        } else {
            "≥ 70% of the pgbench script"
        };
        let _ = writeln!(
            s,
            "| PostgreSQL, one replica: {} {goal} | {} | {} |",
            op.name(),
            cells.join("; "),
            verdict(met)
        );
    }
    let mut cells = Vec::new();
    let mut met = true;
    for op in [Op::Get, Op::Create, Op::Delete] {
        for proto in [Proto::Grpc, Proto::Rest] {
            let (Some(one), Some(three)) = (pg_op(op, proto, 1), pg_op(op, proto, 3)) else {
                continue;
            };
            let (a, b) = (median(total(one)), median(total(three)));
            met &= b >= a;
            cells.push(format!(
                "{} / {}: {} vs {} ({:.2}×)",
                op.name(),
                proto.name(),
                n0(b),
                n0(a),
                b / a
            ));
        }
    }
    if !cells.is_empty() {
        let _ = writeln!(
            s,
            "| PostgreSQL: three replicas' total ≥ one replica's | {} | {} |",
            cells.join("; "),
            verdict(met)
        );
    }
    if !r.sqlite.is_empty() {
        let _ = writeln!(
            s,
            "\n### SQLite: sessiond against its storage ceiling\n\n\
             The storage ceiling is one thread running, with rusqlite (the library and SQLite \
             build sessiond's store links), exactly the statements sessiond's SQLite store runs \
             for the operation, on a copy of the same seeded file taken before either wrote to \
             it (both files locked in the page cache while measured), with the store's pragmas (WAL, `synchronous=NORMAL`, {} MiB writer cache, \
             `wal_autocheckpoint` {}, {} MiB reader cache) and through the store's own VFS \
             (`{}`, which writes each commit's log frames at once): the point reads on a read-only \
             connection, the writes grouped in `BEGIN IMMEDIATE` … `COMMIT` with one savepoint \
             per job, as the writer thread does. No network, no runtime, no core: one core's \
             worth of storage work. sessiond's writer forms batches of at most the requests in \
             flight ({}), so the ceiling uses batches of that size; the other batch sizes show \
             how much group commit matters. Each round runs sessiond (gRPC), the no-op server \
             and the bare loop in turn. The load generator runs on the same cores as sessiond \
             (the bare loop has none): \"with the machine all busy\" is the rate sessiond would \
             reach if every core were busy, each request costing the machine what it cost in \
             the round (sessiond's CPU, the load generator's and other processes'), over the \
             ceiling; a measured ratio well under it means a serial part (the one writer) \
             bounds sessiond before the machine's CPU does.\n",
            sqlite_tuning::WRITER_CACHE_KIB / 1024,
            sqlite_tuning::WAL_PAGES_BEFORE_RESTART,
            sqlite_tuning::READER_CACHE_KIB / 1024,
            sqlite_tuning::VFS,
            r.settings
                .split(", ")
                .nth(1)
                .and_then(|x| x.split(' ').next())
                .unwrap_or("32")
        );
        let _ = writeln!(
            s,
            "| Operation | sessiond req/s | no-op req/s | ceiling ops/s | ÷ ceiling | ÷ no-op | \
             ceiling CPU µs/op | sessiond server µs/req | load generator µs/req | ÷ ceiling \
             with the machine all busy | ceiling by batch size (1 s each) | others |\n\
             |---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|"
        );
        for c in &r.sqlite {
            let real: Vec<f64> = c.real.iter().map(|x| x.rps).collect();
            let ceil: Vec<f64> = c.ceiling.iter().map(|x| x.ops_per_s).collect();
            let noop: Vec<f64> = c.noop.iter().map(|x| x.rps).collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {:.1} | {:.0} | {:.0} | {} | {} | {:.2} |",
                c.op.name(),
                n0(median(real.clone())),
                n0(median(noop.clone())),
                n0(median(ceil.clone())),
                pct(ratios(&real, &ceil)),
                pct(ratios(&real, &noop)),
                median(c.ceiling.iter().map(|x| x.cpu_us_per_op).collect()),
                median(c.real.iter().map(|x| x.server_us_per_req).collect()),
                median(c.real.iter().map(|x| x.client_us_per_req).collect()),
                pct(all_busy(&c.real, cores) / median(ceil.clone())),
                if c.by_batch.is_empty() {
                    "(reads: no batches)".to_owned()
                } else {
                    c.by_batch
                        .iter()
                        .map(|b| format!("{}: {}", b.batch, n0(b.ops_per_s)))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                median(
                    c.real
                        .iter()
                        .map(|x| x.other_cores)
                        .chain(c.ceiling.iter().map(|x| x.other_cores))
                        .collect()
                ),
            );
        }
        let _ = writeln!(s, "\nPer-round (sessiond | no-op | ceiling):\n");
        for c in &r.sqlite {
            let _ = writeln!(
                s,
                "- {}: {} | {} | {}{}",
                c.op.name(),
                rounds_of(&c.real),
                rounds_of(&c.noop),
                c.ceiling
                    .iter()
                    .map(|x| n0(x.ops_per_s))
                    .collect::<Vec<_>>()
                    .join(" / "),
                if c.ceiling.iter().chain(&c.by_batch).any(|x| x.exhausted) {
                    " (the loop's delete pool ran out in a round: its rate is over the time it lasted)"
                } else {
                    ""
                }
            );
        }
    }
    if !r.postgres.is_empty() {
        let _ = writeln!(
            s,
            "\n### PostgreSQL\n\n\
             PostgreSQL {} on this machine, in a database the bench creates and drops. sessiond \
             (`serve --database-url`, its default of 16 connections per replica: a quarter in \
             sqlx's pool for transactions, the rest leased one statement at a time for the \
             point reads and one-statement writes) against \
             `pgbench -M prepared -c 16 -j 2` running, per transaction, the statements \
             sessiond's PostgreSQL store sends for one operation (bench/src/pg.rs: for \
             DeleteSession the session read, then one statement that is its own transaction: \
             the guarded UPDATE of every changing column and the event INSERT in a \
             data-modifying `WITH`; for CreateSession the user read by login name, one \
             statement with the user's `FOR SHARE` lock and the session and event INSERTs, the \
             user read by id; for GetSession the session read), alternating round by round, \
             and `pgbench -S` (its built-in primary-key read, scale 10) beside GetSession. \
             `synchronous_commit` is left on, for sessiond and pgbench alike. Not in the \
             script: the feed's coalesced `NOTIFY` after commits, nor the liveness round trip \
             sqlx's pool makes when a connection is returned to it (on transactions only). \
             Three \
             replicas: three sessiond processes on the one database, each driven with {} in \
             flight at once (the pgbench figures are from the one-replica rounds); all three \
             run throughout, and each round runs one replica alone (the other two idle), then \
             the three at once.\n",
            r.postgres_version,
            r.settings
                .split(", ")
                .nth(1)
                .and_then(|x| x.split(' ').next())
                .unwrap_or("32")
        );
        let _ = writeln!(
            s,
            "| Operation | Protocol | replicas | total req/s | per replica req/s | p99 ms per \
             replica | errors | pgbench tps | `pgbench -S` tps | ÷ pgbench | busy cores (pgbench rounds) |\n\
             |---|---|--:|--:|---|---|--:|--:|--:|--:|--:|"
        );
        for c in &r.postgres {
            let real = total(c);
            let bench: Vec<f64> = c.pgbench.iter().map(|x| x.tps).collect();
            let select: Vec<f64> = c.select_only.iter().map(|x| x.tps).collect();
            let reference: Vec<f64> = reference(c).rounds.iter().map(|x| x.tps).collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                c.op.name(),
                c.proto.name(),
                c.replicas,
                n0(median(real.clone())),
                c.real
                    .iter()
                    .map(|rs| n0(median(rs.iter().map(|x| x.rps).collect())))
                    .collect::<Vec<_>>()
                    .join(" / "),
                c.real
                    .iter()
                    .map(|rs| format!("{:.2}", median(rs.iter().map(|x| x.p99_ms).collect())))
                    .collect::<Vec<_>>()
                    .join(" / "),
                c.real.iter().flatten().map(|x| x.errors).sum::<u64>(),
                if bench.is_empty() {
                    "—".to_owned()
                } else {
                    n0(median(bench.clone()))
                },
                if select.is_empty() {
                    "—".to_owned()
                } else {
                    n0(median(select.clone()))
                },
                if reference.is_empty() {
                    "—".to_owned()
                } else {
                    pct(ratios(&real, &reference))
                },
                if c.pgbench.is_empty() {
                    "—".to_owned()
                } else {
                    format!(
                        "{:.2}",
                        median(c.pgbench.iter().map(|x| x.busy_cores).collect())
                    )
                }
            );
        }
        pg_cpu_table(&mut s, r, cores);
    }
    let _ = writeln!(s, "{END}");
    s
}

/// The rate sessiond would reach if every core of the machine were busy, each request costing
/// what it cost in the round: its own CPU, the load generator's and other processes' (median
/// of the rounds).
fn all_busy(rounds: &[Round], cores: f64) -> f64 {
    median(
        rounds
            .iter()
            .map(|x| {
                let others = x.other_cores * 1e6 / x.rps.max(1.0);
                cores * 1e6 / (x.server_us_per_req + x.client_us_per_req + others).max(1.0)
            })
            .collect(),
    )
}

/// Where the machine's CPU goes for each one-replica PostgreSQL cell, and how much of it the
/// target leaves to sessiond. sessiond, the load generator, PostgreSQL and pgbench all share
/// the machine's cores, so on a saturated machine each side's rate is the machine's CPU
/// divided by what one request (or transaction) costs it in all: the ratio of two rates is
/// the inverse ratio of those costs, and the target's ratio is met only if sessiond's own
/// share stays under what the reference's cost, the load generator's and PostgreSQL's leave.
fn pg_cpu_table(s: &mut String, r: &Report, cores: f64) {
    use std::fmt::Write as _;
    let mut rows = Vec::new();
    for c in r.postgres.iter().filter(|c| c.replicas == 1) {
        let Some(rounds) = c.real.first().filter(|rs| !rs.is_empty()) else {
            continue;
        };
        let reference = reference(c);
        if reference.rounds.is_empty() {
            continue;
        }
        let per_req = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f).collect());
        let server = per_req(&|x| x.server_us_per_req);
        let client = per_req(&|x| x.client_us_per_req);
        let others = per_req(&|x| x.other_cores * 1e6 / x.rps.max(1.0));
        let machine = per_req(&|x| x.machine_busy * cores * 1e6 / x.rps.max(1.0));
        let per_txn = median(
            reference
                .rounds
                .iter()
                .map(|x| x.busy_cores * 1e6 / x.tps.max(1.0))
                .collect(),
        );
        rows.push(format!(
            "| {} | {} | {server:.0} | {client:.0} | {others:.0} | {machine:.0} | {per_txn:.0} \
             ({}) | {:.0} |",
            c.op.name(),
            c.proto.name(),
            reference.name,
            per_txn / reference.goal - client - others
        ));
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\nWhere the machine's CPU goes, one replica (medians of the rounds above): CPU per \
         request of sessiond, of the load generator and of every other process (PostgreSQL's \
         backends, the two idle replicas, anything else on the machine), and of the whole \
         machine; beside it the whole machine's CPU per transaction of the reference (PostgreSQL \
         and pgbench). All of them share the same {cores:.0} cores, so a ratio of rates is the \
         inverse ratio of these costs, and the target is within reach only if sessiond's own \
         CPU per request stays under the last column: the reference's cost divided by the \
         target ratio, less the load generator's and the other processes' cost per request \
         (negative: out of reach even for a server that costs nothing).\n\n\
         | Operation | Protocol | sessiond µs/req | load generator µs/req | PostgreSQL and \
         others µs/req | machine µs/req | machine µs per reference transaction | sessiond \
         µs/req the target leaves |\n|---|---|--:|--:|--:|--:|--:|--:|"
    );
    for row in rows {
        let _ = writeln!(s, "{row}");
    }
}

/// Writes the section into `path` (replacing an earlier one, keeping everything else) and
/// the numbers under `ceilings` in the JSON file next to it.
pub fn merge_into(path: &Path, report: &Report) -> anyhow::Result<()> {
    let section = markdown(report);
    crate::report::replace_section(path, START, END, &section)?;
    let json = path.with_extension("json");
    std::fs::write(
        &json,
        json_with(&std::fs::read_to_string(&json).unwrap_or_default(), report)?,
    )?;
    Ok(())
}

/// `old` (a JSON object written by the main run) with `ceilings` set to the report: added
/// as the last key by editing the text, so the rest of the file stays byte for byte and merges
/// cleanly; an earlier `ceilings` (always the last key) is replaced.
pub fn json_with(old: &str, report: &impl Serialize) -> anyhow::Result<String> {
    let value = serde_json::to_string_pretty(report)?.replace('\n', "\n  ");
    let head = match old.find("\n  \"ceilings\": ") {
        Some(i) => old[..i].trim_end().trim_end_matches(','),
        None => old.trim_end().strip_suffix('}').unwrap_or("{").trim_end(),
    };
    let comma = if head.trim() == "{" { "" } else { "," };
    let text = format!("{head}{comma}\n  \"ceilings\": {value}\n}}\n");
    if serde_json::from_str::<serde_json::Value>(&text).is_ok() {
        return Ok(text);
    }
    // Not the shape expected: rewrite the whole object.
    let mut whole: serde_json::Value =
        serde_json::from_str(old).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(object) = whole.as_object_mut() {
        object.insert("ceilings".to_owned(), serde_json::to_value(report)?);
    }
    Ok(serde_json::to_string_pretty(&whole)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceilings_key_is_added_last_and_then_replaced() {
        let old = "{\n  \"a\": 1,\n  \"b\": [\n    2\n  ]\n}\n";
        let report = Report {
            seconds: 1.0,
            ..Default::default()
        };
        let once = json_with(old, &report).unwrap();
        assert!(once.starts_with("{\n  \"a\": 1,\n  \"b\": [\n    2\n  ],\n  \"ceilings\": {"));
        let again = Report {
            seconds: 2.0,
            ..Default::default()
        };
        let twice = json_with(&once, &again).unwrap();
        let value: serde_json::Value = serde_json::from_str(&twice).unwrap();
        assert_eq!(value["a"], 1);
        assert_eq!(value["ceilings"]["seconds"], 2.0);
        assert_eq!(twice.matches("\"ceilings\"").count(), 1);
        assert_eq!(
            json_with("", &report)
                .unwrap()
                .matches("\"ceilings\"")
                .count(),
            1
        );
    }

    #[test]
    fn the_cpu_table_splits_a_request_and_says_what_the_target_leaves_sessiond() {
        let round = |rps: f64| Round {
            rps,
            p50_ms: 1.0,
            p99_ms: 2.0,
            ok: 1,
            errors: 0,
            elapsed_s: 1.0,
            server_us_per_req: 100.0,
            client_us_per_req: 40.0,
            server_peak_rss_mb: 1.0,
            exhausted: false,
            max_backlog: 0,
            server_switches_per_req: 0.0,
            machine_busy: 0.95,
            other_cores: 1.2,
            sample_errors: Vec::new(),
        };
        let pgbench = |tps: f64| PgbenchRound {
            tps,
            latency_ms: 1.0,
            transactions: 1,
            failed: 0,
            busy_cores: 1.9,
        };
        let cell = |op, replicas, reference: Vec<PgbenchRound>| PgOp {
            op,
            proto: Proto::Grpc,
            replicas,
            real: vec![vec![round(5_000.0)]; replicas],
            pgbench: if op == Op::Get {
                vec![pgbench(1.0)]
            } else {
                reference.clone()
            },
            select_only: if op == Op::Get { reference } else { Vec::new() },
        };
        let report = Report {
            postgres: vec![
                cell(Op::Delete, 1, vec![pgbench(8_000.0)]),
                cell(Op::Get, 1, vec![pgbench(76_000.0)]),
                // Three replicas have no reference of their own: no row.
                cell(Op::Delete, 3, Vec::new()),
            ],
            ..Default::default()
        };
        let mut s = String::new();
        pg_cpu_table(&mut s, &report, 2.0);
        let rows: Vec<&str> = s.lines().filter(|l| l.starts_with("| ")).collect();
        // Others: 1.2 cores at 5,000 req/s, 240 µs; the machine: 0.95 of 2 cores, 380 µs.
        // DeleteSession's script: 1.9 cores at 8,000 tps, 237.5 µs; 237.5 / 0.7 - 40 - 240.
        assert_eq!(
            rows[1],
            "| DeleteSession | gRPC | 100 | 40 | 240 | 380 | 238 (the pgbench script) | 59 |"
        );
        // GetSession's reference is `pgbench -S`: 1.9 cores at 76,000 tps, 25 µs; 50 - 280.
        assert_eq!(
            rows[2],
            "| GetSession | gRPC | 100 | 40 | 240 | 380 | 25 (`pgbench -S`) | -230 |"
        );
        assert_eq!(rows.len(), 3);
    }
}
