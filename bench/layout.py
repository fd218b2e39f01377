#!/usr/bin/env python3
"""Regenerates daemon/layout.ld: which functions of brummerd go first in its code.

    BRUMMER_LAYOUT=profile cargo build --release -p brummerd -p brummerctl
    python3 bench/layout.py --bin $CARGO_TARGET_DIR/release     # ~10 s; needs cc, nm, readelf
    cargo build --release -p brummerd -p brummerctl             # the real link

Why: the kernel maps a file's code in chunks around each fault (64 KiB fault-around, or a
whole large page-cache folio on recent kernels), so a daemon that runs ~1 MB of functions
scattered over 5 MB of code ends up with nearly all 5 MB resident. Linking the functions
that run side by side keeps the rest unmapped (docs/performance.md, "Memory").

How: `BRUMMER_LAYOUT=profile` links every function on its own 4 KiB page (daemon/build.rs,
daemon/layout-profile.ld). brummerd then runs with a preloaded shim (SHIM below) that
takes execute permission from its code and hands it back page by page from a SIGSEGV
handler, logging each page: the pages name exactly the functions that ran. (valgrind 3.19
cannot run brummerd: it lacks pidfd_open.) Tier 1 is what a daemon supervising idle
programs runs: start-up (no D-Bus reachable), `start --all` of 100 programs, status polls,
an idle second. Tier 2 is what the other common operations add: reload, output capture and
the disk log, the scanner, `logs`, `logs -f`, `events`, stop, restart, a crash loop with
backoff. Each function is written twice: its exact name (thin LTO's `.llvm.N` suffix
aside), then a pattern with its hash (legacy mangling) or crate disambiguators (v0
mangling, std) replaced by `*`, which still matches after a rebuild renamed it. A stale or
missing entry costs memory, never correctness. The shutdown is not profiled.
"""
from __future__ import annotations

import argparse
import bisect
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "daemon", "layout.ld")


SHIM = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
/* Takes execute permission from brummerd's code before main and gives it back page by page
   from a SIGSEGV handler, writing each page's offset into the mapping to
   $BRUMMER_LAYOUT_TRACE, after the mapping's file offset: every page that ever runs is written exactly once. Rust's runtime
   keeps a SIGSEGV handler it finds installed (it only adds its own over SIG_DFL). */
