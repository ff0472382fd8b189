"""Errors that reach a user: each has a stable code, a message and, where it applies, the field."""

from __future__ import annotations


class InputError(Exception):
    """The request (or file row) is wrong; nothing was written. Maps to a 4xx answer."""

    status = 422

    def __init__(self, code: str, message: str, field: str | None = None, status: int | None = None,
                 fields: list[dict] | None = None, detail: dict | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields if fields is not None else ([{"field": field, "reason": message}] if field else [])
        self.detail = detail  # more for the screen that shows it (e.g. when and by whom a code was used)
        if status is not None:
            self.status = status

    def as_dict(self) -> dict:
        error = {"code": self.code, "message": self.message, "fields": self.fields}
        if self.detail:
            error["detail"] = self.detail
        return {"error": error}


class NotFound(InputError):
    status = 404


def field_path(loc) -> str:
    """('lines', 0, 'qty') -> 'lines[0].qty'"""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_fields(exc) -> list[dict]:
    """A pydantic ValidationError as [{"field", "reason"}], worded for a person."""
    fields = []
    for err in exc.errors():
        reason = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            reason = "unknown field"
        elif err["type"] == "missing":
            reason = "required field is missing"
        elif err["type"].endswith("_type"):
            reason += f" (got {type(err.get('input')).__name__})"
        fields.append({"field": field_path(err["loc"]) or "(body)", "reason": reason})
    return fields
