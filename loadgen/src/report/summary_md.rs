//! `summary.md`: the human summary of a run, one function per section, composed by [`markdown`];
//! and the verdict line the console ends with ([`verdict_line`]).

use std::fmt::Write as _;

use super::generator_md::generator;
use super::units::{mib, ms};
use crate::metrics::Quantiles;
use crate::saturation::LimitedBy;
use crate::scenario::ServerKind;
use crate::summary::Summary;

/// The human summary (`summary.md`): one section after another, each only when it has something.
pub fn markdown(s: &Summary) -> String {
    let mut out = String::new();
    header(&mut out, s);
    failures(&mut out, s);
    retries(&mut out, s);
    links(&mut out, s);
    strict_failures(&mut out, s);
    phases(&mut out, s);
    classes(&mut out, s);
    storm(&mut out, s);
    server(&mut out, s);
    hold(&mut out, s);
    attack(&mut out, s);
    memory(&mut out, s);
    if let Some(g) = &s.generator {
        generator(&mut out, g);
    }
    timeline(&mut out, s);
    thresholds(&mut out, s);
    mismatch_examples(&mut out, s);
    out
}

/// The title with the verdict, and the run's totals.
fn header(out: &mut String, s: &Summary) {
    let verdict = if s.passed && s.mismatches == 0 {
        "PASS"
    } else {
        "FAIL"
    };
    let _ = writeln!(out, "# {} — {verdict}\n", s.scenario);
    let _ = writeln!(
        out,
        "{} devices in {:.2} s (started {}): {} provisioned ({:.1}/s), {} handshakes ({:.1}/s), {} mismatches ({} false accepts, {} false rejects), {} errors, {} dropped.\n",
        s.devices, s.duration_s, s.started_at, s.provisioned, s.provisioned_per_s, s.handshakes, s.handshakes_per_s, s.mismatches, s.false_accepts, s.false_rejects, s.errors, s.dropped
    );
}

/// The errors by kind (only when there were any).
fn failures(out: &mut String, s: &Summary) {
    if s.failures.is_empty() {
        return;
    }
    let kinds: Vec<String> = s
        .failures
        .iter()
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    let _ = writeln!(out, "Errors by kind: {}.\n", kinds.join(", "));
}

/// The link profile of each class that went through one.
fn links(out: &mut String, s: &Summary) {
    if s.links.is_empty() {
        return;
    }
    let links: Vec<String> = s
        .links
        .iter()
        .map(|(class, link)| format!("{} over {link}", class.as_str()))
        .collect();
    let _ = writeln!(
        out,
        "Link profiles (emulated in the devices' socket I/O; other classes direct): {}.\n",
        links.join("; ")
    );
}

/// The strict devices' failed checks on what the server sent.
fn strict_failures(out: &mut String, s: &Summary) {
    if s.strict_failures.is_empty() {
        return;
    }
    let checks: Vec<String> = s
        .strict_failures
        .iter()
        .map(|(check, n)| format!("{check} {n}"))
        .collect();
    let _ = writeln!(
        out,
        "Failed iotivity-lite's checks on what the server sent (a real device would fail too): {}.\n",
        checks.join(", ")
    );
}

/// One row of a latency table: count and percentiles in ms.
fn quantile_row(out: &mut String, name: &str, q: &Quantiles) {
    let _ = writeln!(
        out,
        "| {name} | {} | {} | {} | {} | {} | {} |",
        q.count,
        ms(q.p50_us),
        ms(q.p90_us),
        ms(q.p99_us),
        ms(q.p999_us),
        ms(q.max_us)
    );
}

/// The client's latency by phase.
fn phases(out: &mut String, s: &Summary) {
    let _ = writeln!(
        out,
        "| phase | count | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for (phase, q) in &s.latency {
        quantile_row(out, &phase.to_string(), q);
    }
}

