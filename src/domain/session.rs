//! The session aggregate as the core sees it, and the filter language of ListSessions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{SessionId, Time, TokenHash, UserId};

/// Current state of one session. Terminated sessions keep their row (`terminated_at` set).
#[derive(Clone, Debug)]
pub struct Session {
    pub id: SessionId,
    pub factors: Factors,
    pub metadata: Metadata,
    pub user_agent: UserAgent,
    pub expiration: Option<Time>,
    /// User id of the caller that created the session.
    pub creator: String,
    pub resource_owner: String,
    pub creation_date: Time,
    pub change_date: Time,
    /// Number of events so far: 1 after creation, +1 per change.
    pub sequence: u64,
    pub token_hash: TokenHash,
    pub terminated_at: Option<Time>,
}

impl Session {
    pub fn is_terminated(&self) -> bool {
        self.terminated_at.is_some()
    }

    pub fn is_expired(&self, now: Time) -> bool {
        self.expiration.is_some_and(|exp| exp <= now)
    }

    /// Active: neither terminated nor expired.
    pub fn is_active(&self, now: Time) -> bool {
        !self.is_terminated() && !self.is_expired(now)
    }

    pub fn user_id(&self) -> Option<&UserId> {
        self.factors.user.as_ref().map(|u| &u.id)
    }

    pub fn details(&self) -> Details {
        Details {
            sequence: self.sequence,
            change_date: Some(self.change_date),
            resource_owner: self.resource_owner.clone(),
            creation_date: Some(self.creation_date),
        }
    }
}

/// Verified authentication factors.
#[derive(Clone, Debug, Default)]
pub struct Factors {
    pub user: Option<UserFactor>,
    pub password_verified_at: Option<Time>,
    pub totp_verified_at: Option<Time>,
    pub recovery_code_verified_at: Option<Time>,
    pub web_auth_n: Option<WebAuthNFactor>,
    pub otp_sms_verified_at: Option<Time>,
    pub otp_email_verified_at: Option<Time>,
}

/// A passed WebAuthn (passkey) check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WebAuthNFactor {
    pub verified_at: Time,
    /// Whether the authenticator verified the user (PIN, biometrics), not only their presence.
    pub user_verified: bool,
}

/// The checked user. Names and organization are read from the user record when the session
/// is loaded, so they follow renames.
#[derive(Clone, Debug)]
pub struct UserFactor {
    pub id: UserId,
    pub verified_at: Time,
    pub login_name: String,
    pub display_name: String,
    pub organization_id: String,
}

/// Free-form key → bytes metadata attached by the client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Metadata(#[serde(with = "base64_map")] pub BTreeMap<String, Vec<u8>>);

impl Metadata {
    /// Applies an update: an empty value deletes the key. Returns whether anything changed.
    pub fn merge(&mut self, update: BTreeMap<String, Vec<u8>>) -> bool {
        let mut changed = false;
        for (key, value) in update {
            if value.is_empty() {
                changed |= self.0.remove(&key).is_some();
            } else if self.0.get(&key) != Some(&value) {
                self.0.insert(key, value);
                changed = true;
            }
        }
        changed
    }
}

mod base64_map {
    use std::collections::BTreeMap;

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<String, Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let encoded: BTreeMap<&str, String> = map
            .iter()
            .map(|(k, v)| (k.as_str(), STANDARD.encode(v)))
            .collect();
        encoded.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Vec<u8>>, D::Error> {
        let encoded = BTreeMap::<String, String>::deserialize(d)?;
        encoded
            .into_iter()
            .map(|(k, v)| {
                STANDARD
                    .decode(v)
                    .map(|v| (k, v))
                    .map_err(serde::de::Error::custom)
            })
            .collect()
    }
}

/// What the client told us about the device the session was created from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAgent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub header: BTreeMap<String, Vec<String>>,
}

impl UserAgent {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Object details returned by every mutation. Empty for a delete of a session that never
/// existed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Details {
    pub sequence: u64,
    pub change_date: Option<Time>,
    pub resource_owner: String,
    pub creation_date: Option<Time>,
}

/// Paging details of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListDetails {
    pub total_result: u64,
    pub timestamp: Time,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeComparison {
    Equals,
    Greater,
    GreaterOrEquals,
    Less,
    LessOrEquals,
}

/// One condition of a session search; conditions are combined with AND.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionQuery {
    Ids(Vec<String>),
    UserId(String),
    CreationDate(TimeComparison, Time),
    Creator(String),
    UserAgentFingerprint(String),
    /// `Greater`/`GreaterOrEquals` also match sessions that never expire.
    ExpirationDate(TimeComparison, Time),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SortOrder {
    #[default]
    CreationDesc,
    CreationAsc,
}

/// A page of a session search over non-terminated sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionFilter {
    pub queries: Vec<SessionQuery>,
    /// When set, only sessions this user created or is the checked user of.
    pub visible_to: Option<String>,
    pub offset: u64,
    pub limit: u32,
    pub order: SortOrder,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_merge_sets_and_deletes() {
        let mut m = Metadata::default();
        assert!(m.merge(BTreeMap::from([
            ("a".into(), b"1".to_vec()),
            ("b".into(), b"2".to_vec())
        ])));
        assert!(!m.merge(BTreeMap::from([("a".into(), b"1".to_vec())])));
        assert!(m.merge(BTreeMap::from([("a".into(), Vec::new())])));
        assert!(!m.merge(BTreeMap::from([("zz".into(), Vec::new())])));
        assert_eq!(m.0.keys().collect::<Vec<_>>(), vec!["b"]);
    }

    #[test]
    fn metadata_round_trips_as_base64_json() {
        let m = Metadata(BTreeMap::from([("k".into(), vec![0, 255])]));
        let json = serde_json::to_string(&m).unwrap_or_default();
        assert_eq!(json, r#"{"k":"AP8="}"#);
        let back: Metadata = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, m);
    }
}

/// Which sessions of a user to list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivityFilter {
    All,
    /// Not terminated and not expired at this time.
    Active(Time),
    /// Terminated or expired at this time.
    Inactive(Time),
}

/// Position after the last session of a page, in the order newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageCursor {
    pub creation_date: Time,
    pub id: SessionId,
}

/// A page of one user's sessions (or, without a user, of all sessions), newest first (keyset
/// pagination: stable under inserts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSessionsQuery {
    /// `None`: every user's sessions.
    pub user_id: Option<UserId>,
    /// Leave this session out (the caller's current one).
    pub exclude: Option<SessionId>,
    pub activity: ActivityFilter,
    pub after: Option<PageCursor>,
    pub limit: u32,
}
