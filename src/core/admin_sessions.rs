//! Every user's sessions for an administrator, as Kratos' admin session API has them: list
//! all sessions, read, disable and extend one session, list and revoke one identity's
//! sessions. Disabling and revoking terminate (the records stay, inactive); extending is a
//! session update. Each goes through the same events and optimistic concurrency as the
//! SessionService.

use std::collections::HashMap;

use serde_json::json;

use super::paging::{PageRequest, SessionPageResult};
use super::{Attempt, Core, require, retry_on_conflict};
use crate::domain::{Error, Permission, Principal, Session, SessionId, User, UserId, error_ids};
use crate::store::{NewEvent, Revocation};

/// A session with its checked user, if it has one that still exists.
#[derive(Clone, Debug)]
pub struct SessionWithUser {
    pub session: Session,
    pub user: Option<User>,
}

/// One page of sessions with their users, and where the next page starts.
#[derive(Debug)]
pub struct AdminSessionPage {
    pub sessions: Vec<SessionWithUser>,
    pub next_token: Option<String>,
}

fn no_such_session() -> Error {
    Error::not_found(
        error_ids::SESSION_NOT_FOUND,
        "Unable to locate the resource",
    )
}

impl Core {
    /// The users of `sessions`, each read once.
    async fn with_users(&self, sessions: Vec<Session>) -> Result<Vec<SessionWithUser>, Error> {
        let mut users: HashMap<UserId, Option<User>> = HashMap::new();
        let mut out = Vec::with_capacity(sessions.len());
        for session in sessions {
            let user = match session.user_id() {
                None => None,
                Some(id) => match users.get(id) {
                    Some(user) => user.clone(),
                    None => {
                        let user = self.store.user(id).await?;
                        users.insert(id.clone(), user.clone());
                        user
                    }
                },
            };
            out.push(SessionWithUser { session, user });
        }
        Ok(out)
    }

    async fn admin_page(
        &self,
        scope: String,
        user_id: Option<&UserId>,
        active: Option<bool>,
        page: &PageRequest,
    ) -> Result<AdminSessionPage, Error> {
        let (activity, tag) = self.activity(active);
        let scope = format!("{scope}:{tag}");
        let SessionPageResult {
            sessions,
            next_token,
            ..
        } = self.page_of(&scope, user_id, None, activity, page).await?;
        Ok(AdminSessionPage {
            sessions: self.with_users(sessions).await?,
            next_token,
        })
    }

    /// Every session, newest first, terminated ones included unless `active` filters them
    /// (`session.read`).
    pub async fn admin_all_sessions(
        &self,
        principal: &Principal,
        active: Option<bool>,
        page: &PageRequest,
    ) -> Result<AdminSessionPage, Error> {
        require(principal, Permission::SessionRead)?;
        self.admin_page("all".to_owned(), None, active, page).await
    }

    /// One identity's sessions, newest first (`session.read`). An unknown identity has no
    /// sessions: an empty page, not an error.
    pub async fn admin_identity_sessions(
        &self,
        principal: &Principal,
        user_id: &UserId,
        active: Option<bool>,
        page: &PageRequest,
    ) -> Result<AdminSessionPage, Error> {
        require(principal, Permission::SessionRead)?;
        let scope = format!("identity:{user_id}");
        self.admin_page(scope, Some(user_id), active, page).await
    }

    /// One session, terminated or not (`session.read`).
    pub async fn admin_session(
        &self,
        principal: &Principal,
        id: &SessionId,
    ) -> Result<SessionWithUser, Error> {
        require(principal, Permission::SessionRead)?;
        let session = self.store.session(id).await?.ok_or_else(no_such_session)?;
        let mut found = self.with_users(vec![session]).await?;
        found.pop().ok_or_else(no_such_session)
    }

    /// Terminates one session (`session.delete`). An already terminated session succeeds
    /// again without a new event; an unknown one is NotFound.
    pub async fn admin_disable_session(
        &self,
        principal: &Principal,
        id: &SessionId,
    ) -> Result<Session, Error> {
        require(principal, Permission::SessionDelete)?;
        retry_on_conflict(|| async {
            match self.store.session(id).await? {
                None => Err(no_such_session().into()),
                Some(session) if session.is_terminated() => Ok(session),
                Some(session) => Ok::<_, Attempt>(
                    self.terminate(session, &principal.user_id, "revoked_by_admin")
                        .await?,
                ),
            }
        })
        .await
    }

    /// Moves a session's expiry to now plus the extend lifespan (`session.delete`): one
    /// `session.updated` event. The token stays the same. A terminated or unknown session is
    /// NotFound; an expired one is extended (it becomes active again).
    pub async fn admin_extend_session(
        &self,
        principal: &Principal,
        id: &SessionId,
    ) -> Result<Session, Error> {
        require(principal, Permission::SessionDelete)?;
        let lifespan = self.settings.session_extend_lifespan;
        retry_on_conflict(|| async {
            let mut session = match self.store.session(id).await? {
                Some(session) if !session.is_terminated() => session,
                _ => return Err(no_such_session().into()),
            };
            let now = self.clock.now();
            let expected = session.sequence;
            session.expiration = Some(now.saturating_add(lifespan));
            session.sequence += 1;
            session.change_date = now;
            let event = NewEvent {
                event_type: "session.updated",
                payload: json!({ "extendedBy": format!("{}s", lifespan.as_secs_f64()) }),
                created_at: now,
                editor: principal.user_id.clone(),
            };
            self.store
                .update_session(&session, expected, &event)
                .await?;
            Ok::<_, Attempt>(session)
        })
        .await
    }

    /// Terminates every live session of an identity (`session.delete`); the records stay,
    /// inactive. An unknown identity or one without live sessions succeeds with 0.
    pub async fn admin_revoke_identity_sessions(
        &self,
        principal: &Principal,
        user_id: &UserId,
    ) -> Result<u64, Error> {
        require(principal, Permission::SessionDelete)?;
        let revocation = Revocation {
            at: self.clock.now(),
            editor: principal.user_id.clone(),
            reason: "revoked_by_admin",
        };
        let revoked = self
            .store
            .terminate_user_sessions(user_id, None, &revocation)
            .await?;
        self.stats.terminated(revoked);
        Ok(revoked)
    }
}
