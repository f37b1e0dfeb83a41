//! `sessiond-bench factors`: SetSession with a second factor over gRPC (h2c), against
//! sessiond in this process on SQLite: a TOTP check, and a WebAuthn assertion answering the
//! session's challenge. Throughput and latency per kind, and the WebAuthn rate as a ratio to a
//! bare `webauthn-rs` assertion-verification loop on as many threads as there are cores (the
//! cost of the check itself, without a request, a store or a session write around it).
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
    pub bare_webauthn_per_s: f64,
    pub bare_threads: usize,
    pub webauthn_ratio: f64,
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
    let totp_row = drive(
        "SetSession + checks.totp",
        totp,
        &channel,
        &token,
        concurrency,
    )
    .await?;
    eprintln!("preparing {checks} WebAuthn assertions …");
    let webauthn = prepare_webauthn(&core, checks).await?;
    let webauthn_row = drive(
        "SetSession + checks.webAuthN",
        webauthn,
        &channel,
        &token,
        concurrency,
    )
    .await?;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    eprintln!("bare webauthn-rs verification on {threads} thread(s) …");
    let bare = bare_webauthn(checks, threads)?;

    let _ = stop.send(());
    let _ = server.await;
    Ok(FactorsReport {
        concurrency,
        webauthn_ratio: webauthn_row.per_s / bare,
        rows: vec![totp_row, webauthn_row],
        bare_webauthn_per_s: bare,
        bare_threads: threads,
    })
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
    name: &str,
    prepared: Vec<Prepared>,
    channel: &Channel,
    token: &str,
    concurrency: usize,
) -> anyhow::Result<Row> {
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
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut failures = 0;
    for task in tasks {
        let (h, f) = task.await??;
        hist.add(h)?;
        failures += f;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Row {
        check: name.to_owned(),
        requests: total,
        failures,
        per_s: total as f64 / seconds,
        p50_ms: hist.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
    })
}

/// Assertions verified per second by `webauthn-rs` alone, on `threads` threads: the same
/// relying party settings, one fresh credential and challenge per assertion.
fn bare_webauthn(n: usize, threads: usize) -> anyhow::Result<f64> {
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
    let work = Arc::new(work);
    let rp = Arc::new(rp);
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

/// The report as the marked section of bench/RESULTS.md.
pub fn markdown(report: &FactorsReport, command: &str) -> String {
    let mut out = String::new();
    out.push_str(
        "<!-- factors:begin -->\n## Second factors: SetSession with TOTP and WebAuthn (gRPC)\n\n",
    );
    out.push_str(&format!(
        "`{command}` — sessiond in process on SQLite, one h2c connection, {} requests in \
         flight; load generator on the same machine.\n\n",
        report.concurrency
    ));
    out.push_str("| check | requests | failures | per second | p50 ms | p99 ms |\n|---|---|---|---|---|---|\n");
    for r in &report.rows {
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} |\n",
            r.check, r.requests, r.failures, r.per_s, r.p50_ms, r.p99_ms
        ));
    }
    let verdict = if report.webauthn_ratio >= 0.8 {
        "meets the target (≥ 0.8)"
    } else {
        "misses the target (≥ 0.8): the request, the challenge read, the store writes (the \
         challenge consumed and the counter moved, then the session) cost more than the \
         signature check"
    };
    out.push_str(&format!(
        "\nBare `webauthn-rs` `finish_passkey_authentication` on {} thread(s): {:.0} per \
         second. WebAuthn SetSession / bare verification = **{:.2}**: {verdict}.\n<!-- factors:end -->\n",
        report.bare_threads, report.bare_webauthn_per_s, report.webauthn_ratio
    ));
    out
}
