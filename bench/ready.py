#!/usr/bin/env python3
"""How long brummerd takes to see a program ready, per way of becoming ready (issue 16).

    python3 bench/ready.py [--bin target/release] [--n 20]

Starts one brummerd --user in a temp dir with N programs per kind, each ready as soon as it
can be: `notify` (systemd-notify --ready, then sleep), `log` (echo a line, then sleep),
`exec` (probe `true`), `tcp` (probe a port this script listens on), `http` (probe a tiny
server this script runs). Every probe has interval 1s and start_period 0, so the first try
runs at the spawn. Measures, from the daemon's own event time stamps, spawn (`starting`
with a pid) to `running`, and prints the median and max per kind. The notify and log
kinds include the program's own start (sh, systemd-notify); the probe kinds run `sleep`.
"""
from __future__ import annotations

import argparse
import http.server
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(REPO, "target", "debug"))
    ap.add_argument("--n", type=int, default=20)
    a = ap.parse_args()

    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(1024)
    tcp_port = tcp.getsockname()[1]

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    # socketserver's default backlog of 5 drops simultaneous SYNs (the client retries
    # after 1 s): that would measure this script, not brummerd.
    http.server.ThreadingHTTPServer.request_queue_size = 1024
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    http_port = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    kinds = {
        "notify": ('command = "systemd-notify --ready; exec sleep 1000"\nready = "notify"\n'),
        "log": ('command = "echo up and ready; exec sleep 1000"\nready = { log = "ready$" }\n'),
        "exec": ('command = ["sleep", "1000"]\nready = { exec = ["true"] }\n'),
        "tcp": (f'command = ["sleep", "1000"]\nready = {{ tcp = "127.0.0.1:{tcp_port}" }}\n'),
        "http": (
            f'command = ["sleep", "1000"]\n'
            f'ready = {{ http = "http://127.0.0.1:{http_port}/" }}\n'
        ),
    }
    with tempfile.TemporaryDirectory(prefix="brummer-ready-") as root:
        cfg = os.path.join(root, "cfg", "brummer")
        os.makedirs(cfg)
        os.makedirs(os.path.join(root, "run"))
        with open(os.path.join(cfg, "brummer.toml"), "w") as f:
            for kind, body in kinds.items():
                for i in range(a.n):
                    f.write(f"[process.{kind}-{i}]\n{body}autostart = false\n\n")
        env = dict(os.environ, XDG_RUNTIME_DIR=os.path.join(root, "run"),
                   XDG_STATE_HOME=os.path.join(root, "state"),
                   XDG_CONFIG_HOME=os.path.join(root, "cfg"))
        env.pop("DBUS_SESSION_BUS_ADDRESS", None)
        d = subprocess.Popen([os.path.join(a.bin, "brummerd"), "--user", "--dbus=off"],
                             env=env, stderr=subprocess.DEVNULL)
        ctl = [os.path.join(a.bin, "brummerctl")]
        sock = os.path.join(root, "run", "brummer", "brummer.sock")
        ctl += ["--socket", sock]
        deadline = time.time() + 10
        while not os.path.exists(sock) and time.time() < deadline:
            time.sleep(0.01)
        # Subscribed (the reply read) before the start, so no event is missed.
        conn = socket.socket(socket.AF_UNIX)
        conn.connect(sock)
        rd = conn.makefile("r")
        conn.sendall(b'{"jsonrpc":"2.0","id":1,"method":"subscribe"}\n')
        assert "result" in json.loads(rd.readline())
        subprocess.run(ctl + ["start", "--all"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        spawned: dict[str, int] = {}
        ready: dict[str, int] = {}
        total = a.n * len(kinds)
        deadline = time.time() + 60
        while len(ready) < total and time.time() < deadline:
            line = rd.readline()
            if not line:
                break
            e = json.loads(line).get("params", {})
            if e.get("type") != "state-changed":
                continue
            if e["new"] == "starting" and e.get("pid"):
                spawned[e["process"]] = e["time_us"]
            elif e["new"] == "running":
                ready[e["process"]] = e["time_us"]
        conn.close()
        subprocess.run(ctl + ["stop", "--all"], env=env, stdout=subprocess.DEVNULL)
        d.terminate()
        d.wait()
    print(f"| kind | n | median ms | max ms |   ({a.bin}, {os.cpu_count()} cpus)")
    print("| --- | --- | --- | --- |")
    for kind in kinds:
        ms = [(ready[p] - spawned[p]) / 1000 for p in ready if p.startswith(kind + "-")
              and p in spawned]
        if not ms:
            print(f"| {kind} | 0 | - | - |")
            continue
        print(f"| {kind} | {len(ms)} | {statistics.median(ms):.1f} | {max(ms):.1f} |")
    return 0 if len(ready) == total else 1


if __name__ == "__main__":
    sys.exit(main())
