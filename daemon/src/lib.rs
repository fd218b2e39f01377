//! brummerd as a library: `daemon::run` takes a loaded configuration, a bound listener and
//! a shutdown future, so tests drive the real daemon in-process and `main.rs` only wires
//! arguments, paths, the socket and signals to it.

pub mod activation;
pub mod capture;
pub mod cli;
pub mod codepages;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dbus;
pub mod disklog;
pub mod entry;
pub mod fd;
pub mod logging;
pub mod logread;
pub mod logthread;
pub mod nofile;
pub mod notify;
pub mod ops;
pub mod paths;
pub mod scanner;
pub mod socket;
pub mod supervisor;
