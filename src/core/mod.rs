//! The one session service under every face. It enforces every rule (permissions, state
//! transitions, token rotation, password checks) and returns domain errors; faces only
//! translate requests in and results out.

mod admin_sessions;
mod checks;
pub mod events;
mod factors;
mod login;
mod paging;
mod password;
mod retention;
mod sessions;
mod stats;
mod user_sessions;
mod users;

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{Clock, Error, Permission, Principal, error_ids};
use crate::feed::{Feed, FeedSettings};
use crate::store::{DynStore, StoreError};

pub use admin_sessions::{AdminSessionPage, RevokedBy, SessionAction, SessionWithUser};
pub use checks::{Checks, UserLookup};
pub use events::{Encoding, EventBatches, EventStream, Events, SharedEvent};
pub use factors::{
    AuthMethod, DEFAULT_RECOVERY_CODES, FACTOR_KEY_FILE, FactorChange, ImportedSeed,
    MAX_RECOVERY_CODES, SeedSealer, TotpEnrollment, factor_key_fingerprint,
    load_or_create_factor_key,
};
pub use factors::{
    CEREMONY_TIMEOUT, PasskeyAssertion, PasskeyAttestation, PasskeyChallengeRequest, PasskeyInfo,
    PasskeyRegistrationStart, PasskeySettings, UserVerification,
};
pub use factors::{EmailDelivery, NewContact, OtpChallenges, ReturnedCodes};
pub use login::{LOGIN_FLOW_LIFESPAN, LOGIN_SESSION_LIFESPAN, LoginFlow};
use paging::TAG_LEN;
pub use paging::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageRequest, SessionPageResult};
pub use password::PasswordHasher;
pub use retention::{PruneTotals, Retention};
pub use sessions::{CreateSession, ListSessions, SearchQuery, SessionChange, SetSession};
pub use stats::{CoreStats, StatsSnapshot};
pub use user_sessions::CurrentSession;
pub use users::{NewUser, UserAction};

/// Tunables of the core.
#[derive(Clone, Debug)]
pub struct CoreSettings {
    /// Resource owner reported in every `details` object.
    pub instance_id: String,
    /// Failed password checks after which a user is locked out; 0 turns lockout off.
    pub max_password_attempts: u32,
    /// Page size of ListSessions when the request gives none.
    pub default_list_limit: u32,
    /// Largest page ListSessions returns.
    pub max_list_limit: u32,
    /// How far from now an administrator's extend moves a session's expiry.
    pub session_extend_lifespan: Duration,
    /// The event feed's hub.
    pub feed: FeedSettings,
    /// Issuer named in TOTP enrollment URIs (what authenticator apps show).
    pub totp_issuer: String,
    /// The WebAuthn relying party passkeys are registered with.
    pub passkeys: factors::PasskeySettings,
    /// How long a one-time code sent by SMS or email stays valid.
    pub otp_code_lifetime: Duration,
    /// The link template of OTP emails when a challenge names none.
    pub otp_email_url_template: Option<String>,
}

impl Default for CoreSettings {
    /// The defaults of [`Settings`](crate::settings::Settings) and the core's list limits.
    fn default() -> Self {
        let settings = crate::settings::Settings::default();
        Self {
            instance_id: settings.instance_id,
            max_password_attempts: settings.max_password_attempts,
            default_list_limit: 100,
            max_list_limit: 1000,
            session_extend_lifespan: settings.session_extend_lifespan,
            feed: FeedSettings {
                buffer: settings.feed_buffer,
                poll_interval: settings.feed_poll_interval,
                max_subscribers: settings.feed_max_subscribers,
            },
            totp_issuer: settings.totp_issuer,
            passkeys: factors::PasskeySettings::default(),
            otp_code_lifetime: settings.otp_code_lifetime,
            otp_email_url_template: settings.otp_email_url_template,
        }
    }
}

