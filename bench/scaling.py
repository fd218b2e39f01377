#!/usr/bin/env python3
"""Scaling: how brummer's costs grow with the number of programs and of concurrent writers.

    BRUMMER_BIN=/abs/target/release python3 scaling.py                  # both parts, ~6 min
    BRUMMER_BIN=... python3 scaling.py --part programs --reps 3
    BRUMMER_BIN=... python3 scaling.py --part writers --merge           # add to the last JSON
    python3 plot_scaling.py                                             # docs/scaling.png

Part "programs" (issue 7): for N in 10, 100, 1,000 `sleep 100000` programs, run.py's W1+W2
workload (`w_spawn`): start the daemon with N programs defined, `start --all`, wait until
status reports all running, then VmRSS/PSS of the daemon and 30 status-all CLI calls
(median, p95). Then SIGTERM and the time until the daemon has stopped every program and
exited. Peers can be added with --adapters (any run.py adapter with a status-all).

Part "writers" (issues 6 and 7): for W in 1, 10, 100 programs writing at once, each program
is progs/loggen.py writing TOTAL/W numbered 100-byte lines (TOTAL = 1,000,000 by default, so
every W moves the same 100 MB and lines/s compare across W). All writers block on one FIFO
gate and start together when the driver closes it. Timer: from the first writer's first
write to the moment every writer's last line is on disk (file size polled every 5 ms, then
the last line checked). Then every line of every log is parsed: lost, duplicated,
reordered, corrupt, per writer (worst writer reported). CPU = time on CPU of every thread
of the daemon's processes over the interval (schedstat, ns; for `cat`, all the cats). The
`cat` adapter (each writer piped into its own `cat > file`) runs in the same invocation,
interleaved, as the physical limit.

Runs are interleaved (part -> size -> rep -> adapter, adapter order rotated per rep) as in
run.py. Writes results-scaling.json (raw runs) and results-scaling.md (tables).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import procs  # noqa: E402
import run  # noqa: E402  (the W1-W6 driver: its helpers, workloads and run loop are reused)
from adapters import BY_NAME  # noqa: E402
from adapters.base import Program  # noqa: E402

PROGRAM_COUNTS = [10, 100, 1000]
WRITER_COUNTS = [1, 10, 100]
LINE_BYTES = 100
log = run.log


# ---------------------------------------------------------------- part "programs"
def w_programs(a, n: int, status_calls: int) -> dict:
    """run.py's W1+W2 on N programs, then the time a SIGTERM takes to stop them all."""
    res = run.w_spawn(a, n=n, status_calls=status_calls, want_w1=True, want_w2=True)
    res["fds_root"] = count_fds(a.root_pids())
    d = a.daemon
    if d is not None and d.poll() is None and a.name == "brummer":
        t0 = time.monotonic()
        a.stop_daemon(timeout=60)
        res["shutdown_s"] = time.monotonic() - t0
        res["shutdown_rc"] = d.returncode
        # the daemon is gone: its programs would now be orphans below our reaper
        res["left_after_shutdown"] = sum(1 for p in procs.descendants([run.REAPER])
                                         if p.comm == "sleep" and p.state not in ("Z", "X"))
    return res


def sup_cpu_ns(a) -> dict[tuple[int, int], int]:
    """CPU time of every thread of the supervisor's processes, in ns, from
    /proc/PID/task/TID/schedstat (exact; /proc/PID/stat's utime+stime, which run.py uses, is
    accounted in 10 ms ticks, too coarse for 100 `cat`s copying 1 MB each)."""
    out = {}
    for pid in a.supervisor_pids():
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    out[(pid, int(tid))] = int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return out


def count_fds(pids: list[int]) -> int | None:
    try:
        return sum(len(os.listdir(f"/proc/{p}/fd")) for p in pids)
    except OSError:
        return None


