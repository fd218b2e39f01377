#!/bin/sh
# The systemd side of bench/probes/deps.py: the same tree of 100 programs (one root, then
# 9 levels of 11; each requires one of the level above: Requires= + After=) as transient
# units of a systemd running as PID 1, started through a target that wants them all, and
# the same 100 without dependencies. Every unit is `Type=exec` running /bin/sleep, so a
# unit is active once its program is executed, as a brummer program with
# `ready = "started"`. Figures from systemd's own stamps: the first unit's
# InactiveExitTimestampMonotonic to the last unit's ActiveEnterTimestampMonotonic; plus
# the client's clock around `systemctl start` (which returns when the whole job is done).
# One JSON line per round.
#
# Runs inside a container booted with systemd, e.g. from the repository:
#   sudo ../shared/e2e/boot-systemd.sh --bind-ro "$PWD/bench:/bench" - 'sh /bench/probes/deps-systemd.sh'
set -eu
ROUNDS=${ROUNDS:-5}
dir=/run/systemd/system

units() { # $1: tree|flat
    rm -f "$dir"/bt-*.service "$dir"/bt-all.target
    wants=""
    prev=""
    lvl=0
    for size in 1 11 11 11 11 11 11 11 11 11; do
        cur=""
        i=0
        while [ "$i" -lt "$size" ]; do
            n=$(printf 'l%dp%02d' "$lvl" "$i")
            {
                echo "[Unit]"
                if [ "$1" = tree ] && [ -n "$prev" ]; then
                    count=$(echo $prev | wc -w)
                    req=$(echo $prev | tr ' ' '\n' | sed -n "$((i % count + 1))p")
                    echo "Requires=bt-$req.service"
                    echo "After=bt-$req.service"
                fi
                echo "[Service]"
                echo "Type=exec"
                echo "ExecStart=/bin/sleep 100000"
            } > "$dir/bt-$n.service"
            cur="$cur $n"
            wants="$wants bt-$n.service"
            i=$((i + 1))
        done
        prev=$cur
        lvl=$((lvl + 1))
    done
    printf '[Unit]\nWants=%s\n' "$wants" > "$dir/bt-all.target"
    systemctl daemon-reload
}

stamp_range() { # microseconds from the first activation to the last unit active
    systemctl show -p InactiveExitTimestampMonotonic -p ActiveEnterTimestampMonotonic 'bt-*.service' --all |
        awk -F= '/^InactiveExit/ { if (min == "" || $2 < min) min = $2 }
                 /^ActiveEnter/ { if ($2 > max) max = $2 }
                 END { print max - min }'
}

round() { # $1: tree|flat
    t0=$(date +%s%N)
    systemctl start bt-all.target
    t1=$(date +%s%N)
    active=$(systemctl list-units --state=active --no-legend 'bt-*.service' | wc -l)
    [ "$active" -eq 100 ] || { echo "only $active of 100 active" >&2; exit 1; }
    us=$(stamp_range)
    systemctl stop bt-all.target 'bt-*.service'
    echo "$us $(((t1 - t0) / 1000))"
}

r=0
while [ "$r" -lt "$ROUNDS" ]; do
    units flat
    set -- $(round flat)
    flat_us=$1
    units tree
    set -- $(round tree)
    printf '{"round": %d, "programs": 100, "levels": 10, "tree_ms": %s, "flat_ms": %s, "request_ms": %s}\n' \
        "$r" "$(echo "$1" | awk '{printf "%.2f", $1/1000}')" \
        "$(echo "$flat_us" | awk '{printf "%.2f", $1/1000}')" \
        "$(echo "$2" | awk '{printf "%.2f", $1/1000}')"
    r=$((r + 1))
done
