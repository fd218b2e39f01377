# Group brummer and the runtime/log directories, then what %systemd_post does: on a
# first install, enable the units if the preset policy says so.
systemd-sysusers /usr/lib/sysusers.d/brummer.conf >/dev/null 2>&1 || :
systemd-tmpfiles --create /usr/lib/tmpfiles.d/brummer.conf >/dev/null 2>&1 || :
if [ "$1" -eq 1 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload preset brummerd.service brummerd.socket >/dev/null 2>&1 || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
