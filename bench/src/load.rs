//! Load loops: closed-loop (N requests always in flight, for maximum throughput) and
//! rate-limited (a fixed offered rate, for latency at a given load), with latencies in an
//! HDR histogram (microseconds), and the server's CPU time and peak RSS read from /proc.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use sessiond::faces::pb::zitadel::session::v2::session_service_client::SessionServiceClient;
use tokio::sync::Semaphore;

use crate::client::{self, Conn, Op, Proto, Workload};
use crate::procfs;

/// A server under test.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub pid: u32,
    pub noop: bool,
}

#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// `concurrency` workers, each with one request in flight.
    Closed { concurrency: usize },
    /// Requests released at `rate` per second to up to `workers` workers.
    Rate { rate: f64, workers: usize },
}

#[derive(Clone, Debug)]
pub struct RunSpec {
    pub op: Op,
    pub proto: Proto,
    pub mode: Mode,
    pub warmup: Duration,
    pub duration: Duration,
    /// Stop after this many timed requests (used to give every data size the same work).
    pub max_requests: Option<u64>,
    /// HTTP/2 connections shared by the gRPC workers.
    pub grpc_connections: usize,
}

#[derive(Clone, Debug)]
pub struct RunResult {
    pub ok: u64,
    pub errors: u64,
    pub elapsed: f64,
    pub hist: Histogram<u64>,
    /// Server CPU seconds (user + system) during the timed phase.
    pub server_cpu: f64,
    /// This process's CPU seconds during the timed phase.
    pub client_cpu: f64,
    /// VmHWM of the server over this run (the high-water mark is reset before it), bytes.
    pub server_peak_rss: u64,
    /// The delete pool ran out before the time was up.
    pub exhausted: bool,
    /// A few error messages, for the report.
    pub sample_errors: Vec<String>,
    /// Rate mode: the most requests that were due but waiting for a free worker.
    pub max_backlog: usize,
    /// Server context switches (all threads) during the timed phase.
    pub server_context_switches: u64,
    /// Share of the machine's CPU time (all cores) that was busy during the timed phase.
    pub machine_busy: f64,
    /// Cores' worth of CPU that other processes (neither this bench nor the server under
    /// test) used during the timed phase: other work on a shared machine.
    pub other_cores: f64,
}

impl RunResult {
    pub fn rps(&self) -> f64 {
        if self.elapsed > 0.0 {
            self.ok as f64 / self.elapsed
        } else {
            0.0
        }
    }

    /// Latency quantile in milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            f64::NAN
        } else {
            self.hist.value_at_quantile(q) as f64 / 1000.0
        }
    }

    /// Server CPU microseconds per successful request.
    pub fn server_us_per_req(&self) -> f64 {
        if self.ok == 0 {
            f64::NAN
        } else {
            self.server_cpu * 1e6 / self.ok as f64
        }
    }

    pub fn switches_per_req(&self) -> f64 {
        if self.ok == 0 {
            f64::NAN
        } else {
            self.server_context_switches as f64 / self.ok as f64
        }
    }

    pub fn client_us_per_req(&self) -> f64 {
        if self.ok == 0 {
            f64::NAN
        } else {
            self.client_cpu * 1e6 / self.ok as f64
        }
    }
}

fn new_hist() -> Histogram<u64> {
    // 1 µs .. 60 s, 3 significant digits; the bounds are valid constants.
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| unreachable!())
}

struct Shared {
    ok: AtomicU64,
    errors: AtomicU64,
    timed_started: AtomicU64,
    exhausted: AtomicBool,
    last_done_ns: AtomicU64,
    errors_seen: std::sync::Mutex<Vec<String>>,
}

/// Opens the connections a run needs (before the clock starts).
async fn connections(
    target: &Target,
    wl: &Workload,
    spec: &RunSpec,
    workers: usize,
) -> anyhow::Result<Vec<Conn>> {
    let mut conns = Vec::with_capacity(workers);
    match spec.proto {
        Proto::Grpc => {
            let mut channels = Vec::new();
            for _ in 0..spec.grpc_connections.clamp(1, workers.max(1)) {
                channels.push(client::grpc_channel(target.addr).await?);
            }
            for i in 0..workers {
                conns.push(Conn::Grpc {
                    client: SessionServiceClient::new(channels[i % channels.len()].clone()),
                    auth: wl.bearer.parse()?,
                });
            }
        }
        _ => {
            for _ in 0..workers {
                conns.push(Conn::Http {
                    addr: target.addr,
                    sender: Some(client::http_connect(target.addr).await?),
                });
            }
        }
    }
    Ok(conns)
}

