#!/usr/bin/env python3
"""Dependency-ordered start: 100 programs in a tree 10 levels deep, `start --all` until all run.

The tree: one root (level 0), then 9 levels of 11 programs; each program requires one of
the level above (program i of level L requires program i % len(level L-1)). Every program
is a `sleep` with autostart off and `ready = "started"` (the default), so a program's
ready time is its spawn. Figures come from brummerd's own event stamps (`time_us` of the
state-changed events), read on a subscription opened before the request:

  tree_ms      first event of the `start --all` to the last program `running`
  flat_ms      the same 100 programs without dependencies (no order at all)
  spawn_ms     median time from `starting` to `running` of one program started alone
               (ROUNDS times): one program's ready time
  path_ms      the critical path (root to a leaf, 10 programs) as it ran in the tree: the
               root's ready time plus each hop from a program's `running` to its
               dependent's `running`
  limit_ms     10 x spawn_ms: the sum of the critical path's ready times, the least any
               ordered start can take
  request_ms   the client's clock around the `start --all` request (it answers when all
               are started)

Prints one JSON line per round. usage: deps.py BIN_DIR   (ROUNDS env, default 5)
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
LEVELS = [1] + [11] * 9


def names():
    """[(name, required name or None)], level by level."""
    out = []
    prev = []
    for lvl, size in enumerate(LEVELS):
        cur = [f"l{lvl}p{i:02}" for i in range(size)]
        for i, n in enumerate(cur):
            out.append((n, prev[i % len(prev)] if prev else None))
        prev = cur
    return out


class Conn:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(120)
        self.s.connect(path)
        self.buf = b""
        self.id = 0

    def send(self, method, params=None):
        self.id += 1
        req = {"jsonrpc": "2.0", "id": self.id, "method": method, "params": params or {}}
        self.s.sendall((json.dumps(req) + "\n").encode())
        return self.id

    def next(self):
        while b"\n" not in self.buf:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise SystemExit("brummerd closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, method, params=None):
        i = self.send(method, params)
        while True:
            m = self.next()
            if m.get("id") == i:
                if "error" in m:
                    raise SystemExit(f"{method}: {m['error']}")
                return m["result"]


def daemon(bindir, config):
    d = tempfile.mkdtemp(prefix="brummer-deps-")
    for sub in ("run", "state", "cfg/brummer"):
        os.makedirs(os.path.join(d, sub))
    os.chmod(os.path.join(d, "run"), 0o700)
    cfg = os.path.join(d, "cfg/brummer/brummer.toml")
    with open(cfg, "w") as f:
        f.write(config)
    env = dict(os.environ, XDG_RUNTIME_DIR=f"{d}/run", XDG_STATE_HOME=f"{d}/state",
               XDG_CONFIG_HOME=f"{d}/cfg")
    sock = f"{d}/run/brummer/brummer.sock"
    err = open(f"{d}/daemon.err", "w")
    p = subprocess.Popen([f"{bindir}/brummerd", "--user", "--dbus=off", "--config", cfg],
                         env=env, stderr=err, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not os.path.exists(sock):
        if time.monotonic() > deadline or p.poll() is not None:
            raise SystemExit(f"brummerd did not start: see {d}/daemon.err")
        time.sleep(0.01)
    return p, sock


def config(with_deps):
    out = []
    for n, req in names():
        out.append(f'[process.{n}]\ncommand = ["/bin/sleep", "100000"]\nautostart = false\n')
        if with_deps and req:
            out.append(f'requires = ["{req}"]\n')
        out.append("\n")
    return "".join(out)


def start_all(sock, n):
    """`start --all` with a subscription open: (events, request seconds)."""
    ev = Conn(sock)
    ev.call("subscribe")
    ctl = Conn(sock)
    t0 = time.monotonic()
    res = ctl.call("start", {"all": True})
    took = time.monotonic() - t0
    assert all(r["ok"] for r in res["results"]), res
    events = []
    running = set()
    while len(running) < n:
        m = ev.next()
        if m.get("method") != "event":
            continue
        e = m["params"]
        if e.get("type") == "missed":
            raise SystemExit("events missed")
        if e.get("type") == "state-changed":
            events.append(e)
            if e["new"] == "running":
                running.add(e["process"])
    ctl.call("stop", {"all": True})
    return events, took


def stamp(events, name, new):
    return next(e["time_us"] for e in events if e["process"] == name and e["new"] == new)


def spawn_ms(sock):
    """One program's ready time: `starting` to `running`, started alone."""
    ev = Conn(sock)
    ev.call("subscribe")
    ctl = Conn(sock)
    out = []
    for _ in range(ROUNDS):
        ctl.call("start", {"names": ["l0p00"]})
        evs = []
        while True:
            e = ev.next().get("params", {})
            if e.get("process") == "l0p00":
                evs.append(e)
                if e.get("new") == "running":
                    break
        out.append((stamp(evs, "l0p00", "running") - stamp(evs, "l0p00", "starting")) / 1000)
        ctl.call("stop", {"names": ["l0p00"]})
    return statistics.median(out)


def main():
    bindir = os.path.abspath(sys.argv[1])
    tree = names()
    n = len(tree)
    parent = dict(tree)
    leaf = tree[-1][0]
    path = [leaf]
    while parent[path[-1]]:
        path.append(parent[path[-1]])
    path.reverse()
    assert len(path) == len(LEVELS)

    flat_d, flat_sock = daemon(bindir, config(False))
    tree_d, tree_sock = daemon(bindir, config(True))
    try:
        spawn = spawn_ms(flat_sock)
        for r in range(ROUNDS):
            fe, _ = start_all(flat_sock, n)
            te, took = start_all(tree_sock, n)
            first = min(e["time_us"] for e in te)
            last = max(e["time_us"] for e in te if e["new"] == "running")
            ffirst = min(e["time_us"] for e in fe)
            flast = max(e["time_us"] for e in fe if e["new"] == "running")
            root_ready = stamp(te, path[0], "running") - stamp(te, path[0], "starting")
            hops = sum(stamp(te, b, "running") - stamp(te, a, "running")
                       for a, b in zip(path, path[1:]))
            print(json.dumps({
                "round": r, "programs": n, "levels": len(LEVELS),
                "tree_ms": round((last - first) / 1000, 2),
                "flat_ms": round((flast - ffirst) / 1000, 2),
                "spawn_ms": round(spawn, 3),
                "path_ms": round((root_ready + hops) / 1000, 2),
                "limit_ms": round(spawn * len(LEVELS), 2),
                "request_ms": round(took * 1000, 2),
            }), flush=True)
    finally:
        for d in (flat_d, tree_d):
            d.terminate()
            d.wait(timeout=120)


if __name__ == "__main__":
    main()
