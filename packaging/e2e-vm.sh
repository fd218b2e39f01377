#!/usr/bin/env bash
# End-to-end test of cgroup containment (issue 18) where cgroup v2 is real: boots one
# Debian 12 VM with its own kernel, systemd as PID 1 and the pure unified hierarchy
# (../shared/e2e/boot-vm.sh, software emulation: slow, so every check runs in ONE boot),
# installs the .deb and checks, with brummerd.service (Delegate=yes):
#   - brummerd runs in its leaf "daemon", each program in "prog-NAME", status says "cgroup";
#   - stop leaves nothing behind, even a double-forked, setsid'd child reparented away;
#   - memory_max = "20M" on a program allocating 100 MiB: an OOM kill, with the reason in
#     status (last_error) and the program failed;
#   - cpu_max = "20%" holds a busy loop near 20% (15-25% of one CPU, from cpu.stat);
#   - the reported memory and CPU agree with the kernel's files within 10%;
#   - after a SIGKILL of brummerd, systemd starts it again (no 219/CGROUP), and the
#     programs are re-adopted, found in their cgroups, with their limits written again;
#   - a stop of brummerd.service leaves no program cgroup and no program process.
# Ends with "N passed, M failed".
#
#   packaging/e2e-vm.sh                          # build the .deb, then test
#   E2E_DEB=path/to.deb packaging/e2e-vm.sh      # test a given .deb
#
# Needs root, qemu (boot-vm.sh installs it) and the Debian mirror. Exits 0 when every check
# passed, 1 otherwise, 77 when the machine cannot run it.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
boot=${BOOT_VM:-$root/../shared/e2e/boot-vm.sh}
[ -x "$boot" ] || boot=/work/shared/e2e/boot-vm.sh

