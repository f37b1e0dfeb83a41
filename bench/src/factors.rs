//! `sessiond-bench factors`: SetSession with a second factor over gRPC (h2c), against
//! sessiond in this process on SQLite: a TOTP check, and a WebAuthn assertion answering the
//! session's challenge. Throughput and latency per kind, and the WebAuthn rate as a ratio to a
//! bare `webauthn-rs` assertion-verification loop on as many threads as there are cores (the
//! cost of the check itself, without a request, a store or a session write around it).
//! WebAuthn SetSession and the bare loop alternate in [`ROUNDS`] rounds, so both see the
//! same machine; the ratio is the median of the rounds' ratios.
//!
//! Setup is not timed: one user per check (a TOTP code and a WebAuthn challenge are each
//! accepted once), TOTP imported as verified, passkeys registered with a software
//! authenticator, one session per check with its user checked (and, for WebAuthn, its
//! challenge given), every assertion signed before the clock starts. The load generator
//! shares the machine with the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use sessiond::app::Application;
use sessiond::auth::{EmbeddedKey, mint};
use sessiond::core::{
    Checks, Core, CreateSession, ImportedSeed, NewUser, PasskeyAttestation,
    PasskeyChallengeRequest, UserLookup, UserVerification,
};
use sessiond::domain::{Clock, LoginName, Principal, SessionId, SystemClock};
use sessiond::faces::pb::zitadel::session::v2 as pb;
use sessiond::settings::Settings;
use tonic::transport::Channel;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url, Uuid};

