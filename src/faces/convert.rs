//! Wire ↔ domain for the SessionService: request messages become validated core commands
//! (every field rule of the API is checked here, once, whatever the protocol), and domain
//! sessions become response messages.
//!
//! `google.protobuf.Duration` and `Timestamp` inputs are held to the ranges protobuf
//! defines for them: a duration within ±315,576,000,000 s with nanos of the same sign and
//! below a second, a timestamp from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.

use std::collections::BTreeMap;
use std::time::Duration;

use super::pb::wkt::Timestamp;
use super::pb::zitadel::object::v2 as object;
use super::pb::zitadel::session::v2;
use super::pb::zitadel::v1::TimestampQueryMethod;
use crate::core::{
    Checks, CreateSession, EmailDelivery, ListSessions, OtpChallenges, PasskeyAssertion,
    PasskeyChallengeRequest, ReturnedCodes, SearchQuery, SetSession, UserLookup, UserVerification,
};
use crate::domain::error_ids;
use crate::domain::{
    Details, Error, LoginName, OtpCode, Password, RecoveryCode, Session, SessionId, SessionToken,
    Time, TimeComparison, TotpCode, UserAgent, UserId,
};

pub(crate) fn invalid(message: impl Into<String>) -> Error {
    Error::invalid_argument(error_ids::REQUEST_INVALID, message.into())
}

/// The CreateSession command of a request, validated.
pub(crate) fn validate_create(request: v2::CreateSessionRequest) -> Result<CreateSession, Error> {
    Ok(CreateSession {
        checks: checks(request.checks)?,
        metadata: metadata(request.metadata)?,
        user_agent: user_agent(request.user_agent),
        lifetime: lifetime(request.lifetime)?,
        otp_challenges: otp_challenges(request.challenges.as_ref())?,
        web_auth_n_challenge: web_auth_n_challenge(request.challenges.as_ref())?,
    })
}

/// The SetSession command of a request, validated.
pub(crate) fn validate_set_request(request: v2::SetSessionRequest) -> Result<SetSession, Error> {
    Ok(SetSession {
        session_id: SessionId::parse(request.session_id)?,
        checks: checks(request.checks)?,
        metadata: metadata(request.metadata)?,
        lifetime: lifetime(request.lifetime)?,
        otp_challenges: otp_challenges(request.challenges.as_ref())?,
        web_auth_n_challenge: web_auth_n_challenge(request.challenges.as_ref())?,
    })
}

/// The SetSession command of protobuf bytes of either package version.
#[cfg(test)]
pub(crate) fn validate_set(bytes: &[u8]) -> Result<SetSession, Error> {
    let request = <v2::SetSessionRequest as prost::Message>::decode(bytes)
        .map_err(|e| invalid(e.to_string()))?;
    validate_set_request(request)
}

/// The ListSessions command of a request, validated.
pub(crate) fn validate_list(request: v2::ListSessionsRequest) -> Result<ListSessions, Error> {
    if v2::SessionFieldName::try_from(request.sorting_column).is_err() {
        return Err(invalid(
            "sortingColumn: value must be one of the defined enum values",
        ));
    }
    let query = request.query.unwrap_or_default();
    Ok(ListSessions {
        queries: request
            .queries
            .into_iter()
            .map(search_query)
            .collect::<Result<_, _>>()?,
        offset: query.offset,
        limit: query.limit,
        asc: query.asc,
    })
}

pub(crate) fn session_token(value: String) -> Result<SessionToken, Error> {
    let len = value.chars().count();
    if len == 0 || len > 500 {
        return Err(invalid(
            "sessionToken: value length must be between 1 and 500 runes, inclusive",
        ));
    }
    Ok(SessionToken::from_client(value))
}

