//! Codes by SMS through a webhook: a JSON POST to the operator's URL (an SMS gateway or a
//! small adapter in front of one), signed so the receiver can tell it came from this server.
//!
//! The request carries `X-Sessiond-Timestamp` (Unix seconds) and `X-Sessiond-Signature`
//! (`v1=` and the hex HMAC-SHA256, under the configured secret, of the timestamp, a `.` and
//! the body). A receiver recomputes it and refuses old timestamps. Each try has a timeout; a
//! connection error, a timeout, 429 or a 5xx is retried with doubling backoff, any other
//! answer is final.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{DeliveryError, OtpSmsMessage};

pub const SIGNATURE_HEADER: &str = "x-sessiond-signature";
pub const TIMESTAMP_HEADER: &str = "x-sessiond-timestamp";

/// What the SMS webhook needs.
#[derive(Clone)]
pub struct WebhookSettings {
    pub url: String,
    pub secret: String,
    /// The most one try may take.
    pub timeout: Duration,
    /// Tries after the first.
    pub retries: u32,
    /// The wait before the first retry; doubled before each next one.
    pub backoff: Duration,
}

pub(super) struct WebhookSender {
    client: reqwest::Client,
    url: reqwest::Url,
    secret: Vec<u8>,
    retries: u32,
    backoff: Duration,
}

/// `v1=` and the hex HMAC-SHA256 of `timestamp.body` under `secret`.
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("v1={hex}")
}

impl WebhookSender {
    pub(super) fn new(settings: WebhookSettings) -> anyhow::Result<Self> {
        let url = reqwest::Url::parse(&settings.url)
            .map_err(|e| anyhow::anyhow!("sms-webhook-url: not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            anyhow::bail!("sms-webhook-url: must be an http or https URL");
        }
        if settings.secret.len() < 16 {
            anyhow::bail!("sms-webhook-secret: at least 16 characters are needed to sign requests");
        }
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            client,
            url,
            secret: settings.secret.into_bytes(),
            retries: settings.retries,
            backoff: settings.backoff,
        })
    }

    pub(super) async fn send(&self, message: &OtpSmsMessage<'_>) -> Result<(), DeliveryError> {
        let body = serde_json::json!({
            "type": "otp_sms",
            "to": message.to,
            "code": message.code,
            "userId": message.user_id,
            "sessionId": message.session_id,
        })
        .to_string();
        let mut wait = self.backoff;
        for attempt in 0..=self.retries {
            if attempt > 0 {
                tokio::time::sleep(wait).await;
                wait = wait.saturating_mul(2);
            }
            let timestamp = message.sent_at_unix.to_string();
            let result = self
                .client
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(TIMESTAMP_HEADER, &timestamp)
                .header(
                    SIGNATURE_HEADER,
                    signature(&self.secret, &timestamp, body.as_bytes()),
                )
                .body(body.clone())
                .send()
                .await;
            match result {
                Ok(answer) if answer.status().is_success() => return Ok(()),
                Ok(answer) => {
                    let status = answer.status();
                    tracing::warn!(channel = "sms", attempt, %status, "the SMS webhook refused a one-time code");
                    if !(status.is_server_error()
                        || status == reqwest::StatusCode::TOO_MANY_REQUESTS)
                    {
                        return Err(DeliveryError::Failed("SMS"));
                    }
                }
                Err(e) => {
                    // Without the URL: its query may hold a gateway's key.
                    let cause = e.without_url();
                    tracing::warn!(channel = "sms", attempt, %cause, "the SMS webhook did not answer");
                }
            }
        }
        Err(DeliveryError::Failed("SMS"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        let a = signature(b"0123456789abcdef", "1700000000", b"{}");
        assert!(a.starts_with("v1=") && a.len() == 3 + 64);
        assert_ne!(a, signature(b"0123456789abcdef", "1700000001", b"{}"));
        assert_ne!(a, signature(b"0123456789abcdef", "1700000000", b"{ }"));
        assert_ne!(a, signature(b"0123456789abcdeX", "1700000000", b"{}"));
    }

    #[test]
    fn only_http_urls_and_real_secrets_are_accepted() {
        let settings = |url: &str, secret: &str| WebhookSettings {
            url: url.into(),
            secret: secret.into(),
            timeout: Duration::from_secs(1),
            retries: 0,
            backoff: Duration::from_millis(10),
        };
        assert!(
            WebhookSender::new(settings("https://sms.example/hook", "0123456789abcdef")).is_ok()
        );
        assert!(
            WebhookSender::new(settings("ftp://sms.example/hook", "0123456789abcdef")).is_err()
        );
        assert!(WebhookSender::new(settings("https://sms.example/hook", "short")).is_err());
    }
}
