//! The harness: the real server on a random port with a manual clock (`app`), request
//! builders (`requests`), one typed client per protocol behind [`Api`] (`clients`) with its
//! outcomes (`outcomes`), plain HTTP for the self-service and admin faces (`http`), gRPC-Web
//! and raw gRPC by hand (`grpc_web`, `raw`), an OTLP trace receiver (`otlp`), and a TCP
//! proxy that cuts or silences the database on command (`proxy`). A behaviour test runs on
//! every protocol and both package versions without copy-paste: `use crate::helpers::*;`.

#![allow(dead_code)]

mod app;
mod clients;
mod grpc_web;
mod http;
pub mod otlp;
mod outcomes;
mod proxy;
mod raw;
mod requests;
mod sessions;
mod users;

pub use app::*;
pub use clients::*;
pub use grpc_web::*;
pub use http::*;
pub use outcomes::*;
pub use proxy::*;
pub use raw::*;
pub use requests::*;
pub use sessions::*;
pub use users::*;

use sessiond::domain::Time;

pub use sessiond::faces::pb::wkt::Timestamp;
pub use sessiond::faces::pb::zitadel::object::v2 as object;
pub use sessiond::faces::pb::zitadel::session::{v2, v2beta};
pub use sessiond::faces::pb::zitadel::v1::{
    CredentialsCheckError, ErrorDetail, TimestampQueryMethod,
};
pub use tonic::Code;

/// Where every test's clock starts: 2025-03-04T15:13:33.203Z.
pub const START: Time = Time::from_unix_micros(1_741_101_213_203_000);

/// The instance id a default configuration reports as `resourceOwner`.
pub const INSTANCE: &str = "sessiond";

/// Every session permission a JWT can grant.
pub const ALL_SESSION_PERMISSIONS: &[&str] = &["session.read", "session.write", "session.delete"];

/// Every permission a JWT can grant.
pub const EVERY_PERMISSION: &[&str] = &[
    "session.read",
    "session.write",
    "session.delete",
    "user.read",
    "user.write",
];
