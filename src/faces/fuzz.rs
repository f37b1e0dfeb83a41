//! Property tests over the request decoders and the wire → domain conversion: arbitrary
//! bytes and arbitrary JSON, decoded as any request of either package version on any codec
//! and then converted and validated, never panic. (They may of course be rejected.)

use proptest::prelude::*;
use serde_json::Value;

use super::pb::zitadel::session::{v2, v2beta};
use super::rpc::{Rpc, Visit};

/// Decodes `bytes` as protobuf and as JSON into every request type of every service.
fn decode_all(bytes: &[u8]) {
    struct Decode<'a>(&'a [u8]);
    impl Visit for Decode<'_> {
        fn rpc<R: Rpc>(&mut self) {
            let _ = <R::Request as prost::Message>::decode(self.0);
            let _ = serde_json::from_slice::<R::Request>(self.0);
        }
    }
    super::visit_rpcs(&mut Decode(bytes));
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[\\PC]{0,24}".prop_map(Value::String),
        prop_oneof![
            Just("3600s"),
            Just("-1s"),
            Just("1e400s"),
            Just("2025-01-01T00:00:00Z"),
            Just("AP8=")
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    let keys = prop_oneof![
        Just("checks"),
        Just("user"),
        Just("userId"),
        Just("loginName"),
        Just("password"),
        Just("metadata"),
        Just("lifetime"),
        Just("userAgent"),
        Just("header"),
        Just("values"),
        Just("sessionId"),
        Just("sessionToken"),
        Just("query"),
        Just("queries"),
        Just("limit"),
        Just("offset"),
        Just("idsQuery"),
        Just("ids"),
        Just("creationDateQuery"),
        Just("method"),
        Just("creatorQuery"),
        Just("expirationDateQuery"),
        Just("sortingColumn"),
        Just("webAuthN"),
        Just("challenges"),
        Just("otpEmail"),
        Just("sendCode"),
        Just("x"),
    ];
    leaf.prop_recursive(6, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..6).prop_map(|m| Value::Object(
                m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}

/// Converts a decoded request the way the API would, without a store: every validation
/// and conversion of `session_api` runs.
fn convert(request: v2::CreateSessionRequest) {
    let _ = super::convert::validate_create(request);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_a_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics_a_decoder_or_the_conversion(value in json_value()) {
        let bytes = serde_json::to_vec(&value).unwrap_or_default();
        decode_all(&bytes);
        if let Ok(request) = serde_json::from_value::<v2::CreateSessionRequest>(value.clone()) {
            convert(request);
        }
        if let Ok(request) = serde_json::from_value::<v2::ListSessionsRequest>(value.clone()) {
            let _ = super::convert::validate_list(request);
        }
        if let Ok(request) = serde_json::from_value::<v2beta::SetSessionRequest>(value) {
            let _ = super::convert::validate_set(prost::Message::encode_to_vec(&request).as_slice());
        }
    }
}
