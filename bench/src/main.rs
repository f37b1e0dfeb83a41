//! sessiond-bench: drives a running sessiond over native gRPC, gRPC-Web, Connect and REST,
//! next to a no-op server built from the same stack, and writes bench/RESULTS.md.
//!
//! `sessiond-bench` (or `bench/run.sh`) runs everything: it prepares data directories with
//! the sessiond CLI and the seeder, starts `sessiond serve` and the no-op server on ports it
//! picks, measures, stops them and writes the report.

mod ceiling;
mod client;
mod factors;
mod feed;
mod load;
mod noop;
mod pg;
mod procfs;
mod report;
mod resident;
mod seed;
mod server;
mod signals;
mod storage;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde::Serialize;
use sessiond::domain::Clock as _;

use client::{Op, Proto, Workload};
use load::{Mode, RunResult, RunSpec, Target};
use server::Server;

#[derive(Parser, Debug)]
#[command(
    name = "sessiond-bench",
    about = "Load generator for sessiond with a no-op ceiling; writes a Markdown report"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the no-op stack (started by the bench itself).
    #[command(hide = true)]
    NoopServe {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// SetSession with a TOTP check and with a WebAuthn assertion over gRPC (a sessiond
    /// process on SQLite): throughput, p99 and server CPU, and the WebAuthn rate against a
    /// bare webauthn-rs verification loop on one thread and on every core. With --out,
    /// replaces the marked section of that file.
    Factors {
        /// The sessiond binary (default: `sessiond` next to this executable).
        #[arg(long)]
        sessiond: Option<PathBuf>,
        /// Checks of each kind (one user and one session each).
        #[arg(long, default_value_t = 2000)]
        checks: usize,
        /// Requests in flight.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// A markdown file whose `factors` section to replace (e.g. bench/RESULTS.md).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Measure the session event feed in process: revocation latency with 1, 1,000 and
    /// 10,000 subscribers (SQLite), DeleteSession throughput with and without 1,000
    /// subscribers (of every event, and of one user each), memory per idle subscriber, and
    /// with --postgres two replicas.
    Feed {
        /// Subscriber counts of the one-node latency runs.
        #[arg(long, default_value = "1,1000,10000", value_delimiter = ',')]
        subscribers: Vec<usize>,
        /// Sessions revoked per latency run (half with 10,000 subscribers).
        #[arg(long, default_value_t = 200)]
        revocations: usize,
        /// Sessions deleted per throughput run.
        #[arg(long, default_value_t = 4000)]
        throughput_sessions: usize,
        /// A PostgreSQL URL of a role that may create databases: adds the two-replica run, on
        /// a database of its own that the bench creates there and drops at the end.
        #[arg(long)]
        postgres: Option<String>,
        /// Merge the Markdown section into this file, between its markers (and write the
        /// numbers next to it as RESULTS-feed.json).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Measure sessiond's writes against its storage ceilings: on SQLite a bare rusqlite
    /// loop running the same statements, on PostgreSQL pgbench running them (one replica and
    /// three). Merges its section into --out, keeping the others.
    Ceilings {
        /// Which stores: sqlite, postgres.
        #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
        store: Vec<String>,
        /// The PostgreSQL server: the bench creates a database there and drops it after.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
        postgres_url: String,
        /// The sessiond binary (default: `sessiond` next to this executable).
        #[arg(long)]
        sessiond: Option<PathBuf>,
        /// Alternating rounds per operation.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Seconds per timed round (whole seconds for pgbench).
        #[arg(long, default_value_t = 3.0)]
        duration: f64,
        /// Requests in flight per sessiond process.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// pgbench connections (sessiond's default pool per replica).
        #[arg(long, default_value_t = 16)]
        pg_connections: usize,
        /// Sessions seeded for the delete runs.
        #[arg(long, default_value_t = 600_000)]
        delete_pool: usize,
        /// Merge the section into this Markdown file (and its numbers into FILE.json).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Measure Shared Signals end to end: a sessiond process pushing SETs to 10 streams whose
    /// receiver (in this process) verifies every signature. Latency from the DeleteSession
    /// answer to the verified SET at a fixed rate, SETs per second at saturation, and
    /// DeleteSession throughput with and without the streams. Merges its section into --out.
    Signals {
        /// The sessiond binary (default: `sessiond` next to this executable).
        #[arg(long)]
        sessiond: Option<PathBuf>,
        /// Revocations per second of the latency run (open loop).
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// Seconds of the latency run.
        #[arg(long, default_value_t = 3.0)]
        latency_seconds: f64,
        /// Seconds of DeleteSession as fast as possible in the saturation run.
        #[arg(long, default_value_t = 2.0)]
        saturation_seconds: f64,
        /// The longest wait for the saturation backlog to drain.
        #[arg(long, default_value_t = 30.0)]
        drain_cap_seconds: f64,
        /// Seconds per throughput round.
        #[arg(long, default_value_t = 2.0)]
        throughput_seconds: f64,
        /// Alternating rounds (without streams, with them).
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        /// The signing key algorithm (sessiond's default when not given).
        #[arg(long)]
        key_algorithm: Option<String>,
        /// Every stream receives every revocation (default: each stream receives the
        /// revocations of its own users; the users of the other streams are removed from it).
        #[arg(long)]
        every_stream_gets_all: bool,
        /// Merge the section into this Markdown file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug, Clone)]
struct RunArgs {
    /// A ~2 minute smoke run: 1 round of 1 s per cell, scale 10k and 100k only.
    #[arg(long)]
    quick: bool,
    /// Write the Markdown report here (and the raw numbers next to it as .json).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The sessiond binary (default: `sessiond` next to this executable).
    #[arg(long)]
    sessiond: Option<PathBuf>,
    /// Alternating rounds (sessiond, no-op) per operation and protocol.
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds per timed round.
    #[arg(long)]
    duration: Option<f64>,
    /// Requests in flight in the closed-loop runs.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Requests in flight for CreateSession with a password (argon2 is the bottleneck).
    #[arg(long, default_value_t = 8)]
    password_concurrency: usize,
    /// HTTP/2 connections the gRPC workers share.
    #[arg(long, default_value_t = 4)]
    grpc_connections: usize,
    /// Session counts of the scale test (default 10k,100k,1m,10m; 10m seeds a ~6 GB file).
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<String>>,
    /// Skip the scale test.
    #[arg(long)]
    no_scale: bool,
    /// Skip the main table (operations × protocols).
    #[arg(long)]
    no_table: bool,
    /// Only these operations in the main table: create,password,get,list,delete,whoami.
    #[arg(long, value_delimiter = ',')]
    ops: Option<Vec<String>>,
    /// Only these protocols: grpc,grpc-web,connect,rest.
    #[arg(long, value_delimiter = ',')]
    protocols: Option<Vec<String>>,
    /// Sessions seeded for DeleteSession to consume (default: sized from rounds and duration).
    #[arg(long)]
    delete_pool: Option<usize>,
    /// Where data directories go (default: a new directory under the system temp dir).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the data directories afterwards.
    #[arg(long)]
    keep: bool,
    /// Seconds to wait, before each operation × protocol, for other processes on the machine
    /// to go quiet (below 10% CPU); 0 disables the wait.
    #[arg(long)]
    quiet_wait: Option<f64>,
}

/// Everything a run is parameterised by, after defaults.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    pub quick: bool,
    pub rounds: usize,
    pub duration: f64,
    pub warmup: f64,
    pub c1_duration: f64,
    pub rate_duration: f64,
    pub concurrency: usize,
    pub password_concurrency: usize,
    pub grpc_connections: usize,
    pub sizes: Vec<usize>,
    pub scale_c1_requests: u64,
    pub scale_delete_c1_requests: u64,
    pub scale_delete_requests: u64,
    pub argon2_seconds: f64,
    pub quiet_wait: f64,
}

const PASSWORD: &str = "correct horse battery staple";
const SESSIONS_PER_USER: usize = 10;

fn parse_size(s: &str) -> anyhow::Result<usize> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = if let Some(n) = s.strip_suffix('k') {
        (n, 1_000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 1_000_000)
    } else {
        (s.as_str(), 1)
    };
    Ok(num
        .parse::<f64>()
        .with_context(|| format!("size {s:?}"))?
        .mul_add(mult as f64, 0.0) as usize)
}

fn parse_op(s: &str) -> anyhow::Result<Op> {
    Ok(match s.trim() {
        "create" => Op::Create,
        "password" => Op::CreatePassword,
        "get" => Op::Get,
        "list" => Op::List,
        "delete" => Op::Delete,
        "whoami" => Op::Whoami,
        other => anyhow::bail!("unknown operation {other:?}"),
    })
}

fn parse_proto(s: &str) -> anyhow::Result<Proto> {
    Ok(match s.trim() {
        "grpc" => Proto::Grpc,
        "grpc-web" | "grpcweb" => Proto::GrpcWeb,
        "connect" => Proto::Connect,
        "rest" => Proto::Rest,
        other => anyhow::bail!("unknown protocol {other:?}"),
    })
}

fn main() -> anyhow::Result<()> {
    // The seeding and the storage ceilings run SQLite in this process with the page cache
    // sessiond's store uses.
    sessiond::store::page_cache::install();
    let cli = Cli::parse();
    // The same runtime sessiond's main uses (`#[tokio::main]`: multi-threaded, one worker
    // per core), for the no-op server and for the load generator.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Some(Command::NoopServe { listen }) => runtime.block_on(noop::serve(listen)),
        Some(Command::Feed {
            subscribers,
            revocations,
            throughput_sessions,
            postgres,
            out,
        }) => runtime.block_on(async {
            let load_before = feed::load_average();
            let report =
                feed::run(&subscribers, revocations, throughput_sessions, postgres).await?;
            // The command as it can be run again, without the URL's credentials.
            let command = std::env::args()
                .map(|a| {
                    if a.contains("://") {
                        "'<url>'".to_owned()
                    } else {
                        a
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
            let section = feed::section(&report, &command, &load_before, &feed::load_average());
            println!("{section}");
            if let Some(out) = out {
                feed::merge_into(&out, &section, &report)?;
            }
            Ok(())
        }),
        Some(Command::Factors {
            sessiond,
            checks,
            concurrency,
            out,
        }) => runtime.block_on(async {
            let load_before = feed::load_average();
            let report = factors::run(factors::Options {
                sessiond: sessiond_binary(sessiond)?,
                checks: checks.max(1),
                concurrency: concurrency.max(1),
            })
            .await?;
            let command =
                format!("sessiond-bench factors --checks {checks} --concurrency {concurrency}");
            let section = factors::section(&report, &command, &load_before, &feed::load_average());
            println!("{section}");
            if let Some(out) = out {
                factors::merge_into(&out, &section, &report)?;
            }
            Ok(())
        }),
        Some(Command::Ceilings {
            store,
            postgres_url,
            sessiond,
            rounds,
            duration,
            concurrency,
            pg_connections,
            delete_pool,
            out,
        }) => runtime.block_on(async {
            let bin = sessiond_binary(sessiond)?;
            let work =
                std::env::temp_dir().join(format!("sessiond-ceilings-{}", std::process::id()));
            let options = storage::Options {
                sessiond: bin,
                rounds: rounds.max(1),
                duration,
                concurrency: concurrency.max(1),
                grpc_connections: 4,
                delete_pool,
                sqlite: store.iter().any(|s| s == "sqlite"),
                postgres: store
                    .iter()
                    .any(|s| s == "postgres")
                    .then_some(postgres_url),
                pg_connections: pg_connections.max(1),
                work: work.clone(),
                command: std::env::args().collect::<Vec<_>>().join(" "),
            };
            let report = tokio::select! {
                report = storage::run(options) => report,
                _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
            };
            let _ = std::fs::remove_dir_all(&work);
            let report = report?;
            match out {
                Some(path) => storage::merge_into(&path, &report)?,
                None => println!("{}", storage::markdown(&report)),
            }
            Ok(())
        }),
        Some(Command::Signals {
            sessiond,
            rate,
            latency_seconds,
            saturation_seconds,
            drain_cap_seconds,
            throughput_seconds,
            rounds,
            key_algorithm,
            every_stream_gets_all,
            out,
        }) => runtime.block_on(async {
            let work =
                std::env::temp_dir().join(format!("sessiond-signals-{}", std::process::id()));
            let options = signals::Options {
                sessiond: sessiond_binary(sessiond)?,
                rate,
                latency_seconds,
                saturation_seconds,
                drain_cap_seconds,
                throughput_seconds,
                rounds,
                key_algorithm,
                every_stream_gets_all,
                work: work.clone(),
                command: std::env::args().collect::<Vec<_>>().join(" "),
            };
            let report = tokio::select! {
                report = signals::run(options) => report,
                _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
            };
            let _ = std::fs::remove_dir_all(&work);
            let report = report?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            match out {
                Some(path) => signals::merge_into(&path, &report)?,
                None => println!("{}", signals::markdown(&report)),
            }
            Ok(())
        }),
        None => runtime.block_on(async {
            // On Ctrl-C the run is dropped, which stops the servers it started.
            tokio::select! {
                result = run(cli.run) => result,
                _ = tokio::signal::ctrl_c() => {
                    eprintln!("interrupted: stopping the servers");
                    Ok(())
                }
            }
        }),
    }
}

/// Summary of one measurement, as reported.
#[derive(Clone, Debug, Serialize)]
pub struct Round {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub ok: u64,
    pub errors: u64,
    pub elapsed_s: f64,
    pub server_us_per_req: f64,
    pub client_us_per_req: f64,
    pub server_peak_rss_mb: f64,
    pub exhausted: bool,
    pub max_backlog: usize,
    pub server_switches_per_req: f64,
    pub machine_busy: f64,
    pub other_cores: f64,
    pub sample_errors: Vec<String>,
}

impl From<&RunResult> for Round {
    fn from(r: &RunResult) -> Self {
        Self {
            rps: r.rps(),
            p50_ms: r.ms(0.5),
            p99_ms: r.ms(0.99),
            ok: r.ok,
            errors: r.errors,
            elapsed_s: r.elapsed,
            server_us_per_req: r.server_us_per_req(),
            client_us_per_req: r.client_us_per_req(),
            server_peak_rss_mb: r.server_peak_rss as f64 / 1048576.0,
            exhausted: r.exhausted,
            max_backlog: r.max_backlog,
            server_switches_per_req: r.switches_per_req(),
            machine_busy: r.machine_busy,
            other_cores: r.other_cores,
            sample_errors: r.sample_errors.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub op: Op,
    pub proto: Proto,
    pub concurrency: usize,
    pub real: Vec<Round>,
    pub noop: Vec<Round>,
    pub c1_real: Option<Round>,
    pub c1_noop: Option<Round>,
    /// The offered rate of the rate-limited pass and its result.
    pub half_rate: Option<(f64, Round)>,
    /// The no-op server at the same offered rate (the machine's own tail).
    pub half_rate_noop: Option<Round>,
    /// Seconds spent waiting for a quiet machine before this cell, and the busy share then.
    pub quiet_wait: (f64, f64),
    /// CreateSession with a password: the argon2id reference rate (verifies/s on every
    /// core), measured right after each sessiond round, so both see the same machine.
    pub argon2_rounds: Vec<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ScaleStep {
    pub sessions: usize,
    pub users: usize,
    pub seed_seconds: f64,
    pub db_mb: f64,
    pub idle_rss_mb: f64,
    pub peak_rss_mb: f64,
    /// (operation, concurrency-1 latency, closed-loop throughput)
    pub ops: Vec<(Op, Round, Round)>,
}

impl ScaleStep {
    /// Bytes of database file per seeded session.
    pub fn bytes_per_session(&self) -> f64 {
        self.db_mb * 1048576.0 / self.sessions.max(1) as f64
    }
}

#[derive(Clone, Debug, Serialize, Default)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub kernel: String,
    pub memory_gb: f64,
    pub date: String,
    pub commit: String,
    pub command: String,
    /// The sessiond binary measured and when it was built.
    pub sessiond_binary: String,
}

#[derive(Clone, Debug, Serialize, Default)]
pub struct Results {
    pub machine: Machine,
    pub settings: Option<Settings>,
    pub argon2_verifies_per_s: f64,
    pub argon2_threads: usize,
    /// Busy share of the machine during the argon2 reference (≈100% expected: it uses every
    /// core; other processes would make the reference low).
    pub argon2_machine_busy: f64,
    /// CPU time one verify took (measured over the whole reference run).
    pub argon2_cpu_ms_per_verify: f64,
    /// cores / CPU per verify: the rate with every core verifying and nothing else running.
    pub argon2_cpu_rate: f64,
    pub idle_rss_mb: f64,
    pub idle_rss_after_load_mb: f64,
    pub noop_idle_rss_mb: f64,
    pub core_db_sessions: usize,
    pub cells: Vec<Cell>,
    pub scale: Vec<ScaleStep>,
    pub total_seconds: f64,
}

fn machine(command: String, root: &Path) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']))
        })
        .unwrap_or("unknown")
        .to_owned();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let mut commit = git(&["rev-parse", "--short", "HEAD"]);
    if !git(&[
        "status",
        "--porcelain",
        "--",
        "src",
        "Cargo.toml",
        "migrations",
    ])
    .is_empty()
    {
        commit.push_str(" + uncommitted changes");
    }
    Machine {
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        cpu,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        memory_gb: mem_kb / 1048576.0,
        date: sessiond::domain::SystemClock.now().to_rfc3339(),
        commit,
        command,
        sessiond_binary: String::new(),
    }
}

/// How fast this machine verifies one argon2id hash with sessiond's parameters
/// (m = 19456 KiB, t = 2, p = 1), on every core at once.
fn argon2_rate(seconds: f64) -> anyhow::Result<(f64, usize, f64)> {
    use argon2::password_hash::rand_core::OsRng;
    use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
    use argon2::{Algorithm, Argon2, Params, Version};
    let params = Params::new(19 * 1024, 2, 1, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = SaltString::generate(&mut OsRng);
    let hash = argon2
        .hash_password(PASSWORD.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_string();
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let cpu0 = procfs::cpu_seconds(std::process::id());
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let counts: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let hash = &hash;
                let argon2 = &argon2;
                s.spawn(move || {
                    let parsed = PasswordHash::new(hash).ok();
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        if let Some(p) = &parsed
                            && argon2.verify_password(PASSWORD.as_bytes(), p).is_ok()
                        {
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    let total: u64 = counts.iter().sum();
    let cpu = procfs::cpu_seconds(std::process::id()) - cpu0;
    Ok((
        total as f64 / started.elapsed().as_secs_f64(),
        threads,
        cpu / total.max(1) as f64,
    ))
}

fn argon2_hash() -> anyhow::Result<String> {
    use argon2::password_hash::rand_core::OsRng;
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    use argon2::{Algorithm, Argon2, Params, Version};
    let params = Params::new(19 * 1024, 2, 1, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(PASSWORD.as_bytes(), &SaltString::generate(&mut OsRng))
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn now_micros() -> i64 {
    sessiond::domain::SystemClock.now().unix_micros()
}

fn log(start: Instant, message: impl AsRef<str>) {
    eprintln!(
        "[{:>6.1}s] {}",
        start.elapsed().as_secs_f64(),
        message.as_ref()
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The sessiond binary to measure: the one given, else `sessiond` next to this executable.
fn sessiond_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let bin = match given {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("sessiond"))
            .unwrap_or_else(|| PathBuf::from("sessiond")),
    };
    anyhow::ensure!(
        bin.exists(),
        "{} not found: build it first (cargo build --release --bin sessiond) or pass --sessiond",
        bin.display()
    );
    Ok(bin)
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let bin = sessiond_binary(args.sessiond.clone())?;
    let quick = args.quick;
    let settings = Settings {
        quick,
        rounds: args.rounds.unwrap_or(if quick { 1 } else { 3 }).max(1),
        duration: args.duration.unwrap_or(if quick { 1.0 } else { 3.0 }),
        warmup: if quick { 0.3 } else { 0.5 },
        c1_duration: if quick { 0.5 } else { 1.0 },
        rate_duration: if quick { 1.0 } else { 2.0 },
        concurrency: args.concurrency.max(1),
        password_concurrency: args.password_concurrency.max(1),
        grpc_connections: args.grpc_connections.max(1),
        sizes: if args.no_scale {
            Vec::new()
        } else {
            match &args.sizes {
                Some(s) => s
                    .iter()
                    .filter(|s| !s.is_empty())
                    .map(|s| parse_size(s))
                    .collect::<anyhow::Result<_>>()?,
                None if quick => vec![10_000, 100_000],
                None => vec![10_000, 100_000, 1_000_000, 10_000_000],
            }
        },
        scale_c1_requests: if quick { 500 } else { 2000 },
        scale_delete_c1_requests: if quick { 300 } else { 1000 },
        scale_delete_requests: if quick { 1500 } else { 3000 },
        argon2_seconds: if quick { 1.5 } else { 3.0 },
        quiet_wait: args.quiet_wait.unwrap_or(if quick { 5.0 } else { 10.0 }),
    };
    let ops: Vec<Op> = match &args.ops {
        Some(list) => list
            .iter()
            .map(|s| parse_op(s))
            .collect::<anyhow::Result<_>>()?,
        None => vec![
            Op::Create,
            Op::Get,
            Op::List,
            Op::Whoami,
            Op::Delete,
            Op::CreatePassword,
        ],
    };
    let protos: Vec<Proto> = match &args.protocols {
        Some(list) => list
            .iter()
            .map(|s| parse_proto(s))
            .collect::<anyhow::Result<_>>()?,
        None => Proto::ALL.to_vec(),
    };
    let work = match &args.work_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("sessiond-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&work)?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| sessiond::domain::Time::from_unix_micros(d.as_micros() as i64).to_rfc3339())
        .unwrap_or_default();
    let mut results = Results {
        machine: Machine {
            sessiond_binary: format!("{} (built {built})", bin.display()),
            ..machine(command, &root)
        },
        settings: Some(settings.clone()),
        ..Default::default()
    };
    log(t0, format!("work dir {}", work.display()));

    // The argon2 reference, on an idle machine.
    if settings.quiet_wait > 0.0 {
        procfs::wait_quiet(Duration::from_secs_f64(settings.quiet_wait), 0.10).await;
    }
    let busy0 = procfs::machine_jiffies();
    let (rate, threads, cpu_per_verify) = argon2_rate(settings.argon2_seconds)?;
    results.argon2_cpu_ms_per_verify = cpu_per_verify * 1000.0;
    results.argon2_cpu_rate = threads as f64 / cpu_per_verify;
    let busy1 = procfs::machine_jiffies();
    results.argon2_machine_busy =
        busy1.0.saturating_sub(busy0.0) as f64 / busy1.1.saturating_sub(busy0.1).max(1) as f64;
    results.argon2_verifies_per_s = rate;
    results.argon2_threads = threads;
    log(
        t0,
        format!(
            "argon2id verify rate: {rate:.1}/s on {threads} threads ({:.1} ms CPU per verify, \
             {:.1}/s if every core did only that; machine {:.0}% busy)",
            results.argon2_cpu_ms_per_verify,
            results.argon2_cpu_rate,
            results.argon2_machine_busy * 100.0
        ),
    );

    if !args.no_table {
        main_table(
            &bin,
            &work,
            &settings,
            &ops,
            &protos,
            &args,
            &mut results,
            t0,
        )
        .await?;
    }
    if !settings.sizes.is_empty() {
        results.scale = scale(&bin, &work, &settings, t0).await?;
    }
    results.total_seconds = t0.elapsed().as_secs_f64();

    let markdown = report::markdown(&results);
    match &args.out {
        Some(path) => {
            report::merge_main(path, &markdown, &serde_json::to_string_pretty(&results)?)?;
            log(
                t0,
                format!(
                    "wrote {} and {}",
                    path.display(),
                    path.with_extension("json").display()
                ),
            );
        }
        None => println!("{markdown}"),
    }
    if !args.keep && args.work_dir.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(())
}

async fn start_sessiond(bin: &Path, dir: &Path, name: &str) -> anyhow::Result<Server> {
    let port = server::free_port()?;
    let args = vec![
        "serve".to_owned(),
        "--listen".to_owned(),
        format!("127.0.0.1:{port}"),
        "--data-dir".to_owned(),
        dir.to_string_lossy().into_owned(),
    ];
    Server::start(
        bin,
        &args,
        port,
        dir.join(format!("{name}.log")),
        "/healthz",
    )
    .await
}

async fn start_noop(dir: &Path) -> anyhow::Result<Server> {
    let port = server::free_port()?;
    let args = vec![
        "noop-serve".to_owned(),
        "--listen".to_owned(),
        format!("127.0.0.1:{port}"),
    ];
    Server::start(
        &std::env::current_exe()?,
        &args,
        port,
        dir.join("noop.log"),
        "/healthz",
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn main_table(
    bin: &Path,
    work: &Path,
    settings: &Settings,
    ops: &[Op],
    protos: &[Proto],
    args: &RunArgs,
    results: &mut Results,
    t0: Instant,
) -> anyhow::Result<()> {
    let dir = work.join("core");
    let _ = std::fs::remove_dir_all(&dir);
    let jwt = server::prepare_data_dir(bin, &dir)?;
    // Users through the CLI, as an operator would add them.
    let mut create_logins = Vec::new();
    for i in 0..4 {
        let login = format!("bench-create-{i}@bench.example");
        server::add_user(bin, &dir, &login, None)?;
        create_logins.push(login);
    }
    let password_login = "bench-password@bench.example".to_owned();
    server::add_user(bin, &dir, &password_login, Some(PASSWORD))?;

    // Sessions to read and to delete, seeded.
    let deletes_needed = ops.contains(&Op::Delete).then(|| {
        let protos = protos.len() as f64;
        let per_round = settings.warmup + settings.duration;
        // Generous guesses of the delete rates (measured: ~9,000-12,000/s closed loop on
        // 2 cores); a round that runs out reports its rate over the time it lasted.
        let closed = settings.rounds as f64 * protos * per_round * 16_000.0;
        let c1 = protos * (settings.warmup + settings.c1_duration) * 4000.0;
        let rate = protos * (settings.warmup + settings.rate_duration) * 8000.0;
        (closed + c1 + rate) as usize
    });
    let delete_pool_size = args.delete_pool.or(deletes_needed).unwrap_or(0);
    let mut conn = seed::open(&dir.join("sessiond.db")).await?;
    let newest = now_micros();
    let read = seed::seed(
        &mut conn,
        &seed::SeedSpec {
            prefix: "read",
            sessions: seed::READ_SESSIONS,
            sessions_per_user: SESSIONS_PER_USER,
            sample: seed::READ_SESSIONS,
            creator: "bench",
            instance_id: "sessiond",
            password_hash: None,
            lifetime_secs: 7 * 86_400,
        },
        newest,
    )
    .await?;
    let deletes = seed::seed(
        &mut conn,
        &seed::SeedSpec {
            prefix: "delete",
            sessions: delete_pool_size.max(1),
            sessions_per_user: SESSIONS_PER_USER,
            sample: delete_pool_size.max(1),
            creator: "bench",
            instance_id: "sessiond",
            password_hash: None,
            lifetime_secs: 7 * 86_400,
        },
        seed::ending_before(newest, seed::READ_SESSIONS),
    )
    .await?;
    drop(conn);
    results.core_db_sessions = seed::READ_SESSIONS + delete_pool_size.max(1);
    log(
        t0,
        format!(
            "core data: 10,000 read sessions ({:.1}s), {} delete sessions ({:.1}s)",
            read.seconds,
            deletes.sessions.len(),
            deletes.seconds
        ),
    );
    let mut delete_pool = deletes.sessions;
    // Consume the pool in random order, so deletes do not walk the id index in order.
    {
        use rand::seq::SliceRandom;
        delete_pool.shuffle(&mut rand::thread_rng());
    }
    let list_users: Vec<String> = read.users.clone();
    let wl = Arc::new(Workload::new(
        format!("Bearer {jwt}"),
        create_logins,
        password_login,
        PASSWORD.to_owned(),
        read.sessions,
        list_users,
        delete_pool,
    ));

    // The database stays in the page cache for the whole table (see `resident`).
    let resident = resident::pin_async(&dir.join("sessiond.db")).await?;
    log(t0, format!("core data {}", resident.describe()));
    let real = start_sessiond(bin, &dir, "sessiond").await?;
    let noop = start_noop(&dir).await?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    results.idle_rss_mb = procfs::rss(real.pid) as f64 / 1048576.0;
    results.noop_idle_rss_mb = procfs::rss(noop.pid) as f64 / 1048576.0;
    log(
        t0,
        format!(
            "sessiond pid {} on {} (idle RSS {:.1} MB), no-op pid {} on {} (idle RSS {:.1} MB)",
            real.pid, real.addr, results.idle_rss_mb, noop.pid, noop.addr, results.noop_idle_rss_mb
        ),
    );
    let real_t = Target {
        addr: real.addr,
        pid: real.pid,
        noop: false,
    };
    let noop_t = Target {
        addr: noop.addr,
        pid: noop.pid,
        noop: true,
    };

    for &op in ops {
        for &proto in protos {
            if !op.protocols().contains(&proto) {
                continue;
            }
            let concurrency = if op == Op::CreatePassword {
                settings.password_concurrency
            } else {
                settings.concurrency
            };
            let spec = RunSpec {
                op,
                proto,
                mode: Mode::Closed { concurrency },
                warmup: Duration::from_secs_f64(settings.warmup),
                duration: Duration::from_secs_f64(settings.duration),
                max_requests: None,
                grpc_connections: settings.grpc_connections,
            };
            let mut cell = Cell {
                op,
                proto,
                concurrency,
                real: Vec::new(),
                noop: Vec::new(),
                c1_real: None,
                c1_noop: None,
                half_rate: None,
                half_rate_noop: None,
                quiet_wait: (0.0, 0.0),
                argon2_rounds: Vec::new(),
            };
            // The write-ahead log as it is now (sessiond reuses it from its start, and a
            // frame written over a page the host reclaimed reads that page back first).
            let wal = dir.join("sessiond.db-wal");
            let _wal = if wal.exists() {
                Some(resident::pin_async(&wal).await?)
            } else {
                None
            };
            if settings.quiet_wait > 0.0 {
                cell.quiet_wait =
                    procfs::wait_quiet(Duration::from_secs_f64(settings.quiet_wait), 0.10).await;
            }
            // A B A B …: sessiond and the no-op alternate, so drift hits both alike.
            for _ in 0..settings.rounds {
                let a = load::run(&real_t, wl.clone(), &spec).await?;
                cell.real.push(Round::from(&a));
                let b = load::run(&noop_t, wl.clone(), &spec).await?;
                cell.noop.push(Round::from(&b));
                if op == Op::CreatePassword {
                    let seconds = settings.duration;
                    let (rate, _, _) =
                        tokio::task::spawn_blocking(move || argon2_rate(seconds)).await??;
                    cell.argon2_rounds.push(rate);
                }
            }
            // Latency at concurrency 1.
            let c1 = RunSpec {
                mode: Mode::Closed { concurrency: 1 },
                warmup: Duration::from_secs_f64(settings.warmup.min(0.2)),
                duration: Duration::from_secs_f64(settings.c1_duration),
                ..spec.clone()
            };
            cell.c1_real = Some(Round::from(&load::run(&real_t, wl.clone(), &c1).await?));
            cell.c1_noop = Some(Round::from(&load::run(&noop_t, wl.clone(), &c1).await?));
            // Latency at half the measured maximum.
            let max = median(cell.real.iter().map(|r| r.rps).collect());
            if max.is_finite() && max > 0.0 {
                let rate = max / 2.0;
                let rs = RunSpec {
                    mode: Mode::Rate {
                        rate,
                        workers: concurrency,
                    },
                    warmup: Duration::from_secs_f64(settings.warmup.min(0.3)),
                    duration: Duration::from_secs_f64(settings.rate_duration),
                    ..spec.clone()
                };
                let r = load::run(&real_t, wl.clone(), &rs).await?;
                cell.half_rate = Some((rate, Round::from(&r)));
                let n = load::run(&noop_t, wl.clone(), &rs).await?;
                cell.half_rate_noop = Some(Round::from(&n));
            }
            log(
                t0,
                format!(
                    "{:<30} {:<9} {:>8.0} req/s (no-op {:>8.0}), p99 {:.2} ms, c1 p50 {:.3} ms, errors {}{}",
                    op.name(),
                    proto.name(),
                    max,
                    median(cell.noop.iter().map(|r| r.rps).collect()),
                    median(cell.real.iter().map(|r| r.p99_ms).collect()),
                    cell.c1_real.as_ref().map_or(f64::NAN, |r| r.p50_ms),
                    cell.real.iter().map(|r| r.errors).sum::<u64>(),
                    if cell.real.iter().any(|r| r.exhausted) {
                        " (delete pool ran out)"
                    } else {
                        ""
                    }
                ),
            );
            for e in cell
                .real
                .iter()
                .flat_map(|r| r.sample_errors.iter())
                .take(3)
            {
                log(t0, format!("  error: {e}"));
            }
            results.cells.push(cell);
        }
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    results.idle_rss_after_load_mb = procfs::rss(real.pid) as f64 / 1048576.0;
    log(
        t0,
        format!(
            "sessiond RSS after the load: {:.1} MB; deletes left in the pool: {}",
            results.idle_rss_after_load_mb,
            wl.deletes_left()
        ),
    );
    drop(real);
    drop(noop);
    drop(resident);
    Ok(())
}

/// One data size of the scale test: its data, its server and its workload.
struct Sized {
    size: usize,
    users: usize,
    seed_seconds: f64,
    db_mb: f64,
    dir: PathBuf,
    server: Server,
    wl: Arc<Workload>,
    idle_rss_mb: f64,
    /// The database held in the page cache while the size is measured.
    _resident: resident::Resident,
}

async fn prepare_size(bin: &Path, work: &Path, size: usize, t0: Instant) -> anyhow::Result<Sized> {
    let dir = work.join(format!("scale-{size}"));
    let _ = std::fs::remove_dir_all(&dir);
    let jwt = server::prepare_data_dir(bin, &dir)?;
    let hash = argon2_hash()?;
    let db = dir.join("sessiond.db");
    let mut conn = seed::open(&db).await?;
    let seeded = seed::seed(
        &mut conn,
        &seed::SeedSpec {
            prefix: "user",
            sessions: size,
            sessions_per_user: SESSIONS_PER_USER,
            sample: size.min(20_000),
            creator: "bench",
            instance_id: "sessiond",
            password_hash: Some(&hash),
            lifetime_secs: 7 * 86_400,
        },
        now_micros(),
    )
    .await?;
    drop(conn);
    let db_mb = std::fs::metadata(&db).map_or(0, |m| m.len()) as f64 / 1048576.0;
    let resident = resident::pin_async(&db).await?;
    log(
        t0,
        format!(
            "scale {size}: seeded {} users and {size} sessions in {:.1}s ({db_mb:.0} MB, {})",
            seeded.users.len(),
            seeded.seconds,
            resident.describe()
        ),
    );
    let mut sessions = seeded.sessions;
    {
        use rand::seq::SliceRandom;
        sessions.shuffle(&mut rand::thread_rng());
    }
    // A third (at most 5,000) to read, the rest for DeleteSession to consume.
    let reads = (sessions.len() / 3).min(5_000);
    let delete_pool = sessions.split_off(reads);
    let read_pool = sessions;
    // List the users of the read sample (each has SESSIONS_PER_USER sessions).
    let list_users: Vec<String> = read_pool.iter().map(|s| s.user_id.clone()).collect();
    let wl = Arc::new(Workload::new(
        format!("Bearer {jwt}"),
        Vec::new(),
        String::new(),
        PASSWORD.to_owned(),
        read_pool,
        list_users,
        delete_pool,
    ));
    let server = start_sessiond(bin, &dir, "sessiond").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss_mb = procfs::rss(server.pid) as f64 / 1048576.0;
    Ok(Sized {
        size,
        users: seeded.users.len(),
        seed_seconds: seeded.seconds,
        db_mb,
        dir,
        server,
        wl,
        idle_rss_mb,
        _resident: resident,
    })
}

/// The scale test: every size seeded and served at once, then each measurement taken size
/// after size in alternation (10k, 100k, 1M, 10k, …), so drift and other load on the machine
/// hit every size alike.
async fn scale(
    bin: &Path,
    work: &Path,
    settings: &Settings,
    t0: Instant,
) -> anyhow::Result<Vec<ScaleStep>> {
    let mut sized = Vec::new();
    for &size in &settings.sizes {
        sized.push(prepare_size(bin, work, size, t0).await?);
    }
    let rounds = settings.rounds.max(1) as u64;
    let ops = [Op::Get, Op::List, Op::Delete];
    // c1[size][op] = rounds
    let mut c1: Vec<Vec<Vec<Round>>> = vec![vec![Vec::new(); ops.len()]; sized.len()];
    let mut thr: Vec<Vec<Option<Round>>> = vec![vec![None; ops.len()]; sized.len()];
    let mut peak = vec![0.0f64; sized.len()];
    for (k, &op) in ops.iter().enumerate() {
        if settings.quiet_wait > 0.0 {
            procfs::wait_quiet(Duration::from_secs_f64(settings.quiet_wait), 0.10).await;
        }
        let per_round = if op == Op::Delete {
            settings.scale_delete_c1_requests
        } else {
            settings.scale_c1_requests
        } / rounds;
        for _ in 0..rounds {
            for (i, s) in sized.iter().enumerate() {
                let target = Target {
                    addr: s.server.addr,
                    pid: s.server.pid,
                    noop: false,
                };
                let spec = RunSpec {
                    op,
                    proto: Proto::Grpc,
                    mode: Mode::Closed { concurrency: 1 },
                    warmup: Duration::from_millis(100),
                    duration: Duration::from_secs(60),
                    max_requests: Some(per_round.max(1)),
                    grpc_connections: 1,
                };
                let r = Round::from(&load::run(&target, s.wl.clone(), &spec).await?);
                peak[i] = peak[i].max(r.server_peak_rss_mb);
                c1[i][k].push(r);
            }
        }
        for (i, s) in sized.iter().enumerate() {
            let target = Target {
                addr: s.server.addr,
                pid: s.server.pid,
                noop: false,
            };
            let spec = RunSpec {
                op,
                proto: Proto::Grpc,
                mode: Mode::Closed {
                    concurrency: settings.concurrency,
                },
                warmup: Duration::from_secs_f64(if op == Op::Delete {
                    0.2
                } else {
                    settings.warmup
                }),
                duration: if op == Op::Delete {
                    Duration::from_secs(60)
                } else {
                    Duration::from_secs_f64(settings.duration)
                },
                max_requests: (op == Op::Delete).then_some(settings.scale_delete_requests),
                grpc_connections: settings.grpc_connections,
            };
            let r = Round::from(&load::run(&target, s.wl.clone(), &spec).await?);
            peak[i] = peak[i].max(r.server_peak_rss_mb);
            let rounds = &c1[i][k];
            log(
                t0,
                format!(
                    "scale {}: {:<24} c1 p50 {} ms (median of {}); {:.0} req/s at {}; errors {}",
                    s.size,
                    op.name(),
                    rounds
                        .iter()
                        .map(|r| format!("{:.3}", r.p50_ms))
                        .collect::<Vec<_>>()
                        .join(" / "),
                    rounds.len(),
                    r.rps,
                    settings.concurrency,
                    rounds.iter().map(|r| r.errors).sum::<u64>() + r.errors
                ),
            );
            for e in rounds
                .iter()
                .chain(std::iter::once(&r))
                .flat_map(|r| r.sample_errors.iter())
                .take(3)
            {
                log(t0, format!("  error: {e}"));
            }
            thr[i][k] = Some(r);
        }
    }
    let mut steps = Vec::new();
    for (i, s) in sized.into_iter().enumerate() {
        let mut step_ops = Vec::new();
        for (k, &op) in ops.iter().enumerate() {
            let rounds = &c1[i][k];
            let (Some(first), Some(t)) = (rounds.first(), thr[i][k].clone()) else {
                continue;
            };
            let mut merged = first.clone();
            merged.p50_ms = median(rounds.iter().map(|r| r.p50_ms).collect());
            merged.p99_ms = median(rounds.iter().map(|r| r.p99_ms).collect());
            merged.rps = median(rounds.iter().map(|r| r.rps).collect());
            merged.ok = rounds.iter().map(|r| r.ok).sum();
            merged.errors = rounds.iter().map(|r| r.errors).sum();
            merged.sample_errors = rounds
                .iter()
                .flat_map(|r| r.sample_errors.iter().cloned())
                .take(5)
                .collect();
            step_ops.push((op, merged, t));
        }
        let Sized {
            size,
            users,
            seed_seconds,
            db_mb,
            dir,
            server,
            idle_rss_mb,
            ..
        } = s;
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
        steps.push(ScaleStep {
            sessions: size,
            users,
            seed_seconds,
            db_mb,
            idle_rss_mb,
            peak_rss_mb: peak[i],
            ops: step_ops,
        });
    }
    Ok(steps)
}
