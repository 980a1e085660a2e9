//! Reports of a run: `summary.json` (see `loadgen/summary.schema.json`), `summary.md`,
//! `latency.svg` (latency by percentile, client phases beside the server's histograms) and the raw
//! histograms (HdrHistogram V2 + deflate, base64, one line per phase; the server's prefixed
//! `server.`) under `results/<scenario>-<timestamp>/`.

pub mod plot;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use hdrhistogram::serialization::{Serializer as _, V2DeflateSerializer};

use crate::saturation::{GeneratorSummary, LimitedBy};
use crate::scenario::ServerKind;
use crate::summary::{Outcome, Summary};

/// Write the reports into a new directory under `results_dir`; returns it.
pub fn write(results_dir: &Path, outcome: &Outcome) -> std::io::Result<PathBuf> {
    let stamp = outcome
        .summary
        .started_at
        .replace([':', '-'], "")
        .replace('.', "_");
    let dir = results_dir.join(format!("{}-{}", outcome.summary.scenario, stamp));
    std::fs::create_dir_all(&dir)?;
    let json = serde_json::to_string_pretty(&outcome.summary)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    std::fs::write(dir.join("summary.json"), json + "\n")?;
    std::fs::write(dir.join("summary.md"), markdown(&outcome.summary))?;
    let mut raw = String::new();
    for (phase, h) in &outcome.recorder.phases {
        let mut buf = Vec::new();
        if V2DeflateSerializer::new().serialize(h, &mut buf).is_ok() {
            let _ = writeln!(
                raw,
                "{phase} {}",
                base64::engine::general_purpose::STANDARD.encode(&buf)
            );
        }
    }
    for (name, h) in &outcome.server.histograms {
        if !h.hdr.is_empty() {
            let _ = writeln!(raw, "server.{name} {}", h.hdr);
        }
    }
    std::fs::write(dir.join("histograms.txt"), raw)?;
    let svg = latency_svg(outcome).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("latency.svg"), svg)?;
    Ok(dir)
}

/// The client's network-facing phases and the server's handshake and matching, by percentile.
fn latency_svg(outcome: &Outcome) -> Result<String, String> {
    use crate::metrics::Phase;
    let server: Vec<(String, hdrhistogram::Histogram<u64>)> = ["handshake", "matching"]
        .iter()
        .filter_map(|name| {
            let h = outcome.server.histograms.get(*name)?;
            Some((
                format!("server {name}"),
                dps_server::metrics::decode_histogram(&h.hdr).ok()?,
            ))
        })
        .collect();
    let mut series: Vec<plot::Series<'_>> = [
        Phase::Tcp,
        Phase::Handshake,
        Phase::Credentials,
        Phase::Ping,
        Phase::Total,
    ]
    .iter()
    .filter_map(|p| {
        Some(plot::Series {
            name: format!("client {p}"),
            histogram: outcome.recorder.phases.get(p)?,
            server: false,
        })
    })
    .collect();
    series.extend(server.iter().map(|(name, h)| plot::Series {
        name: name.clone(),
        histogram: h,
        server: true,
    }));
    plot::svg(
        &format!(
            "{}: latency by percentile ({} devices)",
            outcome.summary.scenario, outcome.summary.devices
        ),
        &series,
    )
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

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
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

