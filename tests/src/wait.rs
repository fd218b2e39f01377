//! Waiting without sleeping as synchronisation: poll a named condition until a deadline that
//! only a hang reaches, and say which condition timed out.

use std::time::{Duration, Instant};

/// The deadline of a wait that should take milliseconds: long enough that only a hang (or a
/// broken feature) reaches it on a loaded machine.
pub const T: Duration = Duration::from_secs(15);

/// Polls `f` every few milliseconds until it returns `Some`, or panics naming `what`
/// after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}
