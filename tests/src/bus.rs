//! A private `dbus-daemon` for the D-Bus tests: a permissive session bus, or a system-type
//! bus that includes a policy file the way /usr/share/dbus-1/system.d/ files are included.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A private `dbus-daemon` on a unix socket in its own temp dir, killed on Drop.
///
/// `session()` is permissive (any uid may connect, own and call); `system_with_policy`
/// mimics Debian's system bus (method calls denied by default) and includes the given
/// policy file, the way /usr/share/dbus-1/system.d/ files are included.
pub struct DbusDaemon {
    pub dir: tempfile::TempDir,
    /// The bus address, for `--dbus-address` and `busctl --address=`.
    pub address: String,
    child: Child,
}

impl DbusDaemon {
    pub fn session() -> DbusDaemon {
        DbusDaemon::start(
            "session",
            r#"<policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>"#,
        )
    }

    pub fn system_with_policy(policy: &Path) -> DbusDaemon {
        let body = format!(
            r#"<policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <include>{}</include>"#,
            policy.display()
        );
        DbusDaemon::start("system", &body)
    }

    fn start(kind: &str, policy: &str) -> DbusDaemon {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("brummer-bus-")
            .tempdir()
            .expect("tempdir");
        // Other uids (the setpriv tests) must reach the socket.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod bus dir");
        let sock = dir.path().join("bus");
        let conf = dir.path().join("bus.conf");
        let text = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>{kind}</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  {policy}
</busconfig>
"#,
            sock.display()
        );
        std::fs::write(&conf, text).expect("write bus config");
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--print-address", "--nofork", "--nopidfile", "--nosyslog"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dbus-daemon (apt-get install dbus)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        // dbus-daemon prints the address once it listens.
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the bus address");
        let address = line.trim().to_string();
        assert!(
            address.starts_with("unix:"),
            "dbus-daemon printed {address:?}"
        );
        DbusDaemon {
            dir,
            address,
            child,
        }
    }

    /// `--dbus=on --dbus-address=ADDRESS`, for `DaemonBuilder::args`.
    pub fn daemon_args(&self) -> Vec<String> {
        vec![
            "--dbus=on".into(),
            format!("--dbus-address={}", self.address),
        ]
    }
}

impl Drop for DbusDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
