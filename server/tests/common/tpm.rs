//! TPM fixtures: a demo set-up extended with TPM enrollments, a TPM manufacturer PKI issuing EK
//! certificates, and the two-request exchange of the TPM nonce challenge over TLS without a
//! client certificate.

use std::path::Path;

use base64::Engine as _;
use dps_server::init::{ids, init};
use dps_server::pki::{chain_pem, CertSpec, Issued};
use dps_server::proto::body::{TpmAttestRequest, TpmChallengeRequest};
use dps_server::proto::coap::Frame;
use dps_server::proto::stream::FramedIo;
use dps_server::tpm::soft::SoftTpm;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::server::{connect, post};

/// Id of the individual enrollment of [`setup`].
pub const INDIVIDUAL: &str = "5e1f0000-0000-4000-8000-000000000001";
/// Id of the TPM enrollment group of [`setup`].
pub const TPM_GROUP: &str = "5e1f0000-0000-4000-8000-0000000000a1";

/// A TPM manufacturer: root and intermediate CA; EK certificates are issued by the intermediate.
pub struct TpmVendor {
    pub root: Issued,
    pub int: Issued,
}

impl TpmVendor {
    pub fn new(name: &str) -> Self {
        let root = Issued::self_signed(&CertSpec::ca(format!("{name} TPM Root"))).expect("root");
        let int = root
            .issue(&CertSpec::ca(format!("{name} TPM EK CA")))
            .expect("intermediate");
        Self { root, int }
    }

    /// An EK certificate for `tpm`'s EK.
    pub fn ek_certificate(&self, tpm: &SoftTpm) -> Vec<u8> {
        self.int
            .issue_for_public_key(&CertSpec::endorsement_key("tpm-ek"), tpm.ek().spki_der())
            .expect("EK certificate")
            .to_vec()
    }
}

/// `init`'s demo set-up plus: the EK `individual_ek` (TPM2B_PUBLIC) enrolled as [`INDIVIDUAL`]
/// (owner `tpm-owner`), a TPM enrollment group [`TPM_GROUP`] over `vendor`'s chain (lead: its
/// intermediate), and challenges that live `ttl_ms`.
pub fn setup(dir: &Path, individual_ek: &[u8], vendor: &TpmVendor, ttl_ms: u64) {
    init(dir, false).expect("init");
    std::fs::write(
        dir.join("tpm-vendor.pem"),
        chain_pem([vendor.int.der(), vendor.root.der()]),
    )
    .expect("write vendor chain");
    let ek = base64::engine::general_purpose::STANDARD.encode(individual_ek);
    let hub = ids::HUB;
    let extra = format!(
        r#"
[tpm]
challenge_ttl_ms = {ttl_ms}

[[tpm_enrollment]]
id = "{INDIVIDUAL}"
name = "tpm-individual"
owner = "tpm-owner"
endorsement_key = "{ek}"
registration_id = "{reg}"
hub_ids = ["{hub}"]

[[tpm_enrollment_group]]
id = "{TPM_GROUP}"
name = "tpm-vendor"
owner = "tpm-fleet-owner"
certificate_chain = "tpm-vendor.pem"
hub_ids = ["{hub}"]
"#,
        reg = dps_server::tpm::registration_id(individual_ek)
    );
    let path = dir.join("config.toml");
    let mut text = std::fs::read_to_string(&path).expect("config");
    text.push_str(&extra);
    std::fs::write(&path, text).expect("config");
}

/// A device connection without a client certificate.
pub async fn anonymous(dir: &Path, addr: std::net::SocketAddr) -> FramedIo<TlsStream<TcpStream>> {
    let tls = connect(dir, addr, None)
        .await
        .expect("handshake without certificate");
    FramedIo::new(tls, 64 * 1024)
}

/// POST the challenge request.
pub async fn challenge(
    dev: &mut FramedIo<TlsStream<TcpStream>>,
    req: &TpmChallengeRequest,
) -> Frame {
    dev.exchange(&post(11, "/api/v1/provisioning/tpm/challenge", req))
        .await
        .expect("challenge exchange")
}

/// POST the attest request.
pub async fn attest(dev: &mut FramedIo<TlsStream<TcpStream>>, req: &TpmAttestRequest) -> Frame {
    dev.exchange(&post(12, "/api/v1/provisioning/tpm/attest", req))
        .await
        .expect("attest exchange")
}

/// Challenge and attest with a soft TPM; both must succeed (2.04). The attest answer.
pub async fn attested(
    dev: &mut FramedIo<TlsStream<TcpStream>>,
    tpm: &SoftTpm,
) -> dps_server::proto::body::TpmAttestResponse {
    let ch: dps_server::proto::body::TpmChallengeResponse = super::server::decoded(
        &challenge(dev, &tpm.challenge_request()).await,
        dps_server::proto::coap::Code::CHANGED,
    );
    super::server::decoded(
        &attest(dev, &tpm.attest_request(&ch).expect("answer")).await,
        dps_server::proto::coap::Code::CHANGED,
    )
}

/// After an error the server closes: the next read ends the stream.
pub async fn closed(dev: &mut FramedIo<TlsStream<TcpStream>>) -> bool {
    loop {
        match dev.read_frame().await {
            Ok(Some(f)) if f.code.is_signal() => continue,
            Ok(Some(_)) => return false,
            Ok(None) | Err(_) => return true,
        }
    }
}
