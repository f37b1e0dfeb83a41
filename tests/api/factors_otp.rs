//! One-time codes by email and SMS end to end: enrolled through the UserService (a verified
//! address needed), challenged in CreateSession/SetSession (returned to the caller, sent
//! through a real SMTP server or a signed webhook), checked once, before they expire, for
//! the user they were made for, and counted toward the one lockout limit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sessiond::settings::SecretText;

use crate::helpers::*;

/// Creates a user through AddHumanUser with a verified email (and phone, when given).
async fn human(app: &TestApp, login: &str, phone: Option<&str>) -> String {
    let api = app.user_api(UserProtocol::ConnectJson);
    ok(
        &api,
        api.call::<AddHumanUser>(
            Some(&operator(app)),
            user::AddHumanUserRequest {
                username: Some(login.into()),
                profile: Some(user::SetHumanProfile {
                    given_name: "Ada".into(),
                    family_name: "Lovelace".into(),
                    ..Default::default()
                }),
                email: Some(user::SetHumanEmail {
                    email: login.into(),
                    verification: Some(user::set_human_email::Verification::IsVerified(true)),
                }),
                phone: phone.map(|p| user::SetHumanPhone {
                    phone: p.into(),
                    verification: Some(user::set_human_phone::Verification::IsVerified(true)),
                }),
                password_type: Some(user::add_human_user_request::PasswordType::Password(
                    user::Password {
                        password: FACTOR_PASSWORD.into(),
                        change_required: false,
                    },
                )),
                ..Default::default()
            },
        )
        .await,
    )
    .message
    .user_id
}

async fn add_otp_email(api: &UserApi, auth: &str, id: &str) {
    ok(
        api,
        api.call::<AddOtpEmail>(Some(auth), user::AddOtpEmailRequest { user_id: id.into() })
            .await,
    );
}

async fn add_otp_sms(api: &UserApi, auth: &str, id: &str) {
    ok(
        api,
        api.call::<AddOtpSms>(Some(auth), user::AddOtpsmsRequest { user_id: id.into() })
            .await,
    );
}

fn email_returned() -> v2::RequestChallenges {
    v2::RequestChallenges {
        otp_email: Some(v2::request_challenges::OtpEmail {
            delivery_type: Some(v2::request_challenges::otp_email::DeliveryType::ReturnCode(
                Default::default(),
            )),
        }),
        ..Default::default()
    }
}

fn email_sent(url_template: Option<&str>) -> v2::RequestChallenges {
    v2::RequestChallenges {
        otp_email: Some(v2::request_challenges::OtpEmail {
            delivery_type: Some(v2::request_challenges::otp_email::DeliveryType::SendCode(
                v2::request_challenges::otp_email::SendCode {
                    url_template: url_template.map(str::to_owned),
                },
            )),
        }),
        ..Default::default()
    }
}

fn sms(return_code: bool) -> v2::RequestChallenges {
    v2::RequestChallenges {
        otp_sms: Some(v2::request_challenges::Otpsms { return_code }),
        ..Default::default()
    }
}

fn with_otp_email(checks: v2::Checks, code: &str) -> v2::Checks {
    v2::Checks {
        otp_email: Some(v2::CheckOtp { code: code.into() }),
        ..checks
    }
}

fn with_otp_sms(checks: v2::Checks, code: &str) -> v2::Checks {
    v2::Checks {
        otp_sms: Some(v2::CheckOtp { code: code.into() }),
        ..checks
    }
}

/// A session of `id` (user checked) with the given challenges; its id and returned codes.
async fn challenged(
    api: &Api,
    auth: &str,
    id: &str,
    challenges: v2::RequestChallenges,
) -> (String, Option<v2::Challenges>) {
    let created = ok(
        api,
        api.create(
            Some(auth),
            v2::CreateSessionRequest {
                checks: Some(user_check(id)),
                challenges: Some(challenges),
                ..Default::default()
            },
        )
        .await,
    )
    .message;
    (created.session_id, created.challenges)
}

/// A code that differs from `code` in its first digit.
fn wrong(code: &str) -> String {
    let first = if code.starts_with('0') { '1' } else { '0' };
    format!("{first}{}", &code[1..])
}

