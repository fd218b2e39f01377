//! The restart decision, as a pure function of what happened and when: no clocks, no I/O,
//! no randomness of its own (the caller passes `now` and a jitter sample), so every branch
//! is unit-tested without waiting.
//!
//! Policy: `never` ends in `exited`; `on-failure` restarts unless the exit code was 0;
//! `always` restarts. A restart is immediate when the run was stable (uptime >= reset_after,
//! which also resets the backoff), else after an exponential delay with +-10 % jitter up to
//! the cap. More than `burst` automatic restarts inside `interval` ends in `failed`.

use crate::config::{Backoff, RestartPolicy, StartLimit};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    Code(i32),
    Signal(i32),
    /// It ended while brummerd was not its parent (re-adopted after a crash of brummerd):
    /// only its parent could read the status, and none is made up.
    Unknown,
}

impl ExitKind {
    pub fn success(self) -> bool {
        self == ExitKind::Code(0)
    }
    pub fn code(self) -> Option<i32> {
        match self {
            ExitKind::Code(c) => Some(c),
            ExitKind::Signal(_) | ExitKind::Unknown => None,
        }
    }
    pub fn signal(self) -> Option<i32> {
        match self {
            ExitKind::Signal(s) => Some(s),
            ExitKind::Code(_) | ExitKind::Unknown => None,
        }
    }
}

/// What to do after a run ended on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start again after this delay (zero: at once).
    Restart(Duration),
    /// Stay down: the policy does not restart this exit.
    Exited,
    /// Stay down: too many restarts inside the start-limit interval.
    Failed,
}

/// Restart bookkeeping of one process, owned by its supervisor task.
#[derive(Debug, Clone, Default)]
pub struct RestartState {
    /// Consecutive unstable runs; the next delay is initial * 2^attempts.
    attempts: u32,
    /// When the automatic restarts inside the start-limit window happened.
    recent: VecDeque<Instant>,
}

impl RestartState {
    /// An explicit start or restart forgives the past.
    pub fn reset(&mut self) {
        self.attempts = 0;
        self.recent.clear();
    }

    /// Its memory as ages at `now` (for the re-exec handover): consecutive unstable runs,
    /// and how long ago each restart inside the window was.
    pub fn to_ages(&self, now: Instant) -> (u32, Vec<Duration>) {
        let ages = self
            .recent
            .iter()
            .map(|t| now.saturating_duration_since(*t))
            .collect();
        (self.attempts, ages)
    }

    /// The state [`to_ages`](Self::to_ages) described, at `now`. An age older than the
    /// monotonic clock's origin is dropped: it is outside any window anyway.
    pub fn from_ages(attempts: u32, ages: &[Duration], now: Instant) -> RestartState {
        RestartState {
            attempts,
            recent: ages.iter().filter_map(|a| now.checked_sub(*a)).collect(),
        }
    }

