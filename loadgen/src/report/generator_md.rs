//! The generator section of `summary.md`: who limited the run, CPU of each side, start lateness,
//! connects, ports, the machine, and the public-key floor.

use std::fmt::Write as _;

use super::units::ms;
use crate::saturation::figures::PortSummary;
use crate::saturation::{FloorFigures, GeneratorSummary, LimitedBy};

/// The summary's generator section: the verdict, CPU of each side, lateness, connect, ports.
pub(super) fn generator(out: &mut String, g: &GeneratorSummary) {
    let verdict = match g.limited_by {
        LimitedBy::Generator => "**The generator, not the target, limited this run:**",
        LimitedBy::Target => "**The target limited this run:**",
        LimitedBy::None => "**Generator:**",
    };
    let _ = writeln!(out, "\n{verdict} {}.\n", g.reasons.join("; "));
    cpu_table(out, g);
    let _ = writeln!(
        out,
        "\n{} {} CPU of {} worker threads on {} CPUs; the sampler's own {:.3} s left out.",
        starts_and_connects(g),
        ports(&g.ports),
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
    if let Some(f) = &g.cpu.floor {
        floor(out, f);
    }
    for n in &g.notes {
        let _ = writeln!(out, "\n- {n}");
    }
}

/// The public-key floor per device of each side, and each side's CPU per provisioned device as a
/// multiple of it (with an embedded server, this process's over both floors together).
fn floor(out: &mut String, f: &FloorFigures) {
    let times = |m: Option<f64>| m.map_or_else(String::new, |x| format!(" (CPU {x:.1}x it)"));
    let both = f.process_multiple.map_or_else(String::new, |x| {
        format!("; this process (both sides) CPU {x:.1}x both together")
    });
    let _ = writeln!(
        out,
        "\n- Public-key floor per device: server {:.2} ms{}, generator {:.2} ms{}{both}",
        f.floor.server.ms,
        times(f.server_multiple),
        f.floor.generator.ms,
        times(f.generator_multiple),
    );
}

/// CPU of the generator's process and of a spawned server.
fn cpu_table(out: &mut String, g: &GeneratorSummary) {
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
}

/// How late the devices started, starts dropped, and the time spent connecting.
fn starts_and_connects(g: &GeneratorSummary) -> String {
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
    format!(
        "Starts: lateness {lateness}, {} more than 25 ms late; dropped {} late, {} at max_in_flight. {} connects: tcp phase {:.2} s in all (p99 {} ms), {:.3} s inside the socket calls ({}).",
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
    )
}

/// The ports toward the target: sources, use at the start and at the peak, and the plan.
fn ports(p: &PortSummary) -> String {
    let sources = match (p.sources.first(), p.sources.last(), p.route_source) {
        (Some(first), Some(last), _) if p.sources.len() > 1 => {
            format!("{} source addresses {first}…{last}", p.sources.len())
        }
        (Some(one), _, _) => format!("source address {one}"),
        (None, _, Some(route)) => format!("source address {route} (the kernel's choice)"),
        _ => "the kernel's source address".into(),
    };
    format!(
        "Ports toward the target from {sources}: {} in use at the start, at most {} at once ({} from one address, of {} per address), {} in TIME_WAIT; planned {} ({} in flight + {} in TIME_WAIT over {} s) of {} free.",
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
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saturation::floor::{Floor, SideFloor};

    fn figures(server: Option<f64>, generator: Option<f64>, process: Option<f64>) -> FloorFigures {
        let side = |ms| SideFloor {
            ops: vec!["op".into()],
            ms,
        };
        FloorFigures {
            floor: Floor {
                provider: "aws-lc-rs".into(),
                flow: "x509".into(),
                costs: Vec::new(),
                server: side(0.334),
                generator: side(0.25),
                notes: Vec::new(),
            },
            server_multiple: server,
            generator_multiple: generator,
            process_multiple: process,
        }
    }

    #[test]
    fn the_floor_line_names_each_side_and_its_multiple() {
        let mut out = String::new();
        floor(&mut out, &figures(Some(4.62), Some(4.3), None));
        assert_eq!(
            out,
            "\n- Public-key floor per device: server 0.33 ms (CPU 4.6x it), generator 0.25 ms (CPU 4.3x it)\n"
        );
        let mut out = String::new();
        floor(&mut out, &figures(None, None, Some(5.5)));
        assert_eq!(
            out,
            "\n- Public-key floor per device: server 0.33 ms, generator 0.25 ms; this process (both sides) CPU 5.5x both together\n"
        );
    }
}