# ---------------------------------------------------------------- part "writers"
def w_writers(a, writers: int, total: int) -> dict:
    """W writers of TOTAL/W lines each, started together on one FIFO gate."""
    per = total // writers
    gates = a.path("gate")
    os.makedirs(gates, exist_ok=True)
    fifo = os.path.join(gates, "go.fifo")
    os.mkfifo(fifo)
    # Held open (read-write, so the open does not block) from before the writers start until
    # "go": each writer's open of the FIFO succeeds at once, its read blocks until we close.
    hold = os.open(fifo, os.O_RDWR)
    try:
        names = [f"w{i:03d}" for i in range(writers)]
        dirs = {nm: os.path.join(gates, nm) for nm in names}
        for d in dirs.values():
            os.makedirs(d)
        a.setup([Program(nm, [sys.executable, run.LOGGEN, str(per), dirs[nm], fifo], autorestart=False)
                 for nm in names])
        a.start_all()
        deadline = time.monotonic() + 60
        waiting = set(names)
        while waiting:
            waiting = {nm for nm in waiting if not os.path.exists(os.path.join(dirs[nm], "loggen.ready"))}
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(waiting)} of {writers} producers did not start")
            time.sleep(0.01)
        time.sleep(0.5)   # the daemon idle again after the writers' start-up
        cpu0, ns0 = run.sup_cpu(a), sup_cpu_ns(a)
        paths = {nm: a.log_paths(nm) for nm in names}
        want = per * LINE_BYTES
        marker = b"L%07d " % (per - 1)
        go_wall = time.time()
        t0 = time.monotonic()
    finally:
        os.close(hold)
    pending = set(names)
    done = done_wall = None
    while time.monotonic() < t0 + run.RUN_LIMIT:
        for nm in list(pending):
            try:
                if os.stat(paths[nm][0]).st_size >= want and run.tail_has(paths[nm], marker):
                    pending.discard(nm)
            except OSError:
                pass
        if not pending:
            done, done_wall = time.monotonic() - t0, time.time()
            break
        time.sleep(0.005)
    cpu1, ns1 = run.sup_cpu(a), sup_cpu_ns(a)
    res = {"writers": writers, "lines_per_writer": per, "lines_total": per * writers,
           "go_to_done_s": done, "sup_cpu_s": sum(v - cpu0.get(p, 0.0) for p, v in cpu1.items()),
           "sup_cpu_exact_s": sum(v - ns0.get(k, 0) for k, v in ns1.items()) / 1e9,
           "unfinished": len(pending)}
    res["rss_total_kib"], res["rss_root_kib"], _, res["pss_total_kib"] = run.sup_rss(a)
    if done is None:
        time.sleep(0.5)
    starts, ends = [], []
    for nm in names:
        try:
            g0, g1 = (float(x) for x in open(os.path.join(dirs[nm], "loggen.times")).read().split())
            starts.append(g0)
            ends.append(g1)
        except (OSError, ValueError):
            pass
    if starts:
        res["start_spread_s"] = max(starts) - min(starts)
        res["producers_write_s"] = max(ends) - min(starts)
        if done_wall is not None:
            res["lines_per_s"] = per * writers / max(1e-6, done_wall - min(starts))
    res["go_to_first_write_s"] = (min(starts) - go_wall) if starts else None
    worst = {"lost": 0, "dup": 0, "reordered": 0, "corrupt": 0}
    received = 0
    for nm in names:
        v = run.verify_lines(paths[nm], per)
        received += v["received"]
        for k in worst:
            worst[k] = max(worst[k], v[k] if isinstance(v[k], int) else 0)
    res.update(worst)
    res["received"] = received
    return res


# ---------------------------------------------------------------- report
def med(runs: list[dict], key: str) -> float | None:
    v = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
    return statistics.median(v) if v else None


def pooled_pct(runs: list[dict], key: str, q: float) -> float | None:
    v = [x for r in runs for x in r.get(key, []) or []]
    return run.pct(v, q) if v else None


def fmt(x, unit="", scale=1.0, digits=None):
    if x is None:
        return "-"
    x *= scale
    if digits is not None:
        return f"{x:,.{digits}f}{unit}"
    a = abs(x)
    s = f"{x:,.0f}" if a >= 100 else f"{x:.1f}" if a >= 10 else f"{x:.2f}" if a >= 1 else f"{x:.3f}"
    return s + unit


def worst_loss(runs: list[dict]) -> str:
    keys = ("lost", "dup", "reordered", "corrupt")
    ok = [r for r in runs if all(isinstance(r.get(k), int) for k in keys)]
    if not ok:
        return "-"
    return "/".join(str(max(r[k] for r in ok)) for k in keys)


def errors(runs: list[dict]) -> str:
    e = [r.get("error") for r in runs if r.get("error")]
    return f" ({len(e)} failed: {e[0]})" if e else ""


