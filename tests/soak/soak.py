#!/usr/bin/env python3
"""Soak test of brummerd: many programs, many clients, reloads, for a long time.

Starts a private dbus-daemon and `brummerd --user` (its XDG folders in a temp dir) with
PROGRAMS programs:

- writers (0.5%, at least 2): write numbered lines as fast as the pipe takes them and, on
  SIGTERM, a last `PID END N` line; their disk logs rotate (4 MiB x 3 files);
- crash-loopers (10%, at least 2): print a line, run 1-4 s, exit 3; restart always;
- quiet programs (the rest): a line every 20 s.

and CLIENTS clients at once, each picking a role: status readers (raw socket and
brummerctl), log followers (`follow` on the socket and `brummerctl logs -f`), event
subscribers (`subscribe` and `brummerctl events`), start/stop/restart callers, log readers;
plus one D-Bus client (busctl calls, gdbus monitor of StateChanged) and a reloader that adds
and removes programs every RELOAD_EVERY seconds.

Measured and checked (exit status 1 when a check fails):

- brummerd's RSS, fd count, threads and CPU time, sampled into samples.csv, with what the
  log rings hold (they fill by design, up to ring_bytes per program); the last window's
  RSS less the rings, and fds, against the first window after warm-up;
- every request got its answer (timeouts, dropped connections and unexpected errors are
  counted per role); streams: every log line and event arrives in sequence order, or its
  absence is announced by a `missed` notification with the exact count;
- no line lost on disk: every program's index has no gap between records, every
  non-rotated log holds exactly the lines status counted, and every writer run in the
  retained segments is complete (consecutive numbers up to its END line);
- at the end `stop --all` succeeds, brummerd exits 0 on SIGTERM and no process carrying
  the soak's tag survives.

  tests/soak/soak.py --programs 1000 --clients 100 --duration 3600 --out /tmp/soak
  tests/soak/plot.py /tmp/soak/samples.csv docs/soak.png

The CI variant (.ci/run) is `--programs 60 --clients 12 --duration 60`.
"""

import argparse
import csv
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WRITER = r"""
import os, signal
stop = False
def h(s, f):
    global stop
    stop = True
signal.signal(signal.SIGTERM, h)
pre = str(os.getpid()).encode() + b" "
pad = b" " + b"x" * 60 + b"\n"
n = 0
while not stop:
    buf = b"".join(pre + str(i).encode() + pad for i in range(n, n + 400))
    n += 400
    mv = memoryview(buf)
    while mv:
        mv = mv[os.write(1, mv):]
os.write(1, pre + b"END " + str(n).encode() + b"\n")
"""

CRASHER = 'echo "crash-loop $$ starting"; sleep {secs}; echo "ERROR giving up"; exit 3'
QUIET = 'echo "quiet $$ up"; while :; do sleep 20; echo "tick $$"; done'


def toml_str(s):
    return json.dumps(s)


def fd_kinds(pid):
    """brummerd's descriptors by kind, so that a growth names what grows (a pipe per child
    stream, a socket per client, a pidfd per child, a file per disk segment)."""
    kinds = {"pipe": 0, "socket": 0, "pidfd": 0, "file": 0, "other": 0}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("pipe:"):
            kinds["pipe"] += 1
        elif target.startswith("socket:"):
            kinds["socket"] += 1
        elif target == "anon_inode:[pidfd]":
            kinds["pidfd"] += 1
        elif target.startswith("/"):
            kinds["file"] += 1
        else:
            kinds["other"] += 1
    return kinds


