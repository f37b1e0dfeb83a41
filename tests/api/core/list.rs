//! ListSessions: visibility is part of the query (a caller without `session.read` sees and
//! counts only sessions it created or is the user of), terminated sessions never appear,
//! paging and ordering, and each search condition.

use std::time::Duration;

use sessiond::core::{CoreSettings, CreateSession, ListSessions, SearchQuery};
use sessiond::domain::{
    ErrorKind, Permission, Principal, SessionId, TimeComparison, UserAgent, error_ids,
};

use super::*;

/// The ids a caller lists with `request`, and the total it is told.
async fn listed(h: &Harness, caller: &Principal, request: ListSessions) -> (Vec<SessionId>, u64) {
    let (sessions, details) = succeeds(h, h.core.list_sessions(caller, request).await);
    assert_eq!(details.timestamp, h.now(), "{h}");
    (
        sessions.into_iter().map(|s| s.id).collect(),
        details.total_result,
    )
}

fn query(queries: Vec<SearchQuery>) -> ListSessions {
    ListSessions {
        queries,
        ..ListSessions::default()
    }
}

/// `n` sessions of `user`, a second apart, oldest first.
async fn sessions_of(h: &Harness, user: &User, n: usize) -> Vec<SessionId> {
    let mut ids = Vec::new();
    for _ in 0..n {
        h.advance(Duration::from_secs(1));
        ids.push(h.session_for(user).await.id);
    }
    ids
}

#[tokio::test]
async fn without_session_read_a_caller_sees_and_counts_only_its_own_sessions() {
    for h in harnesses().await {
        let alice = h.user("alice@example.com").await;
        let bob = h.user("bob@example.com").await;
        let alices = sessions_of(&h, &alice, 2).await;
        let other_ui = caller("other-ui", &[Permission::SessionWrite]);
        h.advance(Duration::from_secs(1));
        let bobs = succeeds(
            &h,
            h.core
                .create_session(
                    &other_ui,
                    CreateSession {
                        checks: user_check(&bob),
                        ..CreateSession::default()
                    },
                )
                .await,
        )
        .session_id;

        let (ids, total) = listed(&h, &as_user(&alice), ListSessions::default()).await;
        assert_eq!(ids, [alices[1].clone(), alices[0].clone()], "{h}");
        assert_eq!(total, 2, "{h}");
        // The count is of what the caller may see, whatever the page.
        let (ids, total) = listed(
            &h,
            &as_user(&alice),
            ListSessions {
                limit: 1,
                ..ListSessions::default()
            },
        )
        .await;
        assert_eq!((ids.len(), total), (1, 2), "{h}");
        // Asking for someone else's sessions finds none of them.
        let (ids, total) = listed(
            &h,
            &as_user(&alice),
            query(vec![SearchQuery::UserId(bob.id.to_string())]),
        )
        .await;
        assert_eq!((ids.len(), total), (0, 0), "{h}");

        let (ids, total) = listed(&h, &other_ui, ListSessions::default()).await;
        assert_eq!((ids, total), (vec![bobs.clone()], 1), "{h}: the creator");

        let (ids, total) = listed(&h, &login_ui(), ListSessions::default()).await;
        assert_eq!(ids, [bobs, alices[1].clone(), alices[0].clone()], "{h}");
        assert_eq!(total, 3, "{h}");
    }
}

#[tokio::test]
async fn terminated_sessions_never_appear_and_expired_ones_do() {
    for h in harnesses().await {
        let user = h.user("mixed@example.com").await;
        let ended = h.session_for(&user).await;
        let expired = h
            .session_for_with_lifetime(&user, Duration::from_secs(1))
            .await;
        h.delete(&ended.id).await;
        h.advance(Duration::from_secs(5));
        let (ids, total) = listed(
            &h,
            &login_ui(),
            query(vec![SearchQuery::Ids(vec![
                ended.id.to_string(),
                expired.id.to_string(),
            ])]),
        )
        .await;
        assert_eq!((ids, total), (vec![expired.id], 1), "{h}");
    }
}

#[tokio::test]
async fn pages_follow_offset_limit_and_order_and_the_total_counts_them_all() {
    for h in harnesses().await {
        let user = h.user("pages@example.com").await;
        let oldest_first = sessions_of(&h, &user, 5).await;
        let newest_first: Vec<_> = oldest_first.iter().rev().cloned().collect();
        let page = |offset, limit, asc| ListSessions {
            queries: vec![SearchQuery::UserId(user.id.to_string())],
            offset,
            limit,
            asc,
        };
        let cases = [
            (page(0, 0, false), newest_first.clone()),
            (page(0, 0, true), oldest_first.clone()),
            (page(1, 2, false), newest_first[1..3].to_vec()),
            (page(3, 10, true), oldest_first[3..].to_vec()),
            (page(5, 10, false), Vec::new()),
        ];
        for (request, expected) in cases {
            let description = format!("{request:?}");
            let (ids, total) = listed(&h, &login_ui(), request).await;
            assert_eq!(ids, expected, "{h}: {description}");
            assert_eq!(total, 5, "{h}: {description}");
        }
    }
}

