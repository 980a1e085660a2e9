//! The public-key floor of one provisioning: what the operations no implementation can avoid cost
//! on this machine, with the provider both sides use (aws-lc-rs, as rustls's `aws_lc_rs`
//! provider), so that a run's CPU per provisioned device can be read as a multiple of it.
//!
//! One X.509 provisioning over TLS 1.3 with a client certificate costs each side:
//! - **server**: one key exchange, three signatures (its CertificateVerify, the identity
//!   certificate, the hub's access token), three verifications (the device's CertificateVerify,
//!   its leaf certificate's signature, the CSR's signature);
//! - **device**: one key exchange, a key pair for its CSR, two signatures (its CertificateVerify,
//!   the CSR), two verifications (the server's CertificateVerify and leaf certificate).
//!
//! Verifying the rest of a chain is left out: its certificates repeat over a fleet and can be
//! verified once. Each operation is timed on the calling thread's CPU clock (another process
//! taking the core does not count), the fastest of a few rounds.

use std::time::Duration;

use aws_lc_rs::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use serde::{Deserialize, Serialize};

use super::cpu::thread_clock;
use crate::spec::{KeyExchange, KeyType};

/// One unavoidable operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// An ephemeral key pair and the shared secret (one TLS key exchange, one side).
    KeyExchange(KeyExchange),
    /// A new key pair.
    KeyGen(KeyType),
    /// One signature of a handshake transcript's size.
    Sign(KeyType),
    /// One verification.
    Verify(KeyType),
}

impl Op {
    /// Its name in the summary: `key_exchange/x25519`, `sign/p256`, ...
    pub fn name(self) -> String {
        match self {
            Op::KeyExchange(k) => format!("key_exchange/{}", kx_name(k)),
            Op::KeyGen(k) => format!("keygen/{}", key_name(k)),
            Op::Sign(k) => format!("sign/{}", key_name(k)),
            Op::Verify(k) => format!("verify/{}", key_name(k)),
        }
    }
}

fn kx_name(k: KeyExchange) -> &'static str {
    match k {
        KeyExchange::X25519 => "x25519",
        KeyExchange::P256 => "p256",
        KeyExchange::P384 => "p384",
        KeyExchange::X25519Mlkem768 | KeyExchange::Any => "x25519",
    }
}

fn key_name(k: KeyType) -> &'static str {
    match k {
        KeyType::P256 => "p256",
        KeyType::P384 => "p384",
        KeyType::Ed25519 => "ed25519",
    }
}

/// The operations of one provisioning per side, with why each is there.
#[derive(Debug, Clone)]
pub struct FloorPlan {
    /// The server's.
    pub server: Vec<(Op, &'static str)>,
    /// The device's (the generator's).
    pub generator: Vec<(Op, &'static str)>,
    /// What the plan leaves out.
    pub notes: Vec<String>,
}

/// The plan for an X.509 fleet: devices with `device_key` leaves (issued by P-256 CAs, as the
/// fleet builds them) offering `kx`; the server's certificate, identity CA, access-token key and
/// the devices' CSR keys are P-256.
pub fn plan(kx: KeyExchange, device_key: KeyType) -> FloorPlan {
    let mut notes = Vec::new();
    if matches!(kx, KeyExchange::X25519Mlkem768 | KeyExchange::Any) {
        notes.push(
            "key exchange counted as X25519 alone: the ML-KEM-768 half of the hybrid is not in the floor"
                .to_string(),
        );
    }
    let p256 = KeyType::P256;
    FloorPlan {
        server: vec![
            (Op::KeyExchange(kx), "TLS key exchange"),
            (Op::Sign(p256), "its CertificateVerify"),
            (Op::Sign(p256), "the identity certificate"),
            (Op::Sign(p256), "the hub's ES256 access token"),
            (Op::Verify(device_key), "the device's CertificateVerify"),
            (Op::Verify(p256), "the device's leaf certificate"),
            (Op::Verify(p256), "the CSR"),
        ],
        generator: vec![
            (Op::KeyExchange(kx), "TLS key exchange"),
            (Op::Sign(device_key), "its CertificateVerify"),
            (Op::KeyGen(p256), "the CSR's key pair"),
            (Op::Sign(p256), "the CSR"),
            (Op::Verify(p256), "the server's CertificateVerify"),
            (Op::Verify(p256), "the server's leaf certificate"),
        ],
        notes,
    }
}

/// The cost of one operation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OpCost {
    /// [`Op::name`].
    pub op: String,
    /// CPU time of one, µs.
    pub us: f64,
}

/// One side's floor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SideFloor {
    /// Its operations, one per entry (an operation done twice is listed twice).
    pub ops: Vec<String>,
    /// Their sum, ms of CPU per provisioned device.
    pub ms: f64,
}

