//! Shared Signals end to end: a sessiond process (release build, SQLite, loopback receivers
//! allowed) pushing CAEP `session-revoked` SETs to 10 push streams whose receiver runs in
//! this process and verifies every SET's signature against the published JWKS.
//!
//! - Subjects: the sessions belong to 10 users; stream n receives the revocations of user n
//!   only (the other users are removed from it by SSF remove-subject; sessiond's
//!   `default_subjects` is `ALL`), so each revocation is one SET. With
//!   `--every-stream-gets-all` no subject is removed and each revocation is 10 SETs.
//! - Latency: DeleteSession over gRPC at a fixed rate (open loop); for every revocation and
//!   stream, from the DeleteSession answer to the verified SET at the receiver (0 if the SET
//!   came first).
//! - Saturation: DeleteSession as fast as the API answers (closed loop) for a short while;
//!   the SETs the receiver verified per second until the backlog is gone (or a cap).
//! - API cost: DeleteSession throughput (closed loop) with the 10 streams attached and with
//!   none, in alternating rounds; the streams are deleted (dropping their outboxes) between.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Serialize;
use serde_json::{Value, json};
use sessiond::faces::pb::zitadel::session::v2;
use sessiond::faces::pb::zitadel::session::v2::session_service_client::SessionServiceClient;
use tonic::transport::Channel;

use crate::client::{self, SessionRef};
use crate::server::{self, Server};

const STREAMS: usize = 10;
const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// The JWT subject owning the streams (their `aud`).
const RECEIVER: &str = "signals-bench-receiver";
const RECEIVER_SECRET: &str = "Bearer signals-bench-receiver-secret";
/// DeleteSession calls in flight in the closed-loop runs.
const CONCURRENCY: usize = 32;
/// HTTP/2 connections the gRPC calls share.
const CHANNELS: usize = 4;
const START: &str = "<!-- shared signals: start -->";
const END: &str = "<!-- shared signals: end -->";

pub struct Options {
    pub sessiond: PathBuf,
    pub rate: f64,
    pub latency_seconds: f64,
    pub saturation_seconds: f64,
    pub drain_cap_seconds: f64,
    pub throughput_seconds: f64,
    pub rounds: usize,
    pub key_algorithm: Option<String>,
    pub every_stream_gets_all: bool,
    pub work: PathBuf,
    pub command: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub date: String,
    pub commit: String,
    pub command: String,
    pub cores: usize,
    pub cpu: String,
    pub key_algorithm: String,
    pub streams: usize,
    /// Whether every stream received every revocation (else each its own users').
    pub every_stream_gets_all: bool,
    /// SETs each revocation makes.
    pub sets_per_revocation: u64,
    /// SETs that reached a stream whose subjects do not include their user.
    pub misrouted_sets: u64,
    pub offered_rate: f64,
    pub achieved_rate: f64,
    pub revocations: u64,
    pub expected_sets: u64,
    pub verified_sets: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub saturation_revocations: u64,
    pub saturation_sets: u64,
    pub saturation_seconds: f64,
    pub saturation_drained: bool,
    /// DeleteSession calls answered per second during the saturation run.
    pub saturation_api_rate: f64,
    /// SETs verified per second after the saturation run's DeleteSession calls stopped,
    /// until the backlog drained: delivery alone, without the API beside it (NaN when fewer
    /// than 100 SETs were left).
    pub drain_sets_per_s: f64,
    pub sets_per_s: f64,
    pub api_with: Vec<f64>,
    pub api_without: Vec<f64>,
    /// sessiond's CPU time (user + system) per revocation: in the saturation run (the
    /// DeleteSession calls and their SETs, until the backlog drained) and in the rounds
    /// without streams, in microseconds.
    pub cpu_us_per_revocation_saturation: f64,
    pub cpu_us_per_revocation_without: f64,
    pub rejected_sets: u64,
    /// Busy share of the whole machine during the latency run and the saturation run.
    pub machine_busy_latency: f64,
    pub machine_busy_saturation: f64,
    /// Busy share before the first run, with nothing of the bench running.
    pub machine_busy_idle: f64,
    pub load_average: String,
}