/// The session service.
#[derive(Clone)]
pub struct Core {
    store: DynStore,
    clock: Arc<dyn Clock>,
    passwords: PasswordHasher,
    settings: Arc<CoreSettings>,
    /// Key that authenticates page tokens; loaded from the store on first use.
    page_key: Arc<tokio::sync::OnceCell<[u8; 32]>>,
    stats: Arc<CoreStats>,
    feed: Feed,
    /// Seals TOTP seeds at rest; without it, TOTP cannot be enrolled or checked.
    sealer: Option<SeedSealer>,
    /// Key recovery codes are hashed with; loaded from the store on first use.
    recovery_key: Arc<tokio::sync::OnceCell<[u8; 32]>>,
    /// The WebAuthn relying party; without it (invalid settings), passkeys are refused.
    relying_party: Option<Arc<webauthn_rs::Webauthn>>,
    /// Key one-time codes are hashed with, derived from the factor key.
    otp_key: Option<Arc<[u8; 32]>>,
    /// Channels that send one-time codes.
    delivery: Arc<crate::delivery::Delivery>,
}

impl Core {
    pub fn new(
        store: DynStore,
        clock: Arc<dyn Clock>,
        passwords: PasswordHasher,
        settings: CoreSettings,
    ) -> Self {
        let feed = Feed::new(store.clone(), clock.clone(), settings.feed.clone());
        let relying_party = factors::relying_party(&settings.passkeys);
        Self {
            store,
            clock,
            passwords,
            feed,
            settings: Arc::new(settings),
            page_key: Arc::new(tokio::sync::OnceCell::new()),
            stats: Arc::new(CoreStats::default()),
            sealer: None,
            recovery_key: Arc::new(tokio::sync::OnceCell::new()),
            relying_party,
            otp_key: None,
            delivery: Arc::new(crate::delivery::Delivery::default()),
        }
    }

    /// The core with the key that seals TOTP seeds.
    pub fn with_factor_key(mut self, key: &[u8; 32]) -> Self {
        self.sealer = Some(SeedSealer::new(key));
        self.otp_key = Some(Arc::new(factors::otp_key(key)));
        self
    }

    /// The core with the channels that send one-time codes.
    pub fn with_delivery(mut self, delivery: crate::delivery::Delivery) -> Self {
        self.delivery = Arc::new(delivery);
        self
    }

    pub fn store(&self) -> &DynStore {
        &self.store
    }

    pub fn stats(&self) -> &CoreStats {
        &self.stats
    }

    pub fn settings(&self) -> &CoreSettings {
        &self.settings
    }

    pub fn now(&self) -> crate::domain::Time {
        self.clock.now()
    }
}

fn missing_permission(permission: Permission) -> Error {
    Error::permission_denied(
        error_ids::PERMISSION_MISSING,
        format!(
            "No matching permissions found (requires {})",
            permission.name()
        ),
    )
}

/// Fails unless the caller holds `permission`.
fn require(principal: &Principal, permission: Permission) -> Result<(), Error> {
    if principal.can(permission) {
        Ok(())
    } else {
        Err(missing_permission(permission))
    }
}

fn user_not_found() -> Error {
    Error::not_found(error_ids::USER_NOT_FOUND, "User could not be found")
}

/// How often a command re-reads and retries after losing a race with another writer.
const MAX_ATTEMPTS: u32 = 40;

/// Runs `op` until it does not fail with a write conflict, a bounded number of times.
async fn retry_on_conflict<T, F, Fut>(mut op: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Attempt>>,
{
    for attempt in 0..MAX_ATTEMPTS {
        match op().await {
            Ok(value) => return Ok(value),
            Err(Attempt::Failed(e)) => return Err(e),
            Err(Attempt::Conflict) => {
                // Exponential backoff capped at 32 ms, with jitter so racers spread out:
                // at most about a second in all before giving up.
                let base = 1u64 << attempt.min(5);
                let jitter = u64::from(rand::random::<u8>()) % (base + 1);
                tokio::time::sleep(Duration::from_millis(base / 2 + jitter)).await;
            }
        }
    }
    Err(StoreError::Conflict.into())
}

/// Outcome of one try of a read-modify-write command.
enum Attempt {
    Conflict,
    Failed(Error),
}

impl From<StoreError> for Attempt {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => Attempt::Conflict,
            other => Attempt::Failed(other.into()),
        }
    }
}

impl From<Error> for Attempt {
    fn from(e: Error) -> Self {
        Attempt::Failed(e)
    }
}
