#!/usr/bin/env python3
"""What the per-program metrics cost (issue 18): status of every program, with metrics, and
the usage sampler's CPU, at N programs, for one or more brummerd builds side by side.

For each N and each build (interleaved, REPS times): a fresh brummerd --user with N
`sleep` programs, all started; once every program is running (and, for a build with
metrics, has its first sample):
  - status-all through the CLI: `brummerctl status --json`, CALLS times, process start to
    exit (as bench/scaling.py and run.py's W2 measure it), median and p95;
  - status-all on the socket: the `status` request alone on an open connection, CALLS
    times, median (the daemon's side without the CLI's process start), and its size;
  - idle CPU: brummerd's utime+stime over WINDOW seconds with nothing asked of it, in
    percent of one CPU (the sampler is the only periodic work);
  - brummerd's RSS at the end;
  - what one pass over the programs' /proc files costs from here (Python: an upper bound,
    for comparison between the files), in µs per process: `stat` (what the /proc scan
    reads anyway), `io` (one more read per member), `smaps_rollup` (what PSS would add).
Prints one JSON line per run and a summary table (medians over the reps).

usage: usage-cost.py LABEL=BIN_DIR [LABEL=BIN_DIR ...]
env: N="100 1000", REPS=3, CALLS=30, WINDOW=20

A LABEL ending in "@cgroup" starts that brummerd in a delegated transient scope
(`systemd-run --scope -p Delegate=yes`, root on a systemd host with cgroup v2), so it
runs each program in a cgroup and samples the cgroup files instead of /proc.
"""
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

NS = [int(x) for x in os.environ.get("N", "100 1000").split()]
REPS = int(os.environ.get("REPS", "3"))
CALLS = int(os.environ.get("CALLS", "30"))
WINDOW = float(os.environ.get("WINDOW", "20"))
TICK = os.sysconf("SC_CLK_TCK")


class Conn:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(60)
        self.s.connect(path)
        self.buf = b""
        self.id = 0

    def call(self, method, params=None):
        self.id += 1
        req = {"jsonrpc": "2.0", "id": self.id, "method": method, "params": params or {}}
        self.s.sendall((json.dumps(req) + "\n").encode())
        while b"\n" not in self.buf:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise SystemExit("brummerd closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def close(self):
        self.s.close()


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def run(label, bindir, n):
    d = tempfile.mkdtemp(prefix="brummer-usage-")
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
    wrap = (["systemd-run", "--scope", "--quiet", "-p", "Delegate=yes", "--"]
            if label.endswith("@cgroup") else [])
    daemon = subprocess.Popen(wrap + [f"{bindir}/brummerd", "--user", "--dbus=off", "--config", cfg],
                              env=env, stderr=err, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not os.path.exists(sock):
            time.sleep(0.05)
        c = Conn(sock)
        while True:
            procs = json.loads(c.call("status"))["result"]["processes"]
            running = sum(p["state"] == "running" for p in procs)
            sampled = sum("metrics" in p for p in procs)
            with_metrics = "containment" in procs[0]
            if label.endswith("@cgroup") and procs[0].get("containment") != "cgroup":
                raise SystemExit(f"{label}: brummerd has no cgroup containment (see {d}/daemon.err)")
            if running == n and (not with_metrics or sampled == n):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{label} N={n}: not all running (and sampled) in time")
            time.sleep(0.1)
        cli = []
        for _ in range(CALLS):
            t0 = time.perf_counter()
            subprocess.run([f"{bindir}/brummerctl", "--socket", sock, "--json", "status"],
                           stdout=subprocess.DEVNULL, check=True)
            cli.append((time.perf_counter() - t0) * 1000)
        raw, size = [], 0
        for _ in range(CALLS):
            t0 = time.perf_counter()
            size = len(c.call("status"))
            raw.append((time.perf_counter() - t0) * 1000)
        c.close()
        pids = [p["pid"] for p in json.loads(Conn(sock).call("status"))["result"]["processes"]]
        costs = {}
        for name in ("stat", "io", "smaps_rollup"):
            t0 = time.perf_counter()
            for pid in pids:
                with open(f"/proc/{pid}/{name}", "rb") as f:
                    f.read()
            costs[f"{name}_us"] = round((time.perf_counter() - t0) / len(pids) * 1e6, 1)
        a = cpu_ticks(daemon.pid)
        t0 = time.monotonic()
        time.sleep(WINDOW)
        b = cpu_ticks(daemon.pid)
        secs = time.monotonic() - t0
        return {"build": label, "programs": n,
                "cli_median_ms": round(statistics.median(cli), 2),
                "cli_p95_ms": round(pct(cli, 0.95), 2),
                "socket_median_ms": round(statistics.median(raw), 2),
                "status_bytes": size,
                "idle_cpu_pct": round((b - a) / TICK / secs * 100, 2),
                "rss_mib": round(rss_kib(daemon.pid) / 1024, 1), **costs}
    finally:
        daemon.terminate()
        daemon.wait(timeout=180)


def main():
    builds = [a.split("=", 1) for a in sys.argv[1:]]
    if not builds or any(len(b) != 2 for b in builds):
        raise SystemExit(__doc__)
    runs = []
    for n in NS:
        for rep in range(REPS):
            order = builds[rep % len(builds):] + builds[:rep % len(builds)]
            for label, bindir in order:
                r = run(label, os.path.abspath(bindir), n)
                print(json.dumps(r), flush=True)
                runs.append(r)
    keys = ["cli_median_ms", "cli_p95_ms", "socket_median_ms", "status_bytes",
            "idle_cpu_pct", "rss_mib", "stat_us", "io_us", "smaps_rollup_us"]
    print("| build | programs | " + " | ".join(keys) + " |")
    print("| --- | --- |" + " --- |" * len(keys))
    for n in NS:
        for label, _ in builds:
            rs = [r for r in runs if r["build"] == label and r["programs"] == n]
            print(f"| {label} | {n} | " + " | ".join(
                str(round(statistics.median(r[k] for r in rs), 2)) for k in keys) + " |")


if __name__ == "__main__":
    main()