fn checks(checks: Option<v2::Checks>) -> Result<Checks, Error> {
    let Some(c) = checks else {
        return Ok(Checks::default());
    };
    let user = match c.user {
        None => None,
        Some(user) => Some(match user.search {
            Some(v2::check_user::Search::UserId(id)) => UserLookup::Id(UserId::parse(id)?),
            Some(v2::check_user::Search::LoginName(name)) => {
                UserLookup::LoginName(LoginName::parse(name)?)
            }
            None => {
                return Err(invalid(
                    "checks.user: one of userId or loginName is required",
                ));
            }
        }),
    };
    let password = c
        .password
        .map(|p| Password::parse(p.password))
        .transpose()?;
    let totp = c.totp.map(|t| TotpCode::parse(t.code)).transpose()?;
    let recovery_code = c
        .recovery_code
        .map(|r| RecoveryCode::parse(r.code))
        .transpose()?;
    let web_auth_n = c
        .web_auth_n
        .map(|w| {
            let data = w
                .credential_assertion_data
                .ok_or_else(|| invalid("checks.webAuthN.credentialAssertionData: required"))?;
            PasskeyAssertion::parse(struct_json(data)?)
        })
        .transpose()?;
    let otp_sms = c.otp_sms.map(|o| OtpCode::parse(o.code)).transpose()?;
    let otp_email = c.otp_email.map(|o| OtpCode::parse(o.code)).transpose()?;
    let mut unsupported = Vec::new();
    for (present, name) in [(c.idp_intent.is_some(), "idpIntent")] {
        if present {
            unsupported.push(name);
        }
    }
    Ok(Checks {
        user,
        password,
        totp,
        recovery_code,
        web_auth_n,
        otp_sms,
        otp_email,
        unsupported,
    })
}

/// A `google.protobuf.Struct` as the JSON object it stands for.
pub(crate) fn struct_json(value: pbjson_types::Struct) -> Result<serde_json::Value, Error> {
    serde_json::to_value(value).map_err(|e| invalid(format!("not a JSON object: {e}")))
}

/// A JSON object as a `google.protobuf.Struct`.
pub(crate) fn json_struct(value: serde_json::Value) -> Result<pbjson_types::Struct, Error> {
    serde_json::from_value(value).map_err(|e| {
        Error::internal(
            error_ids::STORE_FAILED,
            std::io::Error::other(format!("a JSON answer that is no object: {e}")),
        )
    })
}

fn web_auth_n_challenge(
    challenges: Option<&v2::RequestChallenges>,
) -> Result<Option<PasskeyChallengeRequest>, Error> {
    let Some(w) = challenges.and_then(|c| c.web_auth_n.as_ref()) else {
        return Ok(None);
    };
    if w.domain.chars().count() > 200 || w.domain.chars().any(char::is_control) {
        return Err(invalid(
            "challenges.webAuthN.domain: at most 200 characters, no control characters",
        ));
    }
    use v2::UserVerificationRequirement as Uv;
    let user_verification = match Uv::try_from(w.user_verification_requirement) {
        Ok(Uv::Required) => UserVerification::Required,
        Ok(Uv::Preferred) => UserVerification::Preferred,
        Ok(Uv::Discouraged) => UserVerification::Discouraged,
        Ok(Uv::Unspecified) | Err(_) => {
            return Err(Error::invalid_argument(
                error_ids::PASSKEY_UV_REQUIREMENT,
                "challenges.webAuthN.userVerificationRequirement: one of REQUIRED, PREFERRED, DISCOURAGED",
            ));
        }
    };
    Ok(Some(PasskeyChallengeRequest {
        domain: w.domain.clone(),
        user_verification,
    }))
}

/// The one-time-code challenges of a request. An email challenge without a delivery type is
/// sent, with the configured default link.
fn otp_challenges(challenges: Option<&v2::RequestChallenges>) -> Result<OtpChallenges, Error> {
    use v2::request_challenges::otp_email::DeliveryType;
    let Some(c) = challenges else {
        return Ok(OtpChallenges::default());
    };
    let email = match &c.otp_email {
        None => None,
        Some(email) => Some(match &email.delivery_type {
            Some(DeliveryType::ReturnCode(_)) => EmailDelivery::Return,
            Some(DeliveryType::SendCode(send)) => EmailDelivery::Send {
                url_template: send
                    .url_template
                    .as_ref()
                    .map(|t| url_template(t))
                    .transpose()?,
            },
            None => EmailDelivery::Send { url_template: None },
        }),
    };
    Ok(OtpChallenges {
        sms: c.otp_sms.as_ref().map(|s| s.return_code),
        email,
    })
}

/// A link template: 1 to 2000 characters, no control characters (rendered by the core).
fn url_template(template: &str) -> Result<String, Error> {
    let len = template.chars().count();
    if len == 0 || len > 2000 || template.chars().any(char::is_control) {
        return Err(Error::invalid_argument(
            error_ids::OTP_URL_TEMPLATE,
            "challenges.otpEmail.sendCode.urlTemplate: 1 to 2000 characters, no control characters",
        ));
    }
    Ok(template.to_owned())
}

