"""The simulated printer's state, and the status bytes a printer in that state answers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PrinterState:
    online: bool = True
    paper_out: bool = False
    paper_near_end: bool = False
    cover_open: bool = False
    drawer_open: bool = False  # drawer sensor (kick-out connector pin 3) reads high
    slow_delay: float = 0.0  # seconds to sleep after each slow_every bytes read
    slow_every: int = 64
    drop_after: int | None = None  # cut each connection off after this many bytes
    answers: str = "all"  # status queries answered: all, dle_eot, gs_r (a clone), none (a dumb printer)

    @property
    def ready(self) -> bool:
        return self.online and not self.paper_out and not self.cover_open


def status_byte(n: int, s: PrinterState) -> int:
    """The one byte a printer answers to DLE EOT n (n = 1..4), per the Epson spec."""
    b = 0x12
    if n == 1:
        if s.drawer_open:
            b |= 0x04
        if not s.ready:
            b |= 0x08
    elif n == 2:
        if s.cover_open:
            b |= 0x04
        if s.paper_out:
            b |= 0x20
    elif n == 4:
        if s.paper_near_end or s.paper_out:
            b |= 0x0C
        if s.paper_out:
            b |= 0x60
    return b


def gs_r_byte(n: int, s: PrinterState) -> int:
    """The byte answered to GS r n (n = 1/49 paper sensor, 2/50 drawer)."""
    if n in (1, 49):
        b = 0
        if s.paper_near_end or s.paper_out:
            b |= 0x03
        if s.paper_out:
            b |= 0x0C
        return b
    return 0x01 if s.drawer_open else 0x00
