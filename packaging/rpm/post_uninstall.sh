# What %systemd_postun_with_restart does, except that an upgrade re-executes a running
# brummerd into the new binary in place (brummerctl daemon-reexec: no program restarted)
# and restarts it only when that fails. The logs go with the package on removal.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ] && systemctl is-active --quiet brummerd.service; then
        /usr/bin/brummerctl --socket /run/brummer/brummer.sock daemon-reexec >/dev/null 2>&1 \
            || systemctl try-restart brummerd.service >/dev/null 2>&1 || :
    fi
fi
if [ "$1" -eq 0 ]; then
    rm -rf /var/log/brummer /var/lib/brummer
fi
