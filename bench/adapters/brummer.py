"""brummerd + brummerctl: OUR supervisor. Skipped automatically until both binaries are found.

Where it looks: $BRUMMER_BIN (a folder holding brummerd and brummerctl, e.g. a cargo
target/release folder), else PATH.

Everything that depends on the not-yet-final CLI or config is in the few lines marked EDIT.
Keep this file thin: build the config, call brummerctl, parse its JSON. No timing here.
"""
from __future__ import annotations

import json
import os
import shutil

from .base import Adapter, Caps, Program, Status


def toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Brummer(Adapter):
    name = "brummer"
    caps = Caps(follow="native", notes=["our daemon; config/CLI per the adapter's EDIT lines"])
    daemon_comms = ("brummerd",)

    def __init__(self, workdir):
        super().__init__(workdir)
        bindir = os.environ.get("BRUMMER_BIN")
        if bindir:
            self.env["PATH"] = bindir + os.pathsep + self.env.get("PATH", "")
        # user mode keeps every path under the scratch dir
        for var, sub in (("XDG_RUNTIME_DIR", "run"), ("XDG_STATE_HOME", "state"),
                         ("XDG_CONFIG_HOME", "config")):
            self.env[var] = self.path(sub)

    def binaries(self):
        return ["brummerd", "brummerctl"]

    def missing(self):
        for b in self.binaries():
            if shutil.which(b, path=self.env.get("PATH")) is None:
                return f"{b} not found (set BRUMMER_BIN or put it on PATH)"
        return None

    def version(self):
        return self.run(["brummerd", "--version"], check=False).stdout.strip() or "brummerd ?"

    def sock(self):
        return self.path("run", "brummer", "brummer.sock")

    def ctl(self, *args, **kw):
        # EDIT: as root, brummerctl defaults to the system socket; point it at the user one
        return self.run(["brummerctl", "--socket", self.sock(), *args], **kw)

    def setup(self, programs: list[Program]):
        self.programs = {p.name: p for p in programs}
        for sub in ("run", "state", "config", "logs"):
            os.makedirs(self.path(sub), exist_ok=True)
        os.chmod(self.path("run"), 0o700)
        # EDIT: config format. One [process.NAME] block per program (shared/DESIGN.md).
        blocks = []
        for p in programs:
            blocks.append(
                f"[process.{p.name}]\n"
                f"command = [{', '.join(toml_str(a) for a in p.argv)}]\n"
                f"autostart = false\n"
                f"restart = \"{'always' if p.autorestart else 'never'}\"\n"
                # W3 counts lines in NAME.log alone: keep 1M x 100 B in the active segment
                # (the default rotates at 10 MiB into NAME.log.<seq> segments).
                f"\n[process.{p.name}.logs]\n"
                f"max_bytes = \"1GiB\"\n")
        self.conf = self.write("config/brummer/brummer.toml", "\n".join(blocks))
        # EDIT: daemon command line (user mode, foreground, our config)
        self.spawn_daemon(["brummerd", "--user", "--config", self.conf])
        self.wait_until(lambda: self.ctl("status", "--json", check=False).returncode == 0,
                        what="brummerd socket")

    def start_all(self):
        self.ctl("start", "--all", timeout=120)   # EDIT: one request for every program

    def status_argv(self):
        return ["brummerctl", "--socket", self.sock(), "status", "--json"]

    def parse_status(self, out):
        # EDIT: adjust to the real JSON shape. Accepts a list of objects or {"processes": [...]}
        data = json.loads(out)
        items = data.get("processes", data) if isinstance(data, dict) else data
        res = {}
        for it in items:
            st = str(it.get("state", ""))
            res[it["name"]] = Status(st == "running", it.get("pid"), st)
        return res

    def stop_one(self, name):
        self.ctl("stop", name)

    def restart_one(self, name):
        self.ctl("restart", name)

    def follow_argv(self, name):
        return ["brummerctl", "--socket", self.sock(), "logs", "-f", "-n", "0", name]

    def log_paths(self, name):
        # EDIT: where the disk log of NAME lands in user mode
        return [self.path("state", "brummer", "logs", name + ".log")]

    def teardown(self):
        self.stop_daemon()
