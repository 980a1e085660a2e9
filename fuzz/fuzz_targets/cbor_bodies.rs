//! Every request body of the device protocol, decoded from arbitrary bytes in each accepted
//! content format: never panics; whatever decodes re-encodes and decodes to the same value.
#![no_main]

use dps_server::proto::body::{
    self, CloudConfigurationRequest, ContentFormat, CredentialsRequest, TpmAttestRequest,
    TpmChallengeRequest,
};
use libfuzzer_sys::fuzz_target;
use serde::{de::DeserializeOwned, Serialize};

fn round_trip<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(data: &[u8]) {
    for format in [
        ContentFormat::OcfCbor,
        ContentFormat::Cbor,
        ContentFormat::Json,
    ] {
        if let Ok(value) = body::decode::<T>(format, data) {
            let bytes = body::encode(format, &value).expect("a decoded body re-encodes");
            let again: T = body::decode(format, &bytes).expect("a re-encoded body decodes");
            assert_eq!(again, value);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<CloudConfigurationRequest>(data);
    round_trip::<CredentialsRequest>(data);
    round_trip::<TpmChallengeRequest>(data);
    round_trip::<TpmAttestRequest>(data);
    // The connection loop decodes by the request's Content-Format number.
    let _ =
        body::decode_as::<CredentialsRequest>(u16::from(data.first().copied().unwrap_or(0)), data);
});
