"""Config models of the device types, the contract between config.toml and the drivers.

A device whose path does not exist yet is not a config error: scanners and printers are plugged
in and out while the daemon runs, and the driver reports them offline until they appear.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")]
DevPath = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^/")]
Baud = Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200]


class DeviceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: Name
    enabled: bool = True


class _Printer(DeviceConfig):
    paper_mm: Literal[58, 80] = 80


class NetworkPrinter(_Printer):
    type: Literal["network"]
    host: Annotated[str, Field(min_length=1, max_length=253)]
    port: Annotated[int, Field(ge=1, le=65535)] = 9100


class SerialPrinter(_Printer):
    type: Literal["serial"]
    path: DevPath
    baud: Baud = 9600


class UsbPrinter(_Printer):
    type: Literal["usb"]
    vendor_id: Annotated[int, Field(ge=0, le=0xFFFF)]
    product_id: Annotated[int, Field(ge=0, le=0xFFFF)]


class FilePrinter(_Printer):
    type: Literal["file"]
    path: DevPath


class SerialScanner(DeviceConfig):
    type: Literal["serial"]
    path: DevPath
    baud: Baud = 9600
    terminator: Literal["CR", "LF", "CRLF", "none"] = "CR"


class HidScanner(DeviceConfig):
    type: Literal["hid"]
    # a stable /dev/input/by-id/... path, or the device name evdev reports
    path: DevPath | None = None
    device_name: Annotated[str, Field(min_length=1)] | None = None


class Camera(DeviceConfig):
    type: Literal["camera"]
    # a device index (0), a V4L2 path (/dev/video0), an rtsp:// URL or a video file
    source: int | str
    decoder: Literal["zxing", "zbar"] = "zxing"


DEVICE_SECTIONS: dict[str, tuple[type[DeviceConfig], ...]] = {
    "printers": (NetworkPrinter, SerialPrinter, UsbPrinter, FilePrinter),
    "scanners": (SerialScanner, HidScanner),
    "cameras": (Camera,),
}


def device_paths(device: DeviceConfig):
    """(key, identity) pairs that no two devices may share: a port cannot be opened twice."""
    if getattr(device, "path", None):
        yield "path", device.path
    if isinstance(device, NetworkPrinter):
        yield "host", f"{device.host}:{device.port}"
    if isinstance(device, UsbPrinter):
        yield "vendor_id", f"usb:{device.vendor_id:04x}:{device.product_id:04x}"
    if isinstance(device, Camera) and (isinstance(device.source, int) or device.source.startswith("/dev/")):
        yield "source", f"/dev/video{device.source}" if isinstance(device.source, int) else device.source
