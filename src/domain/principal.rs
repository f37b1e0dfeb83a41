//! Who is calling and what they may do. A principal comes from a verified JWT (a service or
//! administrator with permissions) or from a session token (the session's user, no
//! permissions beyond their own sessions).

use super::SessionId;

/// One permission a JWT may grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Permission {
    SessionRead = 1,
    SessionWrite = 2,
    SessionDelete = 4,
    UserRead = 8,
    UserWrite = 16,
    /// Manage Shared Signals streams and back-channel logout clients.
    SsfManage = 32,
}

impl Permission {
    pub const ALL: [Permission; 6] = [
        Permission::SessionRead,
        Permission::SessionWrite,
        Permission::SessionDelete,
        Permission::UserRead,
        Permission::UserWrite,
        Permission::SsfManage,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Permission::SessionRead => "session.read",
            Permission::SessionWrite => "session.write",
            Permission::SessionDelete => "session.delete",
            Permission::UserRead => "user.read",
            Permission::UserWrite => "user.write",
            Permission::SsfManage => "ssf.manage",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// A set of permissions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Permissions(u8);

impl Permissions {
    pub fn none() -> Self {
        Self(0)
    }

    pub fn with(mut self, p: Permission) -> Self {
        self.0 |= p as u8;
        self
    }

    pub fn contains(self, p: Permission) -> bool {
        self.0 & p as u8 != 0
    }

    /// Collects the known names; unknown names are ignored.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        names
            .into_iter()
            .filter_map(Permission::parse)
            .fold(Self::none(), Self::with)
    }

    pub fn names(self) -> Vec<&'static str> {
        Permission::ALL
            .into_iter()
            .filter(|p| self.contains(*p))
            .map(Permission::name)
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrincipalKind {
    /// Authenticated by a bearer JWT.
    Jwt,
    /// Authenticated by the token of this session.
    Session(SessionId),
}

/// The authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The JWT subject, or the checked user of the session.
    pub user_id: String,
    pub permissions: Permissions,
    pub kind: PrincipalKind,
}

impl Principal {
    /// The operator at the command line: every permission.
    pub fn system() -> Self {
        Self {
            user_id: String::from("system"),
            permissions: Permission::ALL
                .into_iter()
                .fold(Permissions::none(), Permissions::with),
            kind: PrincipalKind::Jwt,
        }
    }

    /// The user of a session, by its token: no permissions beyond its own sessions.
    pub fn of_session(user_id: String, session: SessionId) -> Self {
        Self {
            user_id,
            permissions: Permissions::none(),
            kind: PrincipalKind::Session(session),
        }
    }

    pub fn can(&self, p: Permission) -> bool {
        self.permissions.contains(p)
    }

    pub fn session_id(&self) -> Option<&SessionId> {
        match &self.kind {
            PrincipalKind::Session(id) => Some(id),
            PrincipalKind::Jwt => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_parse_known_names_only() {
        let p = Permissions::from_names(["session.read", "bogus", "session.delete"]);
        assert!(p.contains(Permission::SessionRead));
        assert!(p.contains(Permission::SessionDelete));
        assert!(!p.contains(Permission::SessionWrite));
        assert_eq!(p.names(), vec!["session.read", "session.delete"]);
    }
}