/// What the receiver holds: per session id, when each stream's SET was verified.
#[derive(Default)]
struct Received {
    arrivals: Mutex<HashMap<String, Vec<Instant>>>,
    verified: AtomicU64,
    rejected: AtomicU64,
    misrouted: AtomicU64,
    last: Mutex<Option<Instant>>,
}

struct Receiver {
    keys: Mutex<HashMap<String, DecodingKey>>,
    jwks_url: SocketAddr,
    issuer: String,
    received: Received,
    /// The stream of each user, when streams have their own users.
    streams_of_users: HashMap<String, usize>,
}

impl Receiver {
    async fn key(&self, kid: &str) -> anyhow::Result<DecodingKey> {
        let cached = self.keys.lock().map_err(poisoned)?.get(kid).cloned();
        if let Some(key) = cached {
            return Ok(key);
        }
        // A key not seen yet: fetch the JWKS again.
        let (status, body) = http_json(
            self.jwks_url,
            "GET",
            "/.well-known/ssf-jwks.json",
            None,
            None,
        )
        .await?;
        anyhow::ensure!(status == 200, "JWKS answered {status}");
        let set: JwkSet = serde_json::from_value(body)?;
        let mut keys = self.keys.lock().map_err(poisoned)?;
        for jwk in &set.keys {
            if let Some(id) = &jwk.common.key_id {
                keys.insert(id.clone(), DecodingKey::from_jwk(jwk)?);
            }
        }
        keys.get(kid)
            .cloned()
            .with_context(|| format!("kid {kid} not in the JWKS"))
    }

    /// Verifies one SET; returns the revoked session's id and user (None for other events).
    async fn verify(&self, token: &str) -> anyhow::Result<Option<(String, String)>> {
        let header = jsonwebtoken::decode_header(token)?;
        anyhow::ensure!(
            header.typ.as_deref() == Some("secevent+jwt"),
            "typ {:?}",
            header.typ
        );
        let kid = header.kid.context("no kid")?;
        let key = self.key(&kid).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[RECEIVER]);
        validation.set_issuer(&[&self.issuer]);
        validation.validate_exp = false;
        validation.required_spec_claims = ["iss", "aud"].iter().map(|s| s.to_string()).collect();
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)?.claims;
        if claims["events"].get(SESSION_REVOKED).is_none() {
            return Ok(None);
        }
        let id = claims["sub_id"]["session"]["id"]
            .as_str()
            .context("no sub_id.session.id")?;
        let user = claims["sub_id"]["user"]["id"]
            .as_str()
            .context("no sub_id.user.id")?;
        Ok(Some((id.to_owned(), user.to_owned())))
    }
}

fn poisoned<T>(_: T) -> anyhow::Error {
    anyhow::anyhow!("a lock was poisoned")
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    UrlPath(stream): UrlPath<usize>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let authorized = headers
        .get(http::header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == RECEIVER_SECRET.as_bytes());
    let token = std::str::from_utf8(&body).unwrap_or_default();
    let verified = if authorized {
        receiver.verify(token).await
    } else {
        Err(anyhow::anyhow!("wrong authorization"))
    };
    let r = &receiver.received;
    match verified {
        Ok(session) => {
            let done = Instant::now();
            if let Some((_, user)) = &session
                && receiver
                    .streams_of_users
                    .get(user)
                    .is_some_and(|own| *own != stream)
            {
                r.misrouted.fetch_add(1, Ordering::Relaxed);
            }
            if let Some((id, _)) = session
                && let Ok(mut arrivals) = r.arrivals.lock()
            {
                arrivals.entry(id).or_default().push(done);
                r.verified.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut last) = r.last.lock() {
                    *last = Some(done);
                }
            }
            StatusCode::ACCEPTED
        }
        Err(e) => {
            if r.rejected.fetch_add(1, Ordering::Relaxed) < 5 {
                eprintln!("signals: receiver refused a SET: {e}");
            }
            StatusCode::BAD_REQUEST
        }
    }
}

