//! Holding: a device that got through stays connected and idle, pinging now and then (as a real
//! device keeps its cloud connection), until the executor releases every held device at once. A
//! held connection that the server drops, or a Ping that goes unanswered, fails the device.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dps_server::proto::coap::{Code, Frame};
use tokio::sync::{watch, Notify};

use super::ledger::Ledger;
use super::observed::{stream_failure, FailureKind, Observed};
use super::session::{Session, SessionError};
use crate::metrics::Phase;

/// Longest wait for a Pong.
const PONG_TIMEOUT: Duration = Duration::from_secs(10);

/// Shared by the hold executor and its devices.
#[derive(Debug)]
pub struct HoldControl {
    /// Time between a held device's Pings.
    pub ping_interval: Duration,
    release: watch::Receiver<bool>,
    expected: usize,
    settled: AtomicUsize,
    held: AtomicU64,
    peak: AtomicU64,
    all_settled: Notify,
}

/// Releases every held device.
#[derive(Debug)]
pub struct Release(watch::Sender<bool>);

impl Release {
    /// Let every held device go (each sends a last Ping first).
    pub fn release(&self) {
        let _ = self.0.send(true);
    }
}

impl HoldControl {
    /// Control for `devices` devices.
    pub fn new(devices: usize, ping_interval: Duration) -> (Arc<Self>, Release) {
        let (tx, release) = watch::channel(false);
        let control = Arc::new(Self {
            ping_interval,
            release,
            expected: devices,
            settled: AtomicUsize::new(0),
            held: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            all_settled: Notify::new(),
        });
        (control, Release(tx))
    }

    /// A device is through its flow: holding, or not (refused, failed).
    pub fn connected(&self, holding: bool) {
        if holding {
            let now = self.held.fetch_add(1, Ordering::Relaxed) + 1;
            self.peak.fetch_max(now, Ordering::Relaxed);
        }
        if self.settled.fetch_add(1, Ordering::AcqRel) + 1 == self.expected {
            self.all_settled.notify_one();
        }
    }

    /// Every device is through its flow (a device that never starts must still call
    /// [`HoldControl::connected`]).
    pub async fn all_settled(&self) {
        if self.settled.load(Ordering::Acquire) >= self.expected {
            return;
        }
        self.all_settled.notified().await;
    }

    /// Devices holding right now.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Most devices held at once.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

/// A held connection's session error: a frame the real client cannot read, else a failure of its
/// kind (an alert on a held connection is a failure too, not a refusal).
fn held_failure(step: &str, e: &SessionError) -> Observed {
    match stream_failure(step, e) {
        Observed::Rejected { alert } => {
            Observed::failed(FailureKind::Reset, format!("{step}: alert {alert}"))
        }
        other => other,
    }
}

/// Ping and wait for the Pong with the same token, answering the server's Pings meanwhile.
async fn ping(io: &mut Session, token: u64) -> Result<Duration, Observed> {
    let started = Instant::now();
    let token = token.to_be_bytes();
    io.write_frame(&Frame::ping(&token))
        .await
        .map_err(|e| held_failure("ping", &e))?;
    let wait = async {
        loop {
            match io.read_frame().await {
                Ok(Some(f)) if f.code == Code::PONG && f.token == token => return Ok(()),
                Ok(Some(f)) if f.code == Code::PING => {
                    io.write_frame(&Frame::pong(&f.token))
                        .await
                        .map_err(|e| held_failure("pong", &e))?;
                }
                Ok(Some(f)) if f.code == Code::ABORT || f.code == Code::RELEASE => {
                    return Err(Observed::failed(
                        FailureKind::Reset,
                        format!(
                            "server sent {}: {}",
                            f.code,
                            String::from_utf8_lossy(&f.payload)
                        ),
                    ))
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(Observed::failed(
                        FailureKind::Reset,
                        "server closed the held connection",
                    ))
                }
                Err(e) => return Err(held_failure("held connection", &e)),
            }
        }
    };
    match tokio::time::timeout(PONG_TIMEOUT, wait).await {
        Ok(Ok(())) => Ok(started.elapsed()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Observed::failed(
            FailureKind::Timeout,
            format!("no Pong within {PONG_TIMEOUT:?}"),
        )),
    }
}

/// Hold `io` until released; the device's outcome stays `observed` unless the connection is lost.
pub async fn hold(
    mut io: Session,
    control: &HoldControl,
    observed: Observed,
    phases: &mut Ledger,
) -> Observed {
    control.connected(true);
    let mut release = control.release.clone();
    let mut token = 1u64 << 63;
    let outcome = loop {
        tokio::select! {
            // (The guard `wait_for` returns must not live across the Ping below.)
            () = async { let _ = release.wait_for(|released| *released).await; } => {
                // A last Ping proves the connection survived the whole hold.
                break match ping(&mut io, token).await {
                    Ok(rtt) => {
                        phases.push(Phase::Ping, rtt);
                        observed
                    }
                    Err(observed) => observed,
                };
            }
            () = tokio::time::sleep(control.ping_interval) => {
                token += 1;
                match ping(&mut io, token).await {
                    Ok(rtt) => phases.push(Phase::Ping, rtt),
                    Err(observed) => break observed,
                }
            }
        }
    };
    control.held.fetch_sub(1, Ordering::Relaxed);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settles_after_the_last_device_and_tracks_the_peak() {
        let (control, _release) = HoldControl::new(3, Duration::from_secs(1));
        control.connected(true);
        control.connected(false);
        assert_eq!((control.held(), control.peak()), (1, 1));
        let waiter = {
            let c = control.clone();
            tokio::spawn(async move { c.all_settled().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        control.connected(true);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("settled")
            .expect("task");
        assert_eq!(control.peak(), 2);
    }
}