def summary(data: dict) -> dict:
    """Medians per adapter and size, the numbers the table and the plot show."""
    out: dict = {"programs": {}, "writers": {}}
    for ad, by_n in data.get("programs", {}).items():
        for n, runs in by_n.items():
            out["programs"].setdefault(ad, {})[n] = {
                "all_running_s": med(runs, "all_running_status_s"),
                "all_running_proc_s": med(runs, "all_running_proc_s"),
                "status_median_s": pooled_pct(runs, "status_samples_s", 0.5),
                "status_p95_s": pooled_pct(runs, "status_samples_s", 0.95),
                "rss_kib": med(runs, "rss_total_kib"),
                "pss_kib": med(runs, "pss_total_kib"),
                "fds": med(runs, "fds_root"),
                "shutdown_s": med(runs, "shutdown_s"),
                "runs": len(runs), "failed": sum(1 for r in runs if r.get("error")),
            }
    for ad, by_w in data.get("writers", {}).items():
        for w, runs in by_w.items():
            out["writers"].setdefault(ad, {})[w] = {
                "lines_per_s": med(runs, "lines_per_s"),
                "lines_per_s_min": min((r["lines_per_s"] for r in runs if r.get("lines_per_s")), default=None),
                "lines_per_s_max": max((r["lines_per_s"] for r in runs if r.get("lines_per_s")), default=None),
                "sup_cpu_s": med(runs, "sup_cpu_exact_s") if med(runs, "sup_cpu_exact_s") is not None
                else med(runs, "sup_cpu_s"),
                "rss_kib": med(runs, "rss_total_kib"),
                "start_spread_s": med(runs, "start_spread_s"),
                "loss": worst_loss(runs),
                "runs": len(runs), "failed": sum(1 for r in runs if r.get("error")),
            }
    return out


def render(data: dict) -> str:
    meta, s = data["meta"], summary(data)
    md = ["# Scaling: brummer with 10 to 1,000 programs and 1 to 100 concurrent writers", ""]
    md.append(f"Measured {meta.get('date_utc')} on Linux {meta.get('kernel')}, {meta.get('cpus')} cores "
              f"(shared with other jobs: compare within this file only), Python {meta.get('python')}. "
              f"Medians of {meta.get('reps')} interleaved runs per cell.")
    md.append("")
    md.append(f"Command: `{meta.get('cmd')}`. Versions: "
              + "; ".join(f"{k}: {v}" for k, v in meta.get("versions", {}).items()) + ".")
    md.append("")
    if s["programs"]:
        md += ["## Programs (`sleep 100000` each): start, status-all, memory", "",
               "| supervisor | programs | start-all -> all running | status-all median | status-all p95 "
               "| daemon RSS | daemon PSS | open fds | SIGTERM -> all stopped, daemon gone |",
               "|---|---|---|---|---|---|---|---|---|"]
        for ad, by_n in s["programs"].items():
            for n in sorted(by_n, key=int):
                c = by_n[n]
                err = errors(data["programs"][ad][n])
                md.append(f"| {ad} | {int(n):,} | {fmt(c['all_running_s'], ' s')} | "
                          f"{fmt(c['status_median_s'], ' ms', 1000)} | {fmt(c['status_p95_s'], ' ms', 1000)} | "
                          f"{fmt(c['rss_kib'], ' MiB', 1 / 1024)} | {fmt(c['pss_kib'], ' MiB', 1 / 1024)} | "
                          f"{fmt(c['fds'], '', digits=0)} | {fmt(c['shutdown_s'], ' s')}{err} |")
        md.append("")
    if s["writers"]:
        tot = meta.get("total_lines", 1_000_000)
        md += [f"## Writers: {tot:,} lines of 100 bytes in all, split evenly, all writers at once", "",
               "| writers | lines each | brummer lines/s | cat lines/s | brummer / cat | brummer CPU | cat CPU "
               "| brummer RSS | lost/dup/reordered/corrupt, worst writer (brummer; cat) |",
               "|---|---|---|---|---|---|---|---|---|"]
        b, c = s["writers"].get("brummer", {}), s["writers"].get("cat", {})
        for w in sorted(set(b) | set(c), key=int):
            bw, cw = b.get(w, {}), c.get(w, {})
            ratio = (bw["lines_per_s"] / cw["lines_per_s"]
                     if bw.get("lines_per_s") and cw.get("lines_per_s") else None)
            md.append(f"| {int(w)} | {tot // int(w):,} | {fmt(bw.get('lines_per_s'), digits=0)} | "
                      f"{fmt(cw.get('lines_per_s'), digits=0)} | {fmt(ratio, 'x', digits=2)} | "
                      f"{fmt(bw.get('sup_cpu_s'), ' s')} | {fmt(cw.get('sup_cpu_s'), ' s')} | "
                      f"{fmt(bw.get('rss_kib'), ' MiB', 1 / 1024)} | {bw.get('loss', '-')}; {cw.get('loss', '-')}"
                      f"{errors(data['writers'].get('brummer', {}).get(w, []) + data['writers'].get('cat', {}).get(w, []))} |")
        md += ["", "Spread of lines/s over runs (min-max): " + "; ".join(
            f"{ad} W={w}: {fmt(v['lines_per_s_min'], digits=0)}-{fmt(v['lines_per_s_max'], digits=0)}"
            for ad, by_w in s["writers"].items() for w, v in sorted(by_w.items(), key=lambda kv: int(kv[0]))) + "."]
        md.append("")
    return "\n".join(md)


