"""The sync protocol's wire contract (docs/sync-protocol.md), shared by the edge and the hub.

Pydantic models of every event a store uploads (protocol.events), every change it downloads
(protocol.changes, protocol.orders), the hints (protocol.hints), and the ledger's wire rules
(protocol.stock). Both sides validate with these, so they cannot disagree on a payload; the JSON
schemas in docs/protocol-schemas.json are generated from them (`python -m protocol.schemas`).
Imports only pydantic and the standard library.
"""

PROTOCOL = 1
