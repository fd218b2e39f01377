//! brummerd as a library: `daemon::run` takes a loaded configuration, a bound listener and
//! a shutdown future, so tests drive the real daemon in-process and `main.rs` only wires
//! arguments, paths, the socket and signals to it.

pub mod capture;
pub mod config;
pub mod control;
pub mod daemon;
pub mod disklog;
pub mod entry;
pub mod fd;
pub mod logread;
pub mod paths;
pub mod scanner;
pub mod socket;
pub mod supervisor;
