"""The doctor's device checks: printers, scanners and cameras, each opened only to ask its status,
and not at all when the running daemon holds it."""

from __future__ import annotations

import os
import re
import socket
import threading
from pathlib import Path

from edge.ops.doctor_access import Check, Who, can, group_fix


def in_thread(fn, timeout: float):
    """fn() on a daemon thread: (result, None), (None, exception), or (None, TimeoutError) if it hangs."""
    box: dict = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name="doctor-probe")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return None, TimeoutError(f"no answer within {timeout:g} s")
    return box.get("result"), box.get("error")


def _path_check(name: str, path: str, who: Who, mode: str, what: str) -> Check | None:
    """None if the path exists and `who` may use it; else the Check that says why not."""
    if not os.path.exists(path):
        return Check(name, "warn", f"{path} not found ({what} unplugged or switched off?)",
                     "plug it in; ls -l /dev/pos/ shows the names udev gave; check the path in the config")
    if not can(who, path, mode):
        need = {"r": "readable", "rw": "readable and writable", "w": "writable"}[mode]
        return Check(name, "fail", f"{path} is not {need} by {who.name}", group_fix(who, path))
    return None


def _status_text(status) -> tuple[str, str, str]:
    if status is None:
        return "ok", "connected; it does not answer status queries (printing still works)", ""
    state = status.state
    if state == "ready":
        return "ok", "ready", ""
    if state == "paper_near_end":
        return "warn", "paper near end", "put in a new paper roll soon"
    fixes = {"paper_out": "put in a new paper roll", "cover_open": "close the printer's cover",
             "offline": "check the printer's error light; switch it off and on"}
    return "fail", state.replace("_", " "), fixes.get(state, "")


def check_printer(device, *, who: Who, timeout: float, daemon_running: bool) -> Check:
    from drivers.models import FilePrinter, NetworkPrinter, SerialPrinter, UsbPrinter  # noqa: PLC0415

    name = f"printer {device.name}"
    if isinstance(device, NetworkPrinter):
        where = f"{device.host}:{device.port}"
        try:
            socket.create_connection((device.host, device.port), timeout=timeout).close()
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            return Check(name, "fail", f"cannot connect to {where} ({reason})",
                         f"switch the printer on and check its cable; print its self-test page (hold FEED while "
                         f"switching on) to see its IP address; ping {device.host}; fix host/port of "
                         f"[[printers]] {device.name} in the config")
    elif isinstance(device, (SerialPrinter, FilePrinter)):
        where = device.path
        problem = _path_check(name, device.path, who, "w" if isinstance(device, FilePrinter) else "rw", "printer")
        if problem:
            return problem
        if daemon_running and isinstance(device, SerialPrinter):
            return Check(name, "ok", f"{where} present and usable by {who.name} (in use by the running daemon: "
                         "status on its status page)")
    elif isinstance(device, UsbPrinter):
        where = f"USB {device.vendor_id:04x}:{device.product_id:04x}"
        found = _usb_node(device.vendor_id, device.product_id)
        if found is None:
            return Check(name, "warn", f"{where} not found on the USB bus (unplugged or switched off?)",
                         "plug it in and switch it on; lsusb lists what is connected")
        if found and not can(who, found, "rw"):
            return Check(name, "fail", f"{where} ({found}) is not writable by {who.name}", group_fix(who, found))
        if daemon_running:
            return Check(name, "ok", f"{where} present (in use by the running daemon: status on its status page)")
    else:  # a printer type added later
        return Check(name, "warn", f"type {device.type!r}: the doctor does not know how to check it")
    return _printer_status(device, name, where, timeout)


def _printer_status(device, name: str, where: str, timeout: float) -> Check:
    from drivers.printer import PrinterDevice  # noqa: PLC0415

    printer = PrinterDevice(device)

    def ask():
        try:
            return printer.status()
        finally:
            printer.close()

    status, error = in_thread(ask, timeout + 2.0)
    if isinstance(error, TimeoutError):
        return Check(name, "warn", f"{where}: connected but no status answer ({error}); busy with another "
                     "connection (the daemon?)", "try again; if it persists switch the printer off and on")
    if error is not None:
        return Check(name, "fail", f"{where}: {error}",
                     "check the printer is switched on and connected; check the config entry")
    level, text, fix = _status_text(status)
    return Check(name, level, f"{where}: {text}", fix)


