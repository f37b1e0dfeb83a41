//! Generated protobuf types (prost + pbjson) for the ZITADEL session API and sessiond's own
//! event feed, and our own `google.protobuf.Timestamp`, whose JSON form is RFC 3339 with a
//! `Z` suffix as protojson writes it.

#![allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]
#![allow(missing_docs, unused_qualifications)]

/// The compiled descriptor set of `proto/`, for reflection and the route drift check.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sessiond_descriptor.bin"));

/// One generated package: its messages and their JSON forms.
macro_rules! package {
    ($name:ident, $file:literal) => {
        pub mod $name {
            include!(concat!(env!("OUT_DIR"), "/", $file, ".rs"));
            include!(concat!(env!("OUT_DIR"), "/", $file, ".serde.rs"));
        }
    };
}

pub mod zitadel {
    package!(v1, "zitadel.v1");
    pub mod object {
        package!(v2, "zitadel.object.v2");
        package!(v2beta, "zitadel.object.v2beta");
    }
    pub mod session {
        package!(v2, "zitadel.session.v2");
        package!(v2beta, "zitadel.session.v2beta");
    }
    pub mod user {
        package!(v2, "zitadel.user.v2");
    }
}

pub mod sessiond {
    pub mod events {
        package!(v1, "sessiond.events.v1");
    }
}

pub mod wkt {
    //! `google.protobuf.Timestamp` with protojson's JSON form.

    use serde::de::Error as _;

    use crate::domain::Time;

    #[derive(Clone, Copy, PartialEq, Eq, Hash, ::prost::Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    impl ::prost::Name for Timestamp {
        const NAME: &'static str = "Timestamp";
        const PACKAGE: &'static str = "google.protobuf";
    }

    /// The range a protobuf Timestamp may hold: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
    const MIN_SECONDS: i64 = -62_135_596_800;
    const MAX_SECONDS: i64 = 253_402_300_799;

    impl Timestamp {
        /// Whether the timestamp is within protobuf's range, with nanos in `0..1e9`.
        pub fn is_valid(&self) -> bool {
            (MIN_SECONDS..=MAX_SECONDS).contains(&self.seconds)
                && (0..1_000_000_000).contains(&self.nanos)
        }
    }

    impl From<Time> for Timestamp {
        /// Times beyond the protobuf range (an expiration after a lifetime of millennia)
        /// saturate at its ends, so binary and JSON answers show the same instant.
        fn from(t: Time) -> Self {
            match t.unix_parts() {
                (seconds, _) if seconds > MAX_SECONDS => Self {
                    seconds: MAX_SECONDS,
                    nanos: 0,
                },
                (seconds, _) if seconds < MIN_SECONDS => Self {
                    seconds: MIN_SECONDS,
                    nanos: 0,
                },
                (seconds, nanos) => Self { seconds, nanos },
            }
        }
    }

    impl From<Timestamp> for Time {
        fn from(t: Timestamp) -> Self {
            Time::from_unix_parts(t.seconds, t.nanos)
        }
    }

    impl serde::Serialize for Timestamp {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&Time::from(*self).to_rfc3339())
        }
    }

    impl<'de> serde::Deserialize<'de> for Timestamp {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
            // Out of range is an error here, not a saturated instant.
            Time::parse_rfc3339(&text)
                .filter(|t| (MIN_SECONDS..=MAX_SECONDS).contains(&t.unix_parts().0))
                .map(Timestamp::from)
                .ok_or_else(|| D::Error::custom(format!("invalid RFC 3339 timestamp {text:?}")))
        }
    }
}
