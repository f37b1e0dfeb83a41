//! Users and sessions as the admin face shows them. A user's password hash never leaves.

use serde_json::{Value, json};

use crate::domain::{Session, Time, User, UserId};

pub(super) fn rfc3339(t: Option<Time>) -> Value {
    t.map_or(Value::Null, |t| Value::String(t.to_rfc3339()))
}

pub(super) fn session_json(s: &Session, now: Time) -> Value {
    let ua = &s.user_agent;
    let agent = ua
        .header
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("user-agent"))
        .and_then(|(_, v)| v.first().cloned());
    json!({
        "id": s.id.as_str(),
        "userId": s.user_id().map(UserId::as_str),
        "deviceName": ua.description.clone().unwrap_or_else(|| "Unknown device".to_owned()),
        "userAgent": agent.or_else(|| ua.description.clone()),
        "ipAddress": ua.ip,
        "createdAt": rfc3339(Some(s.creation_date)),
        "lastActive": rfc3339(Some(s.change_date)),
        "expiresAt": rfc3339(s.expiration),
        "active": s.is_active(now),
        "revokedAt": rfc3339(s.terminated_at),
    })
}

pub fn user_json(u: &User) -> Value {
    json!({
        "id": u.id.as_str(),
        "loginName": u.login_name.as_str(),
        "displayName": u.display_name,
        "organizationId": u.organization_id,
        "state": u.state.as_str(),
        "failedPasswordAttempts": u.failed_password_attempts,
        "createdAt": rfc3339(Some(u.created_at)),
        "updatedAt": rfc3339(Some(u.updated_at)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{LoginName, UserState};

    #[test]
    fn user_json_never_contains_the_password_hash() {
        let user = User {
            id: UserId::from_trusted("1".into()),
            login_name: LoginName::from_trusted("alice".into()),
            display_name: "Alice".into(),
            organization_id: "org".into(),
            state: UserState::Active,
            password_hash: Some("$argon2id$secret".into()),
            failed_password_attempts: 0,
            created_at: Time::from_unix_micros(0),
            updated_at: Time::from_unix_micros(0),
            version: 1,
        };
        assert!(!user_json(&user).to_string().contains("argon2id"));
    }
}
