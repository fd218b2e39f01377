#!/bin/bash
# CPU (schedstat, per brummerd thread) and elapsed time while WRITERS programs each write
# LINES_EACH lines of 100 bytes into brummerd (bench/progs/loggen.py, all released at once).
# usage: brummerd-writers.sh BIN_DIR WRITERS LINES_EACH [perf.data]   (CAPDIR: scratch parent, default /dev/shm)
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$1; W=${2:-100}; N=${3:-10000}; OUT=$4
d=$(mktemp -d ${CAPDIR:-/dev/shm}/cb.XXXX); mkdir -p $d/run $d/state $d/config/brummer $d/gate; chmod 700 $d/run
mkfifo $d/gate/go.fifo
exec 7<>$d/gate/go.fifo
cfg=$d/config/brummer/brummer.toml; : > $cfg
for i in $(seq -w 1 $W); do mkdir -p $d/gate/w$i; cat >> $cfg <<EOT
[process.w$i]
command = ["python3", "$HERE/../progs/loggen.py", "$N", "$d/gate/w$i", "$d/gate/go.fifo"]
autostart = true
restart = "never"
EOT
done
export XDG_RUNTIME_DIR=$d/run XDG_STATE_HOME=$d/state XDG_CONFIG_HOME=$d/config
$BIN/brummerd --user --dbus=off --config $cfg 2>/dev/null 7>&- & dp=$!
while [ $(ls $d/gate/w*/loggen.ready 2>/dev/null | wc -l) -lt $W ]; do sleep 0.05; done; sleep 0.3
snap() { for t in /proc/$dp/task/*; do echo "$(cat $t/comm) $(awk '{print $1}' $t/schedstat) $(grep -h voluntary_ctxt $t/status | awk '{print $2}' | tr '\n' ' ')"; done; }
snap > $d/a
[ -n "$OUT" ] && { perf record -F 4999 -g -p $dp -o $OUT 2>/tmp/perf100.err 7>&- & ps=$!; sleep 0.3; }
t0=$(date +%s.%N)
exec 7>&-
want=$((N*100))
while true; do ok=0; for f in $d/state/brummer/logs/w*.log; do [ $(stat -c %s $f) -ge $want ] && ok=$((ok+1)); done; [ $ok -ge $W ] && break; sleep 0.005; done
t1=$(date +%s.%N)
snap > $d/b
[ -n "$OUT" ] && { kill -INT $ps; wait $ps 2>/dev/null; }
paste $d/a $d/b | awk '{printf "%-18s cpu %6.1f ms  vol %5d  invol %5d\n", $1, ($6-$2)/1e6, $7-$3, $8-$4; tot+=($6-$2)/1e6} END {printf "total %.1f ms\n", tot}'
echo "elapsed $(echo "$t1 - $t0" | bc)"
kill $dp; wait $dp 2>/dev/null
rm -rf $d
