//! Bearer-token attacks: unsigned tokens, algorithm confusion, forged and tampered tokens,
//! unknown key ids and oversized tokens are all UNAUTHENTICATED on every protocol, while
//! the untampered token they were made from works.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sessiond::auth::{Claims, EmbeddedKey};

use crate::auth::assert_unauthenticated_everywhere;
use crate::helpers::*;

fn claims(app: &TestApp) -> Claims {
    let now = app.now().unix_micros() / 1_000_000;
    Claims {
        sub: "attacker".into(),
        iss: "sessiond".into(),
        aud: vec!["sessiond".into()],
        exp: now + 3600,
        nbf: Some(now),
        iat: Some(now),
        permissions: ALL_SESSION_PERMISSIONS
            .iter()
            .map(|p| p.to_string())
            .collect(),
        scope: None,
    }
}

fn b64(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("json"))
}

#[tokio::test]
async fn forged_confused_and_tampered_jwts_are_unauthenticated_everywhere() {
    let app = spawn_app().await;
    let key = EmbeddedKey::load(app.data_dir.path()).expect("key");
    let good = jsonwebtoken::encode(
        &Header {
            kid: Some("sessiond-embedded".into()),
            ..Header::new(Algorithm::EdDSA)
        },
        &claims(&app),
        &key.encoding_key().expect("encoding key"),
    )
    .expect("sign");
    // The public key an attacker can know, used as an HMAC secret.
    let pem =
        std::fs::read_to_string(app.data_dir.path().join("jwt-signing-key.pem")).expect("pem");
    let public_pem = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem)
        .expect("key")
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("public pem");
    let body = serde_json::to_value(claims(&app)).expect("claims");
    let mut parts = good.split('.');
    let (good_header, good_payload, good_signature) = (
        parts.next().expect("h"),
        parts.next().expect("p"),
        parts.next().expect("s"),
    );

    let mut escalated = body.clone();
    escalated["sub"] = "someone-else".into();
    let mut big = claims(&app);
    big.permissions
        .extend(std::iter::repeat_n("x".repeat(100), 100));

    let cases: Vec<(String, &str)> = vec![
        (
            format!(
                "{}.{}.",
                b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
                b64(&body)
            ),
            "alg none",
        ),
        (
            format!(
                "{}.{}.",
                b64(&serde_json::json!({"alg": "None", "kid": "sessiond-embedded"})),
                b64(&body)
            ),
            "alg None with kid",
        ),
        (
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims(&app),
                &EncodingKey::from_secret(public_pem.as_bytes()),
            )
            .expect("hs256"),
            "HS256 keyed with the public key",
        ),
        (
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims(&app),
                &EncodingKey::from_secret(b"a random secret"),
            )
            .expect("hs256"),
            "HS256 with a random secret",
        ),
        (
            format!(
                "{}.{good_payload}.{good_signature}",
                b64(&serde_json::json!({"alg": "RS256", "kid": "sessiond-embedded"}))
            ),
            "EdDSA signature presented as RS256",
        ),
        (
            format!(
                "{}.{good_payload}.{good_signature}",
                b64(&serde_json::json!({"alg": "ES256", "kid": "sessiond-embedded"}))
            ),
            "EdDSA signature presented as ES256",
        ),
        (
            format!("{good_header}.{}.{good_signature}", b64(&escalated)),
            "tampered payload",
        ),
        (
            format!(
                "{good_header}.{good_payload}.{}",
                URL_SAFE_NO_PAD.encode([0u8; 64])
            ),
            "forged signature",
        ),
        (
            jsonwebtoken::encode(
                &Header {
                    kid: Some("unknown-key".into()),
                    ..Header::new(Algorithm::EdDSA)
                },
                &claims(&app),
                &key.encoding_key().expect("key"),
            )
            .expect("sign"),
            "unknown kid",
        ),
        (
            jsonwebtoken::encode(
                &Header {
                    kid: Some("sessiond-embedded".into()),
                    ..Header::new(Algorithm::EdDSA)
                },
                &big,
                &key.encoding_key().expect("key"),
            )
            .expect("sign"),
            "oversized token",
        ),
        (good[..good.len() - 5].to_owned(), "truncated token"),
        (format!("{good}.extra"), "extra segment"),
    ];
    for (token, what) in &cases {
        assert_unauthenticated_everywhere(&app, Some(&format!("Bearer {token}")), what).await;
    }
    for api in app.apis() {
        ok(
            &api,
            api.list(Some(&format!("Bearer {good}")), Default::default())
                .await,
        );
    }
}

#[tokio::test]
async fn truncated_random_and_foreign_session_tokens_are_never_accepted() {
    let app = spawn_app().await;
    let user = app.add_user("victim").await;
    let created = app.create_session_for(&user).await;
    let token = created.session_token.clone();
    let cases = [
        token[..token.len() - 1].to_owned(),
        format!("{token}x"),
        token.to_uppercase(),
        format!("sdst_{}", URL_SAFE_NO_PAD.encode([7u8; 32])),
        "sdst_".to_owned(),
    ];
    for case in &cases {
        assert_unauthenticated_everywhere(
            &app,
            Some(&format!("Bearer {case}")),
            "mangled session token",
        )
        .await;
        assert_eq!(whoami(&app, case).await.status, 401, "{case}");
    }
    let real = whoami(&app, &token).await;
    assert_eq!(real.status, 200, "the real token works");
}