    /// Decides what follows an exit. `jitter` is a sample in [0, 1).
    // Every input of the decision is a parameter: that is what keeps it pure and testable.
    #[allow(clippy::too_many_arguments)]
    pub fn on_exit(
        &mut self,
        policy: RestartPolicy,
        backoff: &Backoff,
        limit: &StartLimit,
        exit: ExitKind,
        uptime: Duration,
        now: Instant,
        jitter: f64,
    ) -> Decision {
        let wants = match policy {
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure => !exit.success(),
            RestartPolicy::Always => true,
        };
        if !wants {
            return Decision::Exited;
        }
        while let Some(&t) = self.recent.front() {
            if now.saturating_duration_since(t) >= limit.interval {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if self.recent.len() >= limit.burst as usize {
            return Decision::Failed;
        }
        self.recent.push_back(now);
        if uptime >= backoff.reset_after {
            self.attempts = 0;
            return Decision::Restart(Duration::ZERO);
        }
        let delay = delay_for(backoff, self.attempts, jitter);
        self.attempts = self.attempts.saturating_add(1);
        Decision::Restart(delay)
    }
}

/// initial * 2^attempts, capped at max, then scaled by a jitter factor in [0.9, 1.1)
/// (and capped again so `max` really is the maximum).
pub fn delay_for(b: &Backoff, attempts: u32, jitter: f64) -> Duration {
    let factor = 2f64.powi(attempts.min(62) as i32);
    let raw = b.initial.as_secs_f64() * factor;
    let capped = raw.min(b.max.as_secs_f64());
    let jittered = capped * (0.9 + 0.2 * jitter.clamp(0.0, 1.0));
    Duration::from_secs_f64(jittered.min(b.max.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            reset_after: Duration::from_secs(1),
        }
    }
    fn limit(burst: u32) -> StartLimit {
        StartLimit {
            burst,
            interval: Duration::from_secs(10),
        }
    }
    const QUICK: Duration = Duration::from_millis(10);

    #[test]
    fn policies() {
        let t = Instant::now();
        let mut s = RestartState::default();
        let (b, l) = (backoff(), limit(5));
        assert_eq!(
            s.on_exit(
                RestartPolicy::Never,
                &b,
                &l,
                ExitKind::Code(1),
                QUICK,
                t,
                0.5
            ),
            Decision::Exited
        );
        assert_eq!(
            s.on_exit(
                RestartPolicy::OnFailure,
                &b,
                &l,
                ExitKind::Code(0),
                QUICK,
                t,
                0.5
            ),
            Decision::Exited
        );
        assert!(matches!(
            s.on_exit(
                RestartPolicy::OnFailure,
                &b,
                &l,
                ExitKind::Signal(9),
                QUICK,
                t,
                0.5
            ),
            Decision::Restart(_)
        ));
        assert!(matches!(
            s.on_exit(
                RestartPolicy::Always,
                &b,
                &l,
                ExitKind::Code(0),
                QUICK,
                t,
                0.5
            ),
            Decision::Restart(_)
        ));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_stable_runs_restart_at_once() {
        let t = Instant::now();
        let mut s = RestartState::default();
        let (b, l) = (backoff(), limit(100));
        let mut delays = vec![];
        for i in 0..8 {
            match s.on_exit(
                RestartPolicy::Always,
                &b,
                &l,
                ExitKind::Code(1),
                QUICK,
                t + Duration::from_millis(i),
                0.5,
            ) {
                Decision::Restart(d) => delays.push(d.as_millis()),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(delays, vec![100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        // A stable run restarts at once and resets the exponent.
        assert_eq!(
            s.on_exit(
                RestartPolicy::Always,
                &b,
                &l,
                ExitKind::Signal(9),
                Duration::from_secs(5),
                t,
                0.5
            ),
            Decision::Restart(Duration::ZERO)
        );
        assert_eq!(
            s.on_exit(
                RestartPolicy::Always,
                &b,
                &l,
                ExitKind::Code(1),
                QUICK,
                t,
                0.5
            ),
            Decision::Restart(Duration::from_millis(100))
        );
    }

    #[test]
    fn ages_round_trip() {
        let t0 = Instant::now();
        let mut s = RestartState::default();
        let (b, l) = (backoff(), limit(10));
        for i in 0..3 {
            let _ = s.on_exit(
                RestartPolicy::Always,
                &b,
                &l,
                ExitKind::Code(1),
                QUICK,
                t0 + Duration::from_secs(i),
                0.5,
            );
        }
        let now = t0 + Duration::from_secs(5);
        let (attempts, ages) = s.to_ages(now);
        assert_eq!(attempts, 3);
        assert_eq!(
            ages,
            vec![
                Duration::from_secs(5),
                Duration::from_secs(4),
                Duration::from_secs(3)
            ]
        );
        let back = RestartState::from_ages(attempts, &ages, now);
        assert_eq!(back.attempts, 3);
        assert_eq!(back.recent, s.recent);
    }

    #[test]
    fn jitter_stays_within_ten_percent_and_under_the_cap() {
        let b = backoff();
        assert_eq!(delay_for(&b, 0, 0.0), Duration::from_millis(90));
        assert!(delay_for(&b, 0, 0.999) < Duration::from_millis(111));
        assert_eq!(delay_for(&b, 30, 0.999), b.max);
    }

    #[test]
    fn start_limit_fails_after_burst_within_interval_and_forgives_later() {
        let t = Instant::now();
        let mut s = RestartState::default();
        let (b, l) = (backoff(), limit(3));
        for i in 0..3 {
            let d = s.on_exit(
                RestartPolicy::Always,
                &b,
                &l,
                ExitKind::Code(1),
                QUICK,
                t + Duration::from_secs(i),
                0.5,
            );
            assert!(matches!(d, Decision::Restart(_)), "restart {i}: {d:?}");
        }
        let at = t + Duration::from_secs(3);
        assert_eq!(
            s.on_exit(
                RestartPolicy::Always,
                &b,
                &l,
                ExitKind::Code(1),
                QUICK,
                at,
                0.5
            ),
            Decision::Failed
        );
        // Outside the window the old restarts no longer count.
        let later = t + Duration::from_secs(12);
        assert!(matches!(
            s.on_exit(
                RestartPolicy::Always,
                &b,
                &l,
                ExitKind::Code(1),
                QUICK,
                later,
                0.5
            ),
            Decision::Restart(_)
        ));
        s.reset();
        assert_eq!(s.recent.len(), 0);
    }
}