/// Runs one measurement against `target`.
pub async fn run(target: &Target, wl: Arc<Workload>, spec: &RunSpec) -> anyhow::Result<RunResult> {
    let workers = match spec.mode {
        Mode::Closed { concurrency } => concurrency,
        Mode::Rate { workers, .. } => workers,
    }
    .max(1);
    let conns = connections(target, &wl, spec, workers).await?;
    procfs::reset_peak_rss(target.pid);

    let shared = Arc::new(Shared {
        ok: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        timed_started: AtomicU64::new(0),
        exhausted: AtomicBool::new(false),
        last_done_ns: AtomicU64::new(0),
        errors_seen: std::sync::Mutex::new(Vec::new()),
    });
    let start = Instant::now();
    let timed_from = start + spec.warmup;
    let end = timed_from + spec.duration;
    let permits = Arc::new(Semaphore::new(0));
    let backlog = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    // Rate mode: release permits on a 1 ms tick (tokio's timer granularity).
    let ticker = if let Mode::Rate { rate, .. } = spec.mode {
        let permits = permits.clone();
        let backlog = backlog.clone();
        let stop = stop.clone();
        Some(tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(1));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut released: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                interval.tick().await;
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let due = (now.duration_since(start).as_secs_f64() * rate) as u64;
                if due > released {
                    permits.add_permits((due - released) as usize);
                    released = due;
                }
                backlog.fetch_max(permits.available_permits(), Ordering::Relaxed);
            }
            permits.close();
        }))
    } else {
        None
    };

    let mut handles = Vec::with_capacity(workers);
    for mut conn in conns {
        let wl = wl.clone();
        let shared = shared.clone();
        let permits = permits.clone();
        let spec = spec.clone();
        let noop = target.noop;
        handles.push(tokio::spawn(async move {
            let mut hist = new_hist();
            loop {
                if let Mode::Rate { .. } = spec.mode {
                    let acquired = tokio::select! {
                        p = permits.acquire() => p.ok(),
                        () = tokio::time::sleep_until(end.into()) => None,
                    };
                    match acquired {
                        Some(p) => p.forget(),
                        None => break,
                    }
                }
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let timed = t0 >= timed_from;
                if timed
                    && let Some(max) = spec.max_requests
                    && shared.timed_started.fetch_add(1, Ordering::Relaxed) >= max
                {
                    break;
                }
                let Some(pick) = wl.pick(spec.op, noop) else {
                    shared.exhausted.store(true, Ordering::Relaxed);
                    break;
                };
                let result = client::call(&mut conn, &wl, spec.op, spec.proto, noop, pick).await;
                let t1 = Instant::now();
                if !timed {
                    continue;
                }
                match result {
                    Ok(()) => {
                        let us = t1.duration_since(t0).as_micros().max(1) as u64;
                        hist.saturating_record(us);
                        shared.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                        let mut seen = shared.errors_seen.lock().unwrap_or_else(|p| p.into_inner());
                        if seen.len() < 5 && !seen.contains(&e) {
                            seen.push(e);
                        }
                    }
                }
                shared.last_done_ns.fetch_max(
                    t1.duration_since(start).as_nanos() as u64,
                    Ordering::Relaxed,
                );
            }
            hist
        }));
    }

    tokio::time::sleep_until(timed_from.into()).await;
    let server_cpu0 = procfs::cpu_seconds(target.pid);
    let client_cpu0 = procfs::cpu_seconds(std::process::id());
    let switches0 = procfs::context_switches(target.pid);
    let machine0 = procfs::machine_jiffies();
    let wall0 = Instant::now();
    let mut hist = new_hist();
    for h in handles {
        let h = h.await?;
        hist.add(&h)
            .map_err(|e| anyhow::anyhow!("histogram: {e:?}"))?;
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = ticker {
        t.abort();
    }
    let server_cpu1 = procfs::cpu_seconds(target.pid);
    let client_cpu1 = procfs::cpu_seconds(std::process::id());
    let switches1 = procfs::context_switches(target.pid);
    let machine1 = procfs::machine_jiffies();
    let wall = wall0.elapsed().as_secs_f64();
    let busy_seconds = machine1.0.saturating_sub(machine0.0) as f64 / procfs::clock_ticks();
    let other_cores = if wall > 0.0 {
        ((busy_seconds - (server_cpu1 - server_cpu0) - (client_cpu1 - client_cpu0)) / wall).max(0.0)
    } else {
        f64::NAN
    };
    let last_done = start + Duration::from_nanos(shared.last_done_ns.load(Ordering::Relaxed));
    let exhausted = shared.exhausted.load(Ordering::Relaxed);
    let elapsed = if last_done > timed_from {
        last_done.duration_since(timed_from).as_secs_f64()
    } else {
        0.0
    };
    let sample_errors = shared
        .errors_seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Ok(RunResult {
        ok: shared.ok.load(Ordering::Relaxed),
        errors: shared.errors.load(Ordering::Relaxed),
        elapsed,
        hist,
        server_cpu: server_cpu1 - server_cpu0,
        client_cpu: client_cpu1 - client_cpu0,
        server_peak_rss: procfs::peak_rss(target.pid),
        exhausted,
        sample_errors,
        max_backlog: backlog.load(Ordering::Relaxed),
        server_context_switches: switches1.saturating_sub(switches0),
        machine_busy: {
            let busy = machine1.0.saturating_sub(machine0.0) as f64;
            let total = machine1.1.saturating_sub(machine0.1) as f64;
            if total > 0.0 { busy / total } else { f64::NAN }
        },
        other_cores,
    })
}
