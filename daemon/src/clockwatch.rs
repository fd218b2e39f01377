//! The clock watch: one task that ticks every second and tells the operator when brummerd
//! itself did not run for a while (SIGSTOP, a debugger, a starved machine) or when the wall
//! clock jumped (`date -s`, an NTP step). The server spawns `run`; it only logs,
//! never changes a timer.
//!
//! Why it matters: backoff, stop and start-limit timers run on the monotonic clock and are
//! not moved by a wall-clock jump, but log lines are stamped with the wall clock, so after a
//! jump back `logs --since` sees times out of order (docs/logs.md, "Seeking"); after a
//! stall every timer that fell due meanwhile fires at once. Both are worth a log line.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the watch looks at the clocks.
const TICK: Duration = Duration::from_secs(1);
/// A tick this much later than due means brummerd did not run meanwhile.
const STALL: Duration = Duration::from_secs(3);
/// The wall clock moving this much more (or less) than the monotonic one is a jump.
const JUMP: Duration = Duration::from_secs(2);

/// What one tick found, from the two clocks' advances since the previous one.
#[derive(Debug, PartialEq)]
pub enum Finding {
    Steady,
    /// brummerd did not run for about this long (beyond the tick).
    Stalled(Duration),
    /// The wall clock moved this many µs more than the monotonic one (negative: back).
    Jumped(i64),
    Both(Duration, i64),
}

/// Judges one tick: `mono` and `wall_us` are how far each clock advanced since the last.
pub fn judge(mono: Duration, wall_us: i64) -> Finding {
    let late = mono.saturating_sub(TICK);
    let skew = wall_us - mono.as_micros() as i64;
    let stalled = late >= STALL;
    let jumped = skew.unsigned_abs() >= JUMP.as_micros() as u64;
    match (stalled, jumped) {
        (false, false) => Finding::Steady,
        (true, false) => Finding::Stalled(late),
        (false, true) => Finding::Jumped(skew),
        (true, true) => Finding::Both(late, skew),
    }
}

fn wall_us() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    }
}

/// The watch: runs until dropped (the server spawns it on the shutdown tracker).
///
/// The clocks are read when `run` is called, not when the task is first polled: a stall
/// that begins between the spawn and the first poll is a stall too.
pub fn run() -> impl std::future::Future<Output = ()> + Send + 'static {
    let (mut mono, mut wall) = (Instant::now(), wall_us());
    async move {
        let first = tokio::time::Instant::from_std(mono) + TICK;
        let mut tick = tokio::time::interval_at(first, TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (m, w) = (Instant::now(), wall_us());
            report(judge(m - mono, w - wall));
            (mono, wall) = (m, w);
        }
    }
}

fn report(f: Finding) {
    let (late, skew) = match f {
        Finding::Steady => return,
        Finding::Stalled(l) => (Some(l), None),
        Finding::Jumped(s) => (None, Some(s)),
        Finding::Both(l, s) => (Some(l), Some(s)),
    };
    if let Some(late) = late {
        tracing::warn!(
            seconds = format_args!("{:.1}", late.as_secs_f64()),
            "brummerd did not run for a while (stopped by SIGSTOP or a debugger, or the machine was starved); timers that fell due meanwhile fire now"
        );
    }
    if let Some(skew) = skew {
        tracing::warn!(
            seconds = format_args!("{:+.1}", skew as f64 / 1e6),
            direction = if skew < 0 { "back" } else { "forward" },
            "the wall clock jumped; restart backoff and stop timers are not affected (monotonic clock), log times follow the new clock, so --since/--until around the jump may miss or repeat lines"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_tick_is_steady() {
        assert_eq!(
            judge(Duration::from_millis(1003), 1_004_000),
            Finding::Steady
        );
        // Scheduling jitter and an NTP slew are not jumps.
        assert_eq!(
            judge(Duration::from_millis(2500), 2_400_000),
            Finding::Steady
        );
    }

    #[test]
    fn a_late_tick_with_both_clocks_advanced_is_a_stall() {
        assert_eq!(
            judge(Duration::from_secs(11), 11_000_100),
            Finding::Stalled(Duration::from_secs(10))
        );
    }

    #[test]
    fn the_wall_clock_moving_apart_is_a_jump_either_way() {
        assert_eq!(
            judge(Duration::from_secs(1), -3_599_000_000),
            Finding::Jumped(-3_600_000_000)
        );
        assert_eq!(
            judge(Duration::from_secs(1), 3_601_000_000),
            Finding::Jumped(3_600_000_000)
        );
    }

    #[test]
    fn a_stall_during_which_the_clock_was_set_is_both() {
        assert_eq!(
            judge(Duration::from_secs(6), -10_000_000),
            Finding::Both(Duration::from_secs(5), -16_000_000)
        );
    }
}
