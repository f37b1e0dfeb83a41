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
use crate::store::NewEvent;

/// A session with its checked user, if it has one that still exists.
#[derive(Clone, Debug)]
pub struct SessionWithUser {
    pub session: Session,
    pub user: Option<User>,
}

/// One page of sessions with their users, and where the next page starts.
pub type AdminSessionPage = SessionPageResult<SessionWithUser>;

/// What an administrator does to one session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionAction {
    /// Read it, terminated or not.
    Read,
    /// Terminate it; an already terminated session succeeds again without a new event.
    Disable,
    /// Move its expiry to now plus the extend lifespan; a terminated session is NotFound.
    Extend,
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

    pub(super) async fn admin_page(
        &self,
        scope: String,
        user_id: Option<&UserId>,
        active: Option<bool>,
        page: &PageRequest,
    ) -> Result<AdminSessionPage, Error> {
        let (activity, tag) = self.activity(active);
        let scope = format!("{scope}:{tag}");
        let found = self.page_of(&scope, user_id, None, activity, page).await?;
        Ok(AdminSessionPage {
            sessions: self.with_users(found.sessions).await?,
            total: found.total,
            next_token: found.next_token,
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

    /// Reads (`session.read`: terminated sessions too), disables or extends
    /// (`session.delete`) one session, and returns it with its user. An unknown session is
    /// NotFound.
    pub async fn admin_session(
        &self,
        principal: &Principal,
        id: &SessionId,
        action: SessionAction,
    ) -> Result<SessionWithUser, Error> {
        let session = match action {
            SessionAction::Read => {
                require(principal, Permission::SessionRead)?;
                self.store.session(id).await?.ok_or_else(no_such_session)?
            }
            SessionAction::Disable => {
                require(principal, Permission::SessionDelete)?;
                self.revoke_one(principal, id, None, RevokedBy::Admin, no_such_session)
                    .await?
                    .0
            }
            SessionAction::Extend => {
                require(principal, Permission::SessionDelete)?;
                self.extend(principal, id).await?
            }
        };
        let mut found = self.with_users(vec![session]).await?;
        found.pop().ok_or_else(no_such_session)
    }

    /// Terminates a session, of `owner` if given, recording `by` as the reason; terminating a
    /// terminated one succeeds again, reports the original termination and says so (`true`).
    /// A session that is not there (or not the owner's) is `missing()`.
    pub(super) async fn revoke_one(
        &self,
        principal: &Principal,
        id: &SessionId,
        owner: Option<&UserId>,
        by: RevokedBy,
        missing: fn() -> Error,
    ) -> Result<(Session, bool), Error> {
        let owned =
            |owner: Option<&UserId>, s: &Session| owner.is_none_or(|o| s.user_id() == Some(o));
        retry_on_conflict(|| async {
            let mine = owner.cloned();
            let edited = self
                .end_session_if(id, &principal.user_id, by.reason(), move |s| {
                    owned(mine.as_ref(), s)
                })
                .await?
                .filter(|e| owned(owner, &e.before))
                .ok_or_else(missing)?;
            Ok::<_, Attempt>(match edited.after {
                Some(ended) => (ended, false),
                None => (edited.before, true),
            })
        })
        .await
    }

    /// One `session.updated` event; the token stays the same. An expired session is extended
    /// (it becomes active again).
    async fn extend(&self, principal: &Principal, id: &SessionId) -> Result<Session, Error> {
        let lifespan = self.settings.session_extend_lifespan;
        retry_on_conflict(|| async {
            let mut session = self.live_session(id).await.map_err(|_| no_such_session())?;
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
}

/// Who revokes sessions: the reason their `session.terminated` events record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokedBy {
    /// An administrator through the admin API.
    Admin,
    /// An operator on the command line.
    Operator,
}

impl RevokedBy {
    pub(super) fn reason(self) -> &'static str {
        match self {
            Self::Admin => "revoked_by_admin",
            Self::Operator => "revoked_by_operator",
        }
    }
}
