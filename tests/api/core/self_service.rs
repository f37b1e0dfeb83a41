//! The self-service rules: the caller's current session, its other active sessions (paged
//! by authenticated tokens), revoking one of them, revoking all of them but the current one.

use std::collections::BTreeSet;
use std::time::Duration;

use sessiond::core::{CurrentSession, PageRequest, SessionPageResult};
use sessiond::domain::{Error, ErrorKind, SessionId, error_ids};

use super::*;

/// One page of the caller's other sessions.
async fn page(
    h: &Harness,
    current: &CurrentSession,
    size: Option<u32>,
    token: Option<String>,
) -> Result<SessionPageResult, Error> {
    h.core
        .list_other_sessions(current, &PageRequest { size, token })
        .await
}

/// Every page of the caller's other sessions, following the tokens; the ids in order.
async fn all_pages(h: &Harness, current: &CurrentSession, size: u32) -> Vec<Vec<SessionId>> {
    let mut pages = Vec::new();
    let mut token = None;
    loop {
        let result = succeeds(h, page(h, current, Some(size), token).await);
        pages.push(result.sessions.into_iter().map(|s| s.id).collect());
        match result.next_token {
            Some(next) => token = Some(next),
            None => return pages,
        }
    }
}

#[tokio::test]
async fn the_current_session_is_the_tokens_active_session_and_its_user() {
    for h in harnesses().await {
        let user = h.user("me@example.com").await;
        let created = h.session_for(&user).await;
        let current = h.current(&created.token).await;
        assert_eq!(current.session.id, created.id, "{h}");
        assert_eq!(current.user.id, user.id, "{h}");
    }
}

#[tokio::test]
async fn other_sessions_are_the_callers_active_ones_newest_first_without_the_current_one() {
    for h in harnesses().await {
        let me = h.user("me@example.com").await;
        let someone = h.user("someone@example.com").await;
        let current = h.session_for(&me).await;
        h.advance(Duration::from_secs(1));
        let older = h.session_for(&me).await;
        h.advance(Duration::from_secs(1));
        let newer = h.session_for(&me).await;
        let ended = h.session_for(&me).await;
        h.delete(&ended.id).await;
        h.session_for_with_lifetime(&me, Duration::from_secs(1))
            .await;
        h.session_for(&someone).await;
        h.advance(Duration::from_secs(2));

        let page = succeeds(
            &h,
            h.core
                .list_other_sessions(&h.current(&current.token).await, &PageRequest::default())
                .await,
        );
        let ids: Vec<_> = page.sessions.into_iter().map(|s| s.id).collect();
        assert_eq!(ids, [newer.id, older.id], "{h}");
        assert_eq!(page.total, 2, "{h}");
        assert_eq!(page.next_token, None, "{h}");
    }
}

#[tokio::test]
async fn following_page_tokens_returns_every_other_session_exactly_once() {
    for h in harnesses().await {
        let me = h.user("many@example.com").await;
        let current = h.session_for(&me).await;
        let mut others = BTreeSet::new();
        for _ in 0..5 {
            h.advance(Duration::from_millis(10));
            others.insert(h.session_for(&me).await.id);
        }
        let current = h.current(&current.token).await;
        let pages = all_pages(&h, &current, 2).await;
        let sizes: Vec<_> = pages.iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 2, 1], "{h}");
        let seen: BTreeSet<_> = pages.into_iter().flatten().collect();
        assert_eq!(seen, others, "{h}");
        // An exact fit hands out no token for an empty page.
        assert_eq!(all_pages(&h, &current, 5).await.len(), 1, "{h}");
    }
}

