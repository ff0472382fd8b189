"""A virtual ESC/POS receipt printer: a TCP server (port 9100) that decodes what it is sent.

Part of the product: the demo prints to it, tests drive the real printer driver against it, and
installers check a till's setup with it. It keeps every receipt as structured data and plain text,
renders a PNG on demand, and simulates the states that hurt in shops (offline, paper out with the
held job printing on refill, cover open, slow link, connection cut off mid-job).

Decoded commands (everything else is skipped with a logged note; garbage never crashes it):

  ESC @            initialise (modes back to defaults)
  ESC a n          align 0/48 left, 1/49 centre, 2/50 right (taken at the start of a line)
  ESC E n          bold on/off            ESC ! n   print mode (bold bit 3, tall bit 4, wide bit 5)
  GS ! n           character size (width = high nibble + 1, height = low nibble + 1)
  LF               print the line         ESC d n   print and feed n lines
  FS & / FS .      Chinese mode on / off: in it text is GB18030 (1, 2 or 4 bytes a character),
                   outside it single bytes (ASCII, CP437 above 0x7F)
  GS V m [n]       cut: ends the current receipt
  GS ( k ...       QR code (cn=49): model (fn 65), module size (67), error correction (69),
                   store data (80), print (81: records a QR with the stored data); other symbols skipped
  ESC p m t1 t2    cash drawer pulse (recorded: pin 2 or 5, on/off times in ms)
  GS k / GS v 0    barcode / raster image: recorded as a placeholder line, payload skipped
  DLE EOT n        real-time status: ONE byte answered at once, as soon as it is received, even
                   while the printer is offline or holding a job (see the bit layout below)
  GS r n           status (n=1/49 paper sensor, n=2/50 drawer), for clones that answer that instead;
                   answered on receipt like DLE EOT. State `answers` picks which queries are answered:
                   all (default), dle_eot, gs_r (a clone) or none (a printer that never answers)
  ESC - n, ESC 2, ESC 3 n, ESC J n, ESC M n, ESC R n, ESC t n, ESC SP n, ESC $ nL nH, GS B n,
  GS L nL nH, GS W nL nH, GS h n, GS w n, GS H n, GS f n, FS ! n, FS - n, FS S n1 n2, FS W n, HT, CR:
                   understood and ignored (no effect on the text record)

Status bytes (Epson ESC/POS; bits 1 and 4 are always 1, bits 0 and 7 always 0, so 0x12 = all clear):

  DLE EOT 1  printer status   bit 2: drawer kick-out connector pin 3 high (drawer_open)
                              bit 3: offline (set when offline, cover open or paper out)
                              bit 5: waiting for online recovery (never set here)
  DLE EOT 2  offline status   bit 2: cover open
                              bit 3: paper being fed by the FEED button (never set here)
                              bit 5: printing stopped by paper end (paper_out)
                              bit 6: error occurred (never set here)
  DLE EOT 3  error status     bit 3: autocutter error, bit 5: unrecoverable, bit 6: auto-recoverable
                              (never set here: always 0x12)
  DLE EOT 4  paper roll       bits 2+3: roll near end (paper_near_end, or paper_out)
                              bits 5+6: roll end (paper_out)
  GS r 1     paper sensor     bits 0+1: near end, bits 2+3: paper end (bit 1 and 4 NOT fixed: 0x00 clear)
  GS r 2     drawer           bit 0: drawer kick-out connector pin 3 high

  e.g. online 0x12/0x12/0x12/0x12; offline 0x1A for n=1; cover open n=1 0x1A, n=2 0x16;
  paper out n=1 0x1A, n=2 0x32, n=4 0x7E; drawer open n=1 0x16.

Held jobs: while the printer is not ready (offline, cover open or paper out) the bytes it receives
are kept in its buffer, not printed; real-time status requests in them are still answered. When it
becomes ready again the held bytes print, which is what real printers do (the "whole buffer prints
once paper is refilled" hazard; a held drawer pulse opens the drawer then, too).

Connections are served one at a time, as raw-port printers do: a second connection is accepted but
not read (its bytes wait, unanswered) until the first one closes.

Control: Python methods on VirtualPrinter (set_state, receipts, clear, render_png) and an HTTP JSON
API (aiohttp, separate port): GET /state, PUT /state {...}, GET /receipts, GET /receipts/{n},
GET /receipts/{n}.txt, GET /receipts/{n}.png, GET /pending, DELETE /receipts.

The parts: decoder.py (the ESC/POS stream into receipts), status.py (the simulated state and the
status bytes), picture.py (a receipt as a PNG), server.py (TCP 9100, held jobs, the HTTP control
API). `python -m drivers.virtual_printer` runs it with plain logging; `store-edge virtual-printer`
with the daemon's log format.
"""

from drivers.virtual_printer.decoder import Decoder, Receipt
from drivers.virtual_printer.picture import render_png
from drivers.virtual_printer.server import VirtualPrinter
from drivers.virtual_printer.status import PrinterState, gs_r_byte, status_byte

__all__ = ["Decoder", "PrinterState", "Receipt", "VirtualPrinter", "gs_r_byte", "render_png", "status_byte"]
