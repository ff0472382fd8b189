"""The hub's errors and the JSON it answers and stores: one error type for every non-2xx answer,
and the helpers that make a client's values safe to echo, log and keep in SQLite."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Any

TIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})$")


class HubError(Exception):
    """An answer other than 2xx: `{"epoch", "error": code, "message", ...extra}`."""

    def __init__(self, status: int, code: str, message: str, **extra):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def bad_request(message: str, **extra) -> HubError:
    return HubError(400, "invalid_request", message, **extra)


def not_found(message: str) -> HubError:
    return HubError(404, "not_found", message)


def dumps(obj: Any) -> bytes:
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate echoed from a request: escape it
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def show(value: Any, limit: int = 60) -> str:
    """A value a client sent, safe to put in a message or a log line."""
    text = value if isinstance(value, str) and value.isprintable() and value.isascii() else \
        json.dumps(value, ensure_ascii=True)
    return text if len(text) <= limit else text[:limit] + "…"


def clean(text: str, limit: int = 500) -> str:
    """A string SQLite can store (no lone surrogates), cut to a length."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text[:limit]


def stored_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()



def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def is_time(value: Any) -> bool:
    if not isinstance(value, str) or not TIME.match(value):
        return False
    try:
        parse_time(value)
    except ValueError:
        return False
    return True