#[tokio::test]
async fn a_zero_limit_takes_the_default_and_a_large_one_the_maximum() {
    let settings = CoreSettings {
        default_list_limit: 2,
        max_list_limit: 3,
        ..CoreSettings::default()
    };
    for h in harnesses_with(settings.clone()).await {
        let user = h.user("limits@example.com").await;
        sessions_of(&h, &user, 4).await;
        for (limit, expected) in [(0, 2), (1, 1), (3, 3), (1000, 3)] {
            let (ids, total) = listed(
                &h,
                &login_ui(),
                ListSessions {
                    limit,
                    ..ListSessions::default()
                },
            )
            .await;
            assert_eq!((ids.len(), total), (expected, 4), "{h}: limit {limit}");
        }
    }
}

#[tokio::test]
async fn each_search_condition_narrows_the_list() {
    for h in harnesses().await {
        let alice = h.user("alice@example.com").await;
        let bob = h.user("bob@example.com").await;
        h.advance(Duration::from_secs(1));
        let first = h.session_for_with_lifetime(&alice, HOUR).await.id;
        let middle_time = after(h.now(), Duration::from_millis(500));
        h.advance(Duration::from_secs(1));
        let phone = UserAgent {
            fingerprint_id: Some("phone".into()),
            ..UserAgent::default()
        };
        let second = h
            .create(CreateSession {
                checks: user_check(&bob),
                user_agent: phone,
                ..CreateSession::default()
            })
            .await
            .id;
        h.advance(Duration::from_secs(1));
        let by_other_ui = succeeds(
            &h,
            h.core
                .create_session(
                    &caller("other-ui", &[Permission::SessionWrite]),
                    CreateSession::default(),
                )
                .await,
        )
        .session_id;
        let expires_at = after(first_creation(&h, &first).await, HOUR);

        let cases: Vec<(SearchQuery, Vec<&SessionId>)> = vec![
            (SearchQuery::Ids(vec![first.to_string()]), vec![&first]),
            (SearchQuery::UserId(bob.id.to_string()), vec![&second]),
            (
                SearchQuery::CreationDate(TimeComparison::Less, middle_time),
                vec![&first],
            ),
            (
                SearchQuery::CreationDate(TimeComparison::Greater, middle_time),
                vec![&by_other_ui, &second],
            ),
            (SearchQuery::Creator(None), vec![&second, &first]),
            (
                SearchQuery::Creator(Some("other-ui".into())),
                vec![&by_other_ui],
            ),
            (SearchQuery::UserAgent(Some("phone".into())), vec![&second]),
            (
                SearchQuery::ExpirationDate(TimeComparison::Equals, expires_at),
                vec![&first],
            ),
            (
                SearchQuery::ExpirationDate(TimeComparison::LessOrEquals, expires_at),
                vec![&first],
            ),
            // Sessions that never expire are later than any time.
            (
                SearchQuery::ExpirationDate(TimeComparison::Greater, expires_at),
                vec![&by_other_ui, &second],
            ),
            (
                SearchQuery::ExpirationDate(TimeComparison::GreaterOrEquals, expires_at),
                vec![&by_other_ui, &second, &first],
            ),
        ];
        for (condition, expected) in cases {
            let description = format!("{condition:?}");
            let (ids, total) = listed(&h, &login_ui(), query(vec![condition])).await;
            let expected: Vec<SessionId> = expected.into_iter().cloned().collect();
            assert_eq!(ids, expected, "{h}: {description}");
            assert_eq!(total, expected.len() as u64, "{h}: {description}");
        }
        // Conditions combine with AND.
        let (ids, _) = listed(
            &h,
            &login_ui(),
            query(vec![
                SearchQuery::Creator(None),
                SearchQuery::UserId(alice.id.to_string()),
            ]),
        )
        .await;
        assert_eq!(ids, [first], "{h}");
    }
}

async fn first_creation(h: &Harness, id: &SessionId) -> sessiond::domain::Time {
    h.stored(id).await.creation_date
}

#[tokio::test]
async fn malformed_search_conditions_are_invalid_arguments() {
    for h in harnesses().await {
        let too_many: Vec<String> = (0..1001).map(|i| i.to_string()).collect();
        let cases = [
            (
                SearchQuery::Creator(Some(String::new())),
                error_ids::CREATOR_QUERY_EMPTY,
            ),
            (
                SearchQuery::UserAgent(None),
                error_ids::USER_AGENT_QUERY_EMPTY,
            ),
            (
                SearchQuery::UserAgent(Some(String::new())),
                error_ids::USER_AGENT_QUERY_EMPTY,
            ),
            (SearchQuery::Ids(too_many), error_ids::LIST_TOO_MANY_IDS),
        ];
        for (condition, id) in cases {
            fails(
                &h,
                h.core
                    .list_sessions(&login_ui(), query(vec![condition]))
                    .await,
                ErrorKind::InvalidArgument,
                id,
            );
        }
    }
}