/// The summary's generator section: the verdict, CPU of each side, lateness, connect, ports.
fn generator(out: &mut String, g: &GeneratorSummary) {
    let verdict = match g.limited_by {
        LimitedBy::Generator => "**The generator, not the target, limited this run:**",
        LimitedBy::Target => "**The target limited this run:**",
        LimitedBy::None => "**Generator:**",
    };
    let _ = writeln!(out, "\n{verdict} {}.\n", g.reasons.join("; "));
    let _ = writeln!(
        out,
        "| CPU over {:.1} s | user s | system s | cores used (busiest second) | ms per provisioned | ms per handshake |\n|---|---:|---:|---:|---:|---:|",
        g.cpu.wall_s
    );
    let opt = |v: Option<f64>| v.map_or_else(|| "–".into(), |v| format!("{v:.3}"));
    let generator_row = if g.cpu.process_includes_server {
        "this process (generator and embedded server)"
    } else {
        "generator process"
    };
    for (name, side) in [
        (generator_row, &g.cpu.process),
        ("server process", &g.cpu.server),
    ] {
        if let Some(c) = side {
            let _ = writeln!(
                out,
                "| {name} | {:.2} | {:.2} | {:.2} ({:.2}) | {} | {} |",
                c.user_s,
                c.system_s,
                c.cores_used,
                c.peak_cores_used,
                opt(c.ms_per_provisioned),
                opt(c.ms_per_handshake)
            );
        }
    }
    let lateness = g.start_lateness.map_or_else(
        || "no schedule (closed loop)".into(),
        |q| {
            format!(
                "p50 {} / p99 {} / max {} ms",
                ms(q.p50_us),
                ms(q.p99_us),
                ms(q.max_us)
            )
        },
    );
    let p = &g.ports;
    let sources = match (p.sources.first(), p.sources.last(), p.route_source) {
        (Some(first), Some(last), _) if p.sources.len() > 1 => {
            format!("{} source addresses {first}…{last}", p.sources.len())
        }
        (Some(one), _, _) => format!("source address {one}"),
        (None, _, Some(route)) => format!("source address {route} (the kernel's choice)"),
        _ => "the kernel's source address".into(),
    };
    let _ = writeln!(
        out,
        "\nStarts: lateness {lateness}, {} more than 25 ms late; dropped {} late, {} at max_in_flight. {} connects: tcp phase {:.2} s in all (p99 {} ms), {:.3} s inside the socket calls ({}). Ports toward the target from {sources}: {} in use at the start, at most {} at once ({} from one address, of {} per address), {} in TIME_WAIT; planned {} ({} in flight + {} in TIME_WAIT over {} s) of {} free. CPU of {} worker threads on {} CPUs; the sampler's own {:.3} s left out.",
        g.late_starts,
        g.dropped_late,
        g.dropped_in_flight,
        g.connect.connects,
        g.connect.tcp_sum_s,
        ms(g.connect.tcp_p99_us),
        g.connect.busy_s,
        g.connect
            .busy_share
            .map_or_else(|| "share not known".into(), |x| format!("{:.1} % of the process's CPU", x * 100.0)),
        p.in_use_at_start,
        p.peak_in_use,
        p.peak_in_use_per_address,
        p.per_address,
        p.peak_time_wait,
        p.needed,
        p.in_flight,
        p.time_wait,
        p.time_wait_window_s,
        p.free_at_start,
        g.cpu.worker_threads,
        g.cpu.cores,
        g.cpu.sampler_s,
    );
    if let (Some(all), Some(others)) = (g.cpu.machine_cores_used, g.cpu.others_cores_used) {
        let _ = writeln!(
            out,
            "\nThe whole machine: {all:.2} of {} cores busy on average, {others:.2} of them other processes'.",
            g.cpu.cores
        );
    }
    for n in &g.notes {
        let _ = writeln!(out, "\n- {n}");
    }
}

/// The human summary.
pub fn markdown(s: &Summary) -> String {
    let mut out = String::new();
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
    if !s.failures.is_empty() {
        let kinds: Vec<String> = s
            .failures
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        let _ = writeln!(out, "Errors by kind: {}.\n", kinds.join(", "));
    }
    retries(&mut out, s);
    if !s.links.is_empty() {
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
    if !s.strict_failures.is_empty() {
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
    let _ = writeln!(
        out,
        "| phase | count | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for (phase, q) in &s.latency {
        let _ = writeln!(
            out,
            "| {phase} | {} | {} | {} | {} | {} | {} |",
            q.count,
            ms(q.p50_us),
            ms(q.p90_us),
            ms(q.p99_us),
            ms(q.p999_us),
            ms(q.max_us)
        );
    }
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
    storm(&mut out, s);
    if !s.server.latency.is_empty() {
        let _ = writeln!(
            out,
            "\nServer's view ({}):\n\n| server histogram | count | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |",
            s.server.kind
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
        for (name, q) in &s.server.latency {
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
    }
    if let Some(h) = &s.hold {
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
    if let Some(a) = &s.attack {
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
    if let Some(g) = &s.generator {
        generator(&mut out, g);
    }
    if s.timeline.len() > 1 {
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
    if !s.thresholds.is_empty() {
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
    if !s.mismatch_examples.is_empty() {
        let _ = writeln!(
            out,
            "\nMismatches and errors (first {}):\n",
            s.mismatch_examples.len()
        );
        for m in &s.mismatch_examples {
            let _ = writeln!(out, "- {m}");
        }
    }
    out
}