async fn start_receiver(
    sessiond: SocketAddr,
    streams_of_users: HashMap<String, usize>,
) -> anyhow::Result<(Arc<Receiver>, SocketAddr, tokio::task::JoinHandle<()>)> {
    let receiver = Arc::new(Receiver {
        keys: Mutex::new(HashMap::new()),
        jwks_url: sessiond,
        issuer: format!("http://{sessiond}"),
        received: Received::default(),
        streams_of_users,
    });
    let app = axum::Router::new()
        .route("/events/{stream}", axum::routing::post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((receiver, addr, task))
}

/// One HTTP/1 request with an optional bearer and JSON body; the answer's status and JSON.
async fn http_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let mut sender = client::http_connect(addr).await?;
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr.to_string());
    if let Some(bearer) = bearer {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {bearer}"));
    }
    let bytes = match body {
        Some(body) => {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
            Bytes::from(serde_json::to_vec(body)?)
        }
        None => Bytes::new(),
    };
    let response = sender.send_request(request.body(Full::new(bytes))?).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    let value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    Ok((status, value))
}

/// Creates the streams; with `streams_of_users`, removes from each stream every user of
/// another stream.
async fn create_streams(
    api: SocketAddr,
    bearer: &str,
    receiver: SocketAddr,
    streams_of_users: &HashMap<String, usize>,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(STREAMS);
    for n in 0..STREAMS {
        let body = json!({
            "events_requested": [SESSION_REVOKED],
            "delivery": {
                "method": "urn:ietf:rfc:8935",
                "endpoint_url": format!("http://{receiver}/events/{n}"),
                "authorization_header": RECEIVER_SECRET,
            },
        });
        let (status, answer) = http_json(
            api,
            "POST",
            "/auth/admin/api/ssf/stream",
            Some(bearer),
            Some(&body),
        )
        .await?;
        anyhow::ensure!(status == 201, "creating a stream: {status} {answer}");
        let id = answer["stream_id"]
            .as_str()
            .context("no stream_id")?
            .to_owned();
        for (user, _) in streams_of_users.iter().filter(|(_, own)| **own != n) {
            let body = json!({
                "stream_id": id,
                "subject": {"format": "opaque", "id": user},
            });
            let (status, answer) = http_json(
                api,
                "POST",
                "/auth/admin/api/ssf/subjects/remove",
                Some(bearer),
                Some(&body),
            )
            .await?;
            anyhow::ensure!(status == 204, "removing a subject: {status} {answer}");
        }
        ids.push(id);
    }
    Ok(ids)
}

async fn delete_streams(api: SocketAddr, bearer: &str, ids: &[String]) -> anyhow::Result<()> {
    for id in ids {
        let (status, answer) = http_json(
            api,
            "DELETE",
            &format!("/auth/admin/api/ssf/stream?stream_id={id}"),
            Some(bearer),
            None,
        )
        .await?;
        anyhow::ensure!(
            (200..300).contains(&status),
            "deleting a stream: {status} {answer}"
        );
    }
    Ok(())
}

#[derive(Clone)]
struct Api {
    clients: Vec<SessionServiceClient<Channel>>,
    auth: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

impl Api {
    async fn delete(&self, n: usize, s: &SessionRef) -> anyhow::Result<()> {
        let mut client = self.clients[n % self.clients.len()].clone();
        let mut request = tonic::Request::new(v2::DeleteSessionRequest {
            session_id: s.id.clone(),
            session_token: Some(s.token.clone()),
        });
        request
            .metadata_mut()
            .insert("authorization", self.auth.clone());
        client
            .delete_session(request)
            .await
            .map_err(|e| anyhow::anyhow!("DeleteSession: {}", e.message()))?;
        Ok(())
    }
}

/// Busy share of the machine between two `machine_jiffies` readings.
fn busy(a: (u64, u64), b: (u64, u64)) -> f64 {
    let total = b.1.saturating_sub(a.1) as f64;
    if total > 0.0 {
        b.0.saturating_sub(a.0) as f64 / total
    } else {
        f64::NAN
    }
}

/// DeleteSession with `CONCURRENCY` in flight for `seconds`, taking sessions from `pool`;
/// returns (calls answered, seconds taken).
async fn closed_loop(
    api: &Api,
    pool: &Arc<Mutex<Vec<SessionRef>>>,
    seconds: f64,
) -> anyhow::Result<(u64, f64)> {
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let mut workers = Vec::with_capacity(CONCURRENCY);
    for w in 0..CONCURRENCY {
        let (api, pool) = (api.clone(), pool.clone());
        workers.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < until {
                let next = pool.lock().map_err(poisoned)?.pop();
                let Some(session) = next else {
                    anyhow::bail!("the pool of sessions ran out: seed more");
                };
                api.delete(w, &session).await?;
                done += 1;
            }
            anyhow::Ok(done)
        }));
    }
    let mut total = 0;
    for worker in workers {
        total += worker.await??;
    }
    Ok((total, started.elapsed().as_secs_f64()))
}

