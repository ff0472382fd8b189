"""Device drivers: receipt printers, barcode scanners, cameras.

Each device type has a config model, chosen in config.toml by `type = "..."` inside its table
(`[[printers]]`, `[[scanners]]`, `[[cameras]]`). DEVICE_SECTIONS is the one explicit registry.
"""

from drivers.models import DEVICE_SECTIONS, device_paths

__all__ = ["DEVICE_SECTIONS", "device_paths"]
