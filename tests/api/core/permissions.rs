//! Permissions: every command that needs one fails without it, with PERMISSION_DENIED and
//! `PERMISSION_MISSING` naming the permission, and changes nothing.

use sessiond::core::{CreateSession, NewUser, PageRequest, UserAction};
use sessiond::domain::{Error, ErrorKind, LoginName, Password, Permission, Principal, error_ids};

use super::*;

/// A command and the permission it needs.
#[derive(Clone, Copy, Debug)]
enum Command {
    CreateSession,
    SetSession,
    ReadSessionWithoutToken,
    DeleteSessionWithoutToken,
    AdminListUserSessions,
    AdminRevokeSession,
    AdminRevokeUserSessions,
    CreateUser,
    GetUser,
    ListUsers,
    LockUser,
    SetPassword,
}

const TABLE: &[(Command, Permission)] = &[
    (Command::CreateSession, Permission::SessionWrite),
    (Command::SetSession, Permission::SessionWrite),
    (Command::ReadSessionWithoutToken, Permission::SessionRead),
    (
        Command::DeleteSessionWithoutToken,
        Permission::SessionDelete,
    ),
    (Command::AdminListUserSessions, Permission::SessionRead),
    (Command::AdminRevokeSession, Permission::SessionDelete),
    (Command::AdminRevokeUserSessions, Permission::SessionDelete),
    (Command::CreateUser, Permission::UserWrite),
    (Command::GetUser, Permission::UserRead),
    (Command::ListUsers, Permission::UserRead),
    (Command::LockUser, Permission::UserWrite),
    (Command::SetPassword, Permission::UserWrite),
];

/// Runs `command` as `caller` against a session of `user`, neither created by the caller.
async fn run(
    h: &Harness,
    command: Command,
    caller: &Principal,
    user: &User,
    session: &Created,
) -> Result<(), Error> {
    let core = &h.core;
    match command {
        Command::CreateSession => core
            .create_session(caller, CreateSession::default())
            .await
            .map(drop),
        Command::SetSession => core
            .set_session(
                caller,
                SetSession {
                    metadata: metadata(&[("k", "v")]),
                    ..set(&session.id)
                },
            )
            .await
            .map(drop),
        Command::ReadSessionWithoutToken => {
            core.get_session(caller, &session.id, None).await.map(drop)
        }
        Command::DeleteSessionWithoutToken => core
            .delete_session(caller, &session.id, None)
            .await
            .map(drop),
        Command::AdminListUserSessions => core
            .admin_user_sessions(caller, &user.id, None, &PageRequest::default())
            .await
            .map(drop),
        Command::AdminRevokeSession => core
            .admin_revoke_session(caller, &user.id, &session.id)
            .await
            .map(drop),
        Command::AdminRevokeUserSessions => core
            .admin_revoke_user_sessions(caller, &user.id, None, sessiond::core::RevokedBy::Admin)
            .await
            .map(drop),
        Command::CreateUser => core
            .create_user(
                caller,
                NewUser {
                    login_name: LoginName::parse("new@example.com").expect("name"),
                    display_name: None,
                    organization_id: None,
                    password: None,
                },
            )
            .await
            .map(drop),
        Command::GetUser => core.get_user(caller, &user.id).await.map(drop),
        Command::ListUsers => core.list_users(caller, None, 0, 10).await.map(drop),
        Command::LockUser => core
            .change_user_state(caller, &user.id, UserAction::Lock)
            .await
            .map(drop),
        Command::SetPassword => core
            .set_password(
                caller,
                &user.id,
                &Password::parse("a new password").expect("pw"),
                true,
            )
            .await
            .map(drop),
    }
}

/// Every permission but `missing`.
fn all_but(missing: Permission) -> Vec<Permission> {
    Permission::ALL
        .into_iter()
        .filter(|p| *p != missing)
        .collect()
}

#[tokio::test]
async fn each_command_without_its_permission_is_denied_and_changes_nothing() {
    for h in harnesses().await {
        let user = h.user("target@example.com").await;
        let session = h.session_for(&user).await;
        for (command, permission) in TABLE {
            let without = caller("operator", &all_but(*permission));
            let error = fails(
                &h,
                run(&h, *command, &without, &user, &session).await,
                ErrorKind::PermissionDenied,
                error_ids::PERMISSION_MISSING,
            );
            assert!(
                error.message().contains(permission.name()),
                "{h}: {command:?}: {error:?}"
            );
        }
        let stored = h.stored(&session.id).await;
        assert_eq!(stored.sequence, 1, "{h}: the session is untouched");
        assert!(!stored.is_terminated(), "{h}");
        let stored_user = h.stored_user(&user.id).await;
        assert_eq!(stored_user.state, user.state, "{h}: the user is untouched");
        assert_eq!(stored_user.password_hash, None, "{h}");
        assert_eq!(h.live_sessions().await, 1, "{h}: nothing was created");
    }
}

#[tokio::test]
async fn each_command_with_only_its_permission_is_allowed() {
    for h in harnesses().await {
        for (command, permission) in TABLE {
            let user = h.user(&format!("{command:?}@example.com")).await;
            let session = h.session_for(&user).await;
            let only = caller("operator", &[*permission]);
            succeeds(&h, run(&h, *command, &only, &user, &session).await);
        }
    }
}
