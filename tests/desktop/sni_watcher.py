#!/usr/bin/python3
"""A minimal StatusNotifier host for the desktop app's tray test, on a private D-Bus session.

It owns org.kde.StatusNotifierWatcher, so the app's tray item registers here, as it would
with a desktop's panel. It then reads what a panel shows: the item's tooltip title (or an
appindicator's XAyatanaLabel) and its menu (com.canonical.dbusmenu). With --check it waits
until the menu has every --expect-menu label, the first menu item is disabled and reads like
the tooltip, the --expect-disabled labels are greyed out, and the tooltip matches
--expect-label (a regular expression); then (once the --click-when file exists, if given)
it clicks the icon if --activate is given, and the --click menu items over dbusmenu, as a
user would, and exits 0 (1 after --timeout seconds).

Needs Debian's python3-dbus and python3-gi (for GLib's main loop).
"""
import argparse
import json
import os
import re
import sys
import time

import dbus
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

WATCHER = "org.kde.StatusNotifierWatcher"

parser = argparse.ArgumentParser()
parser.add_argument("--check", action="store_true")
parser.add_argument("--expect-menu", default="")
parser.add_argument("--expect-label", default="")
parser.add_argument("--expect-disabled", default="", help="menu labels that must be greyed out, comma-separated")
parser.add_argument("--activate", action="store_true", help="click the icon itself (Activate)")
parser.add_argument("--click", default=None, help="menu labels to click, in order, comma-separated")
parser.add_argument("--click-when", default=None, help="click only once this file exists")
parser.add_argument("--timeout", type=float, default=60)
args = parser.parse_args()

dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
bus = dbus.SessionBus()


def report(kind, **fields):
    fields["event"] = kind
    print(json.dumps(fields, default=str), flush=True)


def plain(value):
    if isinstance(value, (dbus.Array, dbus.Struct, list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (dbus.Dictionary, dict)):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, dbus.Boolean):
        return bool(value)
    if isinstance(value, (dbus.Int16, dbus.Int32, dbus.Int64, dbus.UInt16, dbus.UInt32, dbus.UInt64, dbus.Byte)):
        return int(value)
    if isinstance(value, (dbus.String, dbus.ObjectPath, dbus.Signature)):
        return str(value)
    return value


class Watcher(dbus.service.Object):
    def __init__(self):
        self.items = []
        super().__init__(bus, "/StatusNotifierWatcher")
        # Keep the name: dropping this object releases it.
        self.name = dbus.service.BusName(WATCHER, bus, do_not_queue=True)

    @dbus.service.method(WATCHER, in_signature="s", out_signature="", sender_keyword="sender")
    def RegisterStatusNotifierItem(self, service, sender=None):
        key = f"{sender}{service}" if service.startswith("/") else f"{service}/StatusNotifierItem"
        if key not in self.items:
            self.items.append(key)
        report("registered", item=key)
        self.StatusNotifierItemRegistered(key)

    @dbus.service.method(WATCHER, in_signature="s", out_signature="")
    def RegisterStatusNotifierHost(self, service):
        pass

    @dbus.service.signal(WATCHER, signature="s")
    def StatusNotifierItemRegistered(self, item):
        pass

    @dbus.service.signal(WATCHER, signature="s")
    def StatusNotifierItemUnregistered(self, item):
        pass

    @dbus.service.signal(WATCHER, signature="")
    def StatusNotifierHostRegistered(self):
        pass

    def properties(self):
        return {
            "RegisteredStatusNotifierItems": dbus.Array(self.items, signature="s"),
            "IsStatusNotifierHostRegistered": dbus.Boolean(True),
            "ProtocolVersion": dbus.Int32(0),
        }

    @dbus.service.method(dbus.PROPERTIES_IFACE, in_signature="ss", out_signature="v")
    def Get(self, interface, name):
        return self.properties()[name]

    @dbus.service.method(dbus.PROPERTIES_IFACE, in_signature="s", out_signature="a{sv}")
    def GetAll(self, interface):
        return self.properties()


def item_properties(bus_name, path):
    properties = dbus.Interface(bus.get_object(bus_name, path), dbus.PROPERTIES_IFACE)
    for interface in ("org.kde.StatusNotifierItem", "org.freedesktop.StatusNotifierItem"):
        try:
            return properties.GetAll(interface)
        except dbus.DBusException:
            pass
    return {}


def menu_items(bus_name, menu_path):
    """The menu's items, in order: [{id, label, enabled}]."""
    menu = dbus.Interface(bus.get_object(bus_name, menu_path), "com.canonical.dbusmenu")
    _, layout = menu.GetLayout(0, -1, [])
    items = []

    def walk(node):
        node_id, props, children = node
        if "label" in props:
            items.append({
                "id": int(node_id),
                "label": str(props["label"]).replace("_", ""),
                "enabled": bool(props.get("enabled", True)),
            })
        for child in children:
            walk(child)

    walk(layout)
    return items


def tick():
    for key in list(watcher.items):
        try:
            bus_name, path = key.split("/", 1)
            path = "/" + path
            props = item_properties(bus_name, path)
            menu_path = str(props.get("Menu", ""))
            items = menu_items(bus_name, menu_path) if menu_path else []
        except Exception as error:  # the app may be starting or ending
            report("error", error=repr(error))
            continue
        tooltip = props.get("ToolTip")
        label = str(props.get("XAyatanaLabel", "") or (tooltip[2] if tooltip else ""))
        report("item", label=label, menu=items)
        if not args.check:
            continue
        labels = [item["label"] for item in items]
        wanted = [w for w in args.expect_menu.split(",") if w]
        checks = {
            "menu has " + args.expect_menu: all(w in labels for w in wanted),
            "first item is the disabled status line": bool(items) and not items[0]["enabled"] and items[0]["label"] == label,
            "greyed out: " + args.expect_disabled: all(
                any(i["label"] == w and not i["enabled"] for i in items)
                for w in args.expect_disabled.split(",") if w
            ),
            "label matches " + args.expect_label: re.search(args.expect_label, label) is not None,
        }
        if all(checks.values()):
            if args.click_when and not os.path.exists(args.click_when):
                report("ready", waiting_for=args.click_when)
                continue
            if args.activate:
                item = dbus.Interface(bus.get_object(bus_name, path), "org.kde.StatusNotifierItem")
                item.Activate(dbus.Int32(0), dbus.Int32(0))
                report("activated")
                time.sleep(1)
            if args.click:
                menu = dbus.Interface(bus.get_object(bus_name, menu_path), "com.canonical.dbusmenu")
                for label in args.click.split(","):
                    target = next(item["id"] for item in items if item["label"] == label)
                    menu.Event(target, "clicked", dbus.Int32(0, variant_level=1), dbus.UInt32(int(time.time())))
                    report("clicked", label=label)
                    time.sleep(1)
            print(f"tray-check: {len(checks)} passed, 0 failed", flush=True)
            GLib.timeout_add(300, lambda: (loop.quit(), False)[1])
            return False
        report("waiting", checks=checks)
    return True


def give_up():
    global status
    status = 1
    print("tray-check: 0 passed, 1 failed (timed out)", flush=True)
    loop.quit()
    return False


status = 0
watcher = Watcher()
report("watcher_ready")
loop = GLib.MainLoop()
GLib.timeout_add(1000, tick)
if args.check:
    GLib.timeout_add(int(args.timeout * 1000), give_up)
loop.run()
sys.exit(status)