#[tokio::test]
async fn otp_email_and_sms_are_enrolled_listed_and_removed_on_every_protocol() {
    let app = spawn_app().await;
    let auth = operator(&app);
    for (i, api) in app.user_apis().into_iter().enumerate() {
        let id = human(
            &app,
            &format!("otp-enroll{i}@example.com"),
            Some("+41 79 555 01 02"),
        )
        .await;
        add_otp_email(&api, &auth, &id).await;
        add_otp_sms(&api, &auth, &id).await;
        let again = api
            .call::<AddOtpEmail>(
                Some(&auth),
                user::AddOtpEmailRequest {
                    user_id: id.clone(),
                },
            )
            .await;
        fails(&api, again, Code::AlreadyExists, "COMMAND-MKL2s");
        let again = api
            .call::<AddOtpSms>(
                Some(&auth),
                user::AddOtpsmsRequest {
                    user_id: id.clone(),
                },
            )
            .await;
        fails(&api, again, Code::AlreadyExists, "COMMAND-Ad3g2");

        let methods = ok(&api, api.methods(Some(&auth), &id).await)
            .message
            .auth_method_types;
        for method in [
            user::AuthenticationMethodType::OtpEmail,
            user::AuthenticationMethodType::OtpSms,
            user::AuthenticationMethodType::Password,
        ] {
            assert!(methods.contains(&(method as i32)), "{api}: {methods:?}");
        }

        ok(
            &api,
            api.call::<RemoveOtpEmail>(
                Some(&auth),
                user::RemoveOtpEmailRequest {
                    user_id: id.clone(),
                },
            )
            .await,
        );
        ok(
            &api,
            api.call::<RemoveOtpSms>(
                Some(&auth),
                user::RemoveOtpsmsRequest {
                    user_id: id.clone(),
                },
            )
            .await,
        );
        let gone = api
            .call::<RemoveOtpEmail>(
                Some(&auth),
                user::RemoveOtpEmailRequest {
                    user_id: id.clone(),
                },
            )
            .await;
        fails(&api, gone, Code::NotFound, "COMMAND-b312D");
        let gone = api
            .call::<RemoveOtpSms>(
                Some(&auth),
                user::RemoveOtpsmsRequest {
                    user_id: id.clone(),
                },
            )
            .await;
        fails(&api, gone, Code::NotFound, "COMMAND-Sr3h3");
    }
}

#[tokio::test]
async fn enrolling_needs_a_verified_address_and_the_right_caller() {
    let app = spawn_app().await;
    let auth = operator(&app);
    let api = app.user_api(UserProtocol::ConnectJson);
    // A user made without AddHumanUser has no addresses at all.
    let bare = app.add_user("no-address@example.com").await;
    let outcome = api
        .call::<AddOtpEmail>(
            Some(&auth),
            user::AddOtpEmailRequest {
                user_id: bare.id.as_str().into(),
            },
        )
        .await;
    fails(&api, outcome, Code::FailedPrecondition, "COMMAND-KLJ2d");
    // An email that is not verified does not count; there is no phone.
    let unverified = ok(
        &api,
        api.call::<AddHumanUser>(
            Some(&auth),
            user::AddHumanUserRequest {
                profile: Some(user::SetHumanProfile {
                    given_name: "Un".into(),
                    family_name: "Verified".into(),
                    ..Default::default()
                }),
                email: Some(user::SetHumanEmail {
                    email: "unverified@example.com".into(),
                    verification: None,
                }),
                ..Default::default()
            },
        )
        .await,
    )
    .message
    .user_id;
    let outcome = api
        .call::<AddOtpEmail>(
            Some(&auth),
            user::AddOtpEmailRequest {
                user_id: unverified.clone(),
            },
        )
        .await;
    fails(&api, outcome, Code::FailedPrecondition, "COMMAND-KLJ2d");
    let outcome = api
        .call::<AddOtpSms>(
            Some(&auth),
            user::AddOtpsmsRequest {
                user_id: unverified.clone(),
            },
        )
        .await;
    fails(&api, outcome, Code::FailedPrecondition, "COMMAND-Q54j2");
    // Someone else without user.write may not.
    let stranger = app.bearer("stranger", &[]);
    let outcome = api
        .call::<AddOtpEmail>(
            Some(&stranger),
            user::AddOtpEmailRequest {
                user_id: unverified,
            },
        )
        .await;
    fails(&api, outcome, Code::PermissionDenied, "AUTH-AWfge");
}