# ---------------------------------------------------------------- main
def interleaved(part: str, sizes: list[int], classes: list, reps: int, scratch: str, fn, key: str, **kw) -> dict:
    out: dict = {}
    for size in sizes:
        for rep in range(reps):
            order = classes[rep % len(classes):] + classes[:rep % len(classes)]
            for cls in order:
                tag = f"{part}-{size}-{cls.name}-{rep}"
                r = run.one_run(cls, scratch, tag, fn, **{key: size}, **kw)
                out.setdefault(cls.name, {}).setdefault(str(size), []).append(r)
                brief = {k: v for k, v in r.items() if not isinstance(v, list)}
                log(f"{part} {key}={size} run {rep + 1}/{reps} {cls.name}: {json.dumps(brief, default=str)[:400]}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["programs", "writers", "both"], default="both")
    ap.add_argument("--adapters", default="brummer",
                    help="supervisors for the programs part (comma list; default brummer)")
    ap.add_argument("--programs", default=",".join(map(str, PROGRAM_COUNTS)))
    ap.add_argument("--writers", default=",".join(map(str, WRITER_COUNTS)))
    ap.add_argument("--total-lines", type=int, default=1_000_000, help="lines over all writers (default 1,000,000)")
    ap.add_argument("--status-calls", type=int, default=30)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", default=os.path.join(HERE, "results-scaling.json"))
    ap.add_argument("--out", default=os.path.join(HERE, "results-scaling.md"))
    ap.add_argument("--merge", action="store_true",
                    help="keep the other part (and other adapters) from the existing JSON")
    ap.add_argument("--scratch", default="")
    args = ap.parse_args()

    run.prepare_env()
    scratch = args.scratch or tempfile.mkdtemp(prefix="svbench-scaling-", dir="/tmp")
    data = {"meta": {}, "programs": {}, "writers": {}}
    if args.merge and os.path.exists(args.json):
        with open(args.json) as f:
            data = json.load(f)

    def usable(names: list[str]) -> list:
        out = []
        for nm in names:
            cls = BY_NAME[nm]
            probe_dir = os.path.join(scratch, "probe-" + nm)
            os.makedirs(probe_dir, exist_ok=True)
            why = cls(probe_dir).missing()
            if why:
                log(f"skipping {nm}: {why}")
                continue
            out.append(cls)
        return out

    versions = dict(data["meta"].get("versions", {}))
    started = time.monotonic()
    if args.part in ("programs", "both"):
        classes = [c for c in usable([x.strip() for x in args.adapters.split(",") if x.strip()])
                   if c.caps.status_all]
        sizes = [int(x) for x in args.programs.split(",")]
        res = interleaved("programs", sizes, classes, args.reps, scratch, w_programs, "n",
                          status_calls=args.status_calls)
        for ad, by_n in res.items():
            data["programs"].setdefault(ad, {}).update(by_n)
        versions.update({c.name: c(scratch).version() for c in classes})
    if args.part in ("writers", "both"):
        classes = usable(["brummer", "cat"])
        sizes = [int(x) for x in args.writers.split(",")]
        res = interleaved("writers", sizes, classes, args.reps, scratch, w_writers, "writers",
                          total=args.total_lines)
        for ad, by_w in res.items():
            data["writers"].setdefault(ad, {}).update(by_w)
        versions.update({c.name: c(scratch).version() for c in classes})
        data["meta"]["total_lines"] = args.total_lines
    took = time.monotonic() - started
    log(f"took {took:.0f} s")
    data["meta"].update({
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "kernel": platform.release(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "versions": versions, "reps": args.reps,
        "cmd": "python3 scaling.py" + "".join(f" {shlex.quote(x)}" for x in run.public_argv(sys.argv[1:])),
    })
    data["meta"].setdefault("runs", []).append({"part": args.part, "took_s": round(took),
                                                 "date_utc": data["meta"]["date_utc"]})
    data["summary"] = summary(data)
    with open(args.json, "w") as f:
        json.dump(data, f, indent=1, default=str)
    md = render(data)
    with open(args.out, "w") as f:
        f.write(md + "\n")
    log(f"wrote {args.json} and {args.out}")
    print(md)
    return 0


if __name__ == "__main__":
    if not run.REAPER:
        # below a tiny init, as run.py does (procs.run_as_reaper): orphans stay findable
        env = dict(os.environ, SVBENCH_REAPER=str(os.getpid()))
        sys.exit(procs.run_as_reaper([sys.executable, os.path.abspath(__file__), *sys.argv[1:]], env))
    sys.exit(main())
