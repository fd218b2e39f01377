//! The systemd plane: what brummerd tells systemd (`notify`: READY=1, STATUS=, RELOADING=1,
//! STOPPING=1, WATCHDOG=1), what systemd hands it (`activation`: the listening socket), and
//! where its own logs go (`journal`: journald under systemd, stderr otherwise).

pub mod activation;
pub mod journal;
pub mod notify;
