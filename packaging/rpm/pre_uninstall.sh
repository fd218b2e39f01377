# What %systemd_preun does: on removal (not upgrade), disable and stop the units.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now brummerd.service brummerd.socket >/dev/null 2>&1 || :
fi
