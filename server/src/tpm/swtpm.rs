//! A real TPM for tests and the load generator: one `swtpm` process (Stefan Berger's software
//! TPM 2.0) driven through tss-esapi (the TSS 2.0 ESAPI of tpm2-tss). Behind the `tpm-sim`
//! feature: it needs `swtpm` on the PATH and libtss2 at build time.
//!
//! [`Swtpm::start`] runs a fresh swtpm on free loopback ports with its own state directory and
//! kills it when dropped; [`SwtpmDevice`] creates the default EK and an AK in it and answers the
//! DPS challenge with TPM2_ActivateCredential and TPM2_Quote, like [`super::soft::SoftTpm`].

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use tss_esapi::abstraction::{ak, ek, AsymmetricAlgorithmSelection, KeyCustomization};
use tss_esapi::attributes::SessionAttributesBuilder;
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{AuthHandle, KeyHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, SignatureSchemeAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::PolicySession;
use tss_esapi::structures::{
    Data, Digest, EccParameter, EccPoint, EncryptedSecret, IdObject, Name, PcrSelectionListBuilder,
    PcrSlot, PublicBuilder, PublicKeyRsa, SignatureScheme, SymmetricDefinition,
};
use tss_esapi::tcti_ldr::NetworkTPMConfig;
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::{Context, TctiNameConf};

use super::soft::EkKind;
use crate::proto::body::{TpmAttestRequest, TpmChallengeRequest, TpmChallengeResponse};

/// Why swtpm or the TSS failed.
#[derive(Debug, thiserror::Error)]
pub enum SwtpmError {
    /// The swtpm process could not be started or did not listen in time.
    #[error("swtpm: {0}")]
    Process(&'static str),
    /// The OS refused what starting swtpm needs (its state directory, the process).
    #[error("swtpm: {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A TSS call failed.
    #[error("TSS: {0}")]
    Tss(#[from] tss_esapi::Error),
    /// A blob from the wire is not a TPM2B of the expected kind.
    #[error("blob: {0}")]
    Blob(&'static str),
}

/// A running swtpm process; killed (and its state removed) on drop.
#[derive(Debug)]
pub struct Swtpm {
    child: Child,
    port: u16,
    state: PathBuf,
}

fn free_port_pair() -> Option<u16> {
    // Below Linux's ephemeral range (32768 and up): a port taken from it could meanwhile become
    // the source port of some outgoing connection (a load run makes thousands) before swtpm binds.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let base = 20_000 + (std::process::id() % 6_000) * 2;
    for _ in 0..200 {
        let step = NEXT.fetch_add(2, std::sync::atomic::Ordering::Relaxed);
        let port = u16::try_from(20_000 + (base - 20_000 + step) % 12_000).ok()?;
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 1) {
            return Some(port);
        }
    }
    None
}

impl Swtpm {
    /// Start a fresh swtpm (TPM 2.0, manufactured and started up) on free loopback ports.
    pub fn start() -> Result<Self, SwtpmError> {
        let port = free_port_pair().ok_or(SwtpmError::Process("no free port"))?;
        let state = std::env::temp_dir().join(format!(
            "dps-swtpm-{}-{port}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        std::fs::create_dir_all(&state).map_err(|source| SwtpmError::Io {
            what: "cannot create its state directory",
            source,
        })?;
        let child = Command::new("swtpm")
            .arg("socket")
            .arg("--tpm2")
            .arg("--server")
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
            .arg("--tpmstate")
            .arg(format!("dir={}", state.display()))
            .arg("--flags")
            .arg("not-need-init,startup-clear")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| SwtpmError::Io {
                what: "cannot run swtpm",
                source,
            })?;
        let me = Self { child, port, state };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(SwtpmError::Process("swtpm did not listen within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(me)
    }

    /// The TCTI configuration string (`swtpm:host=127.0.0.1,port=P`), e.g. for tpm2-tools' `-T`.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// An ESAPI context connected to this TPM.
    pub fn context(&self) -> Result<Context, SwtpmError> {
        let config = NetworkTPMConfig::from_str(&format!("host=127.0.0.1,port={}", self.port))?;
        Ok(Context::new(TctiNameConf::Swtpm(config))?)
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// A TPM2B around `content`.
fn tpm2b(content: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(content.len())
        .unwrap_or(u16::MAX)
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(content);
    out
}

/// The content of a TPM2B (size checked).
fn tpm2b_content(b: &[u8]) -> Result<&[u8], SwtpmError> {
    let (size, rest) = b
        .split_at_checked(2)
        .ok_or(SwtpmError::Blob("short TPM2B"))?;
    if usize::from(u16::from_be_bytes([size[0], size[1]])) != rest.len() {
        return Err(SwtpmError::Blob("TPM2B size does not match"));
    }
    Ok(rest)
}

/// A device on a real TPM: the default EK (primary in the endorsement hierarchy) and an AK under
/// it, both created by the TPM.
pub struct SwtpmDevice {
    ctx: Context,
    ek: KeyHandle,
    ak: KeyHandle,
    ek_public: Vec<u8>,
    ak_public: Vec<u8>,
    ak_name: Vec<u8>,
}

impl std::fmt::Debug for SwtpmDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwtpmDevice")
            .field("ak_name", &self.ak_name)
            .finish()
    }
}

/// The default EK template with `seed` in its unique field (the rest zero, as the template has
/// it): the TPM derives another primary key from the same endorsement seed.
enum EkUnique {
    Ecc(EccPoint),
    Rsa(PublicKeyRsa),
}

impl EkUnique {
    fn new(kind: EkKind, seed: &[u8; 32]) -> Result<Self, SwtpmError> {
        Ok(match kind {
            EkKind::EccP256 => EkUnique::Ecc(EccPoint::new(
                EccParameter::try_from(seed.to_vec())?,
                EccParameter::try_from(vec![0u8; 32])?,
            )),
            EkKind::Rsa2048 => {
                let mut unique = seed.to_vec();
                unique.resize(256, 0);
                EkUnique::Rsa(PublicKeyRsa::try_from(unique)?)
            }
        })
    }
}

impl KeyCustomization for EkUnique {
    fn template(&self, builder: PublicBuilder) -> PublicBuilder {
        match self {
            EkUnique::Ecc(point) => builder.with_ecc_unique_identifier(point.clone()),
            EkUnique::Rsa(unique) => builder.with_rsa_unique_identifier(unique.clone()),
        }
    }
}

impl SwtpmDevice {
    /// Create the EK (default template of `kind`) and an AK of the same algorithm (ECDSA P-256 or
    /// RSASSA 2048, SHA-256) in the TPM behind `ctx`.
    pub fn create(ctx: Context, kind: EkKind) -> Result<Self, SwtpmError> {
        Self::create_with_ek_seed(ctx, kind, None)
    }

    /// [`SwtpmDevice::create`], with `ek_seed` (if given) in the EK template's unique field. The
    /// EK keeps the default template's attributes, policy and parameters, but one TPM then holds
    /// a distinct EK per seed, and re-creates the same EK for the same seed (primary keys are
    /// derived from the endorsement seed and the template): how one swtpm plays many devices.
    pub fn create_with_ek_seed(
        mut ctx: Context,
        kind: EkKind,
        ek_seed: Option<&[u8; 32]>,
    ) -> Result<Self, SwtpmError> {
        let (ek_alg, sig) = match kind {
            EkKind::Rsa2048 => (
                AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
                SignatureSchemeAlgorithm::RsaSsa,
            ),
            EkKind::EccP256 => (
                AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
                SignatureSchemeAlgorithm::EcDsa,
            ),
        };
        let ek = match ek_seed {
            None => ek::create_ek_object_2(&mut ctx, ek_alg, None)?,
            Some(seed) => ek::create_ek_object_2(&mut ctx, ek_alg, EkUnique::new(kind, seed)?)?,
        };
        let created = ak::create_ak_2(
            &mut ctx,
            ek,
            HashingAlgorithm::Sha256,
            ek_alg,
            sig,
            None,
            None,
        )?;
        let ak = ak::load_ak(&mut ctx, ek, None, created.out_private, created.out_public)?;
        let (ek_pub, _, _) = ctx.read_public(ek)?;
        let (ak_pub, ak_name, _) = ctx.read_public(ak)?;
        Ok(Self {
            ek_public: tpm2b(&ek_pub.marshall()?),
            ak_public: tpm2b(&ak_pub.marshall()?),
            ak_name: ak_name.value().to_vec(),
            ctx,
            ek,
            ak,
        })
    }

    /// The EK's marshalled TPM2B_PUBLIC.
    pub fn ek_public(&self) -> &[u8] {
        &self.ek_public
    }

    /// The AK's marshalled TPM2B_PUBLIC.
    pub fn ak_public(&self) -> &[u8] {
        &self.ak_public
    }

    /// The AK's name as the TPM computes it.
    pub fn ak_name(&self) -> &[u8] {
        &self.ak_name
    }

    /// TPM2_ActivateCredential of `credential_blob` (TPM2B_ID_OBJECT) and `encrypted_secret`
    /// (TPM2B_ENCRYPTED_SECRET) with the EK, for the AK.
    pub fn activate_credential(
        &mut self,
        credential_blob: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, SwtpmError> {
        let blob = IdObject::try_from(tpm2b_content(credential_blob)?.to_vec())?;
        let secret = EncryptedSecret::try_from(tpm2b_content(encrypted_secret)?.to_vec())?;
        let (attrs, mask) = SessionAttributesBuilder::new().build();
        let hmac = self
            .ctx
            .start_auth_session(
                None,
                None,
                None,
                SessionType::Hmac,
                SymmetricDefinition::AES_128_CFB,
                HashingAlgorithm::Sha256,
            )?
            .ok_or(SwtpmError::Blob("no HMAC session"))?;
        self.ctx.tr_sess_set_attributes(hmac, attrs, mask)?;
        let policy = self
            .ctx
            .start_auth_session(
                None,
                None,
                None,
                SessionType::Policy,
                SymmetricDefinition::AES_128_CFB,
                HashingAlgorithm::Sha256,
            )?
            .ok_or(SwtpmError::Blob("no policy session"))?;
        self.ctx.tr_sess_set_attributes(policy, attrs, mask)?;
        self.ctx.execute_with_session(Some(hmac), |ctx| {
            ctx.policy_secret(
                PolicySession::try_from(policy)?,
                AuthHandle::Endorsement,
                Default::default(),
                Default::default(),
                Default::default(),
                None,
            )
        })?;
        self.ctx.set_sessions((Some(hmac), Some(policy), None));
        let result = self.ctx.activate_credential(self.ak, self.ek, blob, secret);
        self.ctx.clear_sessions();
        let _ = self.ctx.flush_context(SessionHandle::from(hmac).into());
        let _ = self.ctx.flush_context(SessionHandle::from(policy).into());
        Ok(result?.value().to_vec())
    }

    /// TPM2_Quote of PCR 0 (SHA-256 bank) by the AK over `nonce`: (TPMS_ATTEST, TPMT_SIGNATURE).
    pub fn quote(&mut self, nonce: &[u8]) -> Result<(Vec<u8>, Vec<u8>), SwtpmError> {
        let pcrs = PcrSelectionListBuilder::new()
            .with_selection(HashingAlgorithm::Sha256, &[PcrSlot::Slot0])
            .build()?;
        let data = Data::try_from(nonce.to_vec())?;
        let ak = self.ak;
        let (attest, signature) = self.ctx.execute_with_nullauth_session(|ctx| {
            ctx.quote(ak, data, SignatureScheme::Null, pcrs)
        })?;
        Ok((attest.marshall()?, signature.marshall()?))
    }

    /// TPM2_MakeCredential by this TPM for `object_name`, protected to the EK in `ek_public`
    /// (TPM2B_PUBLIC, loaded as an external public key): (TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET).
    pub fn make_credential_for(
        &mut self,
        ek_public: &[u8],
        object_name: &[u8],
        credential: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), SwtpmError> {
        let public = tss_esapi::structures::Public::unmarshall(tpm2b_content(ek_public)?)?;
        let handle = self
            .ctx
            .execute_without_session(|ctx| ctx.load_external_public(public, Hierarchy::Null))?;
        let made = self.ctx.execute_without_session(|ctx| {
            ctx.make_credential(
                handle,
                Digest::try_from(credential.to_vec())?,
                Name::try_from(object_name.to_vec())?,
            )
        });
        let _ = self.ctx.flush_context(handle.into());
        let (blob, secret) = made?;
        Ok((tpm2b(blob.value()), tpm2b(secret.value())))
    }

    /// The body of `POST /api/v1/provisioning/tpm/challenge` (no EK certificate).
    pub fn challenge_request(&self) -> TpmChallengeRequest {
        TpmChallengeRequest {
            ek_public: self.ek_public.clone(),
            ek_certificate: None,
            ek_chain: Vec::new(),
            ak_public: self.ak_public.clone(),
        }
    }

    /// The body of `POST /api/v1/provisioning/tpm/attest` answering `challenge`.
    pub fn attest_request(
        &mut self,
        challenge: &TpmChallengeResponse,
    ) -> Result<TpmAttestRequest, SwtpmError> {
        let secret =
            self.activate_credential(&challenge.credential_blob, &challenge.encrypted_secret)?;
        let (quote, signature) = self.quote(&challenge.nonce)?;
        Ok(TpmAttestRequest {
            secret,
            quote,
            signature,
        })
    }
}
