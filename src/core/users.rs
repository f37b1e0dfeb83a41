//! The user directory the sessions stand on: creating users with argon2id passwords,
//! reading them, and the state changes that end their sessions (lock, deactivate, new
//! password), each in one transaction with the revocation.

use super::{Core, require, user_not_found};
use crate::domain::{
    Error, ErrorKind, LoginName, Password, Permission, Principal, User, UserId, UserState,
    error_ids,
};
use crate::store::{Revocation, StoreError, UserListQuery};

/// A user to create.
#[derive(Debug)]
pub struct NewUser {
    pub login_name: LoginName,
    pub display_name: Option<String>,
    pub organization_id: Option<String>,
    pub password: Option<Password>,
}

/// A change of a user's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserAction {
    /// Active → locked; ends the user's sessions.
    Lock,
    /// Any → inactive; ends the user's sessions.
    Deactivate,
    /// Any → active, with the failed-password count cleared.
    Reactivate,
}

fn check_text(value: &str, what: &str) -> Result<(), Error> {
    if value.chars().count() > 200 || value.chars().any(char::is_control) {
        return Err(Error::invalid_argument(
            error_ids::USER_FIELD_INVALID,
            format!("{what}: at most 200 characters, no control characters"),
        ));
    }
    Ok(())
}

impl Core {
    /// Creates an active user on behalf of a caller (`user.write`).
    pub async fn create_user(&self, principal: &Principal, new: NewUser) -> Result<User, Error> {
        require(principal, Permission::UserWrite)?;
        self.add_user(new).await
    }

    /// Creates an active user (trusted callers: the command line, tests). The login name
    /// must be unique without regard to case.
    pub async fn add_user(&self, new: NewUser) -> Result<User, Error> {
        if let Some(name) = &new.display_name {
            check_text(name, "displayName")?;
        }
        if let Some(org) = &new.organization_id {
            check_text(org, "organizationId")?;
        }
        let password_hash = match &new.password {
            Some(password) => Some(self.passwords.hash(password).await?),
            None => None,
        };
        let now = self.clock.now();
        let user = User {
            id: UserId::generate(),
            display_name: new
                .display_name
                .unwrap_or_else(|| new.login_name.as_str().to_owned()),
            login_name: new.login_name,
            organization_id: new
                .organization_id
                .unwrap_or_else(|| self.settings.instance_id.clone()),
            state: UserState::Active,
            password_hash,
            failed_password_attempts: 0,
            created_at: now,
            updated_at: now,
        };
        match self.store.insert_user(&user).await {
            Ok(()) => Ok(user),
            Err(StoreError::Duplicate("login name")) => Err(Error::new(
                ErrorKind::AlreadyExists,
                error_ids::USER_EXISTS,
                "a user with this login name already exists",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// One user (`user.read`).
    pub async fn get_user(&self, principal: &Principal, id: &UserId) -> Result<User, Error> {
        require(principal, Permission::UserRead)?;
        self.store.user(id).await?.ok_or_else(user_not_found)
    }

    /// A page of users, or the one with a login name (`user.read`).
    pub async fn list_users(
        &self,
        principal: &Principal,
        login_name: Option<LoginName>,
        offset: u64,
        limit: u32,
    ) -> Result<(Vec<User>, u64), Error> {
        require(principal, Permission::UserRead)?;
        let limit = limit.clamp(1, self.settings.max_list_limit);
        Ok(self
            .store
            .list_users(&UserListQuery {
                login_name,
                offset,
                limit,
            })
            .await?)
    }

    /// Locks, deactivates or reactivates a user (`user.write`). Locking and deactivating
    /// end all the user's sessions in the same transaction. Returns the user and how many
    /// sessions ended.
    pub async fn change_user_state(
        &self,
        principal: &Principal,
        id: &UserId,
        action: UserAction,
    ) -> Result<(User, u64), Error> {
        require(principal, Permission::UserWrite)?;
        let mut user = self.store.user(id).await?.ok_or_else(user_not_found)?;
        let now = self.clock.now();
        let revoke = match action {
            UserAction::Lock => {
                if user.state == UserState::Inactive {
                    return Err(Error::failed_precondition(
                        error_ids::USER_DEACTIVATED,
                        "a deactivated user cannot be locked; reactivate it first",
                    ));
                }
                user.state = UserState::Locked;
                true
            }
            UserAction::Deactivate => {
                user.state = UserState::Inactive;
                true
            }
            UserAction::Reactivate => {
                user.state = UserState::Active;
                user.failed_password_attempts = 0;
                false
            }
        };
        user.updated_at = now;
        let reason = if action == UserAction::Lock {
            "user_locked"
        } else {
            "user_deactivated"
        };
        let revocation = Revocation {
            at: now,
            editor: principal.user_id.clone(),
            reason,
        };
        let revoked = self
            .store
            .update_user(&user, revoke.then_some(&revocation))
            .await
            .map_err(|e| match e {
                StoreError::Conflict => user_not_found(),
                other => other.into(),
            })?;
        self.stats.terminated(revoked);
        Ok((user, revoked))
    }

    /// Sets a new password (`user.write`) and clears the failure count. Unless told not to,
    /// ends the user's sessions in the same transaction. Returns how many sessions ended.
    pub async fn set_password(
        &self,
        principal: &Principal,
        id: &UserId,
        password: &Password,
        revoke_sessions: bool,
    ) -> Result<(User, u64), Error> {
        require(principal, Permission::UserWrite)?;
        let mut user = self.store.user(id).await?.ok_or_else(user_not_found)?;
        let now = self.clock.now();
        user.password_hash = Some(self.passwords.hash(password).await?);
        user.failed_password_attempts = 0;
        user.updated_at = now;
        let revocation = Revocation {
            at: now,
            editor: principal.user_id.clone(),
            reason: "password_changed",
        };
        let revoked = self
            .store
            .update_user(&user, revoke_sessions.then_some(&revocation))
            .await
            .map_err(|e| match e {
                StoreError::Conflict => user_not_found(),
                other => other.into(),
            })?;
        self.stats.terminated(revoked);
        Ok((user, revoked))
    }

    pub async fn user(&self, id: &UserId) -> Result<Option<User>, Error> {
        Ok(self.store.user(id).await?)
    }
}
