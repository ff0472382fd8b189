"""What a scan (or a typed entry) at the till is: pure functions, no I/O.

`classify(text)` sorts one decoded code into a kind:

- ``product``: EAN-13, EAN-8, UPC-A, UPC-E (8 digits), GTIN-14 with a valid check digit.
- ``gs1``: a GS1 element string (GS1-128 / DataMatrix / QR / DataBar): with a symbology identifier
  (``]C1``, ``]d2``, ``]Q3``, ``]e0``, ``]J1``), with FNC1 sent as ASCII GS (0x1D), in the
  human-readable ``(01)...(17)...`` form, or bare (``01`` + 14 digits ..., the scanner dropped the
  identifier).
- ``weighed``: an in-store EAN-13 with prefix 2 that matches a configured scale format.
- ``pickup_token`` / ``coupon_token``: a JWS compact token (docs/tokens.md); only the header is
  looked at here, the signature is checked elsewhere.
- ``pickup_code``: 6-8 digits (see `classify` for the 8-digit rule).
- ``unknown``: with a ``reason`` (and a ``detail`` for people).

The 8-digit rule: a TYPED entry (``typed=True``) of 6-8 digits is always a pickup code. A SCANNED
8-digit code is a product when its EAN-8 check digit is valid, else a UPC-E when it starts with 0/1
and its UPC-E check digit is valid, else a pickup code; scanned 6-7 digits are pickup codes. A
scanned pickup code that happens to carry a valid EAN-8/UPC-E check digit (about 1 in 9) therefore
comes back as a product: a caller whose catalog does not know it may try it as a pickup code.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from protocol.barcodes import gtin_check_digit

MAX_LENGTH = 1024
GS = "\x1d"

KINDS = ("product", "gs1", "weighed", "pickup_token", "coupon_token", "pickup_code", "unknown")
Kind = Literal["product", "gs1", "weighed", "pickup_token", "coupon_token", "pickup_code", "unknown"]

# Reasons of `unknown`.
REASONS = (
    "empty", "too_long", "control_character",
    "bad_check_digit",          # looks like a GTIN / UPC-E / GTIN in (00)-(03) but the check digit is wrong
    "bad_price_check_digit",    # a weighed label whose price/weight verifier digit is wrong
    "bad_gs1",                  # a GS1 element string that does not parse (detail says where)
    "token_malformed",          # a JWS-looking string whose header does not decode or alg is not EdDSA
    "token_unknown_typ",        # a JWS with a decodable header of some other typ
    "unrecognized",             # none of the above
    "classify_error",           # a bug in this module: never expected, but a scan never raises
)

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class Classified:
    kind: Kind
    text: str                        # the input as classified: stripped, without a symbology identifier
                                     # (]C1, ]E0 ...), NFKC-normalized if typed
    format: str | None = None        # product: ean13 ean8 upca upce gtin14 | gs1: aim gs hri bare |
                                     # weighed: the ScaleFormat's name | tokens: jws | pickup_code: typed scanned
    gtin: str | None = None          # product: the code as scanned (UPC-E: expanded to UPC-A) | gs1: (01)
    lookup: tuple[str, ...] = ()     # catalog keys to try, in order: gtin first, then its other lengths
    ais: Mapping[str, str] = field(default_factory=lambda: _EMPTY, hash=False)  # gs1: AI -> raw value, in scan order
    item: str | None = None          # weighed: the PLU (item digits, leading zeros kept)
    weight_g: int | None = None      # weighed (weight formats), gs1 (310n)
    price_fen: int | None = None     # weighed (price formats), gs1 (390n/392n; 391n/393n in CNY)
    expiry: date | None = None       # gs1 (17)
    best_before: date | None = None  # gs1 (15)
    kid: str | None = None           # tokens: the header's kid, if a string
    reason: str | None = None        # unknown: one of REASONS
    detail: str | None = None        # unknown: for people (logs, the cashier screen's "details")


# --------------------------------------------------------------------------------------------
# Scale formats (config)

ScaleName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")]
ScalePrefix = Annotated[str, Field(pattern=r"^2[0-9]{0,2}$")]


class ScaleFormat(BaseModel):
    """One label layout of the store's scales: EAN-13 = prefix + item + value + check digit.

    The common Chinese layout (大华/顶尖/寺冈 defaults): 2-digit prefix 2x, 5-digit item (PLU), 5-digit
    value, EAN check digit. `value_check` puts a GS1 price/weight verifier digit inside the value field:
    "before" (GS1's placement: C VVVV) or "after" (VVVV C); the value then has value_digits - 1 digits.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: ScaleName
    prefixes: Annotated[list[ScalePrefix], Field(min_length=1, max_length=100)]
    item_digits: Annotated[int, Field(ge=1, le=10)] = 5
    value: Literal["price", "weight"]
    value_digits: Annotated[int, Field(ge=1, le=10)] = 5
    value_check: Literal["none", "before", "after"] = "none"
    price_decimals: Literal[0, 1, 2] = 2          # price formats: 2 = the value is in fen, 1 = jiao, 0 = yuan
    weight_unit: Literal["g", "10g"] = "g"        # weight formats

    @model_validator(mode="after")
    def _layout(self):
        for prefix in self.prefixes:
            total = len(prefix) + self.item_digits + self.value_digits + 1
            if total != 13:
                raise ValueError(f"prefix {prefix!r} + {self.item_digits} item digits + {self.value_digits} value "
                                 f"digits + 1 check digit is {total} digits, an EAN-13 has 13")
        if len(set(self.prefixes)) != len(self.prefixes):
            raise ValueError("a prefix is listed twice")
        if self.value_check != "none" and self.value_digits - 1 not in (4, 5):
            raise ValueError("value_check needs value_digits 5 or 6 (a 4- or 5-digit value and its verifier digit)")
        if self.value == "weight" and "price_decimals" in self.model_fields_set:
            raise ValueError("price_decimals is for value = \"price\" formats")
        if self.value == "price" and "weight_unit" in self.model_fields_set:
            raise ValueError("weight_unit is for value = \"weight\" formats")
        return self


DEFAULT_FORMATS: tuple[ScaleFormat, ...] = (
    ScaleFormat(name="weight", prefixes=["28"], item_digits=5, value="weight", value_digits=5, weight_unit="g"),
    ScaleFormat(name="price", prefixes=["20", "21", "22", "23", "24", "25", "26", "27", "29"], item_digits=5,
                value="price", value_digits=5, price_decimals=2),
)


class ScanningSection(BaseModel):
    """[scanning] in config.toml; its formats are [[scanning.scales]] tables, tried in order."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    scales: Annotated[list[ScaleFormat], Field(max_length=20)] = Field(default_factory=lambda: list(DEFAULT_FORMATS))

    @model_validator(mode="after")
    def _no_shadowing(self):
        names: set[str] = set()
        earlier: list[tuple[str, str]] = []
        for scale in self.scales:
            if scale.name in names:
                raise ValueError(f"scale format name {scale.name!r} is used twice")
            names.add(scale.name)
            for prefix in scale.prefixes:
                for other_name, other in earlier:
                    if prefix.startswith(other):
                        raise ValueError(f"prefix {prefix!r} of {scale.name!r} never matches: {other_name!r} "
                                         f"before it takes {other!r}")
            earlier.extend((scale.name, p) for p in scale.prefixes)
        return self


# --------------------------------------------------------------------------------------------
# Check digits, UPC-E

def _is_digits(text: str) -> bool:
    """ASCII digits only (str.isdigit() also accepts '²', '١' ... that int() or GS1 do not)."""
    return text.isascii() and text.isdigit()


def gtin_valid(code: str) -> bool:
    return len(code) >= 2 and _is_digits(code) and gtin_check_digit(code[:-1]) == int(code[-1])


# GS1 General Specifications 7.9.2-7.9.4: price/weight verifier digits.
_W2M = (0, 2, 4, 6, 8, 9, 1, 3, 5, 7)   # 2-: x2, minus the tens digit
_W3 = (0, 3, 6, 9, 2, 5, 8, 1, 4, 7)    # 3: x3, units digit
_W5P = (0, 5, 1, 6, 2, 7, 3, 8, 4, 9)   # 5+: x5, plus the tens digit
_W5M = (0, 5, 9, 4, 8, 3, 7, 2, 6, 1)   # 5-: x5, minus the tens digit


def price_check_digit(digits: str) -> int:
    """The GS1 price/weight verifier digit of a 4- or 5-digit value."""
    d = [int(c) for c in digits]
    if len(d) == 4:
        return (3 * (_W2M[d[0]] + _W2M[d[1]] + _W3[d[2]] + _W5M[d[3]])) % 10
    if len(d) == 5:
        total = _W5P[d[0]] + _W2M[d[1]] + _W5M[d[2]] + _W5P[d[3]] + _W2M[d[4]]
        return _W5M.index((10 - total % 10) % 10)
    raise ValueError("a price/weight verifier digit covers 4 or 5 digits")


def expand_upce(upce: str) -> str:
    """The UPC-A (12 digits, with check digit) of an 8-digit UPC-E (number system, 6 digits, check)."""
    ns, d, check = upce[0], upce[1:7], upce[7]
    last = d[5]
    if last in "012":
        body = d[0:2] + last + "0000" + d[2:5]
    elif last == "3":
        body = d[0:3] + "00000" + d[3:5]
    elif last == "4":
        body = d[0:4] + "00000" + d[4]
    else:
        body = d[0:5] + "0000" + last
    return ns + body + check


def compress_upca(upca: str) -> str | None:
    """The UPC-E of a UPC-A (number system 0 or 1) that has one, else None."""
    if len(upca) != 12 or not _is_digits(upca) or upca[0] not in "01":
        return None
    ns, m, p, check = upca[0], upca[1:6], upca[6:11], upca[11]
    if m[2:] in ("000", "100", "200") and p[:2] == "00":
        return ns + m[:2] + p[2:] + m[2] + check
    if m[3:] == "00" and p[:3] == "000":
        return ns + m[:3] + p[3:] + "3" + check
    if m[4] == "0" and p[:4] == "0000":
        return ns + m[:4] + p[4] + "4" + check
    if p[:4] == "0000" and p[4] in "56789":
        return ns + m + p[4] + check
    return None


def upce_valid(code: str) -> bool:
    return len(code) == 8 and _is_digits(code) and code[0] in "01" and gtin_valid(expand_upce(code))


def gtin_forms(code: str) -> tuple[str, ...]:
    """`code` first, then the same GTIN written with 13, 12, 8 or 14 digits (zero padding)."""
    g14 = code.zfill(14)
    forms = [code]
    for length in (13, 12, 8, 14):
        if g14[:14 - length].strip("0") == "":
            form = g14[14 - length:]
            if form not in forms:
                forms.append(form)
    return tuple(forms)


# --------------------------------------------------------------------------------------------
# GS1 element strings

# GS1 AI encodable character set 82
CSET82 = frozenset("!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz")
# AIs whose length is predefined (GS1 General Specifications figure 7.8.5-2): no GS after them
_PREDEFINED = frozenset({"00", "01", "02", "03", "04", "11", "12", "13", "14", "15", "16", "17", "18", "19",
                         "20", "31", "32", "33", "34", "35", "36", "41"})
_CHECKED = frozenset({"00", "01", "02", "03", "410", "411", "412", "413", "414", "415", "416", "417"})
_DATES = frozenset({"11", "12", "13", "15", "16", "17", "7006"})


@dataclass(frozen=True)
class _Spec:
    min: int
    max: int
    chars: str   # "n" digits, "x" CSET82, "date" YYMMDD, "cur" 3-digit ISO 4217 + digits


def _ai_table() -> dict[str, _Spec]:
    t: dict[str, _Spec] = {}

    def put(ais, lo, hi, chars):
        for ai in ais:
            t[ai] = _Spec(lo, hi, chars)

    put(["00"], 18, 18, "n")
    put(["01", "02", "03"], 14, 14, "n")
    put(["10", "21", "22", "243", "254"], 1, 20, "x")
    put(["11", "12", "13", "15", "16", "17", "7006"], 6, 6, "date")
    put(["20"], 2, 2, "n")
    put(["235"], 1, 28, "x")
    put(["240", "241", "250", "251", "400", "401", "403", "8004"], 1, 30, "x")
    put(["242"], 1, 6, "n")
    put(["30", "37"], 1, 8, "n")
    # 31xx-36xx: trade and logistic measures, n6 with the AI's 4th digit the decimals (0-5)
    put([f"{family}{n}" for family in range(310, 370) for n in range(6)], 6, 6, "n")
    put([f"390{n}" for n in range(10)] + [f"392{n}" for n in range(10)], 1, 15, "n")
    put([f"391{n}" for n in range(10)] + [f"393{n}" for n in range(10)], 4, 18, "cur")
    put([f"394{n}" for n in range(10)], 4, 4, "n")
    put([f"395{n}" for n in range(10)], 6, 6, "n")
    put(["402"], 17, 17, "n")
    put([f"41{n}" for n in range(8)], 13, 13, "n")
    put(["420"], 1, 20, "x")
    put(["421"], 4, 12, "x")
    put(["422", "424", "426"], 3, 3, "n")
    put(["423", "425"], 3, 15, "n")
    put(["7003"], 10, 10, "n")
    put(["8005"], 6, 6, "n")
    put(["8008"], 8, 12, "n")
    put(["8020"], 1, 25, "x")
    put(["8200"], 1, 70, "x")
    put(["90"], 1, 30, "x")
    put([str(n) for n in range(91, 100)], 1, 90, "x")
    return t


AI_TABLE: Mapping[str, _Spec] = MappingProxyType(_ai_table())

GS1_SYMBOLOGY_IDS = ("]C1", "]d2", "]Q3", "]e0", "]J1")
_AIM = re.compile(r"\][A-Za-z][0-9A-Za-z]")
_HRI_AI = re.compile(r"\(([0-9]{2,4})\)")


class _Gs1Error(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _year(yy: int, ref_year: int) -> int:
    """GS1 General Specifications 7.12: the century that puts YY within -49..+50 years of now."""
    century = ref_year - ref_year % 100
    diff = yy - ref_year % 100
    if 51 <= diff <= 99:
        century -= 100
    elif -99 <= diff <= -50:
        century += 100
    return century + yy


def gs1_date(yymmdd: str, ref_year: int) -> date | None:
    """YYMMDD as a date (DD = 00: the last day of the month), or None if it is not one."""
    if len(yymmdd) != 6 or not _is_digits(yymmdd):
        return None
    year, month, day = _year(int(yymmdd[:2]), ref_year), int(yymmdd[2:4]), int(yymmdd[4:])
    if not 1 <= month <= 12:
        return None
    last = calendar.monthrange(year, month)[1]
    if day > last:
        return None
    return date(year, month, day or last)


def _check_value(ai: str, value: str, ref_year: int) -> None:
    spec = AI_TABLE[ai]
    if not spec.min <= len(value) <= spec.max:
        size = str(spec.max) if spec.min == spec.max else f"{spec.min}-{spec.max}"
        raise _Gs1Error("bad_gs1", f"({ai}) needs {size} characters, got {len(value)}: {value!r}")
    if spec.chars == "x":
        bad = next((c for c in value if c not in CSET82), None)
        if bad is not None:
            raise _Gs1Error("bad_gs1", f"({ai}) has a character outside the GS1 set: {bad!r}")
    elif not _is_digits(value):
        raise _Gs1Error("bad_gs1", f"({ai}) must be digits, got {value!r}")
    if spec.chars == "date" and gs1_date(value, ref_year) is None:
        raise _Gs1Error("bad_gs1", f"({ai}) {value} is not a date (YYMMDD)")
    if ai == "7003" and (gs1_date(value[:6], ref_year) is None or value[4:6] == "00"
                         or int(value[6:8]) > 23 or int(value[8:]) > 59):
        raise _Gs1Error("bad_gs1", f"(7003) {value} is not a date and time (YYMMDDHHMM)")
    if ai in _CHECKED and not gtin_valid(value):
        raise _Gs1Error("bad_check_digit",
                        f"({ai}) {value}: check digit is {value[-1]}, should be {gtin_check_digit(value[:-1])}")


def _ai_at(text: str, pos: int) -> str:
    for size in (2, 3, 4):
        ai = text[pos:pos + size]
        if len(ai) == size and ai in AI_TABLE:
            return ai
    raise _Gs1Error("bad_gs1", f"no known AI at position {pos}: {text[pos:pos + 4]!r}")


def _parse_gs(text: str) -> list[tuple[str, str]]:
    """An element string with FNC1 as GS: fields of predefined length need no GS after them."""
    pairs: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos] == GS:             # FNC1 in first position, a GS after a fixed field, a trailing one
            pos += 1
            continue
        ai = _ai_at(text, pos)
        pos += len(ai)
        spec = AI_TABLE[ai]
        if ai[:2] in _PREDEFINED:
            value = text[pos:pos + spec.max]
            if len(value) < spec.max or GS in value:
                raise _Gs1Error("bad_gs1", f"({ai}) needs {spec.max} characters, the string ends first")
        else:
            end = text.find(GS, pos)
            value = text[pos:] if end < 0 else text[pos:end]
        pos += len(value)
        pairs.append((ai, value))
    return pairs


def _parse_hri(text: str) -> list[tuple[str, str]]:
    """The human-readable form (01)06901234567892(17)261231(10)ABC: each value ends at the next (AI).

    A value that itself contains "(" + a known AI + ")" cannot be told apart: the form is meant for
    people, scanners send the GS form.
    """
    marks = [m for m in _HRI_AI.finditer(text) if m.group(1) in AI_TABLE]
    if not marks or marks[0].start() != 0:
        raise _Gs1Error("bad_gs1", "not (AI)value(AI)value...")
    pairs = []
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        pairs.append((mark.group(1), text[mark.end():end]))
    return pairs


def _money_fen(amount: str, decimals: int) -> int:
    """An amount in yuan with `decimals` implied decimals, in fen (half up if finer than a fen)."""
    return int((Decimal(int(amount)).scaleb(2 - decimals)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def parse_gs1(text: str, form: str, ref_year: int) -> Classified:
    """A GS1 element string (without its symbology identifier) as `gs1`, or `unknown`."""
    try:
        pairs = _parse_hri(text) if form == "hri" else _parse_gs(text)
        if not pairs:
            raise _Gs1Error("bad_gs1", "no element")
        ais: dict[str, str] = {}
        for ai, value in pairs:
            if ai in ais:
                raise _Gs1Error("bad_gs1", f"({ai}) appears twice")
            _check_value(ai, value, ref_year)
            ais[ai] = value
    except _Gs1Error as exc:
        return Classified("unknown", text, format=form, reason=exc.reason, detail=exc.detail)

    gtin = ais.get("01")
    weight_g = price_fen = None
    for ai, value in ais.items():
        if ai.startswith("310") and weight_g is None:        # net weight, kg
            weight_g = int((Decimal(int(value)).scaleb(3 - int(ai[3]))).quantize(Decimal(1),
                                                                                  rounding=ROUND_HALF_UP))
        elif ai[:3] in ("390", "392") and price_fen is None:   # amount payable, local currency
            price_fen = _money_fen(value, int(ai[3]))
        elif ai[:3] in ("391", "393") and price_fen is None and value[:3] == "156":   # ... in CNY
            price_fen = _money_fen(value[3:], int(ai[3]))
    return Classified(
        "gs1", text, format=form, gtin=gtin, lookup=gtin_forms(gtin) if gtin else (),
        ais=MappingProxyType(ais), weight_g=weight_g, price_fen=price_fen,
        expiry=gs1_date(ais["17"], ref_year) if "17" in ais else None,
        best_before=gs1_date(ais["15"], ref_year) if "15" in ais else None)


# --------------------------------------------------------------------------------------------
# Tokens

_JWS = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]*)")
TOKEN_TYPES = {"se-pickup+jwt": "pickup_token", "se-coupon+jwt": "coupon_token"}


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("a header member appears twice")
    return dict(pairs)


def _b64url_json(part: str):
    if len(part) % 4 == 1:
        raise ValueError("not base64url")
    raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    return json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)


def _classify_token(text: str, match: re.Match) -> Classified:
    def malformed(detail):
        return Classified("unknown", text, format="jws", reason="token_malformed", detail=detail)

    try:
        header = _b64url_json(match.group(1))
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError) as exc:
        return malformed(f"the header is not base64url JSON ({exc.__class__.__name__})")
    if not isinstance(header, dict):
        return malformed("the header is not a JSON object")
    typ = header.get("typ")
    kind = TOKEN_TYPES.get(typ) if isinstance(typ, str) else None
    if kind is None:
        return Classified("unknown", text, format="jws", reason="token_unknown_typ",
                          detail=f"typ {typ!r} is not a store token" if isinstance(typ, str) else "no typ")
    if header.get("alg") != "EdDSA":
        return malformed(f"alg {header.get('alg')!r} is not EdDSA")
    if not match.group(3):
        return malformed("the signature is empty")
    kid = header.get("kid")
    return Classified(kind, text, format="jws", kid=kid if isinstance(kid, str) else None)


# --------------------------------------------------------------------------------------------
# Digits: products, weighed labels, pickup codes

def _product(text: str, fmt: str, gtin: str, extra: tuple[str, ...] = ()) -> Classified:
    lookup = gtin_forms(gtin)
    lookup += tuple(code for code in extra if code not in lookup)
    return Classified("product", text, format=fmt, gtin=gtin, lookup=lookup)


def _bad_check(text: str, fmt: str) -> Classified:
    return Classified("unknown", text, format=fmt, reason="bad_check_digit",
                      detail=f"{fmt} check digit is {text[-1]}, should be {gtin_check_digit(text[:-1])}")


def _upce_product(text: str, extra: tuple[str, ...] = ()) -> Classified:
    upca = expand_upce(text)
    return _product(text, "upce", upca, extra + (text,))


def _weighed(text: str, formats: Sequence[ScaleFormat]) -> Classified | None:
    for scale in formats:
        for prefix in scale.prefixes:
            if not text.startswith(prefix) or len(prefix) + scale.item_digits + scale.value_digits + 1 != 13:
                continue
            item = text[len(prefix):len(prefix) + scale.item_digits]
            field_ = text[len(prefix) + scale.item_digits:12]
            digits = field_
            if scale.value_check != "none":
                check, digits = (field_[0], field_[1:]) if scale.value_check == "before" else (field_[-1], field_[:-1])
                if price_check_digit(digits) != int(check):
                    return Classified("unknown", text, format=scale.name, reason="bad_price_check_digit",
                                      detail=f"verifier digit of {digits} is {check}, "
                                             f"should be {price_check_digit(digits)}")
            value = int(digits)
            if scale.value == "price":
                return Classified("weighed", text, format=scale.name, item=item,
                                  price_fen=value * 10 ** (2 - scale.price_decimals))
            return Classified("weighed", text, format=scale.name, item=item,
                              weight_g=value * (10 if scale.weight_unit == "10g" else 1))
    return None


def _classify_digits(text: str, formats: Sequence[ScaleFormat], typed: bool, aim: str | None) -> Classified:
    n = len(text)
    if typed and 6 <= n <= 8:
        return Classified("pickup_code", text, format="typed")
    if n == 8:
        if aim == "]E4":                    # the scanner says EAN-8
            return _product(text, "ean8", text) if gtin_valid(text) else _bad_check(text, "ean8")
        if aim == "]E0":                    # the scanner says UPC/EAN: 8 digits are a UPC-E
            if upce_valid(text):
                return _upce_product(text)
            return Classified("unknown", text, format="upce", reason="bad_check_digit",
                              detail="UPC-E check digit is wrong")
        if gtin_valid(text):
            extra = gtin_forms(expand_upce(text)) + (text,) if upce_valid(text) else ()
            return _product(text, "ean8", text, extra)
        if upce_valid(text):
            return _upce_product(text)
        return Classified("pickup_code", text, format="scanned")
    if n in (6, 7):
        return Classified("pickup_code", text, format="scanned")
    if n in (12, 13, 14):
        fmt = {12: "upca", 13: "ean13", 14: "gtin14"}[n]
        if not gtin_valid(text):
            return _bad_check(text, fmt)
        if n == 13 and text[0] == "2":
            weighed = _weighed(text, formats)
            if weighed is not None:
                return weighed
        return _product(text, fmt, text)
    return Classified("unknown", text, reason="unrecognized", detail=f"{n} digits")


# --------------------------------------------------------------------------------------------

# whitespace that is stripped around a scan: not GS/FS/RS/US, which str.isspace() counts as spaces
_STRIP = ("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
          "\u200a\u2028\u2029\u202f\u205f\u3000")


def _control(text: str) -> str | None:
    for c in text:
        if c != GS and (c < " " or "\x7f" <= c <= "\x9f"):
            return c
    return None


def classify(text: str, formats: Sequence[ScaleFormat] = DEFAULT_FORMATS, *, typed: bool = False,
             today: date | None = None) -> Classified:
    """Sort one scanned (or typed: `typed=True`) code; never raises. See the module docstring.

    `today` only sets the century of GS1 dates (GS1's sliding window); the default is the PC's date.
    """
    try:
        return _classify(text, formats, typed, (today or date.today()).year)
    except Exception as exc:  # noqa: BLE001  a scan must never take the reader down
        return Classified("unknown", text[:MAX_LENGTH] if isinstance(text, str) else "", reason="classify_error",
                          detail=f"{exc.__class__.__name__}: {exc}")


def _classify(text: str, formats: Sequence[ScaleFormat], typed: bool, ref_year: int) -> Classified:
    text = text.strip(_STRIP)
    if len(text) > MAX_LENGTH:
        return Classified("unknown", text[:MAX_LENGTH], reason="too_long",
                          detail=f"{len(text)} characters, at most {MAX_LENGTH}")
    if typed:   # an IME may type full-width digits (１２３４５６) and spaces
        text = unicodedata.normalize("NFKC", text).strip(_STRIP)
        if len(text) > MAX_LENGTH:
            return Classified("unknown", text[:MAX_LENGTH], reason="too_long")
    if not text:
        return Classified("unknown", text, reason="empty")
    bad = _control(text)
    if bad is not None:
        return Classified("unknown", text, reason="control_character", detail=f"contains {bad!r}")

    aim = None
    if text[0] == "]" and _AIM.match(text):
        aim, rest = text[:3], text[3:]
        if aim in GS1_SYMBOLOGY_IDS:
            return parse_gs1(rest, "aim", ref_year)
        text = rest                       # ]E0 EAN/UPC, ]E4 EAN-8, ]Q1 QR, ]C0 Code 128 ...: what follows
        if not text:
            return Classified("unknown", aim, reason="empty", detail="a symbology identifier only")
    if GS in text:
        return parse_gs1(text, "gs", ref_year)
    if _HRI_AI.match(text):
        return parse_gs1(text, "hri", ref_year)
    if _is_digits(text):
        if len(text) >= 16 and text[:2] in ("00", "01", "02"):
            return parse_gs1(text, "bare", ref_year)
        return _classify_digits(text, formats, typed, aim)
    jws = _JWS.fullmatch(text)
    if jws:
        return _classify_token(text, jws)
    if len(text) >= 16 and text[:2] in ("00", "01", "02") and all(c in CSET82 for c in text):
        return parse_gs1(text, "bare", ref_year)   # e.g. 01...10LOT: a variable field last needs no GS
    return Classified("unknown", text, reason="unrecognized")
