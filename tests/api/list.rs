//! ListSessions: every query kind, paging and ordering, totals, and terminated sessions.

use std::time::Duration;

use sessiond::domain::Time;

use crate::helpers::*;
use v2::search_query::Query;

/// Five sessions one second apart; the last one terminated.
struct Fixture {
    app: TestApp,
    admin: String,
    client_y: String,
    alice: String,
    bob: String,
    /// Creation times t0..t4.
    t: Vec<Time>,
    /// s1..s4 are live; s5 is terminated.
    s: Vec<String>,
}

fn at(t: Time, plus_secs: i64) -> Time {
    Time::from_unix_micros(t.unix_micros() + plus_secs * 1_000_000)
}

fn with_agent(fingerprint: Option<&str>) -> Option<v2::UserAgent> {
    fingerprint.map(|fp| v2::UserAgent {
        fingerprint_id: Some(fp.into()),
        ..Default::default()
    })
}

async fn fixture() -> Fixture {
    let app = spawn_app().await;
    let admin = app.admin();
    let client_y = app.bearer("client-y", &["session.write"]);
    let alice = app.add_user("alice@example.com").await.id.into_string();
    let bob = app.add_user("bob@example.com").await.id.into_string();
    let api = app.api(Protocol::Grpc, Version::V2);
    let plan: [(&str, &str, Option<&str>, Option<i64>); 5] = [
        (&admin, &alice, Some("fp-a"), None),
        (&client_y, &bob, Some("fp-b"), Some(100)),
        (&admin, &alice, Some("fp-a"), Some(10)),
        (&admin, &bob, None, None),
        (&admin, &alice, Some("fp-a"), None),
    ];
    let mut t = Vec::new();
    let mut s = Vec::new();
    for (i, (auth, user, fingerprint, lifetime)) in plan.into_iter().enumerate() {
        if i > 0 {
            app.advance(Duration::from_secs(1));
        }
        t.push(app.now());
        let created = ok(
            &api,
            api.create(
                Some(auth),
                v2::CreateSessionRequest {
                    user_agent: with_agent(fingerprint),
                    lifetime: lifetime.map(seconds),
                    ..create_for_user(user)
                },
            )
            .await,
        )
        .message;
        s.push(created.session_id);
    }
    ok(&api, api.delete(Some(&admin), delete(&s[4], None)).await);
    // The admin JWT was minted at t0; it is valid for an hour.
    Fixture {
        app,
        admin,
        client_y,
        alice,
        bob,
        t,
        s,
    }
}

impl Fixture {
    /// The ids the query returns, in order, after checking totalResult against `total`.
    async fn ids(
        &self,
        api: &Api,
        auth: &str,
        request: v2::ListSessionsRequest,
        total: u64,
    ) -> Vec<String> {
        let what = format!("{request:?}");
        let reply = ok(api, api.list(Some(auth), request).await);
        if let Some(json) = &reply.json {
            assert_protojson_shapes(json);
        }
        let details = reply.message.details.expect("list details");
        assert_eq!(details.total_result, total, "{api}: totalResult of {what}");
        assert_eq!(details.timestamp, Some(timestamp(self.app.now())), "{api}");
        reply.message.sessions.into_iter().map(|s| s.id).collect()
    }

    /// s1..s5 by number.
    fn s(&self, numbers: &[usize]) -> Vec<String> {
        numbers.iter().map(|n| self.s[n - 1].clone()).collect()
    }
}

fn creation(method: TimestampQueryMethod, t: Time) -> Query {
    Query::CreationDateQuery(v2::CreationDateQuery {
        creation_date: Some(timestamp(t)),
        method: method as i32,
    })
}

fn expiration(method: TimestampQueryMethod, t: Time) -> Query {
    Query::ExpirationDateQuery(v2::ExpirationDateQuery {
        expiration_date: Some(timestamp(t)),
        method: method as i32,
    })
}

fn paged(queries: Vec<Query>, offset: u64, limit: u32, asc: bool) -> v2::ListSessionsRequest {
    v2::ListSessionsRequest {
        query: Some(object::ListQuery { offset, limit, asc }),
        ..list(queries)
    }
}

