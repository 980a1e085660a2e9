//! The swtpm processes of a run (feature `tpm-sim`): a small pool, one process per worker, started
//! before the devices run and killed at the end.
//!
//! swtpm serves one client at a time, and an ESAPI context is a blocking connection, so each
//! swtpm has its own thread that owns the process, its connection and the TPM objects of the
//! device it serves. A `tpm_swtpm` device always runs on the same swtpm (its fleet index modulo
//! the pool size) and holds it from creating its keys until it has answered its challenge; devices
//! of one swtpm are served one after the other.
//!
//! Each device's EK is the default ECC P-256 EK template with the device's seed in its unique
//! field ([`SwtpmDevice::create_with_ek_seed`]): one swtpm holds a distinct EK per device, and
//! re-creates the same EK for the same seed, so the EKs can be read and enrolled before the run.
//! The AK is created by the TPM each time. ECC only: RSA primary keys take swtpm seconds.

use std::sync::mpsc;
use std::sync::Mutex;
use std::thread::JoinHandle;

use dps_server::proto::body::{TpmAttestRequest, TpmChallengeRequest, TpmChallengeResponse};
use dps_server::tpm::soft::EkKind;
use dps_server::tpm::swtpm::{Swtpm, SwtpmDevice};
use tokio::sync::oneshot;

/// What a swtpm's thread is asked to do.
enum Job {
    /// Create the device of this EK seed (EK and a fresh AK) and return its challenge request.
    Create {
        seed: [u8; 32],
        reply: oneshot::Sender<Result<TpmChallengeRequest, String>>,
    },
    /// Answer the challenge with the current device: ActivateCredential and Quote.
    Answer {
        challenge: Box<TpmChallengeResponse>,
        reply: oneshot::Sender<Result<TpmAttestRequest, String>>,
    },
    /// Drop the current device (its objects are flushed from the TPM).
    Release,
    /// The EK (TPM2B_PUBLIC) of this seed, for enrolling it.
    EkPublic {
        seed: [u8; 32],
        reply: oneshot::Sender<Result<Vec<u8>, String>>,
    },
    /// End the thread, killing the swtpm.
    Stop,
}

struct Worker {
    jobs: Mutex<mpsc::Sender<Job>>,
    busy: tokio::sync::Mutex<()>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Worker {
    fn send(&self, job: Job) -> Result<(), String> {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .map_err(|_| "the swtpm thread has ended".to_owned())
    }
}

/// The run's swtpm processes.
pub struct SwtpmPool {
    workers: Vec<Worker>,
}

impl std::fmt::Debug for SwtpmPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwtpmPool")
            .field("processes", &self.workers.len())
            .finish()
    }
}

fn create(swtpm: &Swtpm, seed: &[u8; 32]) -> Result<SwtpmDevice, String> {
    let once = || {
        let ctx = swtpm.context().map_err(|e| e.to_string())?;
        SwtpmDevice::create_with_ek_seed(ctx, EkKind::EccP256, Some(seed))
            .map_err(|e| e.to_string())
    };
    // swtpm serves one client at a time: a connection opened while it is still closing the
    // previous one can get a garbled first response. One more try on a fresh connection.
    once().or_else(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        once()
    })
}