/// What each device class expected and what it got.
fn classes(out: &mut String, s: &Summary) {
    let _ = writeln!(
        out,
        "\n| class | devices | as expected | mismatches | false accepts | false rejects | errors | attempts (max) | observed |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for (class, c) in &s.classes {
        let observed: Vec<String> = c
            .observed
            .iter()
            .map(|(k, v)| format!("{k} × {v}"))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} ({}) | {} |",
            class.as_str(),
            c.devices,
            c.as_expected,
            c.mismatches,
            c.false_accepts,
            c.false_rejects,
            c.errors,
            c.attempts,
            c.max_attempts,
            observed.join(", ")
        );
    }
}

/// The server's own latency histograms (only when it reported any).
fn server(out: &mut String, s: &Summary) {
    if s.server.latency.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nServer's view ({}):\n\n| server histogram | count | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |",
        s.server.kind
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for (name, q) in &s.server.latency {
        quantile_row(out, name, q);
    }
}

/// The hold executor's figures: devices held at once and what holding them cost in memory.
fn hold(out: &mut String, s: &Summary) {
    let Some(h) = &s.hold else {
        return;
    };
    let _ = writeln!(
        out,
        "\nHold: {} devices held at once (server counted {}), all through in {:.1} s; resident memory {} before, {} held{}.",
        h.held_peak,
        h.server_open_connections.map_or_else(|| "?".into(), |n| n.to_string()),
        h.connect_s,
        h.rss_before_bytes.map_or_else(|| "?".into(), mib),
        h.rss_held_bytes.map_or_else(|| "?".into(), mib),
        h.bytes_per_connection
            .map_or_else(String::new, |b| format!(" ({:.1} KiB per held connection)", b as f64 / 1024.0)),
    );
}

/// The attackers' reports and the devices' latency before and during the attack.
fn attack(out: &mut String, s: &Summary) {
    let Some(a) = &s.attack else {
        return;
    };
    let _ = writeln!(
        out,
        "\n| attack | attempted | opened | closed by server | p50 to close ms |\n|---|---:|---:|---:|---:|"
    );
    for r in &a.attackers {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            r.kind, r.attempted, r.opened, r.closed_by_server, r.p50_close_ms
        );
    }
    let _ = writeln!(
        out,
        "\nDevices: p99 total {} ms before the attack ({} devices), {} ms during it ({} devices): ratio {:.2}. The server was down to {} device connections {} ms after the run.",
        ms(a.p99_total_before_us),
        a.devices_before,
        ms(a.p99_total_during_us),
        a.devices_during,
        a.p99_ratio,
        s.leftover_connections.map_or_else(|| "?".into(), |n| n.to_string()),
        a.settle_ms,
    );
}

/// Peak resident memory of each side, the open-file limit and where the fleet came from.
fn memory(out: &mut String, s: &Summary) {
    let _ = writeln!(
        out,
        "\nPeak resident memory: {} ({}); server: {}. Open-file limit {}. Fleet {}.",
        s.peak_rss_bytes.map_or_else(|| "?".into(), mib),
        if s.server.kind == ServerKind::Embedded {
            "generator and embedded server together"
        } else {
            "generator"
        },
        s.server.peak_rss_bytes.map_or_else(
            || match s.server.kind.as_str() {
                "embedded" => "in the same process".into(),
                "tls-only" => "not known (TLS-only target)".into(),
                _ => "not known".into(),
            },
            mib
        ),
        s.open_files_limit,
        if s.fleet_reused {
            "reused from the cache"
        } else {
            "generated"
        }
    );
}

/// Provisioned per second over the run (only when it lasted more than a second).
fn timeline(out: &mut String, s: &Summary) {
    if s.timeline.len() <= 1 {
        return;
    }
    let _ = writeln!(
        out,
        "\nPeak provisioned/s over 3 s: {:.1}. Per second (completed / provisioned / p99 total ms):\n",
        s.peak_provisioned_per_s
    );
    let cells: Vec<String> = s
        .timeline
        .iter()
        .map(|t| {
            format!(
                "{}s {}/{}/{}",
                t.t_s,
                t.completed,
                t.provisioned,
                ms(t.p99_total_us)
            )
        })
        .collect();
    let _ = writeln!(out, "{}", cells.join(" · "));
}