#[tokio::test]
async fn forged_foreign_and_out_of_range_page_parameters_are_invalid() {
    for h in harnesses().await {
        let me = h.user("me@example.com").await;
        let you = h.user("you@example.com").await;
        let mine = h.session_for(&me).await;
        let yours = h.session_for(&you).await;
        for _ in 0..2 {
            h.session_for(&me).await;
            h.session_for(&you).await;
        }
        let me_now = h.current(&mine.token).await;
        let you_now = h.current(&yours.token).await;
        let your_token = succeeds(&h, page(&h, &you_now, Some(1), None).await)
            .next_token
            .expect("a next page");
        for token in [your_token, "garbage".to_owned(), "A".repeat(600)] {
            fails(
                &h,
                page(&h, &me_now, Some(1), Some(token)).await,
                ErrorKind::InvalidArgument,
                error_ids::PAGE_TOKEN_INVALID,
            );
        }
        for size in [0, 1001] {
            fails(
                &h,
                page(&h, &me_now, Some(size), None).await,
                ErrorKind::InvalidArgument,
                error_ids::PAGE_SIZE_INVALID,
            );
        }
    }
}

#[tokio::test]
async fn the_current_session_cannot_be_revoked_here() {
    for h in harnesses().await {
        let me = h.user("me@example.com").await;
        let created = h.session_for(&me).await;
        let current = h.current(&created.token).await;
        fails(
            &h,
            h.core.revoke_own_session(&current, &created.id).await,
            ErrorKind::InvalidArgument,
            error_ids::CURRENT_SESSION,
        );
        assert!(!h.stored(&created.id).await.is_terminated(), "{h}");
    }
}

#[tokio::test]
async fn revoking_another_own_session_terminates_it_in_the_users_name() {
    for h in harnesses().await {
        let me = h.user("me@example.com").await;
        let current = h.session_for(&me).await;
        let other = h.session_for(&me).await;
        let current = h.current(&current.token).await;
        succeeds(&h, h.core.revoke_own_session(&current, &other.id).await);
        succeeds(&h, h.core.revoke_own_session(&current, &other.id).await);
        let events = h.events(&other.id).await;
        assert_eq!(events.len(), 2, "{h}: revoked once");
        assert_eq!(events[1].payload["reason"], "deleted", "{h}");
        assert_eq!(events[1].editor, me.id.as_str(), "{h}");
    }
}

#[tokio::test]
async fn revoking_someone_elses_or_an_unknown_session_succeeds_and_changes_nothing() {
    for h in harnesses().await {
        let me = h.user("me@example.com").await;
        let you = h.user("you@example.com").await;
        let mine = h.session_for(&me).await;
        let yours = h.session_for(&you).await;
        let current = h.current(&mine.token).await;
        for id in [&yours.id, &unknown_id()] {
            succeeds(&h, h.core.revoke_own_session(&current, id).await);
        }
        assert!(!h.stored(&yours.id).await.is_terminated(), "{h}");
        assert_eq!(h.events(&yours.id).await.len(), 1, "{h}");
    }
}

#[tokio::test]
async fn revoking_all_others_keeps_the_current_session_and_counts_what_it_ended() {
    for h in harnesses().await {
        let me = h.user("me@example.com").await;
        let you = h.user("you@example.com").await;
        let current = h.session_for(&me).await;
        let mut others = Vec::new();
        for _ in 0..3 {
            others.push(h.session_for(&me).await.id);
        }
        h.delete(&others[0]).await;
        let yours = h.session_for(&you).await;
        let now = h.current(&current.token).await;
        assert_eq!(
            succeeds(&h, h.core.revoke_other_sessions(&now).await),
            2,
            "{h}"
        );
        assert_eq!(
            succeeds(&h, h.core.revoke_other_sessions(&now).await),
            0,
            "{h}"
        );
        for id in &others[1..] {
            let events = h.events(id).await;
            assert_eq!(events.len(), 2, "{h}");
            assert_eq!(events[1].payload["reason"], "revoke_others", "{h}");
            assert_eq!(events[1].editor, me.id.as_str(), "{h}");
        }
        assert_eq!(h.events(&others[0]).await.len(), 2, "{h}: ended once");
        assert!(!h.stored(&current.id).await.is_terminated(), "{h}");
        assert!(!h.stored(&yours.id).await.is_terminated(), "{h}");
        h.current(&current.token).await;
    }
}