/// The origin the software authenticator signs for.
const ORIGIN: &str = "http://localhost:4000";
/// Alternating rounds of WebAuthn SetSession and the bare verification loop.
pub const ROUNDS: usize = 5;
/// A TOTP seed (base32, 160 bits); every user has its own copy.
const SEED: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    pub check: String,
    pub requests: usize,
    pub failures: usize,
    pub per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct FactorsReport {
    pub concurrency: usize,
    pub rows: Vec<Row>,
    /// The median of the bare loop's rounds.
    pub bare_webauthn_per_s: f64,
    pub bare_threads: usize,
    /// WebAuthn SetSession per second / bare verifications per second, per round.
    pub round_ratios: Vec<f64>,
    /// The median of `round_ratios`.
    pub webauthn_ratio: f64,
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// One prepared SetSession.
struct Prepared {
    request: pb::SetSessionRequest,
}

pub async fn run(checks: usize, concurrency: usize) -> anyhow::Result<FactorsReport> {
    let dir = tempfile::tempdir()?;
    let settings = Settings {
        webauthn_origins: vec![ORIGIN.into()],
        max_password_attempts: 0,
        ..Settings::for_test(dir.path())
    };
    let jwt = sessiond::app::jwt_settings(&settings)?;
    let clock = Arc::new(SystemClock);
    let app = Application::build(settings, clock.clone()).await?;
    let addr = app.address();
    let core = app.core().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let key = EmbeddedKey::load(dir.path())?;
    let permissions = ["session.read", "session.write"].map(String::from);
    let token = mint(
        &key,
        &jwt,
        "bench",
        &permissions,
        Duration::from_secs(3600),
        clock.now(),
    )?;
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;

    eprintln!("preparing {checks} TOTP checks …");
    let totp = prepare_totp(&core, checks).await?;
    let totp_row = drive(totp, &channel, &token, concurrency)
        .await?
        .row("SetSession + checks.totp");
    eprintln!("preparing {checks} WebAuthn assertions and {checks} bare verifications …");
    let mut webauthn = prepare_webauthn(&core, checks).await?;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let (rp, mut bare) = prepare_bare(checks)?;
    let rp = Arc::new(rp);
    let per_round = checks.div_ceil(ROUNDS);
    let mut measured = Measured::default();
    let (mut webauthn_rates, mut bare_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let take = per_round.min(webauthn.len()).min(bare.len());
        if take == 0 {
            break;
        }
        eprintln!(
            "round {round}: {take} WebAuthn SetSessions, then {take} bare verifications on {threads} thread(s) …"
        );
        let part = drive(
            webauthn.drain(..take).collect(),
            &channel,
            &token,
            concurrency,
        )
        .await?;
        let rate = part.per_s();
        let bare_rate = bare_round(&rp, bare.drain(..take).collect(), threads)?;
        webauthn_rates.push(rate);
        bare_rates.push(bare_rate);
        ratios.push(rate / bare_rate);
        measured.add(part)?;
    }
    let mut webauthn_row = measured.row("SetSession + checks.webAuthN");
    webauthn_row.per_s = median(&webauthn_rates);

    let _ = stop.send(());
    let _ = server.await;
    Ok(FactorsReport {
        concurrency,
        webauthn_ratio: median(&ratios),
        round_ratios: ratios,
        rows: vec![totp_row, webauthn_row],
        bare_webauthn_per_s: median(&bare_rates),
        bare_threads: threads,
    })
}

/// What one driven batch of SetSessions measured.
struct Measured {
    hist: Histogram<u64>,
    requests: usize,
    failures: usize,
    seconds: f64,
}

impl Default for Measured {
    fn default() -> Self {
        Self {
            hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            requests: 0,
            failures: 0,
            seconds: 0.0,
        }
    }
}

impl Measured {
    fn per_s(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    fn add(&mut self, other: Measured) -> anyhow::Result<()> {
        self.hist.add(other.hist)?;
        self.requests += other.requests;
        self.failures += other.failures;
        self.seconds += other.seconds;
        Ok(())
    }

    /// The figures as a table row; per second over all the time driven.
    fn row(&self, name: &str) -> Row {
        Row {
            check: name.to_owned(),
            requests: self.requests,
            failures: self.failures,
            per_s: self.per_s(),
            p50_ms: self.hist.value_at_quantile(0.50) as f64 / 1000.0,
            p99_ms: self.hist.value_at_quantile(0.99) as f64 / 1000.0,
        }
    }
}

async fn user(core: &Core, name: String) -> anyhow::Result<sessiond::domain::User> {
    core.add_user(NewUser {
        login_name: LoginName::parse(name).map_err(|e| anyhow::anyhow!("{e}"))?,
        display_name: None,
        organization_id: None,
        password: None,
    })
    .await
    .map_err(|e| anyhow::anyhow!("adding a user: {e}"))
}

async fn session(
    core: &Core,
    user: &sessiond::domain::User,
    challenge: Option<PasskeyChallengeRequest>,
) -> anyhow::Result<(SessionId, Option<serde_json::Value>)> {
    let created = core
        .create_session(
            &Principal::system(),
            CreateSession {
                checks: Checks {
                    user: Some(UserLookup::Id(user.id.clone())),
                    ..Checks::default()
                },
                web_auth_n_challenge: challenge,
                ..CreateSession::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("creating a session: {e}"))?;
    Ok((created.session_id, created.web_auth_n_options))
}

async fn prepare_totp(core: &Core, n: usize) -> anyhow::Result<Vec<Prepared>> {
    let seed = ImportedSeed::parse(SEED).map_err(|e| anyhow::anyhow!("{e}"))?;
    let bytes = totp_rs::Secret::Encoded(SEED.into())
        .to_bytes()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let new = NewUser {
            login_name: LoginName::parse(format!("totp{i}@bench.test"))
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            display_name: None,
            organization_id: None,
            password: None,
        };
        let user = core
            .create_human(&Principal::system(), new, &[], Some(&seed))
            .await
            .map_err(|e| anyhow::anyhow!("adding a user with a TOTP seed: {e}"))?;
        let (id, _) = session(core, &user, None).await?;
        out.push(Prepared {
            request: pb::SetSessionRequest {
                session_id: id.into_string(),
                checks: Some(pb::Checks {
                    totp: Some(pb::CheckTotp {
                        code: String::new(),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        });
    }
    // Codes of the current step, computed last: each user accepts it once.
    let now = u64::try_from(SystemClock.now().unix_micros() / 1_000_000)?;
    let code =
        totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes).generate(now);
    for p in &mut out {
        if let Some(totp) = p.request.checks.as_mut().and_then(|c| c.totp.as_mut()) {
            totp.code.clone_from(&code);
        }
    }
    Ok(out)
}

async fn prepare_webauthn(core: &Core, n: usize) -> anyhow::Result<Vec<Prepared>> {
    let origin = Url::parse(ORIGIN)?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let user = user(core, format!("passkey{i}@bench.test")).await?;
        let mut key = SoftPasskey::new(true);
        let started = core
            .register_passkey(&Principal::system(), &user.id, "")
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let options: CreationChallengeResponse = serde_json::from_value(started.options)?;
        let answer = key
            .do_registration(origin.clone(), options)
            .map_err(|e| anyhow::anyhow!("registering: {e:?}"))?;
        let answer = PasskeyAttestation::parse(serde_json::to_value(&answer)?)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        core.verify_passkey_registration(
            &Principal::system(),
            &user.id,
            &started.passkey_id,
            &answer,
            "bench".into(),
            false,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let (id, options) = session(
            core,
            &user,
            Some(PasskeyChallengeRequest {
                domain: String::new(),
                user_verification: UserVerification::Required,
            }),
        )
        .await?;
        let options: RequestChallengeResponse =
            serde_json::from_value(options.context("request options")?)?;
        let signed = key
            .do_authentication(origin.clone(), options)
            .map_err(|e| anyhow::anyhow!("signing: {e:?}"))?;
        let data: pbjson_types::Struct = serde_json::from_value(serde_json::to_value(&signed)?)?;
        out.push(Prepared {
            request: pb::SetSessionRequest {
                session_id: id.into_string(),
                checks: Some(pb::Checks {
                    web_auth_n: Some(pb::CheckWebAuthN {
                        credential_assertion_data: Some(data),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        });
    }
    Ok(out)
}

/// Sends every prepared SetSession, `concurrency` at a time, over one h2c connection.
async fn drive(
    prepared: Vec<Prepared>,
    channel: &Channel,
    token: &str,
    concurrency: usize,
) -> anyhow::Result<Measured> {
    let total = prepared.len();
    let prepared = Arc::new(prepared);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (prepared, next) = (prepared.clone(), next.clone());
        let mut client = pb::session_service_client::SessionServiceClient::new(channel.clone());
        let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse()?;
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut failures = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(p) = prepared.get(i) else { break };
                let mut request = tonic::Request::new(p.request.clone());
                request
                    .metadata_mut()
                    .insert("authorization", bearer.clone());
                let sent = Instant::now();
                let outcome = client.set_session(request).await;
                hist.record(u64::try_from(sent.elapsed().as_micros())?.max(1))?;
                if outcome.is_err() {
                    failures += 1;
                }
            }
            anyhow::Ok((hist, failures))
        }));
    }
    let mut measured = Measured {
        requests: total,
        ..Measured::default()
    };
    for task in tasks {
        let (h, f) = task.await??;
        measured.hist.add(h)?;
        measured.failures += f;
    }
    measured.seconds = started.elapsed().as_secs_f64();
    Ok(measured)
}

/// Signed assertions for the bare loop: `webauthn-rs` alone, the same relying party
/// settings, one fresh credential and challenge per assertion.
type BareWork = (
    webauthn_rs::prelude::PublicKeyCredential,
    webauthn_rs::prelude::PasskeyAuthentication,
);

fn prepare_bare(n: usize) -> anyhow::Result<(webauthn_rs::Webauthn, Vec<BareWork>)> {
    let origin = Url::parse(ORIGIN)?;
    let rp = webauthn_rs::WebauthnBuilder::new("localhost", &origin)?.build()?;
    let mut work = Vec::with_capacity(n);
    for _ in 0..n {
        let mut key = SoftPasskey::new(true);
        let (options, state) =
            rp.start_passkey_registration(Uuid::new_v4(), "bench", "bench", None)?;
        let answer = key
            .do_registration(origin.clone(), options)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let passkey = rp.finish_passkey_registration(&answer, &state)?;
        let (options, state) = rp.start_passkey_authentication(&[passkey])?;
        let signed = key
            .do_authentication(origin.clone(), options)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        work.push((signed, state));
    }
    Ok((rp, work))
}

/// Assertions verified per second by `webauthn-rs` alone on `threads` threads.
fn bare_round(
    rp: &Arc<webauthn_rs::Webauthn>,
    work: Vec<BareWork>,
    threads: usize,
) -> anyhow::Result<f64> {
    let n = work.len();
    let work = Arc::new(work);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (work, rp, next) = (work.clone(), rp.clone(), next.clone());
            std::thread::spawn(move || {
                let mut failures = 0usize;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((signed, state)) = work.get(i) else {
                        break;
                    };
                    if rp.finish_passkey_authentication(signed, state).is_err() {
                        failures += 1;
                    }
                }
                failures
            })
        })
        .collect();
    let mut failures = 0;
    for h in handles {
        failures += h.join().map_err(|_| anyhow::anyhow!("a thread panicked"))?;
    }
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(failures == 0, "{failures} bare verifications failed");
    Ok(n as f64 / seconds)
}

const START: &str = "<!-- second factors: start -->";
const END: &str = "<!-- second factors: end -->";

/// The WebAuthn SetSession rate the bare verification loop's must reach.
const WEBAUTHN_TARGET: f64 = 0.8;

/// The whole section of bench/RESULTS.md, between its markers: the figures, and verdicts
/// computed from them.
pub fn section(
    report: &FactorsReport,
    command: &str,
    load_before: &str,
    load_after: &str,
) -> String {
    let mut table = String::from(
        "| check | requests | failures | per second | p50 ms | p99 ms |\n|---|---|---|---|---|---|\n",
    );
    for r in &report.rows {
        table.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} |\n",
            r.check, r.requests, r.failures, r.per_s, r.p50_ms, r.p99_ms
        ));
    }
    format!(
        "{START}\n## Second factors: SetSession with TOTP and WebAuthn (`sessiond-bench factors`)\n\n\
         Written by `{command}` on {date}; load average of the machine (1 / 5 / 15 min) \
         {load_before} before the run and {load_after} after it. sessiond runs in the \
         bench's process on SQLite and is called over gRPC (one h2c connection, {concurrency} \
         requests in flight), the load generator on the same cores. Each SetSession checks \
         one factor of its own user on a session whose user is already checked: a TOTP code \
         of the current step, or a WebAuthn assertion (a software passkey, ES256) answering \
         the session's earlier challenge. The bare loop is `webauthn-rs`' \
         `finish_passkey_authentication` alone on {threads} thread(s), with the same relying \
         party settings and one credential and challenge per assertion. WebAuthn SetSession \
         and the bare loop alternate in {rounds} rounds of equal size; the WebAuthn rate and \
         the bare rate are the medians of the rounds, the ratio the median of the rounds' \
         ratios ({each}); p50 and p99 are over all requests. Verdicts are computed from \
         these figures.\n\n{table}\nBare `webauthn-rs` verification: {bare:.0} per \
         second.\n\n{verdicts}{END}\n",
        date = SystemClock
            .now()
            .to_rfc3339()
            .chars()
            .take(10)
            .collect::<String>(),
        concurrency = report.concurrency,
        threads = report.bare_threads,
        bare = report.bare_webauthn_per_s,
        rounds = report.round_ratios.len(),
        each = report
            .round_ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        verdicts = verdicts(report),
    )
}

