"""`python -m drivers.virtual_printer`: the virtual printer on its own, with plain logging (the
drivers use nothing of edge/; `store-edge virtual-printer` runs it with the daemon's log format)."""

import argparse
import logging
import sys

from drivers.virtual_printer.server import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drivers.virtual_printer", description="virtual ESC/POS printer")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return run(args)


sys.exit(main())
