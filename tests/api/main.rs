//! Integration tests of sessiond's session API: every behaviour on every protocol (gRPC,
//! gRPC-Web binary and text, Connect JSON and proto, REST) and both package versions, against
//! the real server on a random port.

mod helpers;

mod admin;
mod auth;
mod bad_input;
mod connect;
mod cors;
mod delete;
mod drift;
mod edges;
mod factors;
mod factors_admin;
mod factors_otp;
mod factors_recovery;
mod factors_users;
mod feed_faces;
mod kratos_admin;
mod list;
mod login;
mod openapi;
mod passkeys;
mod passwords;
mod permissions;
mod round_trip;
mod self_service;
mod set_session;
mod shutdown;
mod signals;
mod ui;

mod attacks;
mod backends;
mod concurrency;
mod configuration;
mod core;
mod durability;
mod faults;
mod headers;
mod hostile;
mod operations;
mod overload;
mod process;
mod replicas;
mod secrets;
mod sessions_cli;
mod store_contract;
mod store_factors;
mod store_passkeys;
mod traces;
