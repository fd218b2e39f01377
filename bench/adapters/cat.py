"""cat: the physical limit, not a supervisor. Each program runs under /bin/sh with its
stdout and stderr piped into `cat > logs/NAME.log`: the same producer, the same pipe, one
reader process copying to one file. Compare a supervisor's W3 lines/s and CPU with this
column measured in the same run.

No status, stop or restart (W1, W2, W4, W5 are n/a); W6 follows with `tail -F`.
"""
from __future__ import annotations

import os
import shlex
import shutil

from .base import Adapter, Caps, Program, Unsupported


class Cat(Adapter):
    name = "cat"
    caps = Caps(autorestart=False, stop_cli=False, follow="tail", status_all=False,
                notes=["physical limit: the producer piped into `cat > file`"])
    daemon_comms = ("cat",)

    def binaries(self):
        return ["sh", "cat"]

    def missing(self):
        for b in self.binaries():
            if shutil.which(b) is None:
                return f"{b} not on PATH"
        return None

    def version(self):
        r = self.run(["cat", "--version"], check=False)
        return (r.stdout.splitlines() or ["cat"])[0]

    def setup(self, programs: list[Program]):
        self.programs = {p.name: p for p in programs}
        os.makedirs(self.path("logs"), exist_ok=True)

    def start_all(self):
        lines = [f"{shlex.join(p.argv)} 2>&1 | cat > {shlex.quote(self.log_paths(p.name)[0])} &"
                 for p in self.programs.values()]
        self.spawn_daemon(["/bin/sh", "-c", "\n".join(lines + ["wait"])])

    def status_argv(self):
        raise Unsupported("no status: not a supervisor")

    def log_paths(self, name):
        return [self.path("logs", name + ".log")]