fn take(pool: &Arc<Mutex<Vec<SessionRef>>>, n: usize) -> anyhow::Result<Vec<SessionRef>> {
    let mut pool = pool.lock().map_err(poisoned)?;
    anyhow::ensure!(pool.len() >= n, "the pool of sessions ran out: seed more");
    let at = pool.len() - n;
    Ok(pool.split_off(at))
}

/// Waits until the receiver verified `expected` SETs (true), or `cap` passed (false).
async fn wait_for(received: &Received, expected: u64, cap: Duration) -> bool {
    let until = Instant::now() + cap;
    while Instant::now() < until {
        if received.verified.load(Ordering::Relaxed) >= expected {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    received.verified.load(Ordering::Relaxed) >= expected
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

pub async fn run(o: Options) -> anyhow::Result<Report> {
    let t0 = Instant::now();
    let log = |m: String| crate::log(t0, m);
    let idle_a = crate::procfs::machine_jiffies();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let machine_busy_idle = busy(idle_a, crate::procfs::machine_jiffies());

    let dir = o.work.join("signals");
    let _ = std::fs::remove_dir_all(&dir);
    let jwt = server::prepare_data_dir(&o.sessiond, &dir)?;
    let d = dir.to_string_lossy().into_owned();
    let manage = server::mint(&o.sessiond, &dir, RECEIVER, "ssf.manage")?;
    // Sessions for every run: latency, saturation, and the throughput rounds (sized for
    // 20,000 deletes/s, well above what 2 cores answer; seeding 100k takes a few seconds).
    let needed = (o.rate * o.latency_seconds) as usize
        + ((o.saturation_seconds + 2.0 * o.rounds as f64 * o.throughput_seconds) * 20_000.0)
            as usize;
    let mut conn = crate::seed::open(&dir.join("sessiond.db")).await?;
    let seeded = crate::seed::seed(
        &mut conn,
        &crate::seed::SeedSpec {
            prefix: "signals",
            sessions: needed,
            // One user per stream, or many small users.
            sessions_per_user: if o.every_stream_gets_all {
                crate::SESSIONS_PER_USER
            } else {
                needed.div_ceil(STREAMS)
            },
            sample: needed,
            creator: "bench",
            instance_id: "sessiond",
            password_hash: None,
            lifetime_secs: 7 * 86_400,
        },
        crate::now_micros(),
    )
    .await?;
    drop(conn);
    log(format!(
        "signals: seeded {} sessions",
        seeded.sessions.len()
    ));
    let streams_of_users: HashMap<String, usize> = if o.every_stream_gets_all {
        HashMap::new()
    } else {
        seeded
            .users
            .iter()
            .enumerate()
            .map(|(n, user)| (user.clone(), n % STREAMS))
            .collect()
    };
    let per_revocation = if o.every_stream_gets_all {
        STREAMS as u64
    } else {
        1
    };
    let mut sessions = seeded.sessions;
    {
        use rand::seq::SliceRandom;
        sessions.shuffle(&mut rand::thread_rng());
    }
    let pool = Arc::new(Mutex::new(sessions));

    let port = server::free_port()?;
    let mut args = vec![
        "serve".to_owned(),
        "--listen".to_owned(),
        format!("127.0.0.1:{port}"),
        "--data-dir".to_owned(),
        d.clone(),
        "--signals-allow-loopback-http".to_owned(),
        "true".to_owned(),
    ];
    if let Some(alg) = &o.key_algorithm {
        args.push("--signals-key-algorithm".to_owned());
        args.push(alg.clone());
    }
    let sessiond = Server::start(
        &o.sessiond,
        &args,
        port,
        dir.join("sessiond.log"),
        "/healthz",
    )
    .await?;
    let api_addr = sessiond.addr;
    let (receiver, receiver_addr, receiver_task) =
        start_receiver(api_addr, streams_of_users.clone()).await?;
    let mut clients = Vec::with_capacity(CHANNELS);
    for _ in 0..CHANNELS {
        clients.push(SessionServiceClient::new(
            client::grpc_channel(api_addr).await?,
        ));
    }
    let api = Api {
        clients,
        auth: format!("Bearer {jwt}").parse()?,
    };
    let received = &receiver.received;

    // Latency.
    let streams = create_streams(api_addr, &manage, receiver_addr, &streams_of_users).await?;
    let key_algorithm = {
        let (_, jwks) =
            http_json(api_addr, "GET", "/.well-known/ssf-jwks.json", None, None).await?;
        jwks["keys"][0]["alg"].as_str().unwrap_or("?").to_owned()
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let count = (o.rate * o.latency_seconds) as usize;
    log(format!(
        "signals: latency, {count} revocations at {}/s to {STREAMS} streams, {per_revocation} SET(s) each",
        o.rate
    ));
    let batch = take(&pool, count)?;
    let ids: Vec<String> = batch.iter().map(|s| s.id.clone()).collect();
    let acks: Arc<Mutex<HashMap<String, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let jiffies = crate::procfs::machine_jiffies();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for (i, session) in batch.into_iter().enumerate() {
        let at = started + Duration::from_secs_f64(i as f64 / o.rate);
        tokio::time::sleep_until(at.into()).await;
        let (api, acks) = (api.clone(), acks.clone());
        tasks.push(tokio::spawn(async move {
            api.delete(i, &session).await?;
            let now = Instant::now();
            acks.lock().map_err(poisoned)?.insert(session.id, now);
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let issued = started.elapsed().as_secs_f64();
    let expected = count as u64 * per_revocation;
    let all = wait_for(received, expected, Duration::from_secs(30)).await;
    let machine_busy_latency = busy(jiffies, crate::procfs::machine_jiffies());
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    {
        let acks = acks.lock().map_err(poisoned)?;
        let arrivals = received.arrivals.lock().map_err(poisoned)?;
        for id in &ids {
            let ack = acks[id];
            for at in arrivals.get(id).map(Vec::as_slice).unwrap_or_default() {
                let us = at.saturating_duration_since(ack).as_micros();
                hist.record(u64::try_from(us).unwrap_or(u64::MAX).max(1))?;
            }
        }
    }
    let verified_sets = received.verified.load(Ordering::Relaxed);
    log(format!(
        "signals: latency p50 {:.1} ms, p99 {:.1} ms; {verified_sets}/{expected} SETs{}",
        ms(hist.value_at_quantile(0.5)),
        ms(hist.value_at_quantile(0.99)),
        if all { "" } else { " (not all within 30 s)" }
    ));
    // Start every later run from empty outboxes.
    delete_streams(api_addr, &manage, &streams).await?;

    // API cost, alternating; the first round with streams also measures saturation.
    let mut api_with = Vec::new();
    let mut api_without = Vec::new();
    let mut saturation = None;
    // sessiond's CPU seconds and revocations over the rounds without streams.
    let mut cpu_without = (0.0, 0u64);
    for round in 0..o.rounds.max(1) {
        log(format!(
            "signals: round {}: DeleteSession without streams",
            round + 1
        ));
        let cpu = crate::procfs::cpu_seconds(sessiond.pid);
        let (n, secs) = closed_loop(&api, &pool, o.throughput_seconds).await?;
        api_without.push(n as f64 / secs);
        cpu_without.0 += crate::procfs::cpu_seconds(sessiond.pid) - cpu;
        cpu_without.1 += n;
        let streams = create_streams(api_addr, &manage, receiver_addr, &streams_of_users).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        log(format!(
            "signals: round {}: DeleteSession with {STREAMS} streams",
            round + 1
        ));
        let before = received.verified.load(Ordering::Relaxed);
        if saturation.is_none() {
            let jiffies = crate::procfs::machine_jiffies();
            let cpu = crate::procfs::cpu_seconds(sessiond.pid);
            let started = Instant::now();
            let (n, api_secs) = closed_loop(&api, &pool, o.saturation_seconds).await?;
            api_with.push(n as f64 / api_secs);
            let (api_done, at_api_done) =
                (Instant::now(), received.verified.load(Ordering::Relaxed));
            let expected = before + n * per_revocation;
            let drained = wait_for(
                received,
                expected,
                Duration::from_secs_f64(o.drain_cap_seconds),
            )
            .await;
            let end = if drained {
                received
                    .last
                    .lock()
                    .map_err(poisoned)?
                    .unwrap_or_else(Instant::now)
            } else {
                Instant::now()
            };
            let sets = received.verified.load(Ordering::Relaxed) - before;
            let secs = end.saturating_duration_since(started).as_secs_f64();
            let drained_after = received.verified.load(Ordering::Relaxed) - at_api_done;
            let drain_rate = if drained_after >= 100 {
                drained_after as f64 / end.saturating_duration_since(api_done).as_secs_f64()
            } else {
                f64::NAN
            };
            log(format!(
                "signals: saturation: {n} revocations, {sets} SETs in {secs:.1} s{}",
                if drained { "" } else { " (cap reached)" }
            ));
            saturation = Some((
                n,
                sets,
                secs,
                drained,
                busy(jiffies, crate::procfs::machine_jiffies()),
                n as f64 / api_secs,
                (crate::procfs::cpu_seconds(sessiond.pid) - cpu) / n.max(1) as f64 * 1e6,
                drain_rate,
            ));
        } else {
            let (n, secs) = closed_loop(&api, &pool, o.throughput_seconds).await?;
            api_with.push(n as f64 / secs);
        }
        delete_streams(api_addr, &manage, &streams).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (sat_n, sat_sets, sat_secs, sat_drained, sat_busy, sat_api, sat_cpu, drain_rate) =
        saturation.context("no saturation run")?;
    receiver_task.abort();
    drop(sessiond);
    let _ = std::fs::remove_dir_all(&dir);

    let machine = crate::machine(o.command.clone(), Path::new(env!("CARGO_MANIFEST_DIR")));
    Ok(Report {
        date: machine.date,
        commit: machine.commit,
        command: o.command,
        cores: machine.cores,
        cpu: machine.cpu,
        key_algorithm,
        streams: STREAMS,
        every_stream_gets_all: o.every_stream_gets_all,
        sets_per_revocation: per_revocation,
        misrouted_sets: received.misrouted.load(Ordering::Relaxed),
        offered_rate: o.rate,
        achieved_rate: count as f64 / issued,
        revocations: count as u64,
        expected_sets: expected,
        verified_sets,
        p50_ms: ms(hist.value_at_quantile(0.5)),
        p99_ms: ms(hist.value_at_quantile(0.99)),
        max_ms: ms(hist.max()),
        saturation_revocations: sat_n,
        saturation_sets: sat_sets,
        saturation_seconds: sat_secs,
        saturation_drained: sat_drained,
        saturation_api_rate: sat_api,
        drain_sets_per_s: drain_rate,
        sets_per_s: sat_sets as f64 / sat_secs,
        api_with,
        api_without,
        cpu_us_per_revocation_saturation: sat_cpu,
        cpu_us_per_revocation_without: cpu_without.0 / cpu_without.1.max(1) as f64 * 1e6,
        rejected_sets: received.rejected.load(Ordering::Relaxed),
        machine_busy_latency,
        machine_busy_saturation: sat_busy,
        machine_busy_idle,
        load_average: std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    })
}

fn verdict(ok: bool) -> &'static str {
    if ok { "**met**" } else { "**missed**" }
}

/// The report's Markdown section, between its markers.
pub fn markdown(r: &Report) -> String {
    let with = crate::median(r.api_with.clone());
    let without = crate::median(r.api_without.clone());
    let ratio = with / without;
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let complete = r.verified_sets >= r.expected_sets;
    format!(
        "{START}\n## Shared Signals (`sessiond-bench signals`)\n\n\
         `{command}` — {date}, commit {commit}, {cores} cores ({cpu}). One sessiond process \
         (release build, SQLite, `--signals-allow-loopback-http true`, signing key {alg}) and \
         the bench on the same machine; the bench's receiver verifies every SET's signature \
         against `/.well-known/ssf-jwks.json` (jsonwebtoken) before answering 202. \
         DeleteSession over gRPC ({CHANNELS} HTTP/2 connections). {subjects}\n\n\
         Machine load: {idle:.0}% busy before the run (other processes), {lat_busy:.0}% during \
         the latency run, {sat_busy:.0}% during the saturation run; load average at the end \
         {load}. Busy before the run is CPU other processes took; past a few percent the figures are a floor.\n\n\
         | measure | figure | target | verdict |\n|---|---:|---:|---|\n\
         | revocation → verified SET, p50 ({rev} revocations at {achieved:.0}/s offered {rate:.0}/s, \
         {streams} streams, {got}/{exp} SETs) | {p50:.1} ms | | |\n\
         | revocation → verified SET, p99 (max {max:.1} ms) | {p99:.1} ms | ≤ 250 ms | {v1} |\n\
         | SETs delivered per second at saturation ({sat_n} revocations as fast as the API \
         answers, {sat_api:.0}/s, {sat_sets} SETs in {sat_secs:.1} s{drained}) | {sets:.0}/s | ≥ 5,000/s | {v2} |\n\
         | of which after the DeleteSession calls stopped: SETs delivered per second until the \
         backlog drained (delivery alone) | {drain:.0}/s | | |\n\
         | DeleteSession throughput with {streams} streams / without (median of rounds; with: \
         {lw}; without: {lwo} per s; {CONCURRENCY} in flight) | {ratio:.2}× ({with:.0}/s vs \
         {without:.0}/s) | ≥ 0.9× | {v3} |\n\
         | sessiond CPU per revocation: with its SET (saturation run, until drained) / without \
         streams (the rounds without) | {cpu_sat:.0} µs / {cpu_without:.0} µs | | |\n\n\
         p50 and p99 are over the SETs that arrived; the p99 verdict is missed when any SET did not arrive within 30 s: {complete}.\n\
         {END}\n",
        command = r.command,
        date = r.date,
        commit = r.commit,
        cores = r.cores,
        cpu = r.cpu,
        alg = r.key_algorithm,
        subjects = if r.every_stream_gets_all {
            format!(
                "Every stream receives every revocation: {} SETs per revocation.",
                r.sets_per_revocation
            )
        } else {
            format!(
                "The sessions belong to {streams} users and each stream receives the revocations \
                 of its own user (the other users removed from it by SSF remove-subject): one SET \
                 per revocation, {per:.0} revocations/s per stream in the latency run; SETs at \
                 the wrong stream: {mis}.",
                streams = r.streams,
                per = r.offered_rate / r.streams as f64,
                mis = r.misrouted_sets,
            )
        },
        sat_api = r.saturation_api_rate,
        idle = r.machine_busy_idle * 100.0,
        lat_busy = r.machine_busy_latency * 100.0,
        sat_busy = r.machine_busy_saturation * 100.0,
        load = r.load_average,
        rev = r.revocations,
        achieved = r.achieved_rate,
        rate = r.offered_rate,
        streams = r.streams,
        got = r.verified_sets,
        exp = r.expected_sets,
        p50 = r.p50_ms,
        max = r.max_ms,
        p99 = r.p99_ms,
        v1 = verdict(r.p99_ms <= 250.0 && complete),
        sat_n = r.saturation_revocations,
        sat_sets = r.saturation_sets,
        drain = r.drain_sets_per_s,
        sat_secs = r.saturation_seconds,
        drained = if r.saturation_drained {
            ", backlog drained"
        } else {
            ", stopped at the cap with a backlog left"
        },
        sets = r.sets_per_s,
        v2 = verdict(r.sets_per_s >= 5000.0),
        lw = list(&r.api_with),
        lwo = list(&r.api_without),
        v3 = verdict(ratio >= 0.9),
        cpu_sat = r.cpu_us_per_revocation_saturation,
        cpu_without = r.cpu_us_per_revocation_without,
        complete = if complete {
            "every SET arrived"
        } else {
            "some SETs did not arrive"
        },
    )
}

/// Writes the section into `path` between its markers (appended the first time).
pub fn merge_into(path: &Path, report: &Report) -> anyhow::Result<()> {
    let section = markdown(report);
    crate::report::replace_section(path, START, END, &section)?;
    Ok(())
}
