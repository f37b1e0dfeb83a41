//! Session commands and queries: create, set, get, list, delete.
//!
//! Every mutation is one event (`session.added`, `session.updated`, `session.terminated`)
//! and bumps the session's sequence by one; a mutation that changes something also rotates
//! the session token, so only the newest token ever works.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::checks::{Checks, reject_unsupported};
use super::factors::{
    ChallengeDraft, OtpChallenges, PasskeyChallengeRequest, PreparedChallenges, ReturnedCodes,
    no_challenge,
};
use super::{Attempt, Core, missing_permission, require, retry_on_conflict};
use crate::domain::{
    Details, Error, Factors, ListDetails, Metadata, Permission, Principal, Session, SessionFilter,
    SessionId, SessionQuery, SessionToken, SortOrder, Time, TimeComparison, UserAgent, UserId,
};
use crate::store::{Edited, NewEvent, SessionEdit, StoreError};

#[derive(Clone, Debug, Default)]
pub struct CreateSession {
    pub checks: Checks,
    pub metadata: BTreeMap<String, Vec<u8>>,
    pub user_agent: UserAgent,
    pub lifetime: Option<Duration>,
    /// One-time-code challenges to make once the checks pass.
    pub otp_challenges: OtpChallenges,
    /// A requested WebAuthn challenge.
    pub web_auth_n_challenge: Option<PasskeyChallengeRequest>,
}

#[derive(Clone, Debug)]
pub struct SetSession {
    pub session_id: SessionId,
    pub checks: Checks,
    pub metadata: BTreeMap<String, Vec<u8>>,
    pub lifetime: Option<Duration>,
    pub otp_challenges: OtpChallenges,
    /// A requested WebAuthn challenge.
    pub web_auth_n_challenge: Option<PasskeyChallengeRequest>,
}

/// Result of a mutation: the new details and, when the token rotated, the new token.
#[derive(Debug)]
pub struct SessionChange {
    pub details: Details,
    pub session_id: SessionId,
    pub token: Option<SessionToken>,
    /// The request options of a requested WebAuthn challenge (for `credentials.get`).
    pub web_auth_n_options: Option<serde_json::Value>,
    /// Codes of challenges that asked for them back (`returnCode`).
    pub codes: ReturnedCodes,
}

/// A search condition as the client sent it. `Creator(None)` means "created by me";
/// `UserAgent(None)` means "my user agent".
#[derive(Clone, Debug)]
pub enum SearchQuery {
    Ids(Vec<String>),
    UserId(String),
    CreationDate(TimeComparison, Time),
    Creator(Option<String>),
    UserAgent(Option<String>),
    ExpirationDate(TimeComparison, Time),
}

#[derive(Clone, Debug, Default)]
pub struct ListSessions {
    pub queries: Vec<SearchQuery>,
    pub offset: u64,
    pub limit: u32,
    pub asc: bool,
}

use crate::domain::error_ids::{self, SESSION_NOT_FOUND};
const TOKEN_INVALID: &str = error_ids::SESSION_TOKEN_INVALID;

fn session_not_found() -> Error {
    Error::not_found(SESSION_NOT_FOUND, "Session does not exist")
}

fn check_lifetime(lifetime: Option<Duration>) -> Result<Option<Duration>, Error> {
    match lifetime {
        Some(d) if d.is_zero() => Err(Error::invalid_argument(
            error_ids::LIFETIME_INVALID,
            "lifetime must be greater than 0s",
        )),
        other => Ok(other),
    }
}

impl Core {
    pub async fn create_session(
        &self,
        principal: &Principal,
        request: CreateSession,
    ) -> Result<SessionChange, Error> {
        require(principal, Permission::SessionWrite)?;
        self.open_session(Some(principal), request).await
    }

