#!/usr/bin/env python3
"""Re-exec cost: N running programs, `daemon-reexec`, time until `status` answers again.

For each N: a fresh brummerd --user with N `sleep` programs (all started), then ROUNDS
re-execs. Each round sends `daemon-reexec` on the socket (the clock starts here), and once
the old image closed that connection (it executed the new one) sends `status` on new connections until one is answered by the new image (the clock stops when the whole answer has arrived, before the probe parses it; a
connection the old image accepted just before it executed ends in EOF and is retried).
Checks that every pid is the same after the rounds. Prints one JSON line per N with the
median and the maximum, in milliseconds.

usage: reexec.py BIN_DIR [N ...]   (default N: 10 100 1000; ROUNDS env, default 5)
"""
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROUNDS = int(os.environ.get("ROUNDS", "5"))


RECEIVED = [0.0]


def call(path, method, params=None, timeout=60, until_eof=False):
    """One request on a new connection; None when the connection ends before the answer.
    `until_eof`: after the answer, wait until the daemon closes the connection."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        req = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}
        s.sendall((json.dumps(req) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                return None
            buf += chunk
        # The answer is in: the clock stops here, not after the probe's own JSON parse
        # (of a large answer: Python time, not the daemon's).
        RECEIVED[0] = time.monotonic()
        while until_eof and s.recv(1 << 16):
            pass
        return json.loads(buf)
    except (ConnectionRefusedError, FileNotFoundError, ConnectionResetError):
        return None
    finally:
        s.close()


def pids(path):
    r = call(path, "status")
    return {p["name"]: p.get("pid") for p in r["result"]["processes"]}


def run(bindir, n):
    d = tempfile.mkdtemp(prefix="brummer-reexec-")
    for sub in ("run", "state", "cfg/brummer"):
        os.makedirs(os.path.join(d, sub))
    os.chmod(os.path.join(d, "run"), 0o700)
    cfg = os.path.join(d, "cfg/brummer/brummer.toml")
    with open(cfg, "w") as f:
        for i in range(n):
            f.write(f'[process.p{i:04}]\ncommand = ["/bin/sleep", "100000"]\n\n')
    env = dict(os.environ, XDG_RUNTIME_DIR=f"{d}/run", XDG_STATE_HOME=f"{d}/state",
               XDG_CONFIG_HOME=f"{d}/cfg")
    sock = f"{d}/run/brummer/brummer.sock"
    err = open(f"{d}/daemon.err", "w")
    daemon = subprocess.Popen([f"{bindir}/brummerd", "--user", "--dbus=off", "--config", cfg],
                              env=env, stderr=err, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            r = call(sock, "status") if os.path.exists(sock) else None
            if r and sum(p["state"] == "running" for p in r["result"]["processes"]) == n:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"N={n}: programs not all running in time")
            time.sleep(0.05)
        before = pids(sock)
        times = []
        for _ in range(ROUNDS):
            t0 = time.monotonic()
            # The old image answers, hands over and closes the connection when it
            # executes the new one: until then `status` would still be answered by it.
            r = call(sock, "daemon-reexec", until_eof=True)
            assert r and "result" in r, r
            while True:
                s = call(sock, "status")
                if s and "result" in s:
                    break
            times.append((RECEIVED[0] - t0) * 1000)
        after = pids(sock)
        assert before == after, "a pid changed across the re-execs"
        return {"programs": n, "rounds": ROUNDS,
                "median_ms": round(statistics.median(times), 1),
                "max_ms": round(max(times), 1),
                "all_ms": [round(t, 1) for t in times]}
    finally:
        daemon.terminate()
        daemon.wait(timeout=120)


def main():
    bindir = os.path.abspath(sys.argv[1])
    ns = [int(a) for a in sys.argv[2:]] or [10, 100, 1000]
    for n in ns:
        print(json.dumps(run(bindir, n)), flush=True)


if __name__ == "__main__":
    main()
