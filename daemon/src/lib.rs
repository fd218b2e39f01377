//! brummerd as a library: `server::run` takes a loaded configuration, a bound listener and
//! a shutdown future; `main.rs` wires arguments, paths, the socket and signals to it. The
//! modules are layered (docs/architecture.md, "Layers"; checked by `cargo xtask layers`):
//!
//! - server: `server`, `cli`, `paths`, `nofile`, `fuzz` (the fuzz targets' entry points)
//! - planes: `control` (Unix socket), `dbus`, `systemd`
//! - ops: `ops` (one file per operation, typed `OpError`)
//! - state: `state`
//! - process: `process` (entry, command, supervisor)
//! - desired: `desired` (runtime state and enable overrides, on disk)
//! - logs: `logs` (capture, threads, read, follow, scanner, disk)
//! - access: `access` (who may change what)
//! - base: `config`, `shutdown`, `fd`, `mode`, `codepages`, `clockwatch`, `cgroup`

pub mod access;
pub mod cgroup;
pub mod cli;
pub mod clockwatch;
pub mod codepages;
pub mod config;
pub mod control;
pub mod dbus;
pub mod desired;
pub mod fd;
pub mod fdstore;
#[doc(hidden)]
pub mod fuzz;
pub mod handover;
pub mod logs;
pub mod mode;
pub mod nofile;
pub mod ops;
pub mod paths;
pub mod process;
pub mod scrape;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod systemd;