#[tokio::test]
async fn ids_user_id_and_creation_date_queries_work_in_both_versions_on_every_protocol() {
    let f = fixture().await;
    let (t, admin) = (&f.t, f.admin.as_str());
    use TimestampQueryMethod::*;
    for api in f.app.apis() {
        let unknown = "123456789012345678";
        let cases: Vec<(Vec<Query>, Vec<usize>)> = vec![
            (
                vec![ids_query(&[&f.s[0], &f.s[2], &f.s[4], unknown])],
                vec![3, 1],
            ),
            (vec![ids_query(&[])], vec![]),
            (vec![user_id_query(&f.alice)], vec![3, 1]),
            (vec![user_id_query(&f.bob)], vec![4, 2]),
            (vec![user_id_query("nobody")], vec![]),
            (vec![creation(Equals, t[1])], vec![2]),
            (vec![creation(Greater, t[1])], vec![4, 3]),
            (vec![creation(GreaterOrEquals, t[1])], vec![4, 3, 2]),
            (vec![creation(Less, t[1])], vec![1]),
            (vec![creation(LessOrEquals, t[1])], vec![2, 1]),
            // Several queries are combined with AND.
            (
                vec![user_id_query(&f.alice), creation(Greater, t[0])],
                vec![3],
            ),
        ];
        for (queries, expected) in cases {
            let total = expected.len() as u64;
            let ids = f.ids(&api, admin, list(queries.clone()), total).await;
            assert_eq!(ids, f.s(&expected), "{api}: {queries:?}");
        }
    }
}

#[tokio::test]
async fn creator_user_agent_and_expiration_queries_work_on_every_protocol() {
    let f = fixture().await;
    let (t, admin) = (&f.t, f.admin.as_str());
    use TimestampQueryMethod::*;
    for api in f.app.v2_apis() {
        let creator = |id: Option<&str>| {
            Query::CreatorQuery(v2::CreatorQuery {
                id: id.map(Into::into),
            })
        };
        let agent = |fp: Option<&str>| {
            Query::UserAgentQuery(v2::UserAgentQuery {
                fingerprint_id: fp.map(Into::into),
            })
        };
        let cases: Vec<(&str, Vec<Query>, Vec<usize>)> = vec![
            // No id: the caller's own sessions.
            (admin, vec![creator(None)], vec![4, 3, 1]),
            (&f.client_y, vec![creator(None)], vec![2]),
            (admin, vec![creator(Some("client-y"))], vec![2]),
            (admin, vec![creator(Some("nobody"))], vec![]),
            (admin, vec![agent(Some("fp-a"))], vec![3, 1]),
            (admin, vec![agent(Some("fp-b"))], vec![2]),
            // s2 expires at t1+100 s, s3 at t2+10 s; s1 and s4 never.
            (
                admin,
                vec![expiration(Greater, at(t[2], 50))],
                vec![4, 2, 1],
            ),
            (
                admin,
                vec![expiration(GreaterOrEquals, at(t[1], 100))],
                vec![4, 2, 1],
            ),
            (admin, vec![expiration(Greater, at(t[1], 100))], vec![4, 1]),
            (admin, vec![expiration(Equals, at(t[2], 10))], vec![3]),
            (admin, vec![expiration(Less, at(t[2], 50))], vec![3]),
            (
                admin,
                vec![expiration(LessOrEquals, at(t[1], 100))],
                vec![3, 2],
            ),
        ];
        for (auth, queries, expected) in cases {
            let total = expected.len() as u64;
            let ids = f.ids(&api, auth, list(queries.clone()), total).await;
            assert_eq!(ids, f.s(&expected), "{api}: {queries:?}");
        }

        let outcome = api.list(Some(admin), list(vec![creator(Some(""))])).await;
        fails(&api, outcome, Code::InvalidArgument, "GRPC-x8n24uh");
        for fp in [None, Some("")] {
            let outcome = api.list(Some(admin), list(vec![agent(fp)])).await;
            fails(&api, outcome, Code::InvalidArgument, "GRPC-x8n23uh");
        }
        fails(
            &api,
            api.list(
                Some(admin),
                v2::ListSessionsRequest {
                    queries: vec![v2::SearchQuery { query: None }],
                    ..Default::default()
                },
            )
            .await,
            Code::InvalidArgument,
            "SESSIOND-REQUEST-INVALID",
        );
    }
}

