//! brummerd as a library: `run` takes a loaded configuration, listeners and a shutdown
//! handle, so tests drive the real daemon in-process and `main.rs` only wires it.

pub mod config;