fn verdicts(report: &FactorsReport) -> String {
    let verdict = |met: bool| if met { "**met**" } else { "**missed**" };
    let failures: usize = report.rows.iter().map(|r| r.failures).sum();
    let requests: usize = report.rows.iter().map(|r| r.requests).sum();
    format!(
        "| Target | Measured | Verdict |\n|---|---|---|\n\
         | WebAuthn SetSession ≥ {WEBAUTHN_TARGET} × bare `webauthn-rs` verification \
         (median of the rounds) | {ratio:.2}× | {} |\n\
         | every prepared check passes | {failures} failed of {requests} | {} |\n",
        verdict(report.webauthn_ratio >= WEBAUTHN_TARGET),
        verdict(failures == 0),
        ratio = report.webauthn_ratio,
    )
}

/// Replaces the section in the Markdown file at `path` (appended if its markers are not
/// there), and writes the figures beside it as `RESULTS-factors.json`.
pub fn merge_into(
    path: &std::path::Path,
    section: &str,
    report: &FactorsReport,
) -> anyhow::Result<()> {
    crate::report::replace_section(path, START, END, section)?;
    std::fs::write(
        path.with_file_name("RESULTS-factors.json"),
        serde_json::to_string_pretty(report)? + "\n",
    )?;
    Ok(())
}
