"""Benchmarks of store-edge: `python -m bench ledger`, `python -m bench all` (see bench/__main__.py).

Each benchmark prints human-readable lines, progress on stderr, and as the LAST line of stdout one
JSON object with its figures, so CI and people can both read the result.
"""