#[tokio::test]
async fn adding_or_removing_otp_ends_the_users_other_sessions() {
    let app = spawn_app().await;
    let auth = operator(&app);
    let api = app.user_api(UserProtocol::ConnectJson);
    let sessions = session_api(&app, &api);
    let id = human(&app, "otp-revoke@example.com", None).await;
    for step in ["add", "remove"] {
        let other = ok(
            &sessions,
            sessions
                .create(
                    Some(&auth),
                    create(with_password(user_check(&id), FACTOR_PASSWORD)),
                )
                .await,
        )
        .message
        .session_id;
        if step == "add" {
            add_otp_email(&api, &auth, &id).await;
        } else {
            ok(
                &api,
                api.call::<RemoveOtpEmail>(
                    Some(&auth),
                    user::RemoveOtpEmailRequest {
                        user_id: id.clone(),
                    },
                )
                .await,
            );
        }
        let outcome = sessions
            .get(
                Some(&auth),
                v2::GetSessionRequest {
                    session_id: other,
                    session_token: None,
                },
            )
            .await;
        fails(&sessions, outcome, Code::NotFound, "QUERY-SFeaa");
    }
}

#[tokio::test]
async fn a_returned_code_passes_once_and_shows_in_the_session_factors() {
    let app = spawn_app().await;
    let auth = operator(&app);
    for (i, api) in app.user_apis().into_iter().enumerate() {
        let sessions = session_api(&app, &api);
        let id = human(
            &app,
            &format!("otp-check{i}@example.com"),
            Some("+15555550100"),
        )
        .await;
        add_otp_email(&api, &auth, &id).await;
        add_otp_sms(&api, &auth, &id).await;

        let mut both = email_returned();
        both.otp_sms = sms(true).otp_sms;
        let (session, codes) = challenged(&sessions, &auth, &id, both).await;
        let codes = codes.expect("challenges in the answer");
        let email = codes.otp_email.expect("the email code");
        let text = codes.otp_sms.expect("the SMS code");
        assert_eq!(email.len(), 8, "{api}");
        assert!(email.bytes().all(|b| b.is_ascii_digit()), "{api}");
        assert_ne!(email, text, "{api}: one code per challenge");

        // A wrong code is refused and leaves the challenge usable.
        let refused = sessions
            .set(
                Some(&auth),
                set(
                    &session,
                    with_otp_email(v2::Checks::default(), &wrong(&email)),
                ),
            )
            .await;
        fails(&sessions, refused, Code::InvalidArgument, "CODE-woT0xc");
        // The SMS code is not the email code.
        let swapped = sessions
            .set(
                Some(&auth),
                set(&session, with_otp_email(v2::Checks::default(), &text)),
            )
            .await;
        fails(&sessions, swapped, Code::InvalidArgument, "CODE-woT0xc");

        ok(
            &sessions,
            sessions
                .set(
                    Some(&auth),
                    set(
                        &session,
                        with_otp_sms(with_otp_email(v2::Checks::default(), &email), &text),
                    ),
                )
                .await,
        );
        let factors = session_of(&app, &sessions, &session)
            .await
            .factors
            .expect("factors");
        let now = Some(Timestamp::from(app.now()));
        assert_eq!(factors.otp_email.and_then(|f| f.verified_at), now, "{api}");
        assert_eq!(factors.otp_sms.and_then(|f| f.verified_at), now, "{api}");

        // Used up: the challenge is gone.
        let replay = sessions
            .set(
                Some(&auth),
                set(&session, with_otp_email(v2::Checks::default(), &email)),
            )
            .await;
        fails(&sessions, replay, Code::FailedPrecondition, "COMMAND-S34gh");
    }
}