#[tokio::test]
async fn offset_limit_and_order_page_through_the_matches() {
    let f = fixture().await;
    let admin = f.admin.as_str();
    for api in f.app.apis() {
        let cases: Vec<(u64, u32, bool, Vec<usize>)> = vec![
            (0, 0, false, vec![4, 3, 2, 1]),
            (0, 0, true, vec![1, 2, 3, 4]),
            (1, 2, false, vec![3, 2]),
            (1, 2, true, vec![2, 3]),
            (3, 10, false, vec![1]),
            (4, 10, false, vec![]),
            (0, 1, true, vec![1]),
        ];
        for (offset, limit, asc, expected) in cases {
            let ids = f
                .ids(&api, admin, paged(vec![], offset, limit, asc), 4)
                .await;
            assert_eq!(
                ids,
                f.s(&expected),
                "{api}: offset {offset} limit {limit} asc {asc}"
            );
        }
        // Sorting by creation date explicitly gives the same order.
        let ids = f
            .ids(
                &api,
                admin,
                v2::ListSessionsRequest {
                    sorting_column: v2::SessionFieldName::CreationDate as i32,
                    ..paged(vec![], 0, 0, true)
                },
                4,
            )
            .await;
        assert_eq!(ids, f.s(&[1, 2, 3, 4]), "{api}");
    }
}

#[tokio::test]
async fn terminated_sessions_never_appear() {
    let f = fixture().await;
    let admin = f.admin.as_str();
    use TimestampQueryMethod::*;
    let terminated = f.s[4].as_str();
    for api in f.app.apis() {
        for queries in [
            vec![],
            vec![ids_query(&[terminated])],
            vec![user_id_query(&f.alice)],
            vec![creation(Equals, f.t[4])],
        ] {
            let reply = ok(&api, api.list(Some(admin), list(queries)).await).message;
            assert!(reply.sessions.iter().all(|s| s.id != terminated), "{api}");
            let total = reply.details.map(|d| d.total_result).unwrap_or_default();
            assert_eq!(total as usize, reply.sessions.len(), "{api}");
        }
    }
}

#[tokio::test]
async fn list_answers_carry_the_session_read_model() {
    let f = fixture().await;
    for api in f.app.apis() {
        let reply = ok(
            &api,
            api.list(Some(&f.admin), list(vec![ids_query(&[&f.s[1]])]))
                .await,
        );
        let session = reply.message.sessions.first().cloned().expect("s2");
        assert_eq!(session.creation_date, Some(timestamp(f.t[1])), "{api}");
        assert_eq!(
            session.expiration_date,
            Some(timestamp(at(f.t[1], 100))),
            "{api}"
        );
        assert_eq!(
            session.factors.and_then(|f| f.user).map(|u| u.id),
            Some(f.bob.clone()),
            "{api}"
        );
        if let Some(json) = &reply.json {
            let s = &json["sessions"][0];
            assert_eq!(
                s["expirationDate"], "2025-03-04T15:15:14.203Z",
                "{api}: {s}"
            );
            assert_eq!(s["userAgent"]["fingerprintId"], "fp-b", "{api}");
        }
    }
}

#[tokio::test]
async fn undefined_enum_values_are_invalid_arguments() {
    let f = fixture().await;
    // JSON cannot carry an undefined enum value by name; the binary protocols can.
    for protocol in [
        Protocol::Grpc,
        Protocol::GrpcWeb,
        Protocol::GrpcWebText,
        Protocol::ConnectProto,
    ] {
        for version in Version::ALL {
            let api = f.app.api(protocol, version);
            fails(
                &api,
                api.list(
                    Some(&f.admin),
                    v2::ListSessionsRequest {
                        sorting_column: 42,
                        ..Default::default()
                    },
                )
                .await,
                Code::InvalidArgument,
                "SESSIOND-REQUEST-INVALID",
            );
            fails(
                &api,
                api.list(
                    Some(&f.admin),
                    list(vec![Query::CreationDateQuery(v2::CreationDateQuery {
                        creation_date: Some(timestamp(f.t[0])),
                        method: 42,
                    })]),
                )
                .await,
                Code::InvalidArgument,
                "SESSIOND-REQUEST-INVALID",
            );
        }
    }
}
