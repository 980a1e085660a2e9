//! The run's swtpm pool for `tpm_swtpm` devices (build feature `tpm-sim`), and their EKs
//! enrolled on the target.

use std::sync::Arc;

use crate::device::swtpm::SwtpmPool;
use crate::fleet::tpm::{self, TpmDevice, TpmKeys};
use crate::fleet::{Credentials, Fleet};
use crate::scenario::ExecutorSpec;
use crate::target::{Target, TargetError};

/// Why the swtpm devices could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum SwtpmError {
    /// A swtpm process could not be started or read (the pool reports in text).
    #[error("swtpm: {0}")]
    Swtpm(String),
    /// A read of an EK did not finish.
    #[error("swtpm: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// The target refused the EKs' enrollments.
    #[error("enrolling the swtpm EKs: {0}")]
    Enroll(#[from] TargetError),
}

/// Most swtpm processes a run starts.
const MAX_PROCESSES: usize = 4;

/// One swtpm per worker, at most [`MAX_PROCESSES`], no more than there are swtpm devices.
fn processes(executor: &ExecutorSpec, devices: usize) -> usize {
    let workers = match executor {
        ExecutorSpec::ClosedLoop { concurrency } => *concurrency,
        ExecutorSpec::Hold {
            connect_concurrency,
            ..
        } => *connect_concurrency,
        ExecutorSpec::ConstantArrivalRate { max_in_flight, .. }
        | ExecutorSpec::RampingArrivalRate { max_in_flight, .. } => {
            if *max_in_flight == 0 {
                MAX_PROCESSES
            } else {
                *max_in_flight
            }
        }
    };
    workers.clamp(1, MAX_PROCESSES).min(devices.max(1))
}

/// Start the pool if the fleet has `tpm_swtpm` devices, read each one's EK in its swtpm and
/// enroll it individually on `target` (group `tpm-swtpm`).
pub async fn prepare(
    fleet: &Fleet,
    executor: &ExecutorSpec,
    target: &mut Target,
) -> Result<Option<Arc<SwtpmPool>>, SwtpmError> {
    let devices: Vec<(usize, String, [u8; 32])> = fleet
        .devices
        .iter()
        .filter_map(|d| match &d.credentials {
            Credentials::Tpm(TpmDevice {
                keys: TpmKeys::Swtpm { ek_seed },
                ..
            }) => Some((d.index, d.common_name.clone(), *ek_seed)),
            _ => None,
        })
        .collect();
    if devices.is_empty() {
        return Ok(None);
    }
    let pool = Arc::new(
        SwtpmPool::start(processes(executor, devices.len()))
            .await
            .map_err(SwtpmError::Swtpm)?,
    );
    let mut reads = tokio::task::JoinSet::new();
    for (index, cn, seed) in devices {
        let pool = pool.clone();
        reads.spawn(async move {
            let ek = pool.ek_public(index, seed).await?;
            let id = uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_OID,
                format!("dpsbench/swtpm/{}", dps_server::tpm::registration_id(&ek)).as_bytes(),
            );
            Ok::<_, String>((index, tpm::enrollment(id.to_string(), &cn, tpm::SWTPM, &ek)))
        });
    }
    let mut enrollments = Vec::new();
    while let Some(read) = reads.join_next().await {
        enrollments.push(read?.map_err(SwtpmError::Swtpm)?);
    }
    enrollments.sort_by_key(|(index, _)| *index);
    let enrollments: Vec<_> = enrollments.into_iter().map(|(_, e)| e).collect();
    target.enroll_tpm(&enrollments).await?;
    Ok(Some(pool))
}
