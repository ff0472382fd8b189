"""Config models of the device types, the contract between config.toml and the drivers.

A device whose path does not exist yet is not a config error: scanners and printers are plugged
in and out while the daemon runs, and the driver reports them offline until they appear.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")]
DevPath = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^/")]
Baud = Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200]


class DeviceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: Name
    enabled: bool = True


# What a printer can be asked to print. Routing: each kind goes to the first enabled printer whose
# `documents` lists it; a kind no printer lists is simply not printed (no job is queued).
DOCUMENT_KINDS = ("receipt", "drawer", "order_ticket", "pickup_slip", "daily_summary", "shift_report",
                  "status_ticket", "test_page", "count_sheet")
DocumentKind = Literal[DOCUMENT_KINDS]  # a tuple subscript: the same as listing each kind


class _Printer(DeviceConfig):
    paper_mm: Literal[58, 80] = 80
    documents: Annotated[list[DocumentKind], Field(min_length=1)] = list(DOCUMENT_KINDS)
    encoding: Literal["gb18030", "gbk"] = "gb18030"  # gbk: older printers without the 4-byte part
    chinese_font: bool = True   # false: text is printed as raster images (printers without a Chinese font)
    native_qr: bool = True      # false: QR codes as images (printers without GS ( k)
    # how to ask for real-time status: DLE EOT (Epson), GS r (some clones), auto (try both), none
    status: Literal["auto", "dle_eot", "gs_r", "none"] = "auto"
    cut: bool = True
    drawer_pin: Literal[2, 5] = 2


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
    # terminator "none": a code ends after this long without bytes
    idle_gap_ms: Annotated[int, Field(ge=10, le=1000)] = 50
    # bytes; longer codes are discarded. A pickup or coupon token (a signed QR) is up to 1,024
    max_length: Annotated[int, Field(ge=1, le=4096)] = 1024


class HidScanner(DeviceConfig):
    type: Literal["hid"]
    # a stable /dev/input/by-id/... path, or the device name evdev reports
    path: DevPath | None = None
    device_name: Annotated[str, Field(min_length=1)] | None = None
    max_length: Annotated[int, Field(ge=1, le=4096)] = 1024  # characters (a signed QR token is up to 1,024)
    # a code also ends after this long without a key (scanners set to send no Enter, or set up for a
    # Chinese input method); None: only Enter ends a code. Below the reader's 1 s "incomplete" limit
    end_on_pause_ms: Annotated[int, Field(ge=20, le=500)] | None = None

    @model_validator(mode="after")
    def _path_or_name(self):
        if not self.path and not self.device_name:
            raise ValueError("set path or device_name")
        return self


class Camera(DeviceConfig):
    type: Literal["camera"]
    # a device index (0), a V4L2 path (/dev/video0), an rtsp:// URL or a video file
    source: int | str
    decoder: Literal["zxing", "zbar"] = "zxing"  # tried first; the other is tried when it finds nothing
    dedupe_seconds: Annotated[float, Field(gt=0, le=60)] = 2.0  # the same code again only after this long unseen
    formats: Annotated[list[str], Field(min_length=1)] | None = ["QRCode"]  # zxing-cpp names; None: all formats
    prescale: Annotated[int, Field(ge=320, le=4096)] | None = 960  # large frames are read shrunk to this first
    width: Annotated[int, Field(ge=160, le=4096)] | None = None    # ask the camera for this frame size
    height: Annotated[int, Field(ge=120, le=4096)] | None = None
    loop: bool = False  # a video file starts again at its end (demo)


DEVICE_SECTIONS: dict[str, tuple[type[DeviceConfig], ...]] = {
    "printers": (NetworkPrinter, SerialPrinter, UsbPrinter, FilePrinter),
    "scanners": (SerialScanner, HidScanner),
    "cameras": (Camera,),
}


def device_paths(device: DeviceConfig):
    """(key, identity) pairs that no two devices may share: a port cannot be opened twice."""
    if getattr(device, "path", None):
        yield "path", device.path
    if isinstance(device, HidScanner) and device.device_name and not device.path:
        yield "device_name", f"hid:{device.device_name}"
    if isinstance(device, NetworkPrinter):
        yield "host", f"{device.host}:{device.port}"
    if isinstance(device, UsbPrinter):
        yield "vendor_id", f"usb:{device.vendor_id:04x}:{device.product_id:04x}"
    if isinstance(device, Camera) and (isinstance(device.source, int) or device.source.startswith("/dev/")):
        yield "source", f"/dev/video{device.source}" if isinstance(device.source, int) else device.source
