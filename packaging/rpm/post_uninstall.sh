# What %systemd_postun_with_restart does, and the logs go with the package on removal.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart brummerd.service >/dev/null 2>&1 || :
    fi
fi
if [ "$1" -eq 0 ]; then
    rm -rf /var/log/brummer /var/lib/brummer
fi
