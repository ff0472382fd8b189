"""Field types of the wire contract, and how a failed validation reads.

A field of an uploaded event says what it expects in words ("must be a SKU"), so a rejection names
the field and the rule, e.g. `payload.moves[0].qty must be a non-zero whole number (got "1")`,
the answer a store's operator sees next to a dead letter.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationError,
    WrapValidator,
    model_validator,
)
from pydantic_core import PydanticCustomError, core_schema

TIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})$")
TIME_EXAMPLE = "2026-11-21T08:00:00.000Z"

Sku = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-/]*$",
                           description="Stock keeping unit, the product's key")]
Barcode = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$",
                               description="A barcode of the product (EAN-13, EAN-8, UPC, in-store code)")]
Qty = Annotated[int, Field(gt=0, le=1_000_000, description="Units, or grams for weighed goods")]
Fen = Annotated[int, Field(ge=0, le=10_000_000_000, description="Money in fen (1 yuan = 100 fen)")]


def show(value: Any, limit: int = 60) -> str:
    """A value a client sent, safe to put in a message or a log line."""
    text = value if isinstance(value, str) and value.isprintable() and value.isascii() else \
        json.dumps(value, ensure_ascii=True)
    return text if len(text) <= limit else text[:limit] + "…"


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


def expected(message: str) -> PydanticCustomError:
    """The error of a value that is not what its field must be; `sentence` adds the value it got."""
    return PydanticCustomError("expected", "{expected}", {"expected": message})


def rule(code: str, message: str) -> PydanticCustomError:
    """A rule of the protocol broken (not one field's type): reported first, as is, with its own code."""
    return PydanticCustomError("rule", "{rule}", {"rule": message, "code": code})


class expect:
    """A leaf field: whatever pydantic finds wrong with it, the message says what it must be.

    pydantic-core replaces the field's errors itself (a custom-error schema), so a valid value costs
    no Python call here. Every field of every uploaded event passes through this: in a reconnect storm
    validation was over a quarter of the hub's Python time (py-spy, bench/chain.py), with a Python
    validator called per field."""

    def __init__(self, message: str):
        self.message = message

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.custom_error_schema(handler(source), custom_error_type="expected",
                                               custom_error_message=self.message)


class shape:
    """A list or object field: its own shape (a dict; a list of min to max items) is checked first,
    with the message, and its items' errors keep their own place. Both steps run in pydantic-core (a
    chain schema): no Python call per event, per move (see `expect`)."""

    def __init__(self, message: str, kind: type, min_length: int | None = None, max_length: int | None = None):
        self.message = message
        self.check = (core_schema.dict_schema(strict=True) if kind is dict else
                      core_schema.list_schema(min_length=min_length, max_length=max_length, strict=True))

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        check = core_schema.custom_error_schema(self.check, custom_error_type="expected",
                                                custom_error_message=self.message)
        return core_schema.chain_schema([check, handler(source)])

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> Any:
        # the documented schema is the field's own, not the shape check's (the chain's first step);
        # a validator put around the field (`container`) wraps the chain, hence the walk down
        while schema.get("type") != "chain":
            schema = schema["schema"]  # type: ignore[typeddict-item]
        return handler(schema["steps"][1])


def container(message: str, fits) -> WrapValidator:
    """A list or object field whose shape has rules beyond `shape`'s (`fits` may raise a `rule`): checked
    here, in Python; its items' errors keep their own place."""
    def wrap(value, handler):
        if not fits(value):
            raise expected(message)
        return handler(value)
    return WrapValidator(wrap)


def _time(value, handler):
    if not is_time(value):
        raise expected(f"must be an ISO 8601 time such as {TIME_EXAMPLE}")
    return handler(value)


Time = Annotated[str, WrapValidator(_time), Field(description="ISO 8601 time with a zone, e.g. " + TIME_EXAMPLE)]


def sized(low: int, high: int | None = None) -> Any:
    """A string of low to high characters, counted in Python: a lone surrogate is the sender's business
    (the hub stores it escaped), where pydantic's own length check refuses it."""
    def check(value: str) -> str:
        if len(value) < low or (high is not None and len(value) > high):
            raise ValueError("length")
        return value
    limits = {"minLength": low} if high is None else {"minLength": low, "maxLength": high}
    return Annotated[str, Field(json_schema_extra=limits), AfterValidator(check)]


def text(high: int, low: int = 1) -> Any:
    return Annotated[sized(low, high), expect(f"must be a string of {low} to {high} characters")]


def one_of(choices: tuple[str, ...]) -> Any:
    return Annotated[Literal[choices], expect(f"must be one of {', '.join(choices)}")]  # type: ignore[valid-type]


Flag = Annotated[bool, expect("must be true or false")]


def whole_words(low: int, high: int) -> str:
    return f"must be a whole number from {low} to {high}"


def whole(low: int, high: int) -> Any:
    return Annotated[int, Field(ge=low, le=high), expect(whole_words(low, high))]


class Wire(BaseModel):
    """A payload as it travels: known fields strict, unknown ones kept and ignored (protocol section 7)."""
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)


class Reported(Wire):
    """A payload whose errors are reported field by field in words (an uploaded event's)."""

    @model_validator(mode="before")
    @classmethod
    def _absent_is_null(cls, data):
        # a required field left out is reported as null, with what it must be, like any other wrong value
        if isinstance(data, dict) and not data.keys() >= (required := _required(cls)):
            data = {**data, **dict.fromkeys(name for name in required if name not in data)}
        return data


_REQUIRED: dict[type, frozenset[str]] = {}


def _required(model: type[BaseModel]) -> frozenset[str]:
    """The model's required field names, found once (this runs for every uploaded event)."""
    if (names := _REQUIRED.get(model)) is None:
        names = _REQUIRED[model] = frozenset(name for name, f in model.model_fields.items() if f.is_required())
    return names


def first_error(exc: ValidationError) -> dict:
    """The error to report: a broken rule first, then a field's, then a move's (the order a person fixes them)."""
    return min(exc.errors(include_url=False), key=lambda e: (e["type"] != "rule", e["loc"][:1] == ("moves",)))


def sentence(error: dict, prefix: str = "") -> str:
    """`where what (got value)`, e.g. `payload.moves[0].qty must be a non-zero whole number (got 0)`."""
    where = prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
    if error["type"] == "rule":
        return error["msg"]
    if error["type"] == "expected":
        return f"{where} {error['msg']} (got {show(error.get('input'))})".lstrip()
    return f"{where or 'the value'}: {error['msg']}"
