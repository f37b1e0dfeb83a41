//! Creating a user with what one-time codes and TOTP need from the start: its email and
//! phone (verified or not) and an imported TOTP seed, written with the user in one store
//! transaction, so a failure leaves no user without them.

use super::super::{Core, NewUser, require};
use super::ImportedSeed;
use crate::domain::{Error, FactorKind, FactorState, Permission, Principal, User};
use crate::store::{Contact, ContactKind, StoredFactor};

/// A contact address given when the user is created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewContact {
    pub kind: ContactKind,
    pub address: String,
    /// Whether the caller vouches that the address is the user's (`isVerified`).
    pub verified: bool,
}

impl Core {
    /// Creates a user (`user.write`) with its contact addresses and, when given, a TOTP seed
    /// imported as verified, all in one transaction.
    pub async fn create_human(
        &self,
        principal: &Principal,
        new: NewUser,
        contacts: &[NewContact],
        totp: Option<&ImportedSeed>,
    ) -> Result<User, Error> {
        require(principal, Permission::UserWrite)?;
        let now = self.clock.now();
        let sealer = match totp {
            Some(_) => Some(self.sealer()?.clone()),
            None => None,
        };
        self.add_user_with(new, |user| {
            let mut factors = Vec::new();
            if let (Some(seed), Some(sealer)) = (totp, &sealer) {
                factors.push(StoredFactor {
                    user_id: user.id.clone(),
                    kind: FactorKind::Totp,
                    state: FactorState::Ready,
                    secret: Some(sealer.seal(&user.id, seed.bytes())?),
                    last_step: None,
                    created_at: now,
                    verified_at: Some(now),
                    remaining_codes: 0,
                });
            }
            let contacts = contacts
                .iter()
                .map(|c| Contact {
                    user_id: user.id.clone(),
                    kind: c.kind,
                    address: c.address.clone(),
                    verified_at: c.verified.then_some(now),
                })
                .collect();
            Ok((factors, contacts))
        })
        .await
    }
}
