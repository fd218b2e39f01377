#!/usr/bin/env python3
"""Plots a soak's samples.csv (tests/soak/soak.py): brummerd's RSS and fd count over time.

  tests/soak/plot.py SAMPLES.csv OUT.png [--title TEXT] [--warmup SECONDS]

Needs matplotlib (Debian: apt-get install python3-matplotlib).
"""

import argparse
import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("samples")
    p.add_argument("out")
    p.add_argument("--title", default="brummerd soak")
    p.add_argument("--warmup", type=float, default=300, help="seconds shaded as warm-up")
    a = p.parse_args()
    with open(a.samples) as f:
        rows = list(csv.DictReader(f))
    t = [float(r["t_s"]) / 60 for r in rows]
    rss = [int(r["rss_kib"]) / 1024 for r in rows]
    # ring_kib: what the log rings hold (soak.py samples it; older CSVs lack it).
    # -1: not sampled then (the first hour-long run sampled it from its 35th minute only).
    ring = [int(r["ring_kib"]) / 1024 if int(r["ring_kib"]) >= 0 else float("nan") for r in rows] \
        if "ring_kib" in rows[0] else None
    fds = [int(r["fds"]) for r in rows]
    children = [int(r["children"]) for r in rows]

    fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(9, 6))
    ax1.plot(t, rss, color="tab:blue", lw=1, label="RSS")
    if ring:
        ax1.plot(t, ring, color="tab:green", lw=1, label="log rings' contents")
        ax1.plot(t, [a - b for a, b in zip(rss, ring)], color="tab:purple", lw=1, label="RSS less the rings")
        ax1.legend(loc="lower right")
    ax1.set_ylabel("RSS (MiB)")
    ax1.set_ylim(0, max(rss) * 1.2)
    ax1.set_title(a.title)
    ax2.plot(t, fds, color="tab:red", lw=1, label="open fds")
    ax2.plot(t, children, color="tab:gray", lw=1, label="live children")
    ax2.set_ylabel("count")
    ax2.set_ylim(0, max(fds) * 1.2)
    ax2.set_xlabel("minutes since start")
    ax2.legend(loc="lower right")
    for ax in (ax1, ax2):
        ax.axvspan(0, a.warmup / 60, color="0.9", lw=0)
        ax.grid(True, lw=0.3)
    ax1.text(a.warmup / 120, max(rss) * 1.1, "warm-up", ha="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out, dpi=90)


if __name__ == "__main__":
    main()