/// A swtpm's thread: starts the process, serves jobs until told to stop (or every sender is gone),
/// then drops the process (which kills it).
fn serve(jobs: mpsc::Receiver<Job>, ready: oneshot::Sender<Result<(), String>>) {
    let swtpm = match Swtpm::start() {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut current: Option<SwtpmDevice> = None;
    for job in jobs {
        match job {
            Job::Create { seed, reply } => {
                current = None; // its connection closes before the next one opens
                let made = create(&swtpm, &seed).map(|d| {
                    let req = d.challenge_request();
                    current = Some(d);
                    req
                });
                let _ = reply.send(made);
            }
            Job::Answer { challenge, reply } => {
                let answer = match current.as_mut() {
                    Some(d) => d.attest_request(&challenge).map_err(|e| e.to_string()),
                    None => Err("no TPM device on this swtpm".into()),
                };
                let _ = reply.send(answer);
            }
            Job::Release => current = None,
            Job::EkPublic { seed, reply } => {
                current = None;
                let _ = reply.send(create(&swtpm, &seed).map(|d| d.ek_public().to_vec()));
            }
            Job::Stop => break,
        }
    }
    drop(current);
    drop(swtpm);
}

impl SwtpmPool {
    /// Start `n` swtpm processes (at least one), each with its thread.
    pub async fn start(n: usize) -> Result<Self, String> {
        let mut workers = Vec::new();
        let mut pending = Vec::new();
        for i in 0..n.max(1) {
            let (tx, rx) = mpsc::channel();
            let (ready_tx, ready_rx) = oneshot::channel();
            let thread = std::thread::Builder::new()
                .name(format!("swtpm-{i}"))
                .spawn(move || serve(rx, ready_tx))
                .map_err(|e| format!("cannot start a swtpm thread: {e}"))?;
            workers.push(Worker {
                jobs: Mutex::new(tx),
                busy: tokio::sync::Mutex::new(()),
                thread: Mutex::new(Some(thread)),
            });
            pending.push(ready_rx);
        }
        let pool = Self { workers };
        for ready in pending {
            match ready.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    pool.shutdown().await;
                    return Err(e);
                }
                Err(_) => {
                    pool.shutdown().await;
                    return Err("a swtpm thread ended before its swtpm ran".into());
                }
            }
        }
        Ok(pool)
    }

    /// Number of swtpm processes.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// No process (never the case for a started pool).
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    fn worker(&self, index: usize) -> Result<&Worker, String> {
        self.workers
            .get(index % self.workers.len().max(1))
            .ok_or_else(|| "empty swtpm pool".to_owned())
    }

    /// The EK (TPM2B_PUBLIC) device `index` with `seed` will have, for enrolling it.
    pub async fn ek_public(&self, index: usize, seed: [u8; 32]) -> Result<Vec<u8>, String> {
        let worker = self.worker(index)?;
        let _busy = worker.busy.lock().await;
        let (reply, answer) = oneshot::channel();
        worker.send(Job::EkPublic { seed, reply })?;
        answer
            .await
            .map_err(|_| "the swtpm thread has ended".to_owned())?
    }

    /// Hold device `index`'s swtpm (waiting while another device of it is served).
    pub async fn lease(&self, index: usize) -> Result<Lease<'_>, String> {
        let worker = self.worker(index)?;
        let busy = worker.busy.lock().await;
        Ok(Lease {
            worker,
            _busy: busy,
        })
    }

    /// Stop every swtpm and wait until their processes are gone.
    pub async fn shutdown(&self) {
        let threads: Vec<JoinHandle<()>> = self
            .workers
            .iter()
            .filter_map(|w| {
                let _ = w.send(Job::Stop);
                w.thread.lock().unwrap_or_else(|p| p.into_inner()).take()
            })
            .collect();
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

impl Drop for SwtpmPool {
    fn drop(&mut self) {
        // Without a shutdown (an aborted run): the threads stop and kill their processes.
        for w in &self.workers {
            let _ = w.send(Job::Stop);
        }
    }
}

/// One device's hold on its swtpm; released (and its TPM objects flushed) when dropped.
pub struct Lease<'a> {
    worker: &'a Worker,
    _busy: tokio::sync::MutexGuard<'a, ()>,
}

impl Lease<'_> {
    /// Create the device's EK (from `seed`) and a fresh AK; its challenge request.
    pub async fn create(&mut self, seed: [u8; 32]) -> Result<TpmChallengeRequest, String> {
        let (reply, answer) = oneshot::channel();
        self.worker.send(Job::Create { seed, reply })?;
        answer
            .await
            .map_err(|_| "the swtpm thread has ended".to_owned())?
    }

    /// TPM2_ActivateCredential and TPM2_Quote for `challenge`: the attest request.
    pub async fn answer(
        &mut self,
        challenge: TpmChallengeResponse,
    ) -> Result<TpmAttestRequest, String> {
        let (reply, answer) = oneshot::channel();
        self.worker.send(Job::Answer {
            challenge: Box::new(challenge),
            reply,
        })?;
        answer
            .await
            .map_err(|_| "the swtpm thread has ended".to_owned())?
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let _ = self.worker.send(Job::Release);
    }
}
