//! Telling systemd how brummerd is doing (sd_notify(3)): READY=1, STATUS=, RELOADING=1,
//! STOPPING=1 and WATCHDOG=1.
//!
//! Every function here is a no-op when `NOTIFY_SOCKET` is unset (not under systemd, or a
//! unit that is not `Type=notify`). The server's top loop sends READY, RELOADING, STOPPING
//! and the watchdog pings itself, so a wedged loop really misses them; the STATUS= line is
//! kept current by the task [`ready_and_follow`] starts, which follows the event bus and
//! never blocks a supervisor. Sends are a single non-blocking
//! datagram; a failure is logged at debug level and otherwise ignored (systemd may be
//! gone during shutdown).

use crate::state::State;
use brummer_core::Recv;
use brummer_proto::ProcessState;
use sd_notify::NotifyState;
use std::sync::Arc;
use std::time::Duration;

/// How long the status task waits after an event for more to arrive before it sends one
/// STATUS= line: a burst (reload, `start --all`) becomes one update, not hundreds.
pub const STATUS_DEBOUNCE: Duration = Duration::from_millis(200);

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(cause = %e, "sd_notify failed");
    }
}

/// Config loaded and every control plane listening.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload starts; [`ready`] ends it. systemd wants MONOTONIC_USEC with RELOADING=1 so it
/// can tell this reload from an older one.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[
            NotifyState::Reloading,
            now,
            NotifyState::Status("reloading the configuration"),
        ]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// Shutdown starts: programs are being stopped.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping every program"),
    ]);
}

pub fn status(line: &str) {
    send(&[NotifyState::Status(line)]);
}

pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often to ping the watchdog: half of `WatchdogSec=` (as systemd recommends), or
/// `None` when the unit sets no watchdog.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|d| !d.is_zero())
        .map(|d| d / 2)
}

/// The one-line summary for STATUS=: non-zero counts in a fixed order, e.g.
/// `"12 running, 1 failed"`, or `"no programs configured"`.
pub fn summary(states: impl IntoIterator<Item = ProcessState>) -> String {
    const ORDER: [ProcessState; 7] = [
        ProcessState::Running,
        ProcessState::Starting,
        ProcessState::Stopping,
        ProcessState::Backoff,
        ProcessState::Failed,
        ProcessState::Exited,
        ProcessState::Stopped,
    ];
    let mut counts = [0usize; 7];
    let mut total = 0;
    for s in states {
        total += 1;
        if let Some(i) = ORDER.iter().position(|o| *o == s) {
            counts[i] += 1;
        }
    }
    if total == 0 {
        return "no programs configured".to_owned();
    }
    ORDER
        .iter()
        .zip(counts)
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| format!("{n} {}", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The summary of what the registry holds right now (one atomic load per program).
pub fn current_summary(daemon: &State) -> String {
    let snapshot = daemon.registry().load();
    summary(snapshot.iter().map(|(_, e)| e.cell.load().state()))
}

/// Sends READY=1 with the current summary and starts the task that keeps STATUS= current
/// from then on.
///
/// The subscription is taken before the summary is read: programs start before READY, and
/// a change between the read and a later subscription would leave STATUS= stale until the
/// next event, which for a program that just runs never comes.
pub fn ready_and_follow(daemon: Arc<State>) {
    let sub = daemon.bus().subscribe(64);
    let sent = current_summary(&daemon);
    ready(&sent);
    let tasks = daemon.shutdown().clone();
    tasks.spawn(follow_status(daemon, sub, sent));
}

/// Follows the event bus and sends STATUS= whenever the summary changes, at most once per
/// [`STATUS_DEBOUNCE`]. Stops sending once shutdown begins (STOPPING=1 has its own
/// status line). The events only say when to look: the summary is recomputed from the
/// status cells.
async fn follow_status(
    daemon: Arc<State>,
    sub: brummer_core::Subscription<brummer_proto::events::Event>,
    sent: String,
) {
    {
        let mut last = sent;
        loop {
            match sub.recv().await {
                Recv::Closed => break,
                Recv::Event(_) | Recv::Missed(_) | Recv::Empty => {}
            }
            // The debounce drains the queue while it waits, so that a burst (a crash loop)
            // does not overflow it: what this follower would miss is counted in the
            // daemon's events_missed_total, which must count only real losses.
            let until = tokio::time::Instant::now() + STATUS_DEBOUNCE;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(until) => break,
                    r = sub.recv() => if let Recv::Closed = r { return },
                }
            }
            if daemon.is_shutting_down() {
                break;
            }
            let line = current_summary(&daemon);
            if line != last {
                status(&line);
                last = line;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProcessState::*;

    #[test]
    fn summary_counts_in_a_fixed_order() {
        assert_eq!(summary([]), "no programs configured");
        let mut many = vec![Running; 12];
        many.push(Failed);
        assert_eq!(summary(many), "12 running, 1 failed");
        assert_eq!(
            summary([
                Stopped, Exited, Backoff, Running, Stopped, Starting, Stopping
            ]),
            "1 running, 1 starting, 1 stopping, 1 backoff, 1 exited, 2 stopped"
        );
    }
}