    /// Creates a session after its checks pass. `opener` is the caller that creates it;
    /// `None`: the checked user opens a session of its own (a self-service login), and is
    /// then its creator.
    pub(super) async fn open_session(
        &self,
        opener: Option<&Principal>,
        request: CreateSession,
    ) -> Result<SessionChange, Error> {
        reject_unsupported(&request.checks)?;
        let lifetime = check_lifetime(request.lifetime)?;
        let verified = self.verify_checks(&request.checks, None, None).await?;
        let challenge = self
            .web_auth_n_challenge(
                request.web_auth_n_challenge.as_ref(),
                verified.user.as_ref(),
                None,
            )
            .await?;
        let own;
        let principal = match opener {
            Some(principal) => principal,
            None => {
                let user = verified.user.as_ref().ok_or_else(|| {
                    Error::failed_precondition(error_ids::USER_CHECK_FIRST, "a login checks a user")
                })?;
                own = Principal {
                    user_id: user.id.as_str().to_owned(),
                    permissions: crate::domain::Permissions::none(),
                    kind: crate::domain::PrincipalKind::Jwt,
                };
                &own
            }
        };

        let now = self.clock.now();
        let mut factors = Factors::default();
        verified.apply(&mut factors, now)?;
        let mut metadata = Metadata::default();
        metadata.merge(request.metadata);
        let token = SessionToken::generate();
        let id = SessionId::generate_at(now);
        let challenges = self
            .prepare_otp_challenges(&request.otp_challenges, verified.user.as_ref(), &id)
            .await?;
        let mut session = Session {
            id,
            factors,
            metadata,
            user_agent: request.user_agent,
            expiration: lifetime.map(|l| now.saturating_add(l)),
            creator: principal.user_id.clone(),
            resource_owner: self.settings.instance_id.clone(),
            creation_date: now,
            change_date: now,
            sequence: 1,
            token_hash: token.hash(),
            terminated_at: None,
        };
        let event = NewEvent {
            event_type: "session.added",
            payload: json!({
                "userId": session.user_id().map(UserId::as_str),
                "checks": verified.names(),
                "challenges": request.otp_challenges.names(),
                "metadataKeys": session.metadata.0.keys().collect::<Vec<_>>(),
                "lifetime": lifetime.map(|l| format!("{}s", l.as_secs_f64())),
                "userAgent": session.user_agent,
            }),
            created_at: now,
            editor: principal.user_id.clone(),
        };
        // A new id colliding with an existing one (same millisecond, same random low bits)
        // is rare; draw again.
        for _ in 0..3 {
            match self.store.insert_session(&session, &event).await {
                Ok(now_stored) => {
                    self.stats.created();
                    if let Some(user) = &verified.user {
                        self.recheck_user(
                            principal,
                            &session.id,
                            user,
                            now_stored,
                            verified.password_verified,
                        )
                        .await?;
                    }
                    let web_auth_n_options =
                        self.give_challenge(&session.id, challenge, now).await?;
                    self.save_otp_challenges(&session.id, &challenges).await?;
                    return Ok(SessionChange {
                        details: session.details(),
                        session_id: session.id,
                        token: Some(token),
                        web_auth_n_options,
                        codes: challenges.returned,
                    });
                }
                Err(StoreError::Duplicate("id")) => session.id = SessionId::generate_at(now),
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::internal(
            error_ids::ID_COLLISION,
            "could not draw a free session id",
        ))
    }

    pub async fn set_session(
        &self,
        principal: &Principal,
        request: SetSession,
    ) -> Result<SessionChange, Error> {
        require(principal, Permission::SessionWrite)?;
        reject_unsupported(&request.checks)?;
        let lifetime = check_lifetime(request.lifetime)?;
        // An expired session is refused before its checks run, so a password tried on it is
        // neither computed nor counted as a failed attempt.
        let current = self.live_session(&request.session_id).await?;
        refuse_expired(&current, self.clock.now())?;
        let verified = self
            .verify_checks(&request.checks, current.user_id(), Some(&current.id))
            .await?;
        let (change, challenge, challenges) = self
            .write_set_session(principal, &request, lifetime, current, &verified)
            .await?;
        let now = self.clock.now();
        let web_auth_n_options = self
            .give_challenge(&change.session_id, challenge, now)
            .await?;
        self.save_otp_challenges(&change.session_id, &challenges)
            .await?;
        Ok(SessionChange {
            web_auth_n_options,
            codes: challenges.returned,
            ..change
        })
    }

    /// The part of a SetSession after its checks: the challenges it asks for drafted, then
    /// the session written with the verified factors (and a passed passkey check with it).
    async fn write_set_session(
        &self,
        principal: &Principal,
        request: &SetSession,
        lifetime: Option<Duration>,
        current: Session,
        verified: &super::checks::VerifiedChecks,
    ) -> Result<(SessionChange, Option<ChallengeDraft>, PreparedChallenges), Error> {
        let challenge = self
            .web_auth_n_challenge(
                request.web_auth_n_challenge.as_ref(),
                verified.user.as_ref(),
                current.user_id(),
            )
            .await?;
        let challenges = if request.otp_challenges.is_empty() {
            PreparedChallenges::none()
        } else {
            let user = match (&verified.user, current.user_id()) {
                (Some(user), _) => Some(user.clone()),
                (None, Some(id)) => Some(
                    self.active_user(&super::checks::UserLookup::Id(id.clone()))
                        .await?,
                ),
                (None, None) => None,
            };
            self.prepare_otp_challenges(&request.otp_challenges, user.as_ref(), &current.id)
                .await?
        };

        // The first try writes over the session as read before the checks: the write is
        // conditional on its sequence, so a change since then is a conflict, and only then is
        // it read again.
        let read = std::sync::Mutex::new(Some(current));
        let change = retry_on_conflict(|| async {
            let first = read.lock().map_or(None, |mut r| r.take());
            let mut session = match first {
                Some(session) => session,
                None => self.live_session(&request.session_id).await?,
            };
            let now = self.clock.now();
            refuse_expired(&session, now)?;
            let mut changed = verified.apply(&mut session.factors, now)?;
            // A new challenge is a change: the session's sequence moves, its token rotates.
            changed |= challenge.is_some();
            changed |= !request.otp_challenges.is_empty();
            changed |= session.metadata.merge(request.metadata.clone());
            if let Some(lifetime) = lifetime {
                session.expiration = Some(now.saturating_add(lifetime));
                changed = true;
            }
            if !changed {
                return Ok(SessionChange {
                    details: session.details(),
                    session_id: session.id,
                    token: None,
                    web_auth_n_options: None,
                    codes: ReturnedCodes::default(),
                });
            }
            let expected = session.sequence;
            let token = SessionToken::generate();
            session.token_hash = token.hash();
            session.sequence += 1;
            session.change_date = now;
            let event = NewEvent {
                event_type: "session.updated",
                payload: json!({
                    "checks": verified.names(),
                    "challenges": request.otp_challenges.names(),
                    "metadataKeys": request.metadata.keys().collect::<Vec<_>>(),
                    "lifetime": lifetime.map(|l| format!("{}s", l.as_secs_f64())),
                }),
                created_at: now,
                editor: principal.user_id.clone(),
            };
            match &verified.passkey {
                None => {
                    self.store
                        .update_session(&session, expected, &event)
                        .await?;
                }
                Some(pass) => {
                    if !self
                        .store
                        .update_session_with_passkey(&session, expected, &event, &pass.used)
                        .await?
                    {
                        // Another check consumed the challenge or moved the counter first.
                        return Err(Attempt::Failed(no_challenge()));
                    }
                }
            }
            Ok::<_, Attempt>(SessionChange {
                details: session.details(),
                session_id: session.id,
                token: Some(token),
                web_auth_n_options: None,
                codes: ReturnedCodes::default(),
            })
        })
        .await?;
        Ok((change, challenge, challenges))
    }

    /// The WebAuthn challenge a request asks for, drafted for the user it checks (else the
    /// session's user), who must be active. Challenges come after every check of the request,
    /// so a check answers the challenge of an earlier request.
    async fn web_auth_n_challenge(
        &self,
        request: Option<&PasskeyChallengeRequest>,
        checked: Option<&crate::domain::User>,
        session_user: Option<&UserId>,
    ) -> Result<Option<ChallengeDraft>, Error> {
        let Some(request) = request else {
            return Ok(None);
        };
        let user = match (checked, session_user) {
            (Some(user), _) => user.clone(),
            (None, Some(id)) => {
                self.active_user(&super::checks::UserLookup::Id(id.clone()))
                    .await?
            }
            (None, None) => {
                return Err(Error::failed_precondition(
                    error_ids::PASSKEY_CHALLENGE_NO_USER,
                    "a user must be checked before a WebAuthN challenge",
                ));
            }
        };
        Ok(Some(self.passkey_challenge(&user, request).await?))
    }

    /// Stores a drafted challenge for the written session; its request options.
    async fn give_challenge(
        &self,
        session: &SessionId,
        challenge: Option<ChallengeDraft>,
        now: Time,
    ) -> Result<Option<serde_json::Value>, Error> {
        let Some(challenge) = challenge else {
            return Ok(None);
        };
        self.store
            .set_passkey_challenge(&challenge.for_session(session, now))
            .await?;
        Ok(Some(challenge.options))
    }

    /// A session that exists and is not terminated.
    pub(super) async fn live_session(&self, id: &SessionId) -> Result<Session, Error> {
        match self.store.session(id).await? {
            Some(session) if !session.is_terminated() => Ok(session),
            _ => Err(session_not_found()),
        }
    }

    /// Reads one session: with its current token, as its creator or checked user, or with
    /// `session.read`. Expired sessions are still returned.
    pub async fn get_session(
        &self,
        principal: &Principal,
        id: &SessionId,
        token: Option<&SessionToken>,
    ) -> Result<Session, Error> {
        let session = self.live_session(id).await?;
        match token {
            Some(token) => {
                if token.hash() != session.token_hash {
                    return Err(Error::permission_denied(
                        error_ids::SESSION_READ_DENIED,
                        "Permission denied",
                    ));
                }
            }
            None => {
                if !may_read(principal, &session) {
                    return Err(missing_permission(Permission::SessionRead));
                }
            }
        }
        Ok(session)
    }

    /// Searches non-terminated sessions the caller may read. Sessions the caller may not read
    /// are excluded in the query itself, so counts and pages agree.
    pub async fn list_sessions(
        &self,
        principal: &Principal,
        request: ListSessions,
    ) -> Result<(Vec<Session>, ListDetails), Error> {
        let mut queries = Vec::with_capacity(request.queries.len());
        for query in request.queries {
            queries.push(match query {
                SearchQuery::Ids(ids) => {
                    if ids.len() > 1000 {
                        return Err(Error::invalid_argument(
                            error_ids::LIST_TOO_MANY_IDS,
                            "idsQuery: at most 1000 ids",
                        ));
                    }
                    SessionQuery::Ids(ids)
                }
                SearchQuery::UserId(id) => SessionQuery::UserId(id),
                SearchQuery::CreationDate(op, at) => SessionQuery::CreationDate(op, at),
                SearchQuery::ExpirationDate(op, at) => SessionQuery::ExpirationDate(op, at),
                SearchQuery::Creator(id) => match id {
                    None => SessionQuery::Creator(principal.user_id.clone()),
                    Some(id) if !id.is_empty() => SessionQuery::Creator(id),
                    Some(_) => {
                        return Err(Error::invalid_argument(
                            error_ids::CREATOR_QUERY_EMPTY,
                            "creatorQuery: id must not be empty",
                        ));
                    }
                },
                SearchQuery::UserAgent(fingerprint) => match fingerprint {
                    Some(id) if !id.is_empty() => SessionQuery::UserAgentFingerprint(id),
                    _ => {
                        return Err(Error::invalid_argument(
                            error_ids::USER_AGENT_QUERY_EMPTY,
                            "userAgentQuery: fingerprintId is required (callers have no user agent of their own)",
                        ));
                    }
                },
            });
        }
        let settings = &self.settings;
        let limit = match request.limit {
            0 => settings.default_list_limit,
            n => n.min(settings.max_list_limit),
        };
        let filter = SessionFilter {
            queries,
            visible_to: (!principal.can(Permission::SessionRead))
                .then(|| principal.user_id.clone()),
            offset: request.offset,
            limit,
            order: if request.asc {
                SortOrder::CreationAsc
            } else {
                SortOrder::CreationDesc
            },
        };
        let page = self.store.list_sessions(&filter).await?;
        Ok((
            page.sessions,
            ListDetails {
                total_result: page.total,
                timestamp: self.clock.now(),
            },
        ))
    }

    /// Terminates a session. The token or permission is checked before the state, and a
    /// session that is already terminated (or, for an authorised caller, never existed)
    /// yields success without a new event. Expired sessions can be terminated.
    pub async fn delete_session(
        &self,
        principal: &Principal,
        id: &SessionId,
        token: Option<&SessionToken>,
    ) -> Result<Details, Error> {
        let token = token.filter(|t| !t.expose().is_empty());
        // Who may delete: the holder of the session's current token if one is given, else
        // its own user or a holder of `session.delete`; asked of the session as stored, on
        // both sides of the store's write, so the check and the write see the same state.
        let may_delete = {
            let token = token.map(SessionToken::hash);
            let caller = principal.user_id.clone();
            let any = principal.can(Permission::SessionDelete);
            move |session: Option<&Session>| -> Result<(), Error> {
                match token {
                    Some(hash) if session.map(|s| s.token_hash) != Some(hash) => Err(
                        Error::permission_denied(TOKEN_INVALID, "Session Token is invalid"),
                    ),
                    Some(_) => Ok(()),
                    None if any => Ok(()),
                    None if session
                        .and_then(Session::user_id)
                        .is_some_and(|user| user.as_str() == caller) =>
                    {
                        Ok(())
                    }
                    None => Err(missing_permission(Permission::SessionDelete)),
                }
            }
        };
        retry_on_conflict(|| async {
            let check = may_delete.clone();
            let edited = self
                .end_session_if(id, &principal.user_id, "deleted", move |s| {
                    check(Some(s)).is_ok()
                })
                .await?;
            may_delete(edited.as_ref().map(|e| &e.before))?;
            Ok::<_, Attempt>(
                edited.map_or_else(Details::default, |e| e.after.unwrap_or(e.before).details()),
            )
        })
        .await
    }

    /// Ends the session with this id by `editor` for `reason`, in one step of the store, if it
    /// is live and `ends` holds for it as stored. Returns what the store found and did.
    pub(super) async fn end_session_if(
        &self,
        id: &SessionId,
        editor: &str,
        reason: &'static str,
        ends: impl FnOnce(&Session) -> bool + Send + 'static,
    ) -> Result<Option<Edited>, Attempt> {
        let now = self.clock.now();
        let editor = editor.to_owned();
        let edit: SessionEdit = Box::new(move |session| {
            (!session.is_terminated() && ends(session))
                .then(|| termination(session.clone(), now, editor, reason))
        });
        let edited = self.store.edit_session(id, edit).await?;
        if edited.as_ref().is_some_and(|e| e.after.is_some()) {
            self.stats.terminated(1);
        }
        Ok(edited)
    }

    /// The principal a session token stands for: the session's checked user. Unknown,
    /// rotated, terminated or expired tokens, sessions without a checked user, and sessions
    /// of a locked or deactivated user are rejected.
    pub async fn authenticate_session_token(
        &self,
        token: &SessionToken,
    ) -> Result<Principal, Error> {
        // The same rules as the self-service face: an active session with an active user.
        let current = self.current_session(token).await.map_err(|e| {
            if e.kind() == crate::domain::ErrorKind::Unauthenticated {
                Error::unauthenticated(
                    error_ids::AUTH_TOKEN_INVALID,
                    "Token is invalid or has expired",
                )
            } else {
                e
            }
        })?;
        Ok(Principal::of_session(
            current.user.id.into_string(),
            current.session.id,
        ))
    }
}

/// Whether the caller may read a session without presenting its token.
fn may_read(principal: &Principal, session: &Session) -> bool {
    session.creator == principal.user_id
        || session
            .user_id()
            .is_some_and(|u| u.as_str() == principal.user_id)
        || principal.can(Permission::SessionRead)
}

/// FAILED_PRECONDITION for a session past its expiry, which SetSession no longer changes.
fn refuse_expired(session: &Session, now: Time) -> Result<(), Error> {
    if session.is_expired(now) {
        return Err(Error::failed_precondition(
            error_ids::SESSION_EXPIRED,
            "Session has expired",
        ));
    }
    Ok(())
}

/// A session ended at `now` by `editor` for `reason`: its new state and the
/// `session.terminated` event that records it.
fn termination(
    mut session: Session,
    now: Time,
    editor: String,
    reason: &str,
) -> (Session, NewEvent) {
    session.sequence += 1;
    session.change_date = now;
    session.terminated_at = Some(now);
    let event = NewEvent {
        event_type: "session.terminated",
        payload: json!({ "reason": reason }),
        created_at: now,
        editor,
    };
    (session, event)
}