/// The floor as measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Floor {
    /// The crypto provider measured.
    pub provider: String,
    /// The flow it is the floor of.
    pub flow: String,
    /// Each distinct operation's cost.
    pub costs: Vec<OpCost>,
    /// The server's floor.
    pub server: SideFloor,
    /// The generator's (the devices').
    pub generator: SideFloor,
    /// What the floor leaves out.
    pub notes: Vec<String>,
}

/// Why the floor could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum FloorError {
    /// The provider refused an operation.
    #[error("{0}: the crypto provider failed")]
    Provider(String),
}

/// Measure every operation of `plan`: `rounds` rounds of `batch` operations each, the fastest
/// round's mean.
pub fn measure(plan: &FloorPlan, rounds: usize, batch: usize) -> Result<Floor, FloorError> {
    let mut distinct: Vec<Op> = Vec::new();
    for (op, _) in plan.server.iter().chain(&plan.generator) {
        if !distinct.contains(op) {
            distinct.push(*op);
        }
    }
    let mut costs = Vec::with_capacity(distinct.len());
    for op in &distinct {
        let mut runner = Runner::new(*op)?;
        runner.once(*op)?; // warm up
        let mut best = Duration::MAX;
        for _ in 0..rounds.max(1) {
            let start = thread_clock();
            for _ in 0..batch.max(1) {
                runner.once(*op)?;
            }
            best = best.min(thread_clock().saturating_sub(start));
        }
        costs.push((*op, best.as_secs_f64() * 1e6 / batch.max(1) as f64));
    }
    let side = |ops: &[(Op, &'static str)]| SideFloor {
        ops: ops
            .iter()
            .map(|(op, why)| format!("{} ({why})", op.name()))
            .collect(),
        ms: ops
            .iter()
            .map(|(op, _)| {
                costs
                    .iter()
                    .find(|(o, _)| o == op)
                    .map_or(0.0, |(_, us)| *us)
            })
            .sum::<f64>()
            / 1000.0,
    };
    Ok(Floor {
        provider: "aws-lc-rs".into(),
        flow: "x509 over TLS 1.3 with a client certificate".into(),
        server: side(&plan.server),
        generator: side(&plan.generator),
        costs: costs
            .iter()
            .map(|(op, us)| OpCost {
                op: op.name(),
                us: *us,
            })
            .collect(),
        notes: plan.notes.clone(),
    })
}

/// Measure with the rounds a run uses (about 0.1–0.3 s in all on this kind of machine).
pub fn measure_for_run(kx: KeyExchange, device_key: KeyType) -> Result<Floor, FloorError> {
    measure(&plan(kx, device_key), 5, 48)
}

/// The message a signature covers in the floor: the size of a TLS 1.3 CertificateVerify's input.
const MESSAGE: [u8; 130] = [0x20; 130];

/// The prepared state of one operation, so a round times only the operation.
enum Runner {
    Kx {
        alg: &'static agreement::Algorithm,
        peer: Vec<u8>,
        rng: SystemRandom,
    },
    KeyGen(KeyType),
    SignEcdsa(EcdsaKeyPair, SystemRandom),
    SignEd25519(Ed25519KeyPair),
    Verify {
        alg: &'static dyn signature::VerificationAlgorithm,
        public: Vec<u8>,
        sig: Vec<u8>,
    },
}

fn failed(op: Op) -> impl Fn(aws_lc_rs::error::Unspecified) -> FloorError {
    move |_| FloorError::Provider(op.name())
}

fn ecdsa_alg(k: KeyType) -> Option<&'static signature::EcdsaSigningAlgorithm> {
    match k {
        KeyType::P256 => Some(&signature::ECDSA_P256_SHA256_ASN1_SIGNING),
        KeyType::P384 => Some(&signature::ECDSA_P384_SHA384_ASN1_SIGNING),
        KeyType::Ed25519 => None,
    }
}

