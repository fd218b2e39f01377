#!/usr/bin/env bash
# Under systemd, in a real boot (../shared/e2e/boot-systemd.sh, a systemd-nspawn container):
#
#  1. the anchor: `systemctl daemon-reexec`, from the call until `systemctl
#     is-system-running` answers again (ROUNDS times);
#  2. brummerd SIGKILLed with N running `sleep` programs (N = 10 100 1000 by default), with
#     a drop-in RestartSec=100ms as packaging/e2e-systemd.sh uses: the time from the
#     SIGKILL until the new brummerd logged "took over from the previous image" (every
#     program re-adopted and published; the journal's timestamp against the kill's, both
#     CLOCK_REALTIME), and until a `status` polled every 10 ms shows all N running under a
#     new MainPID (the poll costs a `status` of N programs, so it is the coarser figure).
#     Checks that every program kept its pid.
#
#   bench/probes/systemd-crash.sh [N ...]          # uses the newest target/packages/*.deb
#   E2E_DEB=path/to.deb ROUNDS=3 bench/probes/systemd-crash.sh 10 100 1000
#
# Prints one line per measurement; needs root (as boot-systemd.sh does).
set -euo pipefail
cd "$(dirname "$0")/../.."
boot=${BOOT_SYSTEMD:-$PWD/../shared/e2e/boot-systemd.sh}
[ -x "$boot" ] || boot=/work/shared/e2e/boot-systemd.sh
deb=${E2E_DEB:-$(ls -t target/packages/brummer_*.deb | head -1)}
ns=${*:-10 100 1000}
work=$(mktemp -d /tmp/brummer-sdcrash.XXXXXX)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
cp "$deb" "$work/"

cat > "$work/inner.sh" <<INNER
#!/bin/bash
set -u
ROUNDS=${ROUNDS:-3}
NS="$ns"
INNER
cat >> "$work/inner.sh" <<'INNER'
now() { date +%s%N; }
# What brummerd and systemd said, without systemd's line per left-over process.
diagnose() {
    systemctl show -p MainPID -p ActiveState -p SubState -p NRestarts -p ExecMainStatus -p Result brummerd
    timeout 20 brummerctl status 2>&1 | tail -3
    journalctl -u brummerd --no-pager -o short-monotonic \
        | grep -v -e 'left-over process' -e 'This usually indicates' -e 'remains running after' | tail -40
}
running() { timeout 20 brummerctl status --json 2>/dev/null | grep -o '"state": *"running"' | wc -l; }

for r in $(seq 1 "$ROUNDS"); do
    t0=$(now)
    systemctl daemon-reexec
    until s=$(systemctl is-system-running 2>/dev/null); [ "$s" = running ] || [ "$s" = degraded ]; do :; done
    echo "systemctl daemon-reexec: $(( ($(now) - t0) / 1000 )) us until is-system-running answers"
done

mkdir -p /etc/systemd/system/brummerd.service.d
cat > /etc/systemd/system/brummerd.service.d/bench.conf <<'EOF'
[Unit]
StartLimitBurst=100
[Service]
RestartSec=100ms
EOF
systemctl daemon-reload
printf '[daemon]\nring_bytes = 65536\n' > /etc/brummer/brummer.toml
mkdir -p /etc/brummer/processes.d
for n in $NS; do
    : > /etc/brummer/processes.d/bench.toml
    for i in $(seq 1 "$n"); do
        printf '[process.p%04d]\ncommand = ["/bin/sleep", "100000"]\n\n' "$i" >> /etc/brummer/processes.d/bench.toml
    done
    systemctl restart brummerd
    t0=$(now)
    until [ "$(running)" = "$n" ]; do
        [ $(( $(now) - t0 )) -gt 120000000000 ] && { echo "N=$n: not all running within 120 s: $(running)"; diagnose; exit 1; }
        sleep 0.1
    done
    pids_before=$(brummerctl status --json | grep -o '"pid": *[0-9]*' | sort | md5sum)
    for r in $(seq 1 "$ROUNDS"); do
        m=$(systemctl show -p MainPID --value brummerd)
        t0=$(now)
        kill -9 "$m"
        until nm=$(systemctl show -p MainPID --value brummerd) && [ "$nm" != "$m" ] && [ "$nm" != 0 ] \
            && [ "$(running)" = "$n" ]; do
            if [ $(( $(now) - t0 )) -gt 180000000000 ]; then
                echo "N=$n round $r: not all $n running again within 180 s; $(running) running"
                diagnose
                exit 1
            fi
            sleep 0.01
        done
        t_status=$(now)
        # The journal's line of the new brummerd, in µs since the epoch.
        t_log=$(journalctl -u brummerd -o export --no-pager _PID="$nm" 2>/dev/null \
            | awk -v RS= '/took over from the previous image/' \
            | sed -n 's/^__REALTIME_TIMESTAMP=//p' | head -1)
        pids_now=$(brummerctl status --json | grep -o '"pid": *[0-9]*' | sort | md5sum)
        same=yes; [ "$pids_now" = "$pids_before" ] || same=NO
        echo "N=$n round $r: SIGKILL -> 'took over' logged $(( t_log - t0 / 1000 )) us; -> status shows all running $(( (t_status - t0) / 1000 )) us; same pids: $same"
    done
done
INNER
chmod 755 "$work/inner.sh"
E2E_BOOT_TIMEOUT=${E2E_BOOT_TIMEOUT:-180} "$boot" --bind-ro "$work:/e2e" "$work/$(basename "$deb")" /e2e/inner.sh
