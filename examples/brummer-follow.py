#!/usr/bin/python3
"""Follow brummerd over D-Bus: print every program's state, then each change as it happens.

Needs python3-gi (Gio/GLib). Usage: brummer-follow.py [--session | --address ADDRESS]
(default: the system bus). Stop with Ctrl-C.
"""
import sys
from gi.repository import Gio, GLib

NAME = "io.github.brummer.Brummer1"
PATH = "/io/github/brummer/Brummer1"
MANAGER = "io.github.brummer.Brummer1.Manager"

if "--address" in sys.argv:
    addr = sys.argv[sys.argv.index("--address") + 1]
    flags = (Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
             | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION)
    bus = Gio.DBusConnection.new_for_address_sync(addr, flags, None, None)
else:
    kind = Gio.BusType.SESSION if "--session" in sys.argv else Gio.BusType.SYSTEM
    bus = Gio.bus_get_sync(kind, None)

last_seq = 0

def on_signal(conn, sender, path, iface, member, params):
    global last_seq
    if member == "StateChanged":
        name, old, new, seq = params.unpack()
        if seq <= last_seq:  # already reflected in the snapshot below
            return
        last_seq = seq
        print(f"{seq:>6} {name}: {old} -> {new}", flush=True)
    elif member == "EventsMissed":
        resync()  # brummerd dropped events for us: start again from its state
    else:
        print(f"       {member}{params.unpack()}", flush=True)

def resync():
    global last_seq
    seq, procs = bus.call_sync(NAME, PATH, MANAGER, "GetState", None,
                               GLib.VariantType("(ta{sa{sv}})"),
                               Gio.DBusCallFlags.NONE, -1, None).unpack()
    last_seq = seq
    for name, props in sorted(procs.items()):
        print(f"{seq:>6} {name}: {props['State']} (pid {props['Pid']})", flush=True)

# Subscribe first, then take the snapshot: nothing falls between the two.
bus.signal_subscribe(NAME, MANAGER, None, PATH, None, Gio.DBusSignalFlags.NONE, on_signal)
resync()
try:
    GLib.MainLoop().run()
except KeyboardInterrupt:
    pass
