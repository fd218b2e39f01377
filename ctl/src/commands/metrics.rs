//! `brummerctl metrics`: every process's and brummerd's figures in the Prometheus text
//! format, exactly as brummerd renders them (the same text its optional HTTP listener
//! serves); with --json, the daemon's object `{"text": ...}`.

use super::Ctx;
use crate::client::decode;
use crate::exit::{CtlError, OK};
use brummer_proto::methods::{MetricsResult, Request};

pub fn run(ctx: &mut Ctx) -> Result<i32, CtlError> {
    let result = ctx.call(Request::Metrics)?;
    if ctx.json {
        ctx.out.json_pretty(&result)?;
        return Ok(OK);
    }
    let m: MetricsResult = decode(result)?;
    ctx.out.text(&m.text)?;
    Ok(OK)
}
