//! Request builders: the v2 messages most tests send, in one line each.

use prost::Message;

use sessiond::domain::Time;

use super::{Timestamp, v2};

/// A CreateSession request that checks `user_id`.
pub fn create_for_user(user_id: &str) -> v2::CreateSessionRequest {
    v2::CreateSessionRequest {
        checks: Some(user_check(user_id)),
        ..Default::default()
    }
}

pub fn user_check(user_id: &str) -> v2::Checks {
    v2::Checks {
        user: Some(v2::CheckUser {
            search: Some(v2::check_user::Search::UserId(user_id.into())),
        }),
        ..Default::default()
    }
}

/// A CreateSession that checks the user by login name.
pub fn login_by_name(name: &str) -> v2::CreateSessionRequest {
    v2::CreateSessionRequest {
        checks: Some(v2::Checks {
            user: Some(v2::CheckUser {
                search: Some(v2::check_user::Search::LoginName(name.into())),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn get(session_id: &str, token: Option<&str>) -> v2::GetSessionRequest {
    v2::GetSessionRequest {
        session_id: session_id.into(),
        session_token: token.map(Into::into),
    }
}

pub fn delete(session_id: &str, token: Option<&str>) -> v2::DeleteSessionRequest {
    v2::DeleteSessionRequest {
        session_id: session_id.into(),
        session_token: token.map(Into::into),
    }
}

pub fn set_metadata(session_id: &str, key: &str, value: &[u8]) -> v2::SetSessionRequest {
    v2::SetSessionRequest {
        session_id: session_id.into(),
        metadata: [(key.to_owned(), value.to_vec())].into_iter().collect(),
        ..Default::default()
    }
}

pub fn list(queries: Vec<v2::search_query::Query>) -> v2::ListSessionsRequest {
    v2::ListSessionsRequest {
        queries: queries
            .into_iter()
            .map(|q| v2::SearchQuery { query: Some(q) })
            .collect(),
        ..Default::default()
    }
}

pub fn user_id_query(id: &str) -> v2::search_query::Query {
    v2::search_query::Query::UserIdQuery(v2::UserIdQuery { id: id.into() })
}

pub fn ids_query(ids: &[&str]) -> v2::search_query::Query {
    v2::search_query::Query::IdsQuery(v2::IDsQuery {
        ids: ids.iter().map(|s| (*s).to_owned()).collect(),
    })
}

/// Re-encodes a message as its wire-compatible twin of the other package.
pub fn transcode<A: Message, B: Message + Default>(from: &A) -> B {
    B::decode(from.encode_to_vec().as_slice()).expect("wire-compatible messages")
}

/// Seconds as a protobuf duration.
pub fn seconds(secs: i64) -> pbjson_types::Duration {
    pbjson_types::Duration {
        seconds: secs,
        nanos: 0,
    }
}

pub fn timestamp(t: Time) -> Timestamp {
    Timestamp::from(t)
}