skip() { echo "e2e-vm: skipped: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (qemu, the image build)"
[ -x "$boot" ] || skip "boot-vm.sh not found (expected ../shared/e2e/ beside the repository)"

if [ -z "${E2E_DEB:-}" ]; then
    packaging/build.sh deb >&2 || { echo "FAIL - packaging/build.sh"; echo "0 passed, 1 failed"; exit 1; }
    E2E_DEB=$(ls -t target/packages/brummer_*.deb 2>/dev/null | head -1)
fi
[ -f "$E2E_DEB" ] || { echo "FAIL - no .deb"; echo "0 passed, 1 failed"; exit 1; }

work=$(mktemp -d /tmp/brummer-e2e-vm.XXXXXX)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
cp "$E2E_DEB" "$work/"

# JSON from brummerctl, read without the json module (python3-minimal lacks it): JSON
# of brummerctl's kind is a Python literal once its three constants are renamed.
cat >"$work/q.py" <<'EOF'
import sys
# q.py NAME FIELD[.FIELD...]: a field of one program in `brummerctl --json status`
text = sys.stdin.read()
doc = eval(text.replace("true", "True").replace("false", "False").replace("null", "None"),
           {"__builtins__": {}})
for p in doc["processes"]:
    if p["name"] == sys.argv[1]:
        v = p
        for k in sys.argv[2].split("."):
            v = v.get(k) if isinstance(v, dict) else None
        print("" if v is None else v)
EOF

cat >"$work/checks.sh" <<'EOF'
#!/bin/sh
# Runs inside the VM, as root.
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   - $*"; }
bad() { fail=$((fail + 1)); echo "FAIL - $*"; }
check() { d=$1; shift; if "$@"; then ok "$d"; else bad "$d"; fi; }
# wait_for SECONDS DESCRIPTION COMMAND...: polls (the VM is emulated: generous deadlines).
wait_for() {
    t=$1 d=$2; shift 2
    end=$(( $(date +%s) + t ))
    while [ "$(date +%s)" -lt "$end" ]; do
        if "$@" >/dev/null 2>&1; then ok "$d"; return 0; fi
        sleep 0.5
    done
    bad "$d (not within ${t}s)"; return 1
}
q() { brummerctl --json status | python3 /e2e/q.py "$1" "$2"; }
unit=/sys/fs/cgroup/system.slice/brummerd.service
usec() { sed -n 's/^usage_usec //p' "$unit/prog-$1/cpu.stat"; }

cat >/etc/brummer/brummer.toml <<'TOML'
[process.escaper]
# A child that double-forks into a session of its own, reparented away from the program.
command = "(setsid sh -c 'sleep 1000 & echo $! > /run/escaped.pid' &); exec sleep 1000"
[process.hog]
command = ["python3", "-c", "import time; x = b'x' * (100 << 20); time.sleep(1000)"]
memory_max = "20M"
restart = "never"
[process.spin]
command = ["sh", "-c", "while :; do :; done"]
cpu_max = "20%"
[process.mem]
command = ["python3", "-c", "import time; x = b'x' * (50 << 20); time.sleep(1000)"]
memory_max = "200M"
nofile = 777
TOML
systemctl enable brummerd >/dev/null 2>&1; systemctl restart brummerd || { bad "brummerd did not start"; journalctl -u brummerd --no-pager | tail -30; }
if ! wait_for 120 "every program running" sh -c 'for p in escaper spin mem; do brummerctl status $p | grep -q running || exit 1; done'; then
    brummerctl status; journalctl -u brummerd --no-pager | tail -40
    echo "$pass passed, $fail failed"; exit 1
fi

# --- containment ------------------------------------------------------------------------
bpid=$(systemctl show -p MainPID --value brummerd)
check "brummerd is in its leaf daemon" grep -qx "$bpid" "$unit/daemon/cgroup.procs"
check "status says containment cgroup" sh -c '[ "$(brummerctl --json status | python3 /e2e/q.py mem containment)" = cgroup ]'
check "metrics come from the cgroup" sh -c '[ "$(brummerctl --json status | python3 /e2e/q.py mem metrics.source)" = cgroup ]'
for p in escaper spin mem; do
    pid=$(q $p pid)
    check "$p (pid $pid) is in prog-$p" grep -qx "$pid" "$unit/prog-$p/cgroup.procs"
done
check "the controllers are on for the programs" sh -c "grep -q memory $unit/cgroup.subtree_control && grep -q cpu $unit/cgroup.subtree_control && grep -q pids $unit/cgroup.subtree_control"
check "nofile = 777 is the program's open-file limit" sh -c "grep -q '^Max open files *777 *777' /proc/$(q mem pid)/limits"
check "cpu_max 20% is cpu.max" grep -qx "20000 100000" "$unit/prog-spin/cpu.max"
check "memory_max 200M is memory.max" grep -qx 209715200 "$unit/prog-mem/memory.max"

# --- OOM --------------------------------------------------------------------------------
wait_for 120 "hog is OOM-killed and failed" sh -c '[ "$(brummerctl --json status | python3 /e2e/q.py hog state)" = failed ]'
err=$(q hog last_error)
check "the reason is in status: $err" sh -c "echo '$err' | grep -qF 'killed by the OOM killer (memory_max 20M)'"
check "brummerctl status hog shows it" sh -c 'brummerctl status hog | grep -qF "OOM killer"'
obj=/io/github/brummer/Brummer1/process
prop() { busctl --system get-property io.github.brummer.Brummer1 "$obj/$1" io.github.brummer.Brummer1.Process "$2"; }
check "D-Bus LastError of hog says so" sh -c "busctl --system get-property io.github.brummer.Brummer1 $obj/hog io.github.brummer.Brummer1.Process LastError | grep -qF 'killed by the OOM killer (memory_max 20M)'"

# --- cpu_max ----------------------------------------------------------------------------
u0=$(usec spin); t0=$(date +%s%N); sleep 5; u1=$(usec spin); t1=$(date +%s%N)
ratio=$(( (u1 - u0) * 1000 * 100 / (t1 - t0) ))
check "cpu_max 20% holds a busy loop at ${ratio}% (15-25)" sh -c "[ $ratio -ge 15 ] && [ $ratio -le 25 ]"

# --- reported figures agree with the kernel's --------------------------------------------
cur=$(cat "$unit/prog-mem/memory.current"); rep=$(q mem metrics.memory_bytes)
check "memory: reported $rep, memory.current $cur (within 10%)" python3 -c "import sys; a,b=$rep,$cur; sys.exit(abs(a-b) > b/10)"
dbus_mem=$(prop mem MemoryCurrent | cut -d' ' -f2); cur=$(cat "$unit/prog-mem/memory.current")
check "D-Bus MemoryCurrent $dbus_mem, memory.current $cur (within 10%)" python3 -c "import sys; a,b=$dbus_mem,$cur; sys.exit(abs(a-b) > b/10)"
check "D-Bus TasksCurrent is pids.current" sh -c "[ \"\$(busctl --system get-property io.github.brummer.Brummer1 $obj/mem io.github.brummer.Brummer1.Process TasksCurrent)\" = \"t \$(cat $unit/prog-mem/pids.current)\" ]"
# Frozen, spin's CPU counter stands still: a sample taken after the freeze must match it.
echo 1 > "$unit/prog-spin/cgroup.freeze"
frozen_us=$(( $(date +%s%N) / 1000 ))
wait_for 30 "a sample taken after the freeze" sh -c "[ \$(brummerctl --json status | python3 /e2e/q.py spin metrics.sampled_at_us) -gt $((frozen_us + 200000)) ]"
kern=$(( $(usec spin) * 1000 )); rep=$(q spin metrics.cpu_usage_ns)
check "cpu: reported ${rep} ns, cpu.stat ${kern} ns (within 10%)" python3 -c "import sys; a,b=$rep,$kern; sys.exit(b == 0 or abs(a-b) > b/10)"
echo 0 > "$unit/prog-spin/cgroup.freeze"

# --- stop leaves nothing behind ---------------------------------------------------------
esc=$(cat /run/escaped.pid 2>/dev/null)
check "the escaped child ($esc) is in another session, in prog-escaper" sh -c "[ -n '$esc' ] && grep -qx '$esc' $unit/prog-escaper/cgroup.procs && [ \$(ps -o sid= -p $esc) != \$(ps -o sid= -p $(q escaper pid)) ]"
check "brummerctl stop escaper" brummerctl stop escaper
check "the escaped child is gone" sh -c "! kill -0 $esc 2>/dev/null"
check "prog-escaper is removed" sh -c "[ ! -d $unit/prog-escaper ]"

# --- SIGKILL of brummerd ----------------------------------------------------------------
spin=$(q spin pid); mem=$(q mem pid)
systemctl kill -s KILL --kill-who=main brummerd
wait_for 120 "systemd started brummerd again" sh -c "p=\$(systemctl show -p MainPID --value brummerd); [ \"\$p\" != 0 ] && [ \"\$p\" != $bpid ] && brummerctl status >/dev/null"
check "no 219/CGROUP on the restart" sh -c '! journalctl -u brummerd --no-pager | grep -q "status=219/CGROUP"'
check "spin re-adopted with the same pid" sh -c "[ \"\$(brummerctl --json status | python3 /e2e/q.py spin pid)\" = $spin ]"
check "mem re-adopted with the same pid" sh -c "[ \"\$(brummerctl --json status | python3 /e2e/q.py mem pid)\" = $mem ]"
check "re-adopted programs are in their cgroups" sh -c "grep -qx $spin $unit/prog-spin/cgroup.procs && grep -qx $mem $unit/prog-mem/cgroup.procs"
check "the new brummerd is in its leaf daemon" grep -qx "$(systemctl show -p MainPID --value brummerd)" "$unit/daemon/cgroup.procs"
check "cpu_max written again after the restart" grep -qx "20000 100000" "$unit/prog-spin/cpu.max"
wait_for 30 "re-adopted metrics come from the cgroup" sh -c '[ "$(brummerctl --json status | python3 /e2e/q.py spin metrics.source)" = cgroup ]'

# --- stop of the service ----------------------------------------------------------------
check "systemctl stop brummerd" systemctl stop brummerd
check "no program cgroup is left" sh -c "! ls -d $unit/prog-* 2>/dev/null"
check "no program process is left" sh -c "! kill -0 $spin 2>/dev/null && ! kill -0 $mem 2>/dev/null"

# --- user mode: the user manager delegates a subtree to brummerd.service --user -----------
useradd -m alice 2>/dev/null
uid=$(id -u alice)
loginctl enable-linger alice
wait_for 60 "alice's user manager runs" test -S /run/user/$uid/systemd/private
as_alice() { runuser -u alice -- env XDG_RUNTIME_DIR=/run/user/$uid "$@"; }
as_alice mkdir -p /home/alice/.config/brummer
printf '[process.nap]\ncommand = ["sleep", "1000"]\n' | as_alice tee /home/alice/.config/brummer/brummer.toml >/dev/null
check "systemctl --user start brummerd" as_alice systemctl --user start brummerd
wait_for 60 "the user's program runs" sh -c "runuser -u alice -- env XDG_RUNTIME_DIR=/run/user/$uid brummerctl status nap | grep -q running"
ucg=/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/$(pgrep -u alice -x brummerd)/cgroup)
echo "# user brummerd runs in $ucg"
check "user mode: brummerd is in its leaf daemon" sh -c "case $ucg in */brummerd.service/daemon) ;; *) exit 1;; esac"
ucg=${ucg%/daemon}
check "user mode: containment cgroup" sh -c "[ \"\$(runuser -u alice -- env XDG_RUNTIME_DIR=/run/user/$uid brummerctl --json status | python3 /e2e/q.py nap containment)\" = cgroup ]"
check "user mode: nap is in prog-nap of the user unit" sh -c "grep -qx \"\$(runuser -u alice -- env XDG_RUNTIME_DIR=/run/user/$uid brummerctl --json status | python3 /e2e/q.py nap pid)\" $ucg/prog-nap/cgroup.procs"
as_alice systemctl --user stop brummerd

if [ "$fail" -gt 0 ]; then journalctl -u brummerd --no-pager | tail -40; journalctl --user-unit brummerd --no-pager 2>/dev/null | tail -20; fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
EOF
chmod 755 "$work/checks.sh"

E2E_EXTRA_PACKAGES=${E2E_EXTRA_PACKAGES:-python3} E2E_TIMEOUT=${E2E_TIMEOUT:-1500} \
    "$boot" --bind-ro "$work:/e2e" "$work/$(basename "$E2E_DEB")" /e2e/checks.sh
