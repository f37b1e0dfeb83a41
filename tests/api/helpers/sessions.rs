//! Sessions in the states that DeleteSession and SetSession are both tried on (expired,
//! terminated, changed, unknown), and the refusal of a session token both check.

use std::fmt;
use std::time::Duration;

use sessiond::domain::User;

use super::{Api, Code, Failure, Outcome, TestApp, delete, fails, ok, set_metadata, v2};

/// An id that no session has.
pub const UNKNOWN_SESSION: &str = "123456789012345678";

/// A session of `user` with a lifetime of `lifetime` seconds, `elapsed` seconds later.
pub async fn expired_session(
    app: &TestApp,
    user: &User,
    lifetime: i64,
    elapsed: u64,
) -> v2::CreateSessionResponse {
    let session = app.create_expiring_session_for(user, lifetime).await;
    app.advance(Duration::from_secs(elapsed));
    session
}

/// A session of `user` that `api` deleted with its own token.
pub async fn terminated_session(
    app: &TestApp,
    api: &Api,
    user: &User,
) -> v2::CreateSessionResponse {
    let session = app.create_session_for(user).await;
    let request = delete(&session.session_id, Some(&session.session_token));
    ok(api, api.delete(Some(&app.admin()), request).await);
    session
}

/// A session of `user` whose metadata `k` `api` set to `v`: the token it was created with is
/// stale, the one in the answer is current.
pub async fn changed_session(
    app: &TestApp,
    api: &Api,
    user: &User,
) -> (v2::CreateSessionResponse, v2::SetSessionResponse) {
    let session = app.create_session_for(user).await;
    let request = set_metadata(&session.session_id, "k", b"v");
    let changed = ok(api, api.set(Some(&app.admin()), request).await).message;
    let token = &changed.session_token;
    assert!(!token.is_empty(), "{api}: a change rotates the token");
    (session, changed)
}

/// Checks that `outcome` was refused for its session token, with the error `id`.
#[track_caller]
pub fn token_refused<T: fmt::Debug>(api: &Api, outcome: Outcome<T>, id: &str) -> Failure {
    fails(api, outcome, Code::PermissionDenied, id)
}

/// A server with one user, alice@example.com, and the admin credential.
pub async fn spawn_app_with_alice() -> (TestApp, User, String) {
    let app = super::spawn_app().await;
    let alice = app.add_user("alice@example.com").await;
    let admin = app.admin();
    (app, alice, admin)
}
