//! `brummerctl reload`: ask the daemon to re-read its configuration and say what changed.
//! A rejected configuration comes back as an error reply whose message lists the problems.

use super::Ctx;
use crate::client::decode;
use crate::exit::{CtlError, OK};
use brummer_proto::methods::{ReloadResult, Request};

pub fn run(ctx: &mut Ctx) -> Result<i32, CtlError> {
    let result = ctx.call(Request::Reload)?;
    if ctx.json {
        ctx.out.json_pretty(&result)?;
    } else {
        let r: ReloadResult = decode(result)?;
        ctx.out.line(&render(&r))?;
    }
    Ok(OK)
}

/// `reloaded: 1 added (x), 1 removed (y), 2 changed (a, b), 5 unchanged`.
pub fn render(r: &ReloadResult) -> String {
    let mut parts = Vec::new();
    for (what, names) in [
        ("added", &r.added),
        ("removed", &r.removed),
        ("changed", &r.changed),
    ] {
        if !names.is_empty() {
            parts.push(format!("{} {what} ({})", names.len(), names.join(", ")));
        }
    }
    if parts.is_empty() {
        return format!(
            "reloaded: nothing changed ({} unchanged)",
            r.unchanged.len()
        );
    }
    parts.push(format!("{} unchanged", r.unchanged.len()));
    format!("reloaded: {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn summary() {
        let r = ReloadResult {
            added: names(&["x"]),
            removed: names(&["y"]),
            changed: names(&["a", "b"]),
            unchanged: names(&["1", "2", "3", "4", "5"]),
        };
        assert_eq!(
            render(&r),
            "reloaded: 1 added (x), 1 removed (y), 2 changed (a, b), 5 unchanged"
        );
        let r = ReloadResult {
            changed: names(&["a"]),
            ..Default::default()
        };
        assert_eq!(render(&r), "reloaded: 1 changed (a), 0 unchanged");
        let r = ReloadResult {
            unchanged: names(&["a", "b"]),
            ..Default::default()
        };
        assert_eq!(render(&r), "reloaded: nothing changed (2 unchanged)");
    }
}
