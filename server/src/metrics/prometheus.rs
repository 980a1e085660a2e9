//! `GET /metrics`: every counter, gauge and histogram of [`Metrics`] in the Prometheus text
//! exposition format 0.0.4, one family after another in a fixed order.

use std::fmt::Write as _;

use super::histogram::Timing;
use super::memory::resident_memory;
use super::{row_label, Metrics, REQUEST_ROWS, STEPS};
use crate::enrollment::RejectReason;
use crate::proto::coap::Code;

/// Quantiles exported in the Prometheus summaries.
const QUANTILES: [(f64, &str); 4] = [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99"), (0.999, "0.999")];

impl Metrics {
    /// Everything in the Prometheus text exposition format 0.0.4. Durations are summaries in
    /// seconds; a summary with no observation has NaN quantiles.
    pub fn prometheus(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        self.render_handshakes(&mut out);
        self.render_connections(&mut out);
        render_memory(&mut out);
        self.render_requests(&mut out);
        self.render_durations(&mut out);
        self.tokens.write_prometheus(&mut out);
        self.overload.render(&mut out);
        out
    }

    /// Handshakes by outcome, rejections by reason, other handshake failures.
    fn render_handshakes(&self, out: &mut String) {
        header(
            out,
            "dps_handshakes_total",
            "TLS handshakes by outcome (rejected: by attestation; failed: timeouts and protocol errors).",
            "counter",
        );
        let rejected_total: u64 = RejectReason::ALL.iter().map(|r| self.rejections(*r)).sum();
        for (outcome, n) in [
            ("accepted", self.handshakes_accepted()),
            ("rejected", rejected_total),
            ("failed", self.handshake_failures()),
        ] {
            let _ = writeln!(out, "dps_handshakes_total{{outcome=\"{outcome}\"}} {n}");
        }
        header(
            out,
            "dps_rejections_total",
            "Devices refused by attestation, by reason.",
            "counter",
        );
        for r in RejectReason::ALL {
            let _ = writeln!(
                out,
                "dps_rejections_total{{reason=\"{}\"}} {}",
                r.as_str(),
                self.rejections(r)
            );
        }
        header(
            out,
            "dps_handshake_failures_total",
            "TLS handshakes that failed for another reason than attestation (timeouts, protocol errors).",
            "counter",
        );
        let _ = writeln!(
            out,
            "dps_handshake_failures_total {}",
            self.handshake_failures()
        );
    }

    /// Shed and refused connections, closes by reason, the open-connection gauge.
    fn render_connections(&self, out: &mut String) {
        header(
            out,
            "dps_connections_shed_total",
            "Connections shed before any public-key work (all reasons; by reason: dps_shed_total).",
            "counter",
        );
        let _ = writeln!(out, "dps_connections_shed_total {}", self.shed());
        header(
            out,
            "dps_admin_connections_refused_total",
            "Admin API connections closed at accept: all its connection places were taken.",
            "counter",
        );
        let _ = writeln!(
            out,
            "dps_admin_connections_refused_total {}",
            self.admin_refused()
        );
        self.closes.render(out);
        header(
            out,
            "dps_open_connections",
            "Device connections open now.",
            "gauge",
        );
        let _ = writeln!(out, "dps_open_connections {}", self.open_connections());
    }

    /// Requests answered, by resource and code (only the pairs seen).
    fn render_requests(&self, out: &mut String) {
        header(
            out,
            "dps_requests_total",
            "Device requests answered, by resource and CoAP response code.",
            "counter",
        );
        for row in 0..REQUEST_ROWS {
            for code in 0..=u8::MAX {
                let n = self
                    .requests
                    .get(row * 256 + usize::from(code))
                    .map_or(0, |c| c.load(std::sync::atomic::Ordering::Relaxed));
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "dps_requests_total{{resource=\"{}\",code=\"{}\"}} {n}",
                        row_label(row),
                        Code(code)
                    );
                }
            }
        }
    }

    /// The handshake, matching and per-resource latency summaries.
    fn render_durations(&self, out: &mut String) {
        summary(
            out,
            "dps_handshake_duration_seconds",
            "TLS handshake duration of accepted connections.",
            &[("", &self.handshake.merged())],
        );
        summary(
            out,
            "dps_matching_duration_seconds",
            "Authentication and group selection duration per presented chain.",
            &[("", &self.matching.merged())],
        );
        let resources: Vec<(String, Timing)> = STEPS
            .iter()
            .zip(&self.resources)
            .map(|((_, label), r)| (format!("resource=\"{label}\""), r.merged()))
            .collect();
        let refs: Vec<(&str, &Timing)> = resources.iter().map(|(l, t)| (l.as_str(), t)).collect();
        summary(
            out,
            "dps_resource_duration_seconds",
            "Time to answer a device request, by resource.",
            &refs,
        );
    }
}

/// The process's resident memory now and at its peak, where `/proc` tells.
fn render_memory(out: &mut String) {
    let Some(mem) = resident_memory() else {
        return;
    };
    header(
        out,
        "process_resident_memory_bytes",
        "Resident memory of the server process.",
        "gauge",
    );
    let _ = writeln!(out, "process_resident_memory_bytes {}", mem.current);
    header(
        out,
        "dps_process_peak_resident_memory_bytes",
        "Highest resident memory of the server process since it started.",
        "gauge",
    );
    let _ = writeln!(out, "dps_process_peak_resident_memory_bytes {}", mem.peak);
}

/// The `# HELP` and `# TYPE` lines that open a family.
pub(super) fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Microseconds as the seconds Prometheus expects.
fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

/// One summary family; `series` pairs a label set (`resource="time"`, or empty) with its data.
fn summary(out: &mut String, name: &str, help: &str, series: &[(&str, &Timing)]) {
    header(out, name, help, "summary");
    for (labels, t) in series {
        let sep = if labels.is_empty() { "" } else { "," };
        for (q, qs) in QUANTILES {
            let v = if t.hist.is_empty() {
                f64::NAN
            } else {
                seconds(t.hist.value_at_quantile(q))
            };
            let _ = writeln!(out, "{name}{{{labels}{sep}quantile=\"{qs}\"}} {v}");
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", seconds(t.sum_us));
        let _ = writeln!(out, "{name}_count{braces} {}", t.hist.len());
    }
}