fn metadata(
    map: std::collections::HashMap<String, Vec<u8>>,
) -> Result<BTreeMap<String, Vec<u8>>, Error> {
    if map.keys().any(|k| k.is_empty() || k.chars().count() > 200) {
        return Err(invalid("metadata: keys must be between 1 and 200 runes"));
    }
    Ok(map.into_iter().collect())
}

fn user_agent(ua: Option<v2::UserAgent>) -> UserAgent {
    let Some(ua) = ua else {
        return UserAgent::default();
    };
    UserAgent {
        fingerprint_id: ua.fingerprint_id,
        ip: ua.ip,
        description: ua.description,
        header: ua.header.into_iter().map(|(k, v)| (k, v.values)).collect(),
    }
}

/// The largest |seconds| a `google.protobuf.Duration` may hold (10,000 years).
const DURATION_MAX_SECONDS: i64 = 315_576_000_000;

/// Whether a duration is within protobuf's range: |seconds| ≤ 315,576,000,000, |nanos| below
/// a second, and both of the same sign.
pub(crate) fn valid_duration(d: &pbjson_types::Duration) -> bool {
    d.seconds.unsigned_abs() <= DURATION_MAX_SECONDS.unsigned_abs()
        && d.nanos.unsigned_abs() < 1_000_000_000
        && !(d.seconds > 0 && d.nanos < 0 || d.seconds < 0 && d.nanos > 0)
}

fn lifetime(duration: Option<pbjson_types::Duration>) -> Result<Option<Duration>, Error> {
    let Some(d) = duration else { return Ok(None) };
    if !valid_duration(&d) {
        return Err(Error::invalid_argument(
            error_ids::LIFETIME_INVALID,
            "lifetime must be a duration of at most 315576000000s",
        ));
    }
    if d.seconds < 0 || d.nanos < 0 {
        return Err(Error::invalid_argument(
            error_ids::LIFETIME_INVALID,
            "lifetime must be greater than 0s",
        ));
    }
    Ok(Some(Duration::new(
        d.seconds.unsigned_abs(),
        d.nanos.unsigned_abs(),
    )))
}

/// A timestamp within protobuf's range (0001-01-01T00:00:00Z ..= 9999-12-31T23:59:59.999999999Z).
fn timestamp(field: &str, value: Option<Timestamp>) -> Result<Time, Error> {
    let value = value.ok_or_else(|| invalid(format!("{field} is required")))?;
    if !value.is_valid() {
        return Err(invalid(format!(
            "{field} must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999999Z"
        )));
    }
    Ok(value.into())
}

fn comparison(method: i32) -> Result<TimeComparison, Error> {
    Ok(match TimestampQueryMethod::try_from(method) {
        Ok(TimestampQueryMethod::Equals) => TimeComparison::Equals,
        Ok(TimestampQueryMethod::Greater) => TimeComparison::Greater,
        Ok(TimestampQueryMethod::GreaterOrEquals) => TimeComparison::GreaterOrEquals,
        Ok(TimestampQueryMethod::Less) => TimeComparison::Less,
        Ok(TimestampQueryMethod::LessOrEquals) => TimeComparison::LessOrEquals,
        Err(_) => {
            return Err(invalid(
                "method: value must be one of the defined enum values",
            ));
        }
    })
}

fn search_query(query: v2::SearchQuery) -> Result<SearchQuery, Error> {
    use v2::search_query::Query;
    let query = query
        .query
        .ok_or_else(|| invalid("queries: each query must set one filter"))?;
    Ok(match query {
        Query::IdsQuery(q) => SearchQuery::Ids(q.ids),
        Query::UserIdQuery(q) => SearchQuery::UserId(q.id),
        Query::CreationDateQuery(q) => SearchQuery::CreationDate(
            comparison(q.method)?,
            timestamp("creationDateQuery: creationDate", q.creation_date)?,
        ),
        Query::CreatorQuery(q) => {
            if q.id.as_ref().is_some_and(|id| id.chars().count() > 200) {
                return Err(invalid("creatorQuery.id: at most 200 runes"));
            }
            SearchQuery::Creator(q.id)
        }
        Query::UserAgentQuery(q) => {
            if q.fingerprint_id
                .as_ref()
                .is_some_and(|id| id.chars().count() > 200)
            {
                return Err(invalid("userAgentQuery.fingerprintId: at most 200 runes"));
            }
            SearchQuery::UserAgent(q.fingerprint_id)
        }
        Query::ExpirationDateQuery(q) => SearchQuery::ExpirationDate(
            comparison(q.method)?,
            timestamp("expirationDateQuery: expirationDate", q.expiration_date)?,
        ),
    })
}