static uintptr_t lo, hi;
static uint64_t file_off;
static int out = -1;
static void on_segv(int sig, siginfo_t *si, void *ctx) {
    uintptr_t a = (uintptr_t)si->si_addr & ~(uintptr_t)4095;
    (void)ctx;
    if (a >= lo && a < hi && mprotect((void *)a, 4096, PROT_READ | PROT_EXEC) == 0) {
        uint64_t off = a - lo;
        if (write(out, &off, sizeof off) != sizeof off) abort();
        return;
    }
    signal(sig, SIG_DFL);
}
__attribute__((constructor)) static void layout_trap(void) {
    char exe[4096], line[4600];
    const char *path = getenv("BRUMMER_LAYOUT_TRACE");
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (!path || n <= 0) return;
    exe[n] = 0;
    unsetenv("LD_PRELOAD");
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        unsigned long a, b, off;
        char perm[5];
        if (sscanf(line, "%lx-%lx %4s %lx", &a, &b, perm, &off) == 4 && perm[2] == 'x' &&
            strstr(line, exe)) {
            lo = a; hi = b; file_off = off;
        }
    }
    fclose(f);
    if (!lo) return;
    out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    /* First record: the mapping's file offset (the per-page mprotects split the mapping). */
    if (out < 0 || write(out, &file_off, sizeof file_off) != sizeof file_off) return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);
    mprotect((void *)lo, hi - lo, PROT_READ);
}
"""


def exec_delta(binary: str) -> int:
    """p_vaddr - p_offset of the executable segment (file offset -> link address)."""
    out = subprocess.run(["readelf", "-lW", binary], check=True, capture_output=True,
                         text=True).stdout
    for line in out.splitlines():
        p = line.split()
        if p and p[0] == "LOAD" and "E" in p[6:-1]:
            return int(p[2], 16) - int(p[1], 16)
    raise RuntimeError(f"no executable LOAD segment in {binary}")


def symbols(binary: str) -> list[tuple[int, int, str]]:
    res = subprocess.run(["nm", "-S", "--defined-only", binary], check=True,
                         capture_output=True, text=True).stdout
    syms = []
    for line in res.splitlines():
        p = line.split()
        if len(p) == 4 and p[2] in "tTwW":
            syms.append((int(p[0], 16), int(p[1], 16), p[3]))
    syms.sort()
    return syms


def functions(addrs: set[int], syms) -> dict[str, int]:
    """Every symbol whose code holds one of `addrs` (aliases at one address included)."""
    starts = [s[0] for s in syms]
    hit: dict[str, int] = {}
    for a in addrs:
        i = bisect.bisect_right(starts, a) - 1
        if i < 0:
            continue
        start, size, _ = syms[i]
        if not start <= a < start + max(size, 1):
            continue
        while i >= 0 and syms[i][0] == start:
            hit[syms[i][2]] = syms[i][1]
            i -= 1
    return hit


def exact(sym: str) -> str:
    """This function only, whatever suffix thin LTO gives it (`.llvm.N`, from a hash of its
    module, changes with any edit to that module)."""
    return re.sub(r"\.llvm\.\d+$", "", sym) + "*"


def pattern(sym: str) -> str:
    """A section-name glob that matches this function in later builds."""
    sym = re.sub(r"\.llvm\.\d+$", "", sym)
    if sym.startswith("_ZN"):
        return re.sub(r"17h[0-9a-f]{16}E$", "17h*", sym)
    if sym.startswith("_R"):
        return re.sub(r"Cs[0-9A-Za-z]+_", "Cs*_", sym) + "*"
    return sym


class Daemon:
    """brummerd (with SHIM preloaded) on a scratch XDG tree, driven by brummerctl."""

    def __init__(self, bindir: str, work: str, config: str, shim: str):
        self.bindir, self.work = bindir, work
        self.binary = os.path.join(bindir, "brummerd")
        self.delta = exec_delta(self.binary)
        self.env = dict(os.environ)
        for var, sub in (("XDG_RUNTIME_DIR", "run"), ("XDG_STATE_HOME", "state"),
                         ("XDG_CONFIG_HOME", "config")):
            self.env[var] = os.path.join(work, sub)
            os.makedirs(self.env[var], exist_ok=True)
        os.chmod(self.env["XDG_RUNTIME_DIR"], 0o700)
        # As in bench/run.py: no session bus, so `--dbus=auto` tries and goes on without it.
        self.env.pop("DBUS_SESSION_BUS_ADDRESS", None)
        self.conf = os.path.join(work, "config", "brummer", "brummer.toml")
        os.makedirs(os.path.dirname(self.conf), exist_ok=True)
        with open(self.conf, "w") as f:
            f.write(config)
        self.sock = os.path.join(work, "run", "brummer", "brummer.sock")
        self.trace = os.path.join(work, "trace.bin")
        self.proc = subprocess.Popen(
            [self.binary, "--user", "--config", self.conf],
            env=dict(self.env, LD_PRELOAD=shim, BRUMMER_LAYOUT_TRACE=self.trace),
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(work, "daemon.log"), "w"))
        self.wait(lambda: self.ctl("status", check=False).returncode == 0, "daemon socket")

    def ctl(self, *args, check=True, timeout=60):
        r = subprocess.run([os.path.join(self.bindir, "brummerctl"), "--socket", self.sock, *args],
                           env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"brummerctl {' '.join(args)}: {r.returncode}: {r.stderr.strip()}")
        return r

    def wait(self, cond, what, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"brummerd exited while waiting for {what}")
            if cond():
                return
            time.sleep(0.05)
        raise TimeoutError(f"timed out waiting for {what}")

    def states(self) -> dict[str, str]:
        data = json.loads(self.ctl("status", "--json").stdout)
        items = data.get("processes", data) if isinstance(data, dict) else data
        return {it["name"]: str(it.get("state")) for it in items}

    def code(self) -> set[int]:
        """Link addresses of the code pages run so far."""
        with open(self.trace, "rb") as f:
            data = f.read()
        words = [int.from_bytes(data[i:i + 8], "little")
                 for i in range(0, len(data) - len(data) % 8, 8)]
        return {words[0] + self.delta + off for off in words[1:]}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)


def scenario(bindir: str, work: str, shim: str) -> tuple[set[int], set[int]]:
    idle = "".join(f'[process.idle{i:02d}]\ncommand = ["/bin/sleep", "100000"]\nautostart = false\n'
                   'restart = "never"\n\n' for i in range(100))
    others = (
        '[process.chatty]\n'
        'command = \'i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo "line $i ERROR at '
        'http://127.0.0.1:8080/x"; done; sleep 100000\'\nautostart = false\n\n'
        '[process.crashy]\ncommand = ["/bin/sh", "-c", "echo boom >&2; exit 3"]\n'
        'autostart = false\nrestart = "always"\n\n'
        '[process.crashy.backoff]\ninitial = "100ms"\nmax = "200ms"\n\n'
        '[process.crashy.start_limit]\nburst = 5\ninterval = "1m"\n\n')
    d = Daemon(bindir, work, idle, shim)
    try:
        # Tier 1: idle supervision, as bench/run.py's W1 and W2 drive it.
        d.ctl("start", "--all")
        d.wait(lambda: sum(s == "running" for s in d.states().values()) >= 100, "100 running")
        for _ in range(5):
            d.ctl("status", "--json")
            d.ctl("status")
            d.ctl("status", "idle00")
        time.sleep(1.0)
        tier1 = d.code()
        # Tier 2: everything else a daemon commonly does.
        with open(d.conf, "a") as f:
            f.write(others)
        d.ctl("reload")
        d.ctl("start", "chatty")
        d.wait(lambda: "line 3000" in d.ctl("logs", "-n", "1", "chatty").stdout, "chatty output")
        d.ctl("logs", "-n", "100", "chatty")
        d.ctl("logs", "-n", "10", "--json", "chatty")
        d.ctl("logs", "-t", "--since", "1h", "--grep", "ERROR", "chatty")
        fol = subprocess.Popen([os.path.join(bindir, "brummerctl"), "--socket", d.sock, "logs",
                                "-f", "-n", "5", "chatty"], env=d.env, stdout=subprocess.DEVNULL)
        time.sleep(2.0)
        fol.terminate()
        fol.wait(30)
        d.ctl("start", "crashy")
        d.wait(lambda: d.states().get("crashy") == "failed", "crashy failed", 120)
        d.ctl("stop", "idle01")
        d.ctl("restart", "idle02")
        d.ctl("start", "nosuch", check=False)
        with open(d.conf, "a") as f:
            f.write('[process.late]\ncommand = ["/bin/sleep", "100000"]\n')
        d.ctl("reload")
        d.wait(lambda: d.states().get("late") == "running", "late running")
        ev = subprocess.Popen([os.path.join(bindir, "brummerctl"), "--socket", d.sock, "events"],
                              env=d.env, stdout=subprocess.DEVNULL)
        d.ctl("restart", "late")
        time.sleep(1.0)
        ev.terminate()
        ev.wait(30)
        d.ctl("version")
        tier2 = d.code()
    finally:
        d.stop()
    return tier1, tier2


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True,
                    help="folder with brummerd linked with BRUMMER_LAYOUT=profile, and brummerctl")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    for tool in ("cc", "nm", "readelf"):
        if shutil.which(tool) is None:
            sys.exit(f"layout.py: {tool} not found")
    bindir = os.path.abspath(args.bin)
    binary = os.path.join(bindir, "brummerd")
    if ".text.profile" not in subprocess.run(["readelf", "-SW", binary], capture_output=True,
                                             text=True).stdout:
        sys.exit(f"layout.py: {binary} is not a profile build "
                 "(BRUMMER_LAYOUT=profile cargo build --release -p brummerd)")
    syms = symbols(binary)
    work = tempfile.mkdtemp(prefix="brummer-layout-")
    shim = os.path.join(work, "random.so")
    with open(shim + ".c", "w") as f:
        f.write(SHIM)
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", shim, shim + ".c"], check=True)
    pages1, pages2 = scenario(bindir, work, shim)
    t1 = functions(pages1, syms)
    t2 = {k: v for k, v in functions(pages2, syms).items() if k not in t1}
    # Exact names first: while they match (same toolchain, lockfile and profile) the code
    # that ran is one dense block. The hash-free patterns behind them catch the same
    # functions after a rebuild renamed them, at the price of every instance of a generic.
    blocks = [("tier 1, exact", sorted({exact(s) for s in t1})),
              ("tier 2, exact", sorted({exact(s) for s in t2} - {exact(s) for s in t1}))]
    p1 = sorted({pattern(s) for s in t1})
    blocks += [("tier 1, any hash", p1),
               ("tier 2, any hash", sorted({pattern(s) for s in t2} - set(p1)))]
    with open(args.out, "w") as f:
        f.write("/* Generated by bench/layout.py; do not edit. The functions brummerd ran in its\n"
                "   profile, placed in this order ahead of the rest of its code.\n"
                f"   Tier 1 (idle supervision): {len(t1)} functions, {sum(t1.values())} bytes.\n"
                f"   Tier 2 (other common operations): {len(t2)} functions, "
                f"{sum(t2.values())} bytes.\n"
                "   A function's section is .text.SYMBOL, or .text.unlikely.SYMBOL when #[cold]. */\n"
                "SECTIONS\n{\n  .text.hot : {\n"
                "    /* plain .text: only the C start-up files' _start and helpers */\n"
                "    *(.text)\n")
        for name, pats in blocks:
            f.write(f"    /* {name} */\n")
            for p in pats:
                f.write(f"    *(.text.{p} .text.unlikely.{p})\n")
        f.write("  }\n}\nINSERT BEFORE .text;\n")
    print(f"layout.py: {len(t1)} + {len(t2)} functions ({sum(t1.values())} + {sum(t2.values())} "
          f"bytes of functions) -> {args.out}; scratch in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
