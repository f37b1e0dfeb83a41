//! Integration tests of sessiond's session API: every behaviour on every protocol (gRPC,
//! gRPC-Web binary and text, Connect JSON and proto, REST) and both package versions, against
//! the real server on a random port.

mod helpers;

mod auth;
mod bad_input;
mod connect;
mod cors;
mod delete;
mod drift;
mod list;
mod passwords;
mod permissions;
mod round_trip;
mod set_session;
mod shutdown;

mod backends;
mod concurrency;
mod replicas;
mod store_contract;
mod faults;
mod operations;