pub(crate) fn details(d: &Details) -> object::Details {
    object::Details {
        sequence: d.sequence,
        change_date: d.change_date.map(Into::into),
        resource_owner: d.resource_owner.clone(),
        creation_date: d.creation_date.map(Into::into),
    }
}

/// The `challenges` of a Create or Set answer: present when the request asked for any, with
/// the codes asked back.
pub fn challenges_to_pb(codes: ReturnedCodes) -> Option<v2::Challenges> {
    codes.challenged.then_some(v2::Challenges {
        web_auth_n: None,
        otp_sms: codes.otp_sms,
        otp_email: codes.otp_email,
    })
}

/// A session as the API shows it: factors only when verified, user agent only when set.
pub fn session_to_pb(s: &Session) -> v2::Session {
    let factors = s.factors.user.as_ref().map(|user| v2::Factors {
        user: Some(v2::UserFactor {
            verified_at: Some(user.verified_at.into()),
            id: user.id.as_str().to_owned(),
            login_name: user.login_name.clone(),
            display_name: user.display_name.clone(),
            organization_id: user.organization_id.clone(),
        }),
        password: s.factors.password_verified_at.map(|at| v2::PasswordFactor {
            verified_at: Some(at.into()),
        }),
        totp: s.factors.totp_verified_at.map(|at| v2::TotpFactor {
            verified_at: Some(at.into()),
        }),
        recovery_code: s
            .factors
            .recovery_code_verified_at
            .map(|at| v2::RecoveryCodeFactor {
                verified_at: Some(at.into()),
            }),
        web_auth_n: s.factors.web_auth_n.map(|w| v2::WebAuthNFactor {
            verified_at: Some(w.verified_at.into()),
            user_verified: w.user_verified,
        }),
        otp_sms: s.factors.otp_sms_verified_at.map(|at| v2::OtpFactor {
            verified_at: Some(at.into()),
        }),
        otp_email: s.factors.otp_email_verified_at.map(|at| v2::OtpFactor {
            verified_at: Some(at.into()),
        }),
        ..Default::default()
    });
    let ua = &s.user_agent;
    v2::Session {
        id: s.id.as_str().to_owned(),
        creation_date: Some(s.creation_date.into()),
        change_date: Some(s.change_date.into()),
        sequence: s.sequence,
        factors,
        metadata: s
            .metadata
            .0
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        user_agent: (!ua.is_empty()).then(|| v2::UserAgent {
            fingerprint_id: ua.fingerprint_id.clone(),
            ip: ua.ip.clone(),
            description: ua.description.clone(),
            header: ua
                .header
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v2::user_agent::HeaderValues { values: v.clone() },
                    )
                })
                .collect(),
        }),
        expiration_date: s.expiration.map(Into::into),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duration(seconds: i64, nanos: i32) -> Option<pbjson_types::Duration> {
        Some(pbjson_types::Duration { seconds, nanos })
    }

    #[test]
    fn negative_lifetimes_are_rejected() {
        assert!(lifetime(duration(-1, 0)).is_err());
        assert!(lifetime(duration(0, -5)).is_err());
        assert_eq!(
            lifetime(duration(3600, 0)).ok().flatten(),
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn lifetimes_beyond_the_range_of_a_duration_are_rejected() {
        for (seconds, nanos) in [
            (315_576_000_001, 0),
            (i64::MAX, 0),
            (1, 1_000_000_000),
            (1, -1),
            (-1, 1),
        ] {
            let error = lifetime(duration(seconds, nanos)).err();
            assert_eq!(
                error.map(|e| e.id()),
                Some(error_ids::LIFETIME_INVALID),
                "{seconds}s {nanos}ns"
            );
        }
        assert!(lifetime(duration(315_576_000_000, 999_999_999)).is_ok());
    }

    #[test]
    fn timestamps_beyond_the_range_of_a_timestamp_are_rejected() {
        let at = |seconds, nanos| timestamp("t", Some(Timestamp { seconds, nanos }));
        assert!(at(-62_135_596_800, 0).is_ok());
        assert!(at(253_402_300_799, 999_999_999).is_ok());
        assert!(at(-62_135_596_801, 0).is_err());
        assert!(at(253_402_300_800, 0).is_err());
        assert!(at(0, -1).is_err());
        assert!(at(0, 1_000_000_000).is_err());
        assert!(timestamp("t", None).is_err());
    }
}
