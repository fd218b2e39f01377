#!/bin/bash
# brummerd's resident memory by mapping in W1's setup: N idle `sleep` programs started with
# `start --all`, read 1 s after all run (as bench/run.py's W1 reads VmRSS). Prints VmRSS and
# the Rss of brummerd's code (r-xp), its other file pages, the anonymous pages and the
# shared libraries, in KiB: to see how much of brummerd's code stays resident
# (docs/performance.md, "Code residency").
# usage: w1-rss.sh BIN_DIR [N]   (CAPDIR: scratch parent, default /tmp)
BIN=$(cd "$1" && pwd); N=${2:-100}
d=$(mktemp -d ${CAPDIR:-/tmp}/svbench-rss.XXXX); mkdir -p $d/run $d/state $d/config/brummer; chmod 700 $d/run
cfg=$d/config/brummer/brummer.toml; : > $cfg
for i in $(seq -w 1 $N); do printf '[process.p%s]\ncommand = ["/bin/sleep", "100000"]\nautostart = false\nrestart = "always"\n\n' $i >> $cfg; done
export XDG_RUNTIME_DIR=$d/run XDG_STATE_HOME=$d/state XDG_CONFIG_HOME=$d/config
ctl() { $BIN/brummerctl --socket $d/run/brummer/brummer.sock "$@"; }
$BIN/brummerd --user --config $cfg 2>$d/daemon.err & dp=$!
until ctl status --json >/dev/null 2>&1; do sleep 0.02; done
ctl start --all >/dev/null
until [ "$(ctl status --json | grep -o '"running"' | wc -l)" -ge $N ]; do sleep 0.01; done
sleep 1
exe=$(readlink /proc/$dp/exe)
awk -v exe="$exe" '
  /^[0-9a-f]+-[0-9a-f]+ / { perm = $2; path = $6; size = 0; next }
  /^Size:/ { size = $2 }
  /^Rss:/ {
    if (path == exe && perm ~ /x/) { code += $2; codesize += size }
    else if (path == exe) own += $2
    else if (path ~ /^\//) lib += $2
    else anon += $2
    total += $2
  }
  END { printf "rss %d  code %d (of %d)  own-other %d  anon %d  libs %d\n", total, code, codesize, own, anon, lib }
' /proc/$dp/smaps
grep VmRSS /proc/$dp/status
# PAGES=FILE: also write the file offsets of brummerd's resident code pages (needs root)
[ -n "$PAGES" ] && python3 - $dp "$exe" > "$PAGES" <<'PY'
import struct, sys
pid, exe = sys.argv[1], sys.argv[2]
with open(f"/proc/{pid}/maps") as m, open(f"/proc/{pid}/pagemap", "rb") as pm:
    for line in m:
        f = line.split()
        if len(f) >= 6 and f[5] == exe and "x" in f[1]:
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            pm.seek(lo // 4096 * 8)
            data = pm.read((hi - lo) // 4096 * 8)
            for i in range(len(data) // 8):
                if struct.unpack_from("<Q", data, i * 8)[0] >> 63:
                    print(int(f[2], 16) + i * 4096)
PY
kill $dp; wait $dp 2>/dev/null
rm -rf $d
