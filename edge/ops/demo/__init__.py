"""`store-edge demo [--config PATH] [--for SECONDS]`: the whole store on one PC, with a simulated day
in fast motion, always on data of its own: without --config in a new temporary folder (never the
installed /etc/store-edge/config.toml); with --config only on a data_dir that is new or that an
earlier demo made (marked by DATA_DIR/.store-edge-demo). A folder holding a real store is refused
(exit 2) and left unchanged: the demo seeds logins with published passwords and simulated sales.

Everything runs in this one process, on loopback:

  hub       the reference cloud (hub/), its data in DATA_DIR/demo-hub/ (kept between runs, so
            the store's cloud copy stays consistent with its database)
  proxy     a fault proxy (hub/faultproxy.py) between the store and the hub: the outage
  printer   a virtual ESC/POS printer: receipts as .txt, .json and .png in DATA_DIR/virtual-printer/
  scanner   a serial scanner on a pty: the demo "scans" by writing a code + CR to the pty's master
  camera    a camera reading DATA_DIR/demo/pickups.avi (loop = true): QR codes of pickup tokens of
            orders created at the hub at start, so they verify. Generated at start, not bundled:
            a pickup token is signed by the hub for one order of one run, so a bundled video could
            only show codes that are refused.
  daemon    the store itself (edge/app.py), on the dashboard port of config.toml (default 8470),
            with [cloud] pointed at the proxy and a token from the hub in DATA_DIR/demo/cloud-token

The simulation (seeded random): customers order online at the hub, tills record cash and WeChat
sales through the local API, staff mark orders accepted and ready, customers collect them (pickup
token on the serial scanner, a typed code, or the camera), the counter hands them over through
the API as the cashier screen does, and in the middle the link to the cloud goes down for about a
minute (refused, then blackholed) and comes back. The timeline is 240 s; `--for S` scales it to S
seconds (60 s: outage ~15 s), then waits for the upload queue to drain and prints a summary whose
last line is one JSON object; the exit code is 1 if a check failed. Without `--for` the timeline
repeats until Ctrl-C.

`python -m edge.ops.demo [--config PATH] [--for SECONDS]` runs the same as `store-edge demo`.

The parts: seed (the demo catalog and logins), video (the camera's pickup video), loopback_http (the
in-process servers and the JSON client), simulation (the customers, tills, counter and outage),
summary (the end: waiting for the store to catch up, the checks), stage (everything started and
stopped around the simulation), command (the entry point).
"""
