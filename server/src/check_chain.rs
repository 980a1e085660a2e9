//! `dps-server check-chain`: authentication and selection exactly as the server runs them, on a
//! chain from a file, so operators can test a device chain against a config without TLS.

use std::path::{Path, PathBuf};

use rustls_pki_types::UnixTime;
use serde::Serialize;

use crate::config::{Config, ConfigError};
use crate::enrollment::{certs_from_pem, Arena, GroupError, Verdict};

/// Bad input: the run could not judge the chain at all (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum CheckChainError {
    /// The config is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The groups of the config do not fit together (e.g. a shared lead certificate).
    #[error(transparent)]
    Groups(#[from] GroupError),
    /// The chain file is unreadable or holds no PEM certificate.
    #[error("{path}: {reason}")]
    Chain {
        /// The chain file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The JSON line `check-chain` prints; field order is part of the interface.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum CheckOutput {
    /// `{"verdict":"accepted","group":"<id>","common_name":"<cn>"}`
    Accepted {
        /// Selected group id.
        group: String,
        /// Device CN.
        common_name: String,
    },
    /// `{"verdict":"rejected","reason":"<reason>"}`
    Rejected {
        /// One of the stable reason strings.
        reason: String,
    },
}

impl From<&Verdict> for CheckOutput {
    fn from(v: &Verdict) -> Self {
        match v {
            Verdict::Accepted(a) => CheckOutput::Accepted {
                group: a.group.to_string(),
                common_name: a.common_name.clone(),
            },
            Verdict::Rejected(r) => CheckOutput::Rejected {
                reason: r.as_str().to_owned(),
            },
        }
    }
}

impl CheckOutput {
    /// The process exit code the CLI uses: 0 accepted, 3 rejected.
    pub fn exit_code(&self) -> i32 {
        match self {
            CheckOutput::Accepted { .. } => 0,
            CheckOutput::Rejected { .. } => 3,
        }
    }
}

/// Load the config and the chain, and judge the chain at `at`.
pub fn check_chain(config: &Path, chain: &Path, at: UnixTime) -> Result<Verdict, CheckChainError> {
    let config = Config::load(config)?;
    let arena = Arena::with_groups(config.groups)?;
    let pem = std::fs::read(chain).map_err(|e| CheckChainError::Chain {
        path: chain.to_owned(),
        reason: e.to_string(),
    })?;
    let certs = certs_from_pem(&pem).map_err(|e| CheckChainError::Chain {
        path: chain.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(arena.load().authenticate(&certs, at))
}
