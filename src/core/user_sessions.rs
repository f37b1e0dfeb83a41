//! One user's sessions as a whole: the self-service view (my current session, my other
//! sessions, revoke one or all others) and the administrator's view of a user's sessions.
//! The same sessions the SessionService creates, in the same store.

use super::admin_sessions::{AdminSessionPage, RevokedBy};
use super::paging::{PageRequest, SessionPageResult};
use super::{Attempt, Core, require, retry_on_conflict, user_not_found};
use crate::domain::{
    ActivityFilter, Error, PageCursor, Permission, Principal, Session, SessionId, SessionToken,
    TerminationReason, User, UserId, UserSessionsQuery, UserState, error_ids,
};
use crate::store::Revocation;

/// The active session a caller presented, and its user.
#[derive(Clone, Debug)]
pub struct CurrentSession {
    pub session: Session,
    pub user: User,
}

fn no_session() -> Error {
    Error::unauthenticated(
        error_ids::NO_SESSION,
        "No valid session credentials found in the request.",
    )
}

impl Core {
    /// The session of a session token, if it is active and has a checked user.
    pub async fn current_session(&self, token: &SessionToken) -> Result<CurrentSession, Error> {
        let session = self
            .store
            .session_by_token(&token.hash())
            .await?
            .ok_or_else(no_session)?;
        if !session.is_active(self.clock.now()) {
            return Err(no_session());
        }
        let user_id = session.user_id().ok_or_else(no_session)?;
        let user = self.store.user(user_id).await?.ok_or_else(no_session)?;
        // A locked or deactivated user's sessions authenticate nobody here (Kratos: an
        // inactive identity has no active session).
        if user.state != UserState::Active {
            return Err(no_session());
        }
        Ok(CurrentSession { session, user })
    }

    pub(super) async fn page_of(
        &self,
        scope: &str,
        user_id: Option<&UserId>,
        exclude: Option<&SessionId>,
        activity: ActivityFilter,
        page: &PageRequest,
    ) -> Result<SessionPageResult, Error> {
        let limit = page.size()?;
        let after = match &page.token {
            Some(token) => Some(self.decode_page_token(scope, token).await?),
            None => None,
        };
        let query = UserSessionsQuery {
            user_id: user_id.cloned(),
            exclude: exclude.cloned(),
            activity,
            after,
            limit,
        };
        let result = self.store.user_sessions(&query).await?;
        let next_token = match result.sessions.last() {
            Some(last) if result.sessions.len() == limit as usize => {
                let cursor = PageCursor {
                    creation_date: last.creation_date,
                    id: last.id.clone(),
                };
                // Only hand out a token when something follows.
                let probe = UserSessionsQuery {
                    after: Some(cursor.clone()),
                    limit: 1,
                    ..query
                };
                if self.store.user_sessions(&probe).await?.sessions.is_empty() {
                    None
                } else {
                    Some(self.encode_page_token(scope, &cursor).await?)
                }
            }
            _ => None,
        };
        Ok(SessionPageResult {
            sessions: result.sessions,
            total: result.total,
            next_token,
        })
    }

    /// The caller's other active sessions, newest first.
    pub async fn list_other_sessions(
        &self,
        current: &CurrentSession,
        page: &PageRequest,
    ) -> Result<SessionPageResult, Error> {
        let scope = format!("self:{}", current.user.id);
        let now = self.clock.now();
        self.page_of(
            &scope,
            Some(&current.user.id),
            Some(&current.session.id),
            ActivityFilter::Active(now),
            page,
        )
        .await
    }

    /// Revokes one of the caller's other sessions. The current session cannot be revoked
    /// here (that is what logging out is for). An id that is not one of the caller's live
    /// sessions succeeds without revealing whether it exists.
    pub async fn revoke_own_session(
        &self,
        current: &CurrentSession,
        id: &SessionId,
    ) -> Result<(), Error> {
        if *id == current.session.id {
            return Err(Error::invalid_argument(
                error_ids::CURRENT_SESSION,
                "cannot revoke current session",
            ));
        }
        let editor = current.user.id.as_str();
        retry_on_conflict(|| async {
            // Only the caller's own sessions; any other id ends nothing and says nothing.
            let owner = current.user.id.clone();
            self.end_session_if(id, editor, TerminationReason::Deleted.as_str(), move |s| {
                s.user_id() == Some(&owner)
            })
            .await?;
            Ok::<_, Attempt>(())
        })
        .await
    }