/// Each threshold, its measured value and whether it held.
fn thresholds(out: &mut String, s: &Summary) {
    if s.thresholds.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n| threshold | actual | |");
    let _ = writeln!(out, "|---|---:|---|");
    for t in &s.thresholds {
        let _ = writeln!(
            out,
            "| `{}` | {:.2} | {} |",
            t.threshold,
            t.actual,
            if t.passed { "ok" } else { "FAILED" }
        );
    }
}

/// The first mismatches and errors, one line each.
fn mismatch_examples(out: &mut String, s: &Summary) {
    if s.mismatch_examples.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nMismatches and errors (first {}):\n",
        s.mismatch_examples.len()
    );
    for m in &s.mismatch_examples {
        let _ = writeln!(out, "- {m}");
    }
}

/// The retry policy and the attempts it took (only when some device tried more than once).
fn retries(out: &mut String, s: &Summary) {
    let a = &s.attempts;
    if a.max <= 1 && s.retry_policy == crate::scenario::RetryPolicy::None {
        return;
    }
    let per_device: Vec<String> = a
        .per_device
        .iter()
        .map(|(n, devices)| format!("{n}: {devices}"))
        .collect();
    let errors: Vec<String> = a.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(
        out,
        "Retries ({}): {} attempts for {} devices (at most {}; {} devices retried). Devices by attempts: {}. Attempts that ended in an error: {}.\n",
        s.retry_policy,
        a.total,
        a.per_device.values().sum::<u64>(),
        a.max,
        a.retried_devices,
        per_device.join(", "),
        if errors.is_empty() { "none".into() } else { errors.join(", ") },
    );
}

/// The storm section: time to shares of the fleet, goodput, recovery, busy and shed counts.
fn storm(out: &mut String, s: &Summary) {
    let Some(st) = &s.storm else {
        return;
    };
    let t =
        |v: Option<u64>| v.map_or_else(|| "never".into(), |us| format!("{:.2} s", us as f64 / 1e6));
    let closes = st.server_closes.as_ref().map_or_else(
        || "not known".into(),
        |m| {
            if m.is_empty() {
                "none".into()
            } else {
                m.iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        },
    );
    let _ = writeln!(
        out,
        "\nFleet: {} of {} devices that must get in did; 50 % after {}, 90 % after {}, 99 % after {}, all after {} (from the first scheduled start). Goodput while arriving (to {:.1} s): {:.1}/s; lowest second after the peak {}; best 3 s after the last arrival {:.1}/s with {} devices still waiting then: {}. Devices answered 5.03 {} times, cut off {} times, timed out {} times; the server closed connections by reason: {}.",
        st.got_in,
        st.must_get_in,
        t(st.time_to_50_us),
        t(st.time_to_90_us),
        t(st.time_to_99_us),
        t(st.time_to_100_us),
        st.last_arrival_s,
        st.goodput_while_arriving_per_s,
        st.trough_ratio.map_or_else(|| "n/a".into(), |r| format!("{:.2} of it", r)),
        st.best_after_last_arrival_per_s,
        st.backlog_at_last_arrival,
        if st.recovered { "recovered" } else { "NOT recovered" },
        st.busy_answers,
        st.resets,
        st.timeouts,
        closes,
    );
}

/// The verdict on who limited the run, in one line (the run's last line on the console).
pub fn verdict_line(s: &Summary) -> Option<String> {
    let g = s.generator.as_ref()?;
    let reasons = g.reasons.join("; ");
    Some(match g.limited_by {
        LimitedBy::Generator => {
            format!("the generator, not the target, limited this run: {reasons}.")
        }
        LimitedBy::Target => format!("the target limited this run: {reasons}."),
        LimitedBy::None => format!("{reasons}."),
    })
}
