#!/bin/bash
# The same load piped into W separate `cat > file` (the physical limit): their CPU and elapsed time.
# usage: cat-writers.sh W N [perf.data]   (W cats, each fed by one loggen of N lines; output in /tmp)
HERE=$(cd "$(dirname "$0")" && pwd)
W=${1:-10}; N=${2:-100000}; OUT=$3
d=$(mktemp -d /tmp/c10.XXXX); mkdir -p $d/gate; mkfifo $d/gate/go.fifo
exec 7<>$d/gate/go.fifo
subs=
for i in $(seq 1 $W); do mkdir -p $d/w$i; (python3 $HERE/../progs/loggen.py $N $d/w$i $d/gate/go.fifo | cat > $d/w$i/out.log) 7>&- & subs="$subs,$!"; done
while [ $(ls $d/w*/loggen.ready 2>/dev/null | wc -l) -lt $W ]; do sleep 0.05; done; sleep 0.3
# Only our cats: the children of the pipelines' subshells.
pids=$(pgrep -d, -x cat -P "${subs#,}")
[ -n "$OUT" ] && { perf record -F 4999 -g -p $pids -o $OUT 2>/dev/null 7>&- & ps=$!; sleep 0.3; }
for p in ${pids//,/ }; do echo "$(awk '{print $1}' /proc/$p/schedstat)"; done > $d/a
t0=$(date +%s.%N)
exec 7>&-
want=$((N*100))
while true; do ok=0; for f in $d/w*/out.log; do [ $(stat -c %s $f) -ge $want ] && ok=$((ok+1)); done; [ $ok -ge $W ] && break; sleep 0.005; done
t1=$(date +%s.%N)
for p in ${pids//,/ }; do echo "$(awk '{print $1}' /proc/$p/schedstat)"; done > $d/b
[ -n "$OUT" ] && { kill -INT $ps; wait $ps 2>/dev/null; }
paste $d/a $d/b | awk '{tot+=($2-$1)/1e6} END {printf "cats total %.1f ms\n", tot}'
echo "elapsed $(echo "$t1 - $t0" | bc)"
pkill -f "loggen.py $N $d"; wait 2>/dev/null
rm -rf $d
