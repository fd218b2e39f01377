//! `metrics`: every program's and the daemon's figures in the Prometheus text exposition
//! format (0.0.4), written once here for the socket method and the HTTP listener. Read
//! from cells, counters and the last usage samples; measures nothing itself but
//! brummerd's own RSS (one read of /proc/self/statm).

use crate::process::ProcessEntry;
use crate::process::procsource::own_rss_bytes;
use crate::process::usage;
use crate::state::State;
use brummer_proto::ProcessState;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// The media type of the text (for the HTTP listener's Content-Type).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The whole exposition, as of now.
pub fn render(state: &State) -> String {
    let entries = state.entries();
    let mut out = String::with_capacity(256 + entries.len() * 1024);
    programs(&mut out, &entries);
    daemon(&mut out, state);
    out
}

/// One family: its HELP and TYPE lines, then a sample per program that has a value.
fn family<'a>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    entries: &'a [Arc<ProcessEntry>],
    value: impl Fn(&'a ProcessEntry) -> Option<f64>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for e in entries {
        if let Some(v) = value(e) {
            let _ = writeln!(out, "{name}{{process=\"{}\"}} {v}", escape(&e.name));
        }
    }
}

fn programs(out: &mut String, entries: &[Arc<ProcessEntry>]) {
    let up = |e: &ProcessEntry| {
        let hot = e.cell.load().hot();
        Some(f64::from(u8::from(
            hot.state == ProcessState::Running && hot.pid.is_some(),
        )))
    };
    family(
        out,
        "brummer_process_up",
        "gauge",
        "1 when the program runs (and is ready), else 0.",
        entries,
        up,
    );
    let _ = writeln!(
        out,
        "# HELP brummer_process_state The program's state: 1 for the current one, 0 for the others."
    );
    let _ = writeln!(out, "# TYPE brummer_process_state gauge");
    for e in entries {
        let now = e.cell.load().state();
        let name = escape(&e.name);
        for s in ProcessState::ALL {
            let _ = writeln!(
                out,
                "brummer_process_state{{process=\"{name}\",state=\"{}\"}} {}",
                s.as_str(),
                u8::from(s == now)
            );
        }
    }
    family(
        out,
        "brummer_process_restarts_total",
        "counter",
        "Automatic restarts since the last explicit start.",
        entries,
        |e| Some(f64::from(e.cell.load().restarts())),
    );
    let used = |f: fn(&usage::Usage) -> Option<f64>| {
        move |e: &ProcessEntry| e.usage().as_deref().and_then(f)
    };
    family(
        out,
        "brummer_process_cpu_seconds_total",
        "counter",
        "CPU time (user and system) of the current run's process tree; starts again at each run.",
        entries,
        used(|u| Some(u.cpu_ns as f64 / 1e9)),
    );
    family(
        out,
        "brummer_process_memory_bytes",
        "gauge",
        "Memory of the program: its cgroup's memory.current, or the resident memory of its process tree.",
        entries,
        used(|u| Some(u.memory_bytes as f64)),
    );
    family(
        out,
        "brummer_process_memory_peak_bytes",
        "gauge",
        "The largest memory of the current run: its cgroup's memory.peak, or the largest sampled.",
        entries,
        used(|u| Some(u.memory_peak_bytes as f64)),
    );
    family(
        out,
        "brummer_process_tasks",
        "gauge",
        "Tasks (threads) of the program.",
        entries,
        used(|u| Some(f64::from(u.tasks))),
    );
    family(
        out,
        "brummer_process_io_read_bytes_total",
        "counter",
        "Bytes the tree made the storage layer read during the current run.",
        entries,
        used(|u| u.io.map(|(r, _)| r as f64)),
    );
    family(
        out,
        "brummer_process_io_write_bytes_total",
        "counter",
        "Bytes the tree made the storage layer write during the current run.",
        entries,
        used(|u| u.io.map(|(_, w)| w as f64)),
    );
    for (i, resource) in ["cpu", "memory", "io"].iter().enumerate() {
        family(
            out,
            &format!("brummer_process_{resource}_pressure_ratio"),
            "gauge",
            &format!(
                "Share of the last 10 s in which some task of the program waited for {resource} (PSI some avg10 of its cgroup; only with cgroup containment)."
            ),
            entries,
            move |e| {
                e.usage()
                    .as_deref()
                    .and_then(|u| u.pressure[i])
                    .map(|p| p / 100.0)
            },
        );
    }
    let logs = |f: fn(&brummer_proto::methods::LogCounters) -> u64| {
        move |e: &ProcessEntry| Some(f(&e.log.counters()) as f64)
    };
    family(
        out,
        "brummer_process_log_lines_total",
        "counter",
        "Lines of output captured since brummerd started.",
        entries,
        logs(|c| c.lines),
    );
    family(
        out,
        "brummer_process_log_bytes_total",
        "counter",
        "Bytes of output captured since brummerd started, newlines included.",
        entries,
        logs(|c| c.bytes),
    );
    family(
        out,
        "brummer_process_ring_evicted_lines_total",
        "counter",
        "Lines that left the in-memory log ring (they remain on disk).",
        entries,
        logs(|c| c.ring_evicted),
    );
    family(
        out,
        "brummer_process_log_disk_pending_lines",
        "gauge",
        "Lines captured but not yet on disk (written behind the ring, or kept while the disk fails).",
        entries,
        logs(|c| c.disk_pending),
    );
}

fn daemon(out: &mut String, state: &State) {
    let registry = state.registry().load();
    let disk_pending: u64 = registry
        .iter()
        .map(|(_, e)| e.log.counters().disk_pending)
        .sum();
    let gauges: [(&str, &str, &str, f64); 8] = [
        (
            "brummer_daemon_resident_memory_bytes",
            "gauge",
            "brummerd's own resident memory.",
            own_rss_bytes() as f64,
        ),
        (
            "brummer_daemon_events_missed_total",
            "counter",
            "Events dropped for subscribers that fell behind (streams, D-Bus forwarder).",
            state.bus().missed_total() as f64,
        ),
        (
            "brummer_daemon_event_subscribers",
            "gauge",
            "Subscribers of the event bus now.",
            state.bus().subscriber_count() as f64,
        ),
        (
            "brummer_daemon_connections",
            "gauge",
            "Open control-socket connections.",
            state.connections() as f64,
        ),
        (
            "brummer_daemon_processes",
            "gauge",
            "Programs configured.",
            registry.iter().count() as f64,
        ),
        (
            "brummer_daemon_event_queue_events",
            "gauge",
            "Events published but not yet taken by their subscribers, all queues together.",
            state.bus().queued_total() as f64,
        ),
        (
            "brummer_daemon_outbox_queued_messages",
            "gauge",
            "Messages waiting to be written to control-socket clients, all connections together.",
            state.outbox_queued().load(Ordering::Relaxed) as f64,
        ),
        (
            "brummer_daemon_log_disk_pending_lines",
            "gauge",
            "Lines captured but not yet on disk, all programs together.",
            disk_pending as f64,
        ),
    ];
    for (name, kind, help, v) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {v}");
    }
    let _ = writeln!(
        out,
        "# HELP brummer_daemon_info brummerd's version and how it holds programs together."
    );
    let _ = writeln!(out, "# TYPE brummer_daemon_info gauge");
    let _ = writeln!(
        out,
        "brummer_daemon_info{{version=\"{}\",containment=\"{}\"}} 1",
        escape(brummer_proto::VERSION),
        usage::containment().as_str()
    );
}

/// A label value as the text format wants it: backslash, double quote and newline escaped.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(escape("web-1"), "web-1");
    }
}