#[tokio::test]
async fn checks_need_a_challenge_of_the_session_for_the_user_before_it_expires() {
    let app = spawn_app_with(|s| s.otp_code_lifetime = Duration::from_secs(120)).await;
    let auth = operator(&app);
    let api = app.user_api(UserProtocol::ConnectJson);
    let sessions = session_api(&app, &api);
    let alice = human(&app, "otp-alice@example.com", None).await;
    let bob = human(&app, "otp-bob@example.com", None).await;
    for id in [&alice, &bob] {
        add_otp_email(&api, &auth, id).await;
    }

    // No earlier challenge: CreateSession cannot check a code.
    let outcome = sessions
        .create(
            Some(&auth),
            create(with_otp_email(user_check(&alice), "12345678")),
        )
        .await;
    fails(
        &sessions,
        outcome,
        Code::FailedPrecondition,
        "COMMAND-S34gh",
    );
    // No user: refused before anything else.
    let outcome = sessions
        .create(
            Some(&auth),
            create(with_otp_email(v2::Checks::default(), "12345678")),
        )
        .await;
    fails(&sessions, outcome, Code::InvalidArgument, "COMMAND-S453v");
    // A challenge without a user, or for a user without the factor.
    let outcome = sessions
        .create(
            Some(&auth),
            v2::CreateSessionRequest {
                challenges: Some(email_returned()),
                ..Default::default()
            },
        )
        .await;
    fails(
        &sessions,
        outcome,
        Code::FailedPrecondition,
        "COMMAND-JK3gp",
    );
    let outcome = sessions
        .create(
            Some(&auth),
            v2::CreateSessionRequest {
                checks: Some(user_check(&alice)),
                challenges: Some(sms(true)),
                ..Default::default()
            },
        )
        .await;
    fails(
        &sessions,
        outcome,
        Code::FailedPrecondition,
        "COMMAND-BJ2g3",
    );

    // Alice's code does not pass for Bob, even on her session.
    let (session, codes) = challenged(&sessions, &auth, &alice, email_returned()).await;
    let code = codes.and_then(|c| c.otp_email).expect("code");
    let outcome = sessions
        .set(
            Some(&auth),
            set(&session, with_otp_email(user_check(&bob), &code)),
        )
        .await;
    fails(
        &sessions,
        outcome,
        Code::FailedPrecondition,
        "COMMAND-S34gh",
    );

    // A new challenge replaces the old one: the first code no longer passes.
    let renewed = ok(
        &sessions,
        sessions
            .set(
                Some(&auth),
                v2::SetSessionRequest {
                    session_id: session.clone(),
                    challenges: Some(email_returned()),
                    ..Default::default()
                },
            )
            .await,
    )
    .message;
    let fresh = renewed
        .challenges
        .and_then(|c| c.otp_email)
        .expect("new code");
    if fresh != code {
        let outcome = sessions
            .set(
                Some(&auth),
                set(&session, with_otp_email(v2::Checks::default(), &code)),
            )
            .await;
        fails(&sessions, outcome, Code::InvalidArgument, "CODE-woT0xc");
    }

    // Expired: refused even when right.
    app.advance(Duration::from_secs(121));
    let outcome = sessions
        .set(
            Some(&auth),
            set(&session, with_otp_email(v2::Checks::default(), &fresh)),
        )
        .await;
    fails(&sessions, outcome, Code::FailedPrecondition, "CODE-QvUQ4P");
}

#[tokio::test]
async fn failed_codes_count_toward_the_lockout_shared_with_passwords() {
    let app = spawn_app_with(|s| s.max_password_attempts = 3).await;
    let auth = operator(&app);
    let api = app.user_api(UserProtocol::ConnectJson);
    let sessions = session_api(&app, &api);
    let id = human(&app, "otp-lock@example.com", None).await;
    add_otp_email(&api, &auth, &id).await;
    let (session, codes) = challenged(&sessions, &auth, &id, email_returned()).await;
    let code = codes.and_then(|c| c.otp_email).expect("code");

    let outcome = sessions
        .set(
            Some(&auth),
            set(
                &session,
                with_password(v2::Checks::default(), "wrong password"),
            ),
        )
        .await;
    fails(&sessions, outcome, Code::InvalidArgument, "COMMAND-3M0fs");
    for _ in 0..2 {
        let outcome = sessions
            .set(
                Some(&auth),
                set(
                    &session,
                    with_otp_email(v2::Checks::default(), &wrong(&code)),
                ),
            )
            .await;
        fails(&sessions, outcome, Code::InvalidArgument, "CODE-woT0xc");
    }
    // Three failures of two kinds: locked, so even the right code is refused.
    let outcome = sessions
        .set(
            Some(&auth),
            set(&session, with_otp_email(v2::Checks::default(), &code)),
        )
        .await;
    let failure = outcome.expect_err("locked");
    assert_eq!(failure.code, Code::FailedPrecondition, "{failure:?}");
}

