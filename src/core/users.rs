//! User administration the sessions depend on: creating users with argon2id passwords.

use super::Core;
use crate::domain::{Error, LoginName, Password, User, UserId, UserState};

/// A user to create.
#[derive(Debug)]
pub struct NewUser {
    pub login_name: LoginName,
    pub display_name: Option<String>,
    pub organization_id: Option<String>,
    pub password: Option<Password>,
}

impl Core {
    /// Creates an active user. The login name must be unique without regard to case.
    pub async fn add_user(&self, new: NewUser) -> Result<User, Error> {
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
        self.store.insert_user(&user).await?;
        Ok(user)
    }

    pub async fn user(&self, id: &UserId) -> Result<Option<User>, Error> {
        Ok(self.store.user(id).await?)
    }
}
