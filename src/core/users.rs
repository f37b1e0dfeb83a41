//! The user directory the sessions stand on: creating users with argon2id passwords,
//! reading them, and the state changes that end their sessions (lock, deactivate, new
//! password), each in one transaction with the revocation.

use super::{Attempt, Core, require, retry_on_conflict, user_not_found};
use crate::domain::{
    Error, ErrorKind, LoginName, Password, Permission, Principal, Time, User, UserId, UserState,
    error_ids,
};
use crate::store::{Contact, Revocation, StoreError, StoredFactor, UserListQuery};

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
        self.add_user_with(new, |_| Ok((Vec::new(), Vec::new())))
            .await
    }

    /// Creates an active user together with the factor enrollments and contact addresses
    /// `extras` makes for it, in one store transaction.
    pub(super) async fn add_user_with(
        &self,
        new: NewUser,
        extras: impl FnOnce(&User) -> Result<(Vec<StoredFactor>, Vec<Contact>), Error>,
    ) -> Result<User, Error> {
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
            version: 1,
        };
        let (factors, contacts) = extras(&user)?;
        let inserted = if factors.is_empty() && contacts.is_empty() {
            self.store.insert_user(&user).await
        } else {
            self.store
                .insert_user_with(&user, &factors, &contacts)
                .await
        };
        match inserted {
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
        self.change_user(id, |user, now| {
            let reason = match action {
                UserAction::Lock => {
                    if user.state == UserState::Inactive {
                        return Err(Error::failed_precondition(
                            error_ids::USER_DEACTIVATED,
                            "a deactivated user cannot be locked; reactivate it first",
                        ));
                    }
                    user.state = UserState::Locked;
                    Some("user_locked")
                }
                UserAction::Deactivate => {
                    user.state = UserState::Inactive;
                    Some("user_deactivated")
                }
                UserAction::Reactivate => {
                    user.state = UserState::Active;
                    user.failed_password_attempts = 0;
                    None
                }
            };
            Ok(reason.map(|reason| Revocation {
                at: now,
                editor: principal.user_id.clone(),
                reason,
            }))
        })
        .await
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
        // An unknown user fails before the (costly) hashing.
        self.store.user(id).await?.ok_or_else(user_not_found)?;
        let hash = self.passwords.hash(password).await?;
        self.change_user(id, |user, now| {
            user.password_hash = Some(hash.clone());
            user.failed_password_attempts = 0;
            Ok(revoke_sessions.then(|| Revocation {
                at: now,
                editor: principal.user_id.clone(),
                reason: "password_changed",
            }))
        })
        .await
    }

    /// Reads the user, applies `change` (which returns the revocation to run with the write,
    /// if any) and writes it at the version read. When another change landed in between, it
    /// re-reads and re-applies (bounded), so racing changes each take effect in some order.
    /// Returns the user as written and how many sessions ended.
    async fn change_user(
        &self,
        id: &UserId,
        change: impl Fn(&mut User, Time) -> Result<Option<Revocation>, Error>,
    ) -> Result<(User, u64), Error> {
        let (user, revoked) = retry_on_conflict(|| async {
            let mut user = self.store.user(id).await?.ok_or_else(user_not_found)?;
            let now = self.clock.now();
            let revocation = change(&mut user, now)?;
            let expected = user.version;
            user.version += 1;
            user.updated_at = now;
            let revoked = self
                .store
                .update_user(&user, expected, revocation.as_ref())
                .await?;
            Ok::<_, Attempt>((user, revoked))
        })
        .await?;
        self.stats.terminated(revoked);
        Ok((user, revoked))
    }

    pub async fn user(&self, id: &UserId) -> Result<Option<User>, Error> {
        Ok(self.store.user(id).await?)
    }
}
