#!/usr/bin/env python3
"""Flatten divan's tree output into `path<TAB>median` lines.

Usage: cargo bench -p brummer-core 2>&1 | python3 bench/divan_medians.py
Each leaf row becomes e.g. `status/read_with_writer/Mutexed/t=4	219.8 ns`, which is what
docs/performance.md's table was built from (ratio = lock-based median / ours median).
"""
import re
import sys

def main() -> None:
    stack: list[tuple[int, str]] = []
    root = None
    for raw in sys.stdin:
        line = raw.rstrip("\n")
        m = re.match(r"^(\w+)\s+fastest", line)
        if m:
            root, stack = m.group(1), []
            continue
        m = re.match(r"^([│ ]*)[├╰]─ (\S+)(.*)$", line)
        if not m:
            continue
        depth = len(m.group(1)) // 3
        stack = [s for s in stack if s[0] < depth] + [(depth, m.group(2))]
        cells = m.group(3).split("│")
        if len(cells) < 3 or not cells[0].strip():
            continue
        median = cells[2].strip()
        path = "/".join([root or "?"] + [s[1] for s in stack])
        print(f"{path}\t{median}")


if __name__ == "__main__":
    main()
