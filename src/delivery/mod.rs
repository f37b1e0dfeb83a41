//! Delivery of one-time codes: by email over SMTP (`smtp`) and by SMS through an HTTP webhook
//! the operator points at an SMS gateway (`webhook`). Each channel is optional; without one,
//! codes of that kind can only be returned to the caller (`returnCode`).
//!
//! Messages carry the code, so nothing here logs a message, a body, a credential or a URL
//! with its query: failures are logged by channel and cause only.

mod smtp;
mod template;
mod webhook;

pub use smtp::{SmtpSecurity, SmtpSettings};
pub use template::render_template;
pub use webhook::{SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookSettings, signature};

/// Why a code was not delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryError {
    /// No channel of this kind is configured ("email" or "SMS").
    NotConfigured(&'static str),
    /// The channel failed ("email" or "SMS"); the cause is in the log.
    Failed(&'static str),
}

/// A code to send by email.
pub struct OtpEmailMessage<'a> {
    pub to: &'a str,
    pub code: &'a str,
    /// A link for the user to follow, rendered from the URL template.
    pub link: Option<&'a str>,
    pub login_name: &'a str,
    pub display_name: &'a str,
}

/// A code to send by SMS.
pub struct OtpSmsMessage<'a> {
    pub to: &'a str,
    pub code: &'a str,
    pub user_id: &'a str,
    pub session_id: &'a str,
    /// When it is sent (Unix seconds), for the signature's timestamp.
    pub sent_at_unix: i64,
}

/// The configured channels.
#[derive(Default)]
pub struct Delivery {
    email: Option<smtp::SmtpSender>,
    sms: Option<webhook::WebhookSender>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("email", &self.email.is_some())
            .field("sms", &self.sms.is_some())
            .finish()
    }
}

impl Delivery {
    /// The channels the settings configure; fails on a setting that cannot work (an unknown
    /// security mode, plain SMTP to a host that is not loopback, a template that does not
    /// render, a webhook URL that is not http(s)).
    pub fn new(
        smtp: Option<SmtpSettings>,
        webhook: Option<WebhookSettings>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            email: smtp.map(smtp::SmtpSender::new).transpose()?,
            sms: webhook.map(webhook::WebhookSender::new).transpose()?,
        })
    }

    pub async fn send_email(&self, message: &OtpEmailMessage<'_>) -> Result<(), DeliveryError> {
        match &self.email {
            Some(sender) => sender.send(message).await,
            None => Err(DeliveryError::NotConfigured("email")),
        }
    }

    pub async fn send_sms(&self, message: &OtpSmsMessage<'_>) -> Result<(), DeliveryError> {
        match &self.sms {
            Some(sender) => sender.send(message).await,
            None => Err(DeliveryError::NotConfigured("SMS")),
        }
    }
}