/// An SMTP sink (Python `aiosmtpd`) on a free loopback port, writing each message into a
/// Maildir; `None` (said loudly) where the module is missing, except in CI, where that fails.
struct SmtpSink {
    port: u16,
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpSink {
    async fn start() -> Option<Self> {
        let available = std::process::Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        if !available {
            assert!(
                std::env::var("CI").is_err(),
                "CI must install the Python package aiosmtpd (pip install aiosmtpd)"
            );
            eprintln!("SKIPPED: the SMTP delivery test needs `pip install aiosmtpd`");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("maildir");
        let child = std::process::Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.path().join("mail"))
            .spawn()
            .expect("starting aiosmtpd");
        let sink = Self { port, dir, child };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Some(sink);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("aiosmtpd did not listen on {port}");
    }

    /// The messages received so far, as text (quoted-printable bodies decoded).
    fn messages(&self) -> Vec<String> {
        let new = self.dir.path().join("mail").join("new");
        let Ok(entries) = std::fs::read_dir(new) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .map(|text| quoted_printable(&text))
            .collect()
    }
}

/// `text` with quoted-printable soft line breaks and `=XX` escapes decoded.
fn quoted_printable(text: &str) -> String {
    let text = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'=')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The 8-digit code in a message.
fn code_in(text: &str) -> String {
    text.as_bytes()
        .windows(8)
        .find(|w| w.iter().all(u8::is_ascii_digit))
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .expect("a code in the message")
}

#[tokio::test]
async fn a_sent_code_arrives_by_smtp_with_its_link_and_passes() {
    let Some(sink) = SmtpSink::start().await else {
        return;
    };
    let port = sink.port;
    let app = spawn_app_with(|s| {
        s.smtp_host = Some("127.0.0.1".into());
        s.smtp_port = Some(u32::from(port));
        s.smtp_security = "plain".into();
        s.smtp_from = "Sign-in <signin@example.com>".into();
    })
    .await;
    let auth = operator(&app);
    let api = app.user_api(UserProtocol::ConnectJson);
    let sessions = session_api(&app, &api);
    let id = human(&app, "otp-mail@example.com", None).await;
    add_otp_email(&api, &auth, &id).await;
    let (session, codes) = challenged(
        &sessions,
        &auth,
        &id,
        email_sent(Some(
            "https://login.example/otp?code={{.Code}}&user={{.UserID}}&s={{.SessionID}}",
        )),
    )
    .await;
    assert!(
        codes.and_then(|c| c.otp_email).is_none(),
        "a sent code is not returned"
    );
    let mut messages = Vec::new();
    for _ in 0..200 {
        messages = sink.messages();
        if !messages.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(messages.len(), 1, "one email");
    let mail = &messages[0];
    assert!(mail.contains("To: otp-mail@example.com"), "{mail}");
    assert!(mail.contains("signin@example.com"), "{mail}");
    let code = code_in(mail);
    assert!(
        mail.contains(&format!(
            "https://login.example/otp?code={code}&user={id}&s={session}"
        )),
        "{mail}"
    );
    ok(
        &sessions,
        sessions
            .set(
                Some(&auth),
                set(&session, with_otp_email(v2::Checks::default(), &code)),
            )
            .await,
    );

    // A template that does not render is refused, and nothing is sent.
    let outcome = sessions
        .create(
            Some(&auth),
            v2::CreateSessionRequest {
                checks: Some(user_check(&id)),
                challenges: Some(email_sent(Some("https://x/?c={{.Secret}}"))),
                ..Default::default()
            },
        )
        .await;
    fails(&sessions, outcome, Code::InvalidArgument, "DOMAIN-oGh5e");
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test]
async fn a_challenge_that_cannot_be_delivered_fails_and_creates_nothing() {
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let app = spawn_app_with(|s| {
        s.smtp_host = Some("127.0.0.1".into());
        s.smtp_port = Some(u32::from(port));
        s.smtp_security = "plain".into();
        s.smtp_timeout = Duration::from_secs(2);
    })
    .await;
    let auth = operator(&app);
    let api = app.user_api(UserProtocol::ConnectJson);
    let sessions = session_api(&app, &api);
    let id = human(&app, "otp-down@example.com", Some("+15555550101")).await;
    add_otp_email(&api, &auth, &id).await;
    add_otp_sms(&api, &auth, &id).await;
    let outcome = sessions
        .create(
            Some(&auth),
            v2::CreateSessionRequest {
                checks: Some(user_check(&id)),
                challenges: Some(email_sent(None)),
                ..Default::default()
            },
        )
        .await;
    let failure = fails(
        &sessions,
        outcome,
        Code::Unavailable,
        "SESSIOND-OTP-DELIVERY",
    );
    assert!(!failure.message.contains(&id), "{failure:?}");
    // No SMS channel is configured at all.
    let outcome = sessions
        .create(
            Some(&auth),
            v2::CreateSessionRequest {
                checks: Some(user_check(&id)),
                challenges: Some(sms(false)),
                ..Default::default()
            },
        )
        .await;
    fails(
        &sessions,
        outcome,
        Code::FailedPrecondition,
        "SESSIOND-OTP-NO-DELIVERY",
    );
    let live = app
        .core
        .store()
        .count_live_sessions(app.now())
        .await
        .expect("count");
    assert_eq!(live, 0, "no session was created");
}

const WEBHOOK_SECRET: &str = "a webhook secret of some length";

/// What the webhook receiver saw: each request's JSON body, after its signature checked out.
#[derive(Clone, Default)]
struct Received {
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    refuse_first: Arc<Mutex<u32>>,
}

async fn receive(
    axum::extract::State(received): axum::extract::State<Received>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let timestamp = headers
        .get(sessiond::delivery::TIMESTAMP_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let signature = headers
        .get(sessiond::delivery::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let expected = sessiond::delivery::signature(WEBHOOK_SECRET.as_bytes(), &timestamp, &body);
    if timestamp.is_empty() || signature != expected {
        return axum::http::StatusCode::UNAUTHORIZED;
    }
    {
        let mut refuse = received.refuse_first.lock().expect("lock");
        if *refuse > 0 {
            *refuse -= 1;
            return axum::http::StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    let json = serde_json::from_slice(&body).expect("JSON body");
    received.bodies.lock().expect("lock").push(json);
    axum::http::StatusCode::NO_CONTENT
}

#[tokio::test]
async fn a_sent_sms_code_goes_to_the_signed_webhook_with_retries_and_passes() {
    let received = Received::default();
    *received.refuse_first.lock().expect("lock") = 1;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook = listener.local_addr().expect("address");
    let router = axum::Router::new()
        .route("/sms", axum::routing::post(receive))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let app = spawn_app_with(|s| {
        s.sms_webhook_url = Some(format!("http://{hook}/sms"));
        s.sms_webhook_secret = Some(SecretText::from(WEBHOOK_SECRET));
        s.sms_webhook_retries = 2;
    })
    .await;
    let auth = operator(&app);
    let api = app.user_api(UserProtocol::ConnectJson);
    let sessions = session_api(&app, &api);
    let id = human(&app, "otp-sms@example.com", Some("+15555550123")).await;
    add_otp_sms(&api, &auth, &id).await;
    let (session, codes) = challenged(&sessions, &auth, &id, sms(false)).await;
    assert!(codes.and_then(|c| c.otp_sms).is_none());
    let bodies = received.bodies.lock().expect("lock").clone();
    assert_eq!(
        bodies.len(),
        1,
        "delivered once, after one refusal: {bodies:?}"
    );
    let body = &bodies[0];
    assert_eq!(body["to"], "+15555550123");
    assert_eq!(body["userId"], id.as_str());
    assert_eq!(body["sessionId"], session.as_str());
    let code = body["code"].as_str().expect("code").to_owned();
    ok(
        &sessions,
        sessions
            .set(
                Some(&auth),
                set(&session, with_otp_sms(v2::Checks::default(), &code)),
            )
            .await,
    );
}

#[tokio::test]
async fn codes_are_kept_only_as_keyed_hashes() {
    let app = spawn_app().await;
    let auth = operator(&app);
    let api = app.user_api(UserProtocol::ConnectJson);
    let sessions = session_api(&app, &api);
    let id = human(&app, "otp-rest@example.com", None).await;
    add_otp_email(&api, &auth, &id).await;
    let (session, codes) = challenged(&sessions, &auth, &id, email_returned()).await;
    let code = codes.and_then(|c| c.otp_email).expect("code");
    let stored = app
        .core
        .store()
        .otp_challenge(
            &sessiond::domain::SessionId::parse(session).expect("id"),
            sessiond::domain::FactorKind::OtpEmail,
        )
        .await
        .expect("read")
        .expect("a challenge row");
    assert_eq!(stored.code_hash.len(), 32);
    assert!(
        !stored
            .code_hash
            .windows(4)
            .any(|w| code.as_bytes().windows(4).any(|c| c == w))
    );
    assert_eq!(
        stored.expires_at,
        app.now().saturating_add(Duration::from_secs(300)),
        "five minutes by default"
    );
}

#[tokio::test]
async fn kratos_reaches_aal2_only_with_the_password_and_a_second_factor() {
    let app = spawn_app().await;
    let auth = operator(&app);
    let api = app.user_api(UserProtocol::Grpc);
    let sessions = session_api(&app, &api);
    let id = human(&app, "otp-aal@example.com", None).await;
    add_otp_email(&api, &auth, &id).await;
    let secret = enroll_totp(&app, &api, &auth, &id).await;
    let codes = generate_recovery_codes(&api, &auth, &id, 1).await;

    // Two second factors without the password: one level only.
    let created = ok(
        &sessions,
        sessions
            .create(
                Some(&auth),
                create(with_recovery(
                    with_totp(user_check(&id), &totp_code(&secret, app.now())),
                    &codes[0],
                )),
            )
            .await,
    )
    .message;
    let answer = whoami(&app, &created.session_token).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json["authenticator_assurance_level"], "aal1");

    // The password and a code by email: aal2, the code listed as Kratos' `code` method.
    let (session, returned) = challenged(&sessions, &auth, &id, email_returned()).await;
    let code = returned.and_then(|c| c.otp_email).expect("code");
    let set = ok(
        &sessions,
        sessions
            .set(
                Some(&auth),
                set(
                    &session,
                    with_otp_email(with_password(v2::Checks::default(), FACTOR_PASSWORD), &code),
                ),
            )
            .await,
    )
    .message;
    let answer = whoami(&app, &set.session_token).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json["authenticator_assurance_level"], "aal2");
    let methods: Vec<&str> = answer.json["authentication_methods"]
        .as_array()
        .expect("methods")
        .iter()
        .filter_map(|m| m["method"].as_str())
        .collect();
    assert_eq!(methods, ["identifier_first", "password", "code"]);
}

#[tokio::test]
async fn a_server_with_another_factor_key_than_the_database_refuses_to_start() {
    let data_dir = tempfile::tempdir().expect("data dir");
    let settings = sessiond::settings::Settings::for_test(data_dir.path());
    let clock = || Arc::new(sessiond::domain::ManualClock::new(START));
    let first = sessiond::app::Application::build(settings.clone(), clock())
        .await
        .expect("the first start records the key");
    drop(first);
    // The same database with a key of its own, as a replica without the shared key file.
    let other = data_dir.path().join("other.key");
    std::fs::write(&other, "11".repeat(32)).expect("key file");
    let refused = sessiond::app::Application::build(
        sessiond::settings::Settings {
            factor_key_file: Some(other),
            ..settings.clone()
        },
        clock(),
    )
    .await;
    let message = format!("{:#}", refused.err().expect("refused"));
    assert!(message.contains("factor key"), "{message}");
    assert!(!message.contains(&"11".repeat(32)), "no key in the message");
    // The shared key starts again.
    sessiond::app::Application::build(settings, clock())
        .await
        .expect("the recorded key starts");
}