def _usb_node(vendor: int, product: int) -> str | None:
    """'' if found but its /dev/bus/usb node is unknown, its node path if known, None if not found."""
    sysfs = Path("/sys/bus/usb/devices")
    if not sysfs.is_dir():
        return None
    for dev in sysfs.iterdir():
        try:
            if int((dev / "idVendor").read_text(), 16) == vendor and int((dev / "idProduct").read_text(), 16) == product:
                bus = int((dev / "busnum").read_text())
                num = int((dev / "devnum").read_text())
                node = f"/dev/bus/usb/{bus:03d}/{num:03d}"
                return node if os.path.exists(node) else ""
        except (OSError, ValueError):
            continue
    return None


def check_scanner(device, *, who: Who, timeout: float, daemon_running: bool) -> Check:
    from drivers.models import HidScanner, SerialScanner  # noqa: PLC0415

    name = f"scanner {device.name}"
    if isinstance(device, SerialScanner):
        problem = _path_check(name, device.path, who, "rw", "scanner")
        return problem or Check(name, "ok", f"{device.path} present, readable and writable by {who.name}")
    if isinstance(device, HidScanner):
        if device.path:
            problem = _path_check(name, device.path, who, "r", "scanner")
            if problem:
                return problem
            label = _evdev_name(device.path)
            return Check(name, "ok", f"{device.path} present" + (f" ({label})" if label else ""))
        found, seen, error = _evdev_find(device.device_name)
        if found:
            return Check(name, "ok", f"input device {device.device_name!r} is {found}")
        if error:
            return Check(name, "warn", f"cannot list input devices: {error}", "pip install evdev (Linux only)")
        if not seen:
            return Check(name, "warn", f"no input device named {device.device_name!r}; none are readable here",
                         "run the doctor as root, or sudo usermod -aG input "
                         f"{who.name}; plug the scanner in")
        return Check(name, "warn", f"no input device named {device.device_name!r} (found: "
                     + ", ".join(repr(s) for s in sorted(seen)[:8]) + ")",
                     "plug the scanner in, or copy its exact name into device_name")
    return Check(name, "warn", f"type {device.type!r}: the doctor does not know how to check it")


def _evdev_name(path: str) -> str:
    try:
        import evdev  # noqa: PLC0415

        dev = evdev.InputDevice(path)
        try:
            return dev.name
        finally:
            dev.close()
    except Exception:  # noqa: BLE001 (evdev missing, not an input device)
        return ""


def _evdev_find(name: str) -> tuple[str | None, set[str], str]:
    try:
        import evdev  # noqa: PLC0415
    except ImportError as exc:
        return None, set(), str(exc)
    seen = set()
    for path in evdev.list_devices():
        try:
            dev = evdev.InputDevice(path)
        except OSError:
            continue
        try:
            if dev.name == name:
                return path, seen, ""
            seen.add(dev.name)
        finally:
            dev.close()
    return None, seen, ""


def check_camera(device, *, who: Who, timeout: float, daemon_running: bool) -> Check:
    name = f"camera {device.name}"
    source = device.source
    local = isinstance(source, int) or (isinstance(source, str) and "://" not in source)
    path = f"/dev/video{source}" if isinstance(source, int) else source
    if local:
        if not os.path.exists(path):
            return Check(name, "warn", f"{path} not found (camera unplugged?)",
                         "plug the camera in; ls /dev/video* lists the cameras; fix source in the config")
        if path.startswith("/dev/") and not can(who, path, "rw"):
            return Check(name, "fail", f"{path} is not usable by {who.name}", group_fix(who, path))
    if daemon_running and local and str(path).startswith("/dev/"):
        return Check(name, "ok", f"{path} present (in use by the running daemon: not opened twice)")

    def probe():
        import cv2  # noqa: PLC0415

        if isinstance(source, str) and "://" in source:
            ms = int(timeout * 1000)
            cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms,
                                                            cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
        else:
            cap = cv2.VideoCapture(source)
        try:
            return cap.isOpened()
        finally:
            cap.release()

    opened, error = in_thread(probe, timeout + 2.0)
    shown = redact(str(source))
    if error is not None:
        return Check(name, "warn", f"{shown}: {error}", "check the camera's cable or stream URL")
    if not opened:
        return Check(name, "warn", f"{shown} does not open",
                     "check the camera (another program using it?) or the stream's URL, user and password")
    return Check(name, "ok", f"{shown} opens")


def redact(url: str) -> str:
    return re.sub(r"://[^/@\s]*@", "://***@", url)
