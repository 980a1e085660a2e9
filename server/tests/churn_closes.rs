//! Devices provision while an enrollment group that shares its CAs with another is deleted and
//! re-created in a loop: every flow of the unchanged group is served, no device of either group
//! sees a bare end of stream after its handshake (a refusal is an alert or an error answer with a
//! diagnostic), and every close the server makes is counted under a reason.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::server::*;
use common::*;
use dps_server::init::init;
use dps_server::metrics::CloseReason;
use dps_server::pki::{CertSpec, Issued};
use dps_server::proto::coap::Code;
use dps_server::proto::stream::{FramedIo, StreamError};
use rustls_pki_types::CertificateDer;

/// How device flows ended, as the devices saw them.
#[derive(Debug, Default)]
struct Outcomes {
    /// Stable-group flows answered 2.05.
    stable_served: u32,
    /// Stable-group flows not served, with what they saw.
    stable_failed: Vec<String>,
    /// Churned-group flows answered 2.05.
    churned_served: u32,
    /// Churned-group flows refused with a TLS alert (in the handshake or on the first read).
    churned_alert: u32,
    /// Churned-group flows refused with an error answer carrying a diagnostic.
    churned_answered: u32,
    /// Handshake completed, then the stream ended before any answer: the silent close.
    silent: Vec<String>,
}

impl Outcomes {
    fn merge(&mut self, o: Outcomes) {
        self.stable_served += o.stable_served;
        self.stable_failed.extend(o.stable_failed);
        self.churned_served += o.churned_served;
        self.churned_alert += o.churned_alert;
        self.churned_answered += o.churned_answered;
        self.silent.extend(o.silent);
    }
}

type Device = (Vec<CertificateDer<'static>>, Issued, bool);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_silent_close_while_a_group_sharing_cas_is_churned() {
    let dir = tempfile::tempdir().expect("tmp");
    init(dir.path(), false).expect("init");
    let running = start(dir.path()).await;

    // Stable group S: [Int2, Int1, Root], lead Int2. Churned group C: [Int2b, Int1, Root], lead
    // Int2b: it shares Int1 and Root with S, so deleting it drops shared index entries.
    let m = Manufacturer::new("Churn");
    let int2b = m
        .int1
        .issue(&CertSpec::ca("Churn Intermediate CA #2b"))
        .expect("ca");
    let stable = group("stable", &[&m.int2, &m.int1, &m.root]);
    let churned = group("churned", &[&int2b, &m.int1, &m.root]);
    let arena = running.server.arena().clone();
    arena.upsert(stable).expect("stable group");
    arena.upsert(churned.clone()).expect("churned group");

    let devices: Vec<Device> = (0..32)
        .map(|i| {
            let of_stable = i % 2 == 0;
            let issuer = if of_stable { &m.int2 } else { &int2b };
            let d = issuer
                .issue(&CertSpec::device(format!("CHURN-SN-{i}")))
                .expect("device");
            let presented = if i % 4 < 2 {
                chain(&[&d, issuer])
            } else {
                chain(&[&d, issuer, &m.int1])
            };
            (presented, d, of_stable)
        })
        .collect();

    let churning = Arc::new(AtomicBool::new(true));
    let churner = {
        let churning = churning.clone();
        let arena = arena.clone();
        std::thread::spawn(move || {
            let mut rounds = 0u32;
            while churning.load(Ordering::Relaxed) {
                arena.remove(&churned.id);
                arena.upsert(churned.clone()).expect("re-create");
                rounds += 1;
            }
            rounds
        })
    };

    let flows = 600usize;
    let concurrency = 16usize;
    let devices = Arc::new(devices);
    let dir_path = Arc::new(dir.path().to_owned());
    let addr = running.addr;
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let devices = devices.clone();
            let dir_path = dir_path.clone();
            tokio::spawn(async move {
                let mut o = Outcomes::default();
                for n in (t..flows).step_by(concurrency) {
                    let (chain, dev, of_stable) = &devices[n % devices.len()];
                    flow(&dir_path, addr, chain, dev, *of_stable, &mut o).await;
                }
                o
            })
        })
        .collect();
    let mut outcomes = Outcomes::default();
    for task in tasks {
        outcomes.merge(task.await.expect("flows"));
    }
    churning.store(false, Ordering::Relaxed);
    let rounds = churner.join().expect("churner");
    assert!(rounds > 0, "the group was churned");
    assert!(
        outcomes.silent.is_empty(),
        "silent closes: {:?}",
        outcomes.silent
    );
    assert!(
        outcomes.stable_failed.is_empty(),
        "{rounds} churn rounds; stable flows not served: {:?}",
        outcomes.stable_failed
    );
    assert_eq!(outcomes.stable_served as usize, flows / 2);

    // The server's counters add up: one close per flow, each under the reason the device saw.
    let closes = running.server.metrics().closes();
    for _ in 0..200 {
        if closes.total() >= flows as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let count = |r| closes.get(r);
    assert_eq!(closes.total(), flows as u64, "{outcomes:?}");
    assert_eq!(
        count(CloseReason::DeviceClosed),
        u64::from(outcomes.stable_served + outcomes.churned_served),
        "{outcomes:?}"
    );
    assert_eq!(
        count(CloseReason::Rejected) + count(CloseReason::GroupRemoved),
        u64::from(outcomes.churned_alert + outcomes.churned_answered),
        "{outcomes:?}"
    );
    running.stop().await;
}

/// One device flow: handshake, GET time, and what the device saw.
async fn flow(
    dir: &std::path::Path,
    addr: std::net::SocketAddr,
    chain: &[CertificateDer<'static>],
    dev: &Issued,
    of_stable: bool,
    o: &mut Outcomes,
) {
    let auth = (chain.to_vec(), dev.key_der());
    let seen = match connect(dir, addr, Some(auth)).await {
        Err(e) => Err(format!("handshake: {e}")),
        Ok(tls) => {
            let mut io = FramedIo::new(tls, 64 * 1024);
            match io
                .exchange(&request(Code::GET, 1, "/x.plgd.dev/time"))
                .await
            {
                Ok(answer) => Ok(answer),
                Err(StreamError::Truncated(0)) => {
                    o.silent
                        .push(format!("{} of stable: {of_stable}", "end of stream"));
                    return;
                }
                Err(e) => Err(e.to_string()),
            }
        }
    };
    match (of_stable, seen) {
        (true, Ok(a)) if a.code == Code::CONTENT => o.stable_served += 1,
        (true, Ok(a)) => o.stable_failed.push(format!(
            "{} {}",
            a.code,
            String::from_utf8_lossy(&a.payload)
        )),
        (true, Err(e)) => o.stable_failed.push(e),
        (false, Ok(a)) if a.code == Code::CONTENT => o.churned_served += 1,
        (false, Ok(a)) if a.code.is_error() && !a.payload.is_empty() => o.churned_answered += 1,
        (false, Ok(a)) => o
            .silent
            .push(format!("answered {} without diagnostic", a.code)),
        (false, Err(e)) if e.contains("alert") => o.churned_alert += 1,
        (false, Err(e)) => o.silent.push(e),
    }
}
