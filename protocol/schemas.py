"""The JSON schemas of the protocol's models, as published in docs/protocol-schemas.json.

`python -m protocol.schemas > docs/protocol-schemas.json` regenerates the file; a test fails
when the published file differs from what the models generate, so the two cannot drift.
"""

from __future__ import annotations

import json

from protocol import PROTOCOL
from protocol.changes import CHANGE_PAYLOADS, ChangesPage
from protocol.events import EVENT_PAYLOADS, Batch, Envelope, HeldEvents
from protocol.hints import ChangesHint, Hello
from protocol.members import HoldAnswer, HoldIn, HoldRefused, MemberLookup, MemberLookupAnswer


def schemas() -> dict:
    def schema(model) -> dict:
        return model.model_json_schema(mode="validation")

    return {
        "protocol": PROTOCOL,
        "upload": {"batch": schema(Batch), "envelope": schema(Envelope),
                   "payloads": {t: schema(m) for t, m in sorted(EVENT_PAYLOADS.items())},
                   "held": schema(HeldEvents)},
        "download": {"page": schema(ChangesPage),
                     "payloads": {t: schema(m) for t, m in sorted(CHANGE_PAYLOADS.items())}},
        "hints": {"hello": schema(Hello), "changes": schema(ChangesHint)},
        "members": {"lookup": schema(MemberLookup), "answer": schema(MemberLookupAnswer),
                    "hold": schema(HoldIn), "hold_answer": schema(HoldAnswer), "hold_refused": schema(HoldRefused)},
    }


def render() -> str:
    return json.dumps(schemas(), ensure_ascii=False, indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
