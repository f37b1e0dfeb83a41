//! sessiond: a session API server.
//!
//! One request flows down the layers and back:
//!
//! ```text
//! faces   gRPC · gRPC-Web · Connect · REST       decode, collect credentials, encode
//!   │       (faces::grpc, connect, rest, status: the one error table)
//! auth    Authorization header → Principal       (auth::Authenticator)
//!   │
//! core    the one SessionService                  (core::Core: rules, permissions, tokens)
//!   │
//! domain  Session, User, Principal, Error         (no wire or database types)
//!   │
//! store   trait Store: SQLite (default)           (one transaction per command)
//! ```
//!
//! `ops` wraps every face (request ids, load shedding, timeouts, access log, metrics, health,
//! the API document). `settings` is the one settings type (defaults, file, environment,
//! flags); `app` builds the `Application` from it (the layers wired together, the listener,
//! the background tasks) and serves it; `cli` parses the command line; `main.rs` only calls
//! into this library, so tests drive exactly what runs.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo)
)]

pub mod app;
pub mod auth;
pub mod cli;
pub mod core;
pub mod delivery;
pub mod domain;
pub mod faces;
pub mod feed;
pub mod ops;
pub mod settings;
pub mod signals;
pub mod store;
pub mod telemetry;
