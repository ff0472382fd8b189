"""store-edge: the in-store edge service."""

__version__ = "0.1.0"
