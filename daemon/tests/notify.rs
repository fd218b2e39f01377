//! sd_notify against a real datagram socket standing in for systemd's. A test binary of its
//! own: it sets NOTIFY_SOCKET, which no other test may see change under it.

use brummerd::systemd::notify::{ready, reloading, status, stopping, watchdog};

#[test]
fn every_message_reaches_the_notify_socket() {
    // A real datagram socket standing in for systemd's: each call must arrive with its
    // fields, which a broken send (or a wrong field) would fail.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notify");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
    // A hang deadline: a message that never comes fails the test instead of blocking it.
    sock.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .expect("read timeout");
    // SAFETY: this test binary holds this one test, so no other thread reads or writes the
    // environment while it changes.
    unsafe { std::env::set_var("NOTIFY_SOCKET", &path) };
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut recv = |sock: &std::os::unix::net::UnixDatagram| {
        let n = sock.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    ready("3 running");
    got.push(recv(&sock));
    reloading();
    got.push(recv(&sock));
    status("2 running");
    got.push(recv(&sock));
    watchdog();
    got.push(recv(&sock));
    stopping();
    got.push(recv(&sock));
    unsafe { std::env::remove_var("NOTIFY_SOCKET") };
    assert!(
        got[0].contains("READY=1") && got[0].contains("STATUS=3 running"),
        "{got:?}"
    );
    assert!(
        got[1].contains("RELOADING=1") && got[1].contains("MONOTONIC_USEC="),
        "{got:?}"
    );
    assert_eq!(got[2].trim(), "STATUS=2 running");
    assert_eq!(got[3].trim(), "WATCHDOG=1");
    assert!(got[4].contains("STOPPING=1"), "{got:?}");
}