    /// Revokes all of the caller's sessions except the current one, in one transaction:
    /// every session created before this call returns is included. Returns how many.
    pub async fn revoke_other_sessions(&self, current: &CurrentSession) -> Result<u64, Error> {
        let user = &current.user.id;
        self.end_sessions(
            user,
            Some(&current.session.id),
            user.as_str(),
            TerminationReason::RevokedOthers.as_str(),
        )
        .await
    }

    /// Ends a user's live sessions but `except` in one transaction: one `session.terminated`
    /// event each, with `reason`. Returns how many.
    pub(super) async fn end_sessions(
        &self,
        user_id: &UserId,
        except: Option<&SessionId>,
        editor: &str,
        reason: &'static str,
    ) -> Result<u64, Error> {
        let revocation = Revocation {
            at: self.clock.now(),
            editor: editor.to_owned(),
            reason,
        };
        let revoked = self
            .store
            .terminate_user_sessions(user_id, except, &revocation)
            .await?;
        self.stats.terminated(revoked);
        Ok(revoked)
    }

    /// The filter of an `active` parameter, and its name in page-token scopes.
    pub(super) fn activity(&self, active: Option<bool>) -> (ActivityFilter, &'static str) {
        let now = self.clock.now();
        match active {
            None => (ActivityFilter::All, "all"),
            Some(true) => (ActivityFilter::Active(now), "active"),
            Some(false) => (ActivityFilter::Inactive(now), "inactive"),
        }
    }

    async fn existing_user(&self, id: &UserId) -> Result<User, Error> {
        self.store.user(id).await?.ok_or_else(user_not_found)
    }

    /// A user's sessions with the user, for an administrator (`session.read`), terminated
    /// ones included unless `active` filters them.
    pub async fn admin_user_sessions(
        &self,
        principal: &Principal,
        user_id: &UserId,
        active: Option<bool>,
        page: &PageRequest,
    ) -> Result<AdminSessionPage, Error> {
        require(principal, Permission::SessionRead)?;
        self.existing_user(user_id).await?;
        let scope = format!("admin:{user_id}");
        self.admin_page(scope, Some(user_id), active, page).await
    }

    /// Revokes one session of a user (`session.delete`). Revoking an already revoked session
    /// of that user succeeds again and reports the original revocation.
    pub async fn admin_revoke_session(
        &self,
        principal: &Principal,
        user_id: &UserId,
        session_id: &SessionId,
    ) -> Result<Session, Error> {
        require(principal, Permission::SessionDelete)?;
        self.existing_user(user_id).await?;
        let missing = || {
            Error::not_found(
                error_ids::SESSION_NOT_FOUND,
                "Session not found for this user",
            )
        };
        self.revoke_one(
            principal,
            session_id,
            Some(user_id),
            RevokedBy::Admin,
            missing,
        )
        .await
        .map(|(session, _)| session)
    }

    /// Revokes every live session of a user but `except` (`session.delete`), recording who
    /// did it as the reason. Returns how many.
    pub async fn admin_revoke_user_sessions(
        &self,
        principal: &Principal,
        user_id: &UserId,
        except: Option<&SessionId>,
        by: RevokedBy,
    ) -> Result<u64, Error> {
        require(principal, Permission::SessionDelete)?;
        self.existing_user(user_id).await?;
        self.end_sessions(user_id, except, &principal.user_id, by.reason())
            .await
    }

    /// Revokes one session, whoever's it is (`session.delete`): one `session.terminated`
    /// event with the reason `revoked_by_operator`. Revoking an ended session again succeeds
    /// without a new event; the flag says whether it had already ended.
    pub async fn operator_revoke_session(
        &self,
        principal: &Principal,
        id: &SessionId,
    ) -> Result<(Session, bool), Error> {
        require(principal, Permission::SessionDelete)?;
        self.revoke_one(principal, id, None, RevokedBy::Operator, operator_not_found)
            .await
    }
}

fn operator_not_found() -> Error {
    Error::not_found(error_ids::SESSION_NOT_FOUND, "Session does not exist")
}