class Plan:
    """The programs: names, kinds and their TOML."""

    def __init__(self, programs, rng):
        self.writers = [f"w{i:04d}" for i in range(max(2, programs // 200))]
        self.crashers = [f"c{i:04d}" for i in range(max(2, programs // 10))]
        nq = max(1, programs - len(self.writers) - len(self.crashers))
        self.quiet = [f"q{i:04d}" for i in range(nq)]
        self.extras = [f"x{i:04d}" for i in range(max(2, programs // 100))]
        self.crash_secs = {c: rng.choice(["1", "1.5", "2", "3", "4"]) for c in self.crashers}
        self.generation = 0

    def stable(self):
        return self.writers + self.crashers + self.quiet

    def render(self, with_extras):
        out = []
        for w in self.writers:
            out.append(f"[process.{w}]\ncommand = [\"/usr/bin/python3\", \"-c\", {toml_str(WRITER)}]\n"
                       f"restart = \"on-failure\"\n[process.{w}.logs]\nmax_bytes = \"4MiB\"\nmax_files = 3\n")
        for c in self.crashers:
            out.append(f"[process.{c}]\ncommand = [\"sh\", \"-c\", {toml_str(CRASHER.format(secs=self.crash_secs[c]))}]\n"
                       f"restart = \"always\"\n[process.{c}.backoff]\ninitial = \"500ms\"\nmax = \"2s\"\n"
                       f"[process.{c}.start_limit]\nburst = 1000000\ninterval = \"1s\"\n")
        for i, q in enumerate(self.quiet):
            # The reloader changes the environment of one quiet program in ten each time.
            gen = self.generation if i % 10 == 0 else 0
            out.append(f"[process.{q}]\ncommand = [\"sh\", \"-c\", {toml_str(QUIET)}]\n"
                       f"[process.{q}.env]\nSOAK_GEN = \"{gen}\"\n")
        if with_extras:
            for x in self.extras:
                out.append(f"[process.{x}]\ncommand = [\"sh\", \"-c\", {toml_str(QUIET)}]\n")
        return "\n".join(out)


class Stats:
    """Counters shared by the clients: per role, requests, answers and failures."""

    def __init__(self):
        self.lock = threading.Lock()
        self.c = defaultdict(Counter)
        self.failures = []

    def add(self, role, key, n=1):
        with self.lock:
            self.c[role][key] += n

    def fail(self, role, what):
        with self.lock:
            self.c[role]["failures"] += 1
            if len(self.failures) < 200:
                self.failures.append(f"{time.strftime('%H:%M:%S')} {role}: {what}")

    def total(self, key):
        with self.lock:
            return sum(c[key] for c in self.c.values())

    def snapshot(self):
        with self.lock:
            return {r: dict(c) for r, c in sorted(self.c.items())}


class Conn:
    """One JSON-RPC connection to brummerd's socket."""

    def __init__(self, path, timeout):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""
        self.next_id = 1

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def send(self, method, params=None):
        i = self.next_id
        self.next_id += 1
        req = {"jsonrpc": "2.0", "id": i, "method": method}
        if params is not None:
            req["params"] = params
        self.s.sendall(json.dumps(req).encode() + b"\n")
        return i

    def read(self):
        """The next message; raises socket.timeout, or EOFError when the daemon closed."""
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                line, self.buf = self.buf[:nl], self.buf[nl + 1:]
                return json.loads(line)
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise EOFError("brummerd closed the connection")
            self.buf += chunk

    def call(self, method, params=None, on_note=None):
        i = self.send(method, params)
        while True:
            m = self.read()
            if m.get("id") == i:
                return m
            if on_note:
                on_note(m)


class Soak:
    def __init__(self, args):
        self.a = args
        self.rng = random.Random(args.seed)
        self.plan = Plan(args.programs, self.rng)
        self.stats = Stats()
        self.stop = threading.Event()
        self.tag = f"soak-{os.getpid()}-{int(time.time())}"
        self.root = tempfile.mkdtemp(prefix="brummer-soak-")
        self.out = args.out
        os.makedirs(self.out, exist_ok=True)
        self.sock = os.path.join(self.root, "run/brummer/brummer.sock")
        self.log_dir = os.path.join(self.root, "state/brummer/logs")
        self.config = os.path.join(self.root, "cfg/brummer/brummer.toml")
        self.ctl = os.path.join(args.bin_dir, "brummerctl")
        self.extras_on = False
        self.cfg_lock = threading.Lock()
        self.checks = {}
        self.bus = None
        self.daemon = None

    # --- setup -----------------------------------------------------------------------

    def start_bus(self):
        conf = os.path.join(self.root, "bus.conf")
        path = os.path.join(self.root, "bus")
        with open(conf, "w") as f:
            f.write(f"""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:path={path}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*" eavesdrop="true"/>
<allow eavesdrop="true"/></policy>
</busconfig>""")
        self.bus = subprocess.Popen(["dbus-daemon", f"--config-file={conf}", "--nofork", "--print-address", "--nopidfile",
                                     "--nosyslog"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.bus_address = self.bus.stdout.readline().strip()
        if not self.bus_address:
            raise SystemExit("soak: dbus-daemon printed no address")

    def start_daemon(self):
        for sub in ["run", "state", "cfg/brummer"]:
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        with open(self.config, "w") as f:
            f.write(self.plan.render(False))
        env = dict(os.environ)
        env.update(XDG_RUNTIME_DIR=os.path.join(self.root, "run"),
                   XDG_STATE_HOME=os.path.join(self.root, "state"),
                   XDG_CONFIG_HOME=os.path.join(self.root, "cfg"),
                   BRUMMER_SOAK_TAG=self.tag, BRUMMER_LOG="info")
        for k in ["DBUS_SESSION_BUS_ADDRESS", "BRUMMER_DBUS_ADDRESS", "BRUMMER_SOCKET"]:
            env.pop(k, None)
        self.daemon_log = open(os.path.join(self.out, "daemon.log"), "w")
        self.daemon = subprocess.Popen(
            [os.path.join(self.a.bin_dir, "brummerd"), "--user", "--config", self.config,
             "--dbus=on", "--dbus-address", self.bus_address],
            env=env, stdin=subprocess.DEVNULL, stdout=self.daemon_log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.daemon.poll() is not None:
                raise SystemExit(f"soak: brummerd exited early ({self.daemon.returncode}); see {self.out}/daemon.log")
            try:
                Conn(self.sock, 5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("soak: brummerd's socket did not answer within 120 s")

    def wait_all_started(self):
        """Until every writer and quiet program runs (the crashers come and go)."""
        want = set(self.plan.writers + self.plan.quiet)
        deadline = time.time() + 300
        while time.time() < deadline:
            c = Conn(self.sock, 60)
            r = c.call("status")
            c.close()
            running = {p["name"] for p in r["result"]["processes"] if p["state"] == "running"}
            if want <= running:
                return
            time.sleep(1)
        raise SystemExit(f"soak: not all programs running after 300 s: {sorted(want - running)[:10]}")

    # --- sampling --------------------------------------------------------------------

    def sample(self, t0):
        pid = self.daemon.pid
        rss = hwm = threads = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
        kinds = fd_kinds(pid)
        fds = sum(kinds.values())
        with open(f"/proc/{pid}/stat") as f:
            st = f.read().rsplit(")", 1)[1].split()
        cpu = (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")
        children = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    children += len(f.read().split())
            except OSError:
                pass
        return dict(t_s=round(time.time() - t0, 1), rss_kib=rss, ring_kib=self.ring_kib(), hwm_kib=hwm, fds=fds,
                    threads=threads, cpu_s=round(cpu, 2), children=children, answers=self.stats.total("answers"),
                    stream_lines=self.stats.total("lines"), events=self.stats.total("events"),
                    **{f"fds_{k}": v for k, v in kinds.items()})

    def ring_kib(self):
        """What the log rings hold (the memory brummerd is meant to fill, up to ring_bytes
        per program), estimated from status: captured bytes plus a 48-byte header per line
        (one record per read, and quiet programs write a line per read), capped at the ring
        size. RSS grows with it until the rings are full; RSS minus this is what must stay flat."""
        try:
            c = Conn(self.sock, self.a.answer_timeout)
            ps = c.call("status")["result"]["processes"]
            c.close()
        except (OSError, EOFError, KeyError):
            return -1
        cap = 1 << 20
        return sum(min(cap, p["logs"]["bytes"] + 48 * p["logs"]["lines"]) for p in ps) // 1024

    def sampler(self, t0, rows):
        path = os.path.join(self.out, "samples.csv")
        with open(path, "w", newline="") as f:
            w = None
            while not self.stop.is_set():
                try:
                    row = self.sample(t0)
                except OSError:
                    break
                rows.append(row)
                if w is None:
                    w = csv.DictWriter(f, fieldnames=list(row))
                    w.writeheader()
                w.writerow(row)
                f.flush()
                self.stop.wait(self.a.sample_every)

    # --- clients ---------------------------------------------------------------------

    def pick(self, kinds=("w", "c", "q")):
        names = [n for n in self.plan.stable() if n[0] in kinds]
        return self.rng.choice(names)

    def answered(self, role, r):
        self.stats.add(role, "answers")
        if "error" in r:
            self.stats.fail(role, f"error reply: {r['error']}")
            return False
        return True

    def session(self, role, body):
        """Runs client sessions until the soak ends: a dropped connection or a timeout is a
        failure, then a new connection."""
        while not self.stop.is_set():
            c = None
            try:
                c = Conn(self.sock, self.a.answer_timeout)
                body(c)
            except socket.timeout:
                self.stats.fail(role, "no answer within the timeout")
            except (EOFError, ConnectionError, OSError) as e:
                if not self.stop.is_set():
                    self.stats.fail(role, f"connection: {e!r}")
            finally:
                if c:
                    c.close()

    def client_status(self, k):
        role = "status"

        def body(c):
            for _ in range(self.rng.randint(5, 50)):
                if self.stop.is_set():
                    return
                x = self.rng.random()
                if x < 0.1:
                    r = c.call("status")
                    if self.answered(role, r) and len(r["result"]["processes"]) < len(self.plan.stable()):
                        self.stats.fail(role, f"status lists {len(r['result']['processes'])} programs")
                elif x < 0.2:
                    self.answered(role, c.call("list"))
                else:
                    names = [self.pick() for _ in range(self.rng.randint(1, 5))]
                    self.answered(role, c.call("status", {"names": names}))
                self.stats.add(role, "requests")
                self.stop.wait(self.rng.uniform(0.2, 2.0))
        self.session(role, body)

    def client_ctl_status(self, k):
        role = "ctl-status"
        while not self.stop.is_set():
            self.stats.add(role, "requests")
            try:
                p = subprocess.run([self.ctl, "--socket", self.sock, "--json", "status"], capture_output=True,
                                   timeout=self.a.answer_timeout, stdin=subprocess.DEVNULL)
                self.stats.add(role, "answers")
                if p.returncode != 0:
                    self.stats.fail(role, f"exit {p.returncode}: {p.stderr[-300:]!r}")
            except subprocess.TimeoutExpired:
                self.stats.fail(role, "brummerctl status did not answer")
            self.stop.wait(self.rng.uniform(2, 8))

    def client_control(self, k):
        role = "control"

        def body(c):
            for _ in range(self.rng.randint(3, 20)):
                if self.stop.is_set():
                    return
                name = self.pick(("w", "q", "c"))
                for method in self.rng.choice([["stop", "start"], ["restart"], ["start"]]):
                    self.stats.add(role, "requests")
                    r = c.call(method, {"names": [name]})
                    if self.answered(role, r):
                        for res in r["result"]["results"]:
                            # A crash-looper can be between runs when asked: its start may
                            # find it starting; only an unexpected failure counts.
                            if not res["ok"] and not name.startswith("c"):
                                self.stats.fail(role, f"{method} {name}: {res.get('error')}")
                self.stop.wait(self.rng.uniform(0.5, 4))
        self.session(role, body)

    def client_follow(self, k):
        role = "follow"

        def body(c):
            if k % 10 == 0:
                names = [self.rng.choice(self.plan.writers)]
            else:
                names = [self.pick(("c", "q")) for _ in range(self.rng.randint(1, 8))]
            last = {}
            missed = Counter()

            def on(m):
                meth = m.get("method")
                p = m.get("params", {})
                if meth == "log":
                    self.stats.add(role, "lines")
                    name, seq = p["process"], p["seq"]
                    if name in last and seq != last[name] + 1:
                        gap = seq - last[name] - 1
                        if gap != missed[name]:
                            self.stats.fail(role, f"{name}: seq {last[name]} then {seq}, missed told {missed[name]}")
                    missed[name] = 0
                    last[name] = seq
                elif meth == "missed":
                    self.stats.add(role, "missed_lines", p["count"])
                    missed[p["process"]] += p["count"]

            r = c.call("follow", {"names": names, "lines": self.rng.choice([0, 10])}, on)
            self.stats.add(role, "requests")
            if not self.answered(role, r):
                return
            end = time.time() + self.rng.uniform(10, 120)
            c.s.settimeout(1.0)
            while time.time() < end and not self.stop.is_set():
                try:
                    on(c.read())
                except socket.timeout:
                    pass
            c.s.settimeout(self.a.answer_timeout)
            if self.rng.random() < 0.5:
                self.stats.add(role, "requests")
                r = c.call("unsubscribe", {"subscription": r["result"]["subscription"]}, on)
                self.answered(role, r)
        self.session(role, body)

    def client_events(self, k):
        role = "events"

        def body(c):
            state = {"last": None, "missed": 0}

            def on(m):
                meth = m.get("method")
                p = m.get("params", {})
                if meth == "event":
                    self.stats.add(role, "events")
                    seq = p["seq"]
                    if state["last"] is not None and seq != state["last"] + 1:
                        if seq - state["last"] - 1 != state["missed"]:
                            self.stats.fail(role, f"event seq {state['last']} then {seq}, missed told {state['missed']}")
                    state["last"], state["missed"] = seq, 0
                elif meth == "missed":
                    self.stats.add(role, "missed_events", p["count"])
                    state["missed"] += p["count"]

            r = c.call("subscribe", None, on)
            self.stats.add(role, "requests")
            if not self.answered(role, r):
                return
            state["last"] = r["result"]["seq"]
            end = time.time() + self.rng.uniform(10, 120)
            c.s.settimeout(1.0)
            while time.time() < end and not self.stop.is_set():
                try:
                    on(c.read())
                except socket.timeout:
                    pass
        self.session(role, body)

    def client_ctl_stream(self, k):
        """`brummerctl logs -f` or `brummerctl events`, for a while, then interrupted."""
        role = "ctl-stream"
        while not self.stop.is_set():
            if k % 2:
                argv = [self.ctl, "--socket", self.sock, "logs", "-f", "-n", "5", self.pick(("c", "q"))]
            else:
                argv = [self.ctl, "--socket", self.sock, "events"]
            self.stats.add(role, "requests")
            # A soak started in the background (`cmd &`) inherits SIGINT ignored, and so would
            # brummerctl: give it the default disposition, as a terminal user's has.
            p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
            got = []
            t = threading.Thread(target=lambda: got.extend(p.stdout), daemon=True)
            t.start()
            self.stop.wait(self.rng.uniform(5, 60))
            if p.poll() is not None:
                self.stats.fail(role, f"{argv[3:]} ended by itself: {p.returncode} {p.stderr.read()[-300:]!r}")
            p.send_signal(signal.SIGINT)
            try:
                p.wait(self.a.answer_timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                self.stats.fail(role, f"{argv[3:]} did not end on SIGINT")
            t.join(5)
            self.stats.add(role, "answers")
            self.stats.add(role, "lines", len(got))

    def client_logs(self, k):
        role = "logs"

        def body(c):
            for _ in range(self.rng.randint(3, 20)):
                if self.stop.is_set():
                    return
                name = self.pick()
                if self.rng.random() < 0.5:
                    params = {"names": [name], "lines": self.rng.choice([10, 100, 1000])}
                else:
                    params = {"names": [name], "since_us": int((time.time() - self.rng.uniform(1, 60)) * 1e6),
                              "lines": 1000}
                self.stats.add(role, "requests")
                r = c.call("logs", params)
                if self.answered(role, r):
                    seqs = [line["seq"] for line in r["result"]["lines"]]
                    if any(b != a + 1 for a, b in zip(seqs, seqs[1:])) and not r["result"].get("missed"):
                        self.stats.fail(role, f"logs {name}: a gap in seqs without missed")
                self.stop.wait(self.rng.uniform(0.5, 3))
        self.session(role, body)

    def busctl(self, *args):
        return subprocess.run(["busctl", f"--address={self.bus_address}", *args], capture_output=True,
                              text=True, timeout=self.a.answer_timeout, stdin=subprocess.DEVNULL)

    def client_dbus(self):
        role = "dbus"
        mon = subprocess.Popen(["gdbus", "monitor", "--address", self.bus_address, "--dest",
                                "io.github.brummer.Brummer1"], stdout=subprocess.PIPE, text=True,
                               stderr=subprocess.DEVNULL)
        pat = re.compile(r"\.StateChanged \('([^']*)', '([^']*)', '([^']*)', uint64 (\d+)\)")

        def watch():
            last = None
            for line in mon.stdout:
                m = pat.search(line)
                if m:
                    seq = int(m.group(4))
                    self.stats.add(role, "signals")
                    if last is not None and seq <= last:
                        self.stats.fail(role, f"StateChanged seq {last} then {seq}")
                    last = seq
                elif "EventsMissed" in line:
                    self.stats.add(role, "events_missed_signals")
        threading.Thread(target=watch, daemon=True).start()
        obj, mgr = "/io/github/brummer/Brummer1", "io.github.brummer.Brummer1.Manager"
        while not self.stop.is_set():
            x = self.rng.random()
            if x < 0.4:
                args = ["call", "io.github.brummer.Brummer1", obj, mgr, "ListProcesses"]
            elif x < 0.6:
                args = ["call", "io.github.brummer.Brummer1", obj, mgr, "GetState"]
            elif x < 0.8:
                args = ["call", "io.github.brummer.Brummer1", obj, mgr,
                        self.rng.choice(["Stop", "Start", "Restart"]), "s", self.pick(("q",))]
            else:
                args = ["call", "io.github.brummer.Brummer1", obj, "org.freedesktop.DBus.ObjectManager",
                        "GetManagedObjects"]
            self.stats.add(role, "requests")
            try:
                p = self.busctl(*args)
                self.stats.add(role, "answers")
                # Start of a running program is the named error AlreadyRunning, by design.
                if p.returncode != 0 and "is already running" not in p.stderr:
                    self.stats.fail(role, f"{args[4]}: {p.stderr.strip()[-300:]}")
            except subprocess.TimeoutExpired:
                self.stats.fail(role, f"{args[4]}: no answer")
            self.stop.wait(self.rng.uniform(0.5, 3))
        mon.terminate()
        mon.wait()

    def reloader(self):
        role = "reload"
        while not self.stop.wait(self.a.reload_every):
            with self.cfg_lock:
                self.extras_on = not self.extras_on
                self.plan.generation += 1
                with open(self.config, "w") as f:
                    f.write(self.plan.render(self.extras_on))
            c = None
            try:
                c = Conn(self.sock, max(self.a.answer_timeout, 120))
                self.stats.add(role, "requests")
                r = c.call("reload")
                if self.answered(role, r):
                    res = r["result"]
                    want = self.plan.extras
                    got = res["added"] if self.extras_on else res["removed"]
                    if sorted(got) != sorted(want):
                        self.stats.fail(role, f"reload {'added' if self.extras_on else 'removed'} {got}, expected {want}")
                    self.stats.add(role, "changed", len(res["changed"]))
            except (socket.timeout, EOFError, OSError) as e:
                self.stats.fail(role, f"reload: {e!r}")
            finally:
                if c:
                    c.close()

    # --- end checks -------------------------------------------------------------------

    def check_disk(self, status):
        """No line lost on disk: index continuity, counts, writers' runs."""
        problems = []
        verified = 0
        for name in self.plan.stable():
            files = sorted(f for f in os.listdir(self.log_dir)
                           if f.startswith(name + ".log") and not f.endswith(".idx"))
            segs = [f for f in files if f != name + ".log"] + [name + ".log"]
            expect = None
            lines = 0
            first = None
            for seg in segs:
                with open(os.path.join(self.log_dir, seg + ".idx"), "rb") as f:
                    data = f.read()
                for off in range(48, len(data) - 47, 48):
                    fs, _, _, _, _, lf = struct.unpack_from("<QQQQII", data, off)
                    n = lf & 0xFFFFFF
                    if expect is not None and fs != expect:
                        problems.append(f"{name}: {seg}: index jumps from seq {expect} to {fs}")
                    if first is None:
                        first = fs
                    expect = fs + n
                    lines += n
            st = status.get(name)
            if st is None:
                continue
            lg = st["logs"]
            if lg.get("disk_errors"):
                problems.append(f"{name}: disk_errors {lg['disk_errors']}")
            if lg.get("disk_pending"):
                problems.append(f"{name}: disk_pending {lg['disk_pending']} after stop --all")
            if not lg.get("rotations") and first == 0 and lines != lg["lines"]:
                problems.append(f"{name}: {lines} lines on disk, status counted {lg['lines']}")
            verified += lines
            if name in self.plan.writers:
                problems += self.check_writer(name, segs)
        return problems, verified

    def check_writer(self, name, segs):
        problems = []
        cur = None  # (pid, next n)
        runs = 0
        for i, seg in enumerate(segs):
            with open(os.path.join(self.log_dir, seg), "rb") as f:
                for raw in f:
                    parts = raw.split(b" ")
                    pid = parts[0]
                    if len(parts) >= 3 and parts[1] == b"END":
                        n = int(parts[2])
                        if cur is None or cur[0] != pid or cur[1] != n:
                            problems.append(f"{name}: END {n} of pid {pid!r} after {cur}")
                        cur = None
                        runs += 1
                        continue
                    n = int(parts[1])
                    if cur is None:
                        # A run's start may be rotated away only in the oldest retained data.
                        if n != 0 and (i > 0 or runs > 0):
                            problems.append(f"{name}: pid {pid!r} starts at {n} in {seg}")
                    elif cur[0] != pid or cur[1] != n:
                        problems.append(f"{name}: {cur} then pid {pid!r} line {n} in {seg}")
                    cur = (pid, n + 1)
                    if len(problems) > 5:
                        return problems
        if cur is not None:
            problems.append(f"{name}: the last run (pid {cur[0]!r}) has no END line")
        self.writer_runs = getattr(self, "writer_runs", 0) + runs
        return problems

    def leftovers(self):
        found = []
        me = str(os.getpid())
        for p in os.listdir("/proc"):
            if not p.isdigit() or p == me:
                continue
            try:
                with open(f"/proc/{p}/environ", "rb") as f:
                    if self.tag.encode() in f.read():
                        found.append(int(p))
            except OSError:
                pass
        return found

    # --- run ---------------------------------------------------------------------------

    def run(self):
        t0 = time.time()
        self.start_bus()
        self.start_daemon()
        self.wait_all_started()
        print(f"soak: {len(self.plan.stable())} programs running after {time.time() - t0:.0f} s; "
              f"{self.a.clients} clients for {self.a.duration} s", flush=True)
        rows = []
        threads = [threading.Thread(target=self.sampler, args=(t0, rows), daemon=True)]
        roles = [self.client_status] * 25 + [self.client_ctl_status] * 5 + [self.client_control] * 20 + \
                [self.client_follow] * 20 + [self.client_events] * 15 + [self.client_ctl_stream] * 5 + \
                [self.client_logs] * 10
        for k in range(self.a.clients):
            threads.append(threading.Thread(target=roles[(k * 37) % len(roles)], args=(k,), daemon=True))
        threads.append(threading.Thread(target=self.client_dbus, daemon=True))
        threads.append(threading.Thread(target=self.reloader, daemon=True))
        for t in threads:
            t.start()
        run_start = time.time()
        while time.time() - run_start < self.a.duration and self.daemon.poll() is None:
            time.sleep(max(0.1, min(30, self.a.duration - (time.time() - run_start))))
            print(f"soak: {time.time() - run_start:.0f} s: {rows[-1] if rows else '-'}", flush=True)
        self.stop.set()
        for t in threads:
            t.join(self.a.answer_timeout + 10)
        stuck = [t.name for t in threads if t.is_alive()]
        ok = True
        if self.daemon.poll() is not None:
            print(f"soak: FAIL: brummerd died during the run ({self.daemon.returncode})", flush=True)
            ok = False
        summary = {"programs": len(self.plan.stable()), "clients": self.a.clients, "duration_s": self.a.duration,
                   "stuck_clients": stuck}
        if ok:
            c = Conn(self.sock, 600)
            r = c.call("stop", {"all": True})
            bad = [x for x in r.get("result", {}).get("results", []) if not x["ok"]]
            summary["stop_all_failed"] = bad[:10]
            # The disk log is written behind the ring: wait, with a deadline, until no
            # program has lines waiting for it, then check the disk against status.
            deadline = time.time() + 60
            while True:
                status = {p["name"]: p for p in c.call("status")["result"]["processes"]}
                if not any(p["logs"].get("disk_pending") for p in status.values()) \
                        or time.time() > deadline:
                    break
                time.sleep(0.05)  # polling interval, bounded by the deadline above
            c.close()
            summary["running_after_stop_all"] = [n for n, p in status.items() if p["pid"] is not None]
            self.daemon.send_signal(signal.SIGTERM)
            try:
                summary["brummerd_exit"] = self.daemon.wait(60)
            except subprocess.TimeoutExpired:
                summary["brummerd_exit"] = "did not exit within 60 s of SIGTERM"
                self.daemon.kill()
            time.sleep(0.5)  # not synchronisation: survivors are looked for, and killed, after
            left = self.leftovers()
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            summary["leftover_processes"] = left
            problems, verified = self.check_disk(status)
            summary["disk_problems"] = problems[:50]
            summary["disk_lines_verified"] = verified
            summary["writer_runs_verified"] = getattr(self, "writer_runs", 0)
            summary["lines_captured"] = sum(p["logs"]["lines"] for p in status.values())
            ok = not bad and not summary["running_after_stop_all"] and summary["brummerd_exit"] == 0 \
                and not left and not problems
        summary["clients_by_role"] = self.stats.snapshot()
        summary["client_failures"] = self.stats.failures
        ok = ok and not self.stats.failures and not stuck
        post = [r for r in rows if r["t_s"] >= rows[0]["t_s"] + self.a.warmup] if rows else []
        if len(post) >= 4:
            w = max(1, len(post) // 10)
            first, last = post[:w], post[-w:]
            for r in rows:
                r["rss_less_ring_kib"] = r["rss_kib"] - max(0, r["ring_kib"])
            fd_kind_keys = [k for k in rows[0] if k.startswith("fds_")]
            for k in ["rss_kib", "ring_kib", "rss_less_ring_kib", "fds", "threads"] + fd_kind_keys:
                summary[f"{k}_after_warmup"] = max(r[k] for r in first)
                summary[f"{k}_at_end"] = max(r[k] for r in last)
                summary[f"{k}_max"] = max(r[k] for r in rows)
            summary["cpu_s"] = rows[-1]["cpu_s"]
            # Flat: the last tenth of the run does not exceed the first tenth after warm-up
            # by more than noise: connections and children come and go (a client holds at
            # most two connections, two descriptors each, at a time). RSS less what the
            # rings hold: they fill by design, up to ring_bytes per program.
            grow_rss = summary["rss_less_ring_kib_at_end"] - summary["rss_less_ring_kib_after_warmup"]
            grow_fds = summary["fds_at_end"] - summary["fds_after_warmup"]
            summary["rss_growth_kib"], summary["fd_growth"] = grow_rss, grow_fds
            flat = grow_rss <= max(8192, summary["rss_less_ring_kib_after_warmup"] // 4) and \
                grow_fds <= 16 + 4 * (self.a.clients + 1)
            summary["flat"] = flat
            ok = ok and flat
        summary["ok"] = ok
        with open(os.path.join(self.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        print(json.dumps(summary, indent=1), flush=True)
        if self.bus:
            self.bus.terminate()
            self.bus.wait()
        if ok and not self.a.keep:
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            print(f"soak: temp dir kept: {self.root}", flush=True)
        print(f"soak: {'OK' if ok else 'FAIL'}; samples in {self.out}/samples.csv", flush=True)
        return 0 if ok else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--programs", type=int, default=1000)
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--duration", type=float, default=3600, help="seconds of load after start-up")
    p.add_argument("--warmup", type=float, default=300, help="seconds of samples before flatness is judged")
    p.add_argument("--reload-every", type=float, default=60)
    p.add_argument("--sample-every", type=float, default=5)
    p.add_argument("--answer-timeout", type=float, default=60, help="seconds a request may wait for its answer")
    p.add_argument("--bin-dir", default=os.path.join(REPO, "target/release"))
    p.add_argument("--out", default="soak-out")
    p.add_argument("--seed", type=int, default=17)
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs) even when the soak passes")
    a = p.parse_args()
    for b in ["brummerd", "brummerctl"]:
        if not os.access(os.path.join(a.bin_dir, b), os.X_OK):
            raise SystemExit(f"soak: {a.bin_dir}/{b} not found: cargo build --release, or pass --bin-dir")
    for tool in ["dbus-daemon", "busctl", "gdbus"]:
        if not shutil.which(tool):
            raise SystemExit(f"soak: {tool} not found (apt-get install dbus systemd libglib2.0-bin)")
    return Soak(a).run()


if __name__ == "__main__":
    sys.exit(main())