impl Runner {
    fn new(op: Op) -> Result<Self, FloorError> {
        let err = failed(op);
        let rng = SystemRandom::new();
        Ok(match op {
            Op::KeyExchange(k) => {
                let alg = match k {
                    KeyExchange::P256 => &agreement::ECDH_P256,
                    KeyExchange::P384 => &agreement::ECDH_P384,
                    KeyExchange::X25519 | KeyExchange::X25519Mlkem768 | KeyExchange::Any => {
                        &agreement::X25519
                    }
                };
                let peer = EphemeralPrivateKey::generate(alg, &rng)
                    .and_then(|k| k.compute_public_key())
                    .map_err(&err)?
                    .as_ref()
                    .to_vec();
                Runner::Kx { alg, peer, rng }
            }
            Op::KeyGen(k) => Runner::KeyGen(k),
            Op::Sign(k) => match ecdsa_alg(k) {
                Some(alg) => Runner::SignEcdsa(EcdsaKeyPair::generate(alg).map_err(&err)?, rng),
                None => Runner::SignEd25519(Ed25519KeyPair::generate().map_err(&err)?),
            },
            Op::Verify(k) => {
                let (alg, public, sig): (&'static dyn signature::VerificationAlgorithm, _, _) =
                    match ecdsa_alg(k) {
                        Some(signing) => {
                            let pair = EcdsaKeyPair::generate(signing).map_err(&err)?;
                            let sig = pair.sign(&rng, &MESSAGE).map_err(&err)?;
                            let alg: &'static dyn signature::VerificationAlgorithm = match k {
                                KeyType::P384 => &signature::ECDSA_P384_SHA384_ASN1,
                                _ => &signature::ECDSA_P256_SHA256_ASN1,
                            };
                            (
                                alg,
                                pair.public_key().as_ref().to_vec(),
                                sig.as_ref().to_vec(),
                            )
                        }
                        None => {
                            let pair = Ed25519KeyPair::generate().map_err(&err)?;
                            let sig = pair.sign(&MESSAGE);
                            (
                                &signature::ED25519,
                                pair.public_key().as_ref().to_vec(),
                                sig.as_ref().to_vec(),
                            )
                        }
                    };
                Runner::Verify { alg, public, sig }
            }
        })
    }

    fn once(&mut self, op: Op) -> Result<(), FloorError> {
        let err = failed(op);
        match self {
            Runner::Kx { alg, peer, rng } => {
                let private = EphemeralPrivateKey::generate(alg, rng).map_err(&err)?;
                let public = private.compute_public_key().map_err(&err)?;
                std::hint::black_box(public.as_ref());
                agreement::agree_ephemeral(
                    private,
                    UnparsedPublicKey::new(alg, peer.as_slice()),
                    aws_lc_rs::error::Unspecified,
                    |secret| {
                        std::hint::black_box(secret);
                        Ok(())
                    },
                )
                .map_err(&err)?;
            }
            Runner::KeyGen(k) => match ecdsa_alg(*k) {
                Some(alg) => {
                    std::hint::black_box(EcdsaKeyPair::generate(alg).map_err(&err)?);
                }
                None => {
                    std::hint::black_box(Ed25519KeyPair::generate().map_err(&err)?);
                }
            },
            Runner::SignEcdsa(pair, rng) => {
                std::hint::black_box(pair.sign(rng, &MESSAGE).map_err(&err)?);
            }
            Runner::SignEd25519(pair) => {
                std::hint::black_box(pair.sign(&MESSAGE));
            }
            Runner::Verify { alg, public, sig } => {
                signature::UnparsedPublicKey::new(*alg, public.as_slice())
                    .verify(&MESSAGE, sig)
                    .map_err(&err)?;
            }
        }
        Ok(())
    }
}

/// A side's CPU per provisioned device as a multiple of its floor.
pub fn multiple(ms_per_provisioned: Option<f64>, floor_ms: f64) -> Option<f64> {
    ms_per_provisioned
        .filter(|_| floor_ms > 0.0)
        .map(|ms| ms / floor_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_of_every_plan_is_measured_and_positive() {
        for kx in [KeyExchange::X25519, KeyExchange::P256, KeyExchange::P384] {
            for key in [KeyType::P256, KeyType::P384, KeyType::Ed25519] {
                let f = measure(&plan(kx, key), 1, 2).expect("floor");
                assert_eq!(f.server.ops.len(), 7);
                assert_eq!(f.generator.ops.len(), 6);
                assert!(f.costs.iter().all(|c| c.us > 0.0), "{f:?}");
                assert!(f.server.ms > 0.0 && f.generator.ms > 0.0);
                let sum: f64 = plan(kx, key)
                    .server
                    .iter()
                    .map(|(op, _)| f.costs.iter().find(|c| c.op == op.name()).expect("cost").us)
                    .sum();
                assert!((sum / 1000.0 - f.server.ms).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn p384_costs_more_than_p256() {
        // The floor follows the operations: a P-384 verification is several times a P-256 one
        // with aws-lc-rs; a ratio inside one run, not a timing.
        let f = measure(&plan(KeyExchange::X25519, KeyType::P384), 3, 8).expect("floor");
        let us = |name: &str| f.costs.iter().find(|c| c.op == name).expect("cost").us;
        assert!(us("verify/p384") > us("verify/p256"), "{f:?}");
    }

    #[test]
    fn a_hybrid_key_exchange_is_noted() {
        assert!(!plan(KeyExchange::Any, KeyType::P256).notes.is_empty());
        assert!(plan(KeyExchange::X25519, KeyType::P256).notes.is_empty());
    }

    #[test]
    fn multiple_needs_a_figure_and_a_floor() {
        assert_eq!(multiple(Some(2.0), 0.5), Some(4.0));
        assert_eq!(multiple(None, 0.5), None);
        assert_eq!(multiple(Some(2.0), 0.0), None);
    }
}
