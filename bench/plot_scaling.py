#!/usr/bin/env python3
"""Draw docs/scaling.png from results-scaling.json (written by scaling.py).

    python3 plot_scaling.py [--json results-scaling.json] [--out ../docs/scaling.png]

Four panels: status-all CLI latency vs programs (median, p95 as a band), daemon RSS and
PSS vs programs, start-all and shutdown time vs programs, and log throughput vs concurrent
writers for brummer and `cat > file` (the physical limit, same run; min-max over runs as
bars). Needs matplotlib
(Debian: apt-get install python3-matplotlib).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:  # the Debian package installs into /usr/lib/python3/dist-packages
    sys.path.append("/usr/lib/python3/dist-packages")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

COLORS = {"brummer": "#1f77b4", "cat": "#7f7f7f", "supervisord": "#d62728", "pm2": "#2ca02c",
          "s6": "#9467bd", "pueue": "#8c564b", "horust": "#e377c2", "circus": "#bcbd22"}


def series(by_size: dict, key: str, scale: float = 1.0):
    xs = sorted(by_size, key=int)
    pts = [(int(x), by_size[x][key] * scale) for x in xs if by_size[x].get(key) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=os.path.join(HERE, "results-scaling.json"))
    ap.add_argument("--out", default=os.path.join(HERE, "..", "docs", "scaling.png"))
    args = ap.parse_args()
    with open(args.json) as f:
        data = json.load(f)
    s = data["summary"]
    meta = data["meta"]

    fig, ((ax1, ax2), (ax4, ax3)) = plt.subplots(2, 2, figsize=(12, 8.5))

    for ad, by_n in s["programs"].items():
        c = COLORS.get(ad)
        x, med = series(by_n, "status_median_s", 1000)
        _, p95 = series(by_n, "status_p95_s", 1000)
        ax1.plot(x, med, "o-", color=c, label=f"{ad} median")
        if len(p95) == len(x):
            ax1.fill_between(x, med, p95, color=c, alpha=0.15, label=f"{ad} median..p95")
        x, rss = series(by_n, "rss_kib", 1 / 1024)
        ax2.plot(x, rss, "o-", color=c, label=f"{ad} RSS")
        x, pss = series(by_n, "pss_kib", 1 / 1024)
        ax2.plot(x, pss, "s--", color=c, alpha=0.6, label=f"{ad} PSS")
        x, st = series(by_n, "all_running_s")
        ax4.plot(x, st, "o-", color=c, label=f"{ad}: start --all -> all running")
        x, sd = series(by_n, "shutdown_s")
        if sd:
            ax4.plot(x, sd, "v--", color=c, label=f"{ad}: SIGTERM -> all stopped, daemon gone")
    for ax, title, ylabel in ((ax1, "status-all CLI, end to end", "ms per call"),
                              (ax2, "daemon memory, all programs running", "MiB"),
                              (ax4, "starting and stopping them all", "seconds")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("programs (sleep 100000)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)

    total = meta.get("total_lines", 1_000_000)
    for ad, by_w in s["writers"].items():
        c = COLORS.get(ad)
        x, y = series(by_w, "lines_per_s", 1e-6)
        _, lo = series(by_w, "lines_per_s_min", 1e-6)
        _, hi = series(by_w, "lines_per_s_max", 1e-6)
        label = "cat > file (limit)" if ad == "cat" else ad
        if len(lo) == len(x) == len(hi):
            ax3.errorbar(x, y, yerr=[[a - b for a, b in zip(y, lo)], [b - a for a, b in zip(y, hi)]],
                         fmt="o-" if ad != "cat" else "s--", color=c, capsize=3, label=label)
        else:
            ax3.plot(x, y, "o-", color=c, label=label)
    ax3.set_xscale("log")
    ax3.set_xlabel("concurrent writers")
    ax3.set_ylabel("million lines/s to disk (median)")
    ax3.set_title(f"log throughput, {total:,} x 100 B lines in all")
    ax3.set_ylim(bottom=0)
    ax3.grid(True, which="both", alpha=0.3)
    ax3.legend(fontsize=8)

    fig.suptitle(f"brummer scaling, {meta.get('date_utc')}, {meta.get('cpus')} shared cores "
                 f"(medians of {meta.get('reps')} runs; bars: min-max)", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {os.path.normpath(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
