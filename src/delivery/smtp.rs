//! Codes by email: one SMTP submission per code with `lettre` (tokio, rustls). STARTTLS
//! (default, port 587) or implicit TLS (port 465) with the system's roots; plain SMTP only to
//! a loopback host (a local relay or a test sink), never across a network.

use std::net::IpAddr;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{DeliveryError, OtpEmailMessage, render_template};

/// How the connection to the SMTP server is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpSecurity {
    StartTls,
    Tls,
    /// No TLS: allowed only to a loopback host.
    Plain,
}

impl SmtpSecurity {
    pub fn parse(name: &str) -> anyhow::Result<Self> {
        match name {
            "starttls" => Ok(Self::StartTls),
            "tls" => Ok(Self::Tls),
            "plain" => Ok(Self::Plain),
            other => anyhow::bail!("smtp-security: {other:?} is not one of starttls, tls, plain"),
        }
    }
}

/// What the SMTP channel needs.
#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    /// `None`: 587 for STARTTLS, 465 for TLS, 25 for plain.
    pub port: Option<u16>,
    pub security: SmtpSecurity,
    /// User name and password, when the server wants them.
    pub credentials: Option<(String, String)>,
    /// The sender, as `Name <address>` or a bare address.
    pub from: String,
    pub subject: String,
    /// Body template: `{{.Code}}`, `{{.Link}}`, `{{.LoginName}}`, `{{.DisplayName}}`.
    pub body: String,
    pub timeout: Duration,
}

pub(super) struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    subject: String,
    body: String,
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn sample(template: &str) -> Result<String, String> {
    render_template(
        template,
        &[
            ("Code", "12345678"),
            ("Link", "https://example.com/"),
            ("LoginName", "user"),
            ("DisplayName", "User"),
        ],
    )
}

impl SmtpSender {
    pub(super) fn new(settings: SmtpSettings) -> anyhow::Result<Self> {
        let host = settings.host.as_str();
        let builder = match settings.security {
            SmtpSecurity::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)?,
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)?,
            SmtpSecurity::Plain => {
                if !is_loopback(host) {
                    anyhow::bail!(
                        "smtp-security plain sends codes unencrypted: allowed only to a loopback \
                         host, not {host:?}; use starttls or tls"
                    );
                }
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            }
        };
        let port = settings.port.unwrap_or(match settings.security {
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::Plain => 25,
        });
        let mut builder = builder.port(port).timeout(Some(settings.timeout));
        if let Some((user, password)) = settings.credentials {
            builder = builder.credentials(Credentials::new(user, password));
        }
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| anyhow::anyhow!("smtp-from: {:?} is not a mailbox: {e}", settings.from))?;
        sample(&settings.subject).map_err(|e| anyhow::anyhow!("otp-email-subject: {e}"))?;
        sample(&settings.body).map_err(|e| anyhow::anyhow!("otp-email-body: {e}"))?;
        Ok(Self {
            transport: builder.build(),
            from,
            subject: settings.subject,
            body: settings.body,
        })
    }

    pub(super) async fn send(&self, message: &OtpEmailMessage<'_>) -> Result<(), DeliveryError> {
        let fail = |cause: &dyn std::fmt::Display| {
            tracing::warn!(channel = "email", %cause, "sending a one-time code failed");
            DeliveryError::Failed("email")
        };
        let values = [
            ("Code", message.code),
            ("Link", message.link.unwrap_or_default()),
            ("LoginName", message.login_name),
            ("DisplayName", message.display_name),
        ];
        let subject = render_template(&self.subject, &values).map_err(|e| fail(&e))?;
        let body = render_template(&self.body, &values).map_err(|e| fail(&e))?;
        let to: Mailbox = message
            .to
            .parse()
            .map_err(|_| fail(&"the user's email address is not a mailbox"))?;
        let email = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| fail(&e))?;
        self.transport
            .send(email)
            .await
            .map(|_| ())
            .map_err(|e| fail(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(host: &str, security: SmtpSecurity) -> SmtpSettings {
        SmtpSettings {
            host: host.into(),
            port: None,
            security,
            credentials: None,
            from: "sessiond <noreply@example.com>".into(),
            subject: "Code".into(),
            body: "{{.Code}} {{.Link}}".into(),
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn plain_smtp_is_refused_beyond_loopback() {
        assert!(SmtpSender::new(settings("127.0.0.1", SmtpSecurity::Plain)).is_ok());
        assert!(SmtpSender::new(settings("localhost", SmtpSecurity::Plain)).is_ok());
        assert!(SmtpSender::new(settings("[::1]", SmtpSecurity::Plain)).is_ok());
        assert!(SmtpSender::new(settings("mail.example.com", SmtpSecurity::Plain)).is_err());
        assert!(SmtpSender::new(settings("mail.example.com", SmtpSecurity::StartTls)).is_ok());
        assert!(SmtpSecurity::parse("ssl").is_err());
    }

    #[test]
    fn bad_templates_and_senders_fail_at_start() {
        let mut s = settings("127.0.0.1", SmtpSecurity::Plain);
        s.body = "{{.Secret}}".into();
        assert!(SmtpSender::new(s).is_err());
        let mut s = settings("127.0.0.1", SmtpSecurity::Plain);
        s.from = "not a mailbox".into();
        assert!(SmtpSender::new(s).is_err());
    }
}
