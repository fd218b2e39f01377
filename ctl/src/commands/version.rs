//! `brummerctl version`: this client's version, then the daemon's. The client version is
//! printed before connecting, so it shows even when the daemon is unreachable (exit 3).

use super::Ctx;
use crate::client::decode;
use crate::exit::{CtlError, OK};
use brummer_proto::PROTOCOL_VERSION;
use brummer_proto::methods::{HelloResult, Request, VersionResult};
use serde_json::{Value, json};

pub const CLIENT_VERSION: &str = brummer_proto::VERSION;

pub fn run(ctx: &mut Ctx) -> Result<i32, CtlError> {
    let client = json!({ "version": CLIENT_VERSION, "protocol": PROTOCOL_VERSION });
    if !ctx.json {
        ctx.out.line(&client_line())?;
    }
    let daemon = ctx.connect().and_then(|mut c| {
        let s = c.session(vec![Request::Version], &mut super::ignore_notifications)?;
        let v: VersionResult = decode(s.results[0].clone())?;
        Ok((s.hello, v))
    });
    match daemon {
        Ok((hello, v)) => {
            if ctx.json {
                let daemon = json!({
                    "version": v.version,
                    "protocol": v.protocol,
                    "mode": hello.mode,
                    "pid": hello.pid,
                });
                ctx.out
                    .json_pretty(&json!({ "client": client, "daemon": daemon }))?;
            } else {
                ctx.out.line(&daemon_line(&hello, &v))?;
            }
            Ok(OK)
        }
        Err(e) => {
            if ctx.json {
                ctx.out
                    .json_pretty(&json!({ "client": client, "daemon": Value::Null }))?;
            }
            Err(e)
        }
    }
}

pub fn client_line() -> String {
    format!("brummerctl {CLIENT_VERSION} (protocol {PROTOCOL_VERSION})")
}

/// `brummerd 0.1.0 (protocol 1, user mode, pid 42)`.
pub fn daemon_line(hello: &HelloResult, v: &VersionResult) -> String {
    let version = v.version.strip_prefix("brummerd ").unwrap_or(&v.version);
    format!(
        "brummerd {version} (protocol {}, {} mode, pid {})",
        v.protocol, hello.mode, hello.pid
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(
            client_line(),
            format!("brummerctl {} (protocol 1)", env!("CARGO_PKG_VERSION"))
        );
        let hello = HelloResult {
            protocol: 1,
            daemon: "brummerd 0.1.0".into(),
            mode: "system".into(),
            pid: 42,
            can_write: false,
        };
        for version in ["0.1.0", "brummerd 0.1.0"] {
            let v = VersionResult {
                version: version.into(),
                protocol: 1,
            };
            assert_eq!(
                daemon_line(&hello, &v),
                "brummerd 0.1.0 (protocol 1, system mode, pid 42)"
            );
        }
    }
}
