"""GS1 element strings (GS1-128, DataMatrix, QR, DataBar): the application identifiers the store
reads, their formats, and the three spellings a scanner or a person sends: FNC1 as ASCII GS (0x1D),
the human-readable (01)...(17)... form, or bare. Pure functions; edge/core/classify.py calls `parse`.

Written here rather than taken from biip: see README.md "Dependencies, and why" for what biip
refused or accepted differently on tests/test_scan_classify.py and how much slower it parsed.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType

from edge.core.gtin import gtin_valid, is_digits
from protocol.barcodes import gtin_check_digit

GS = "\x1d"
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

# the AIM symbology identifiers that announce a GS1 element string (GS1-128, DataMatrix, QR, DataBar, DotCode)
GS1_SYMBOLOGY_IDS = ("]C1", "]d2", "]Q3", "]e0", "]J1")
HRI_AI = re.compile(r"\(([0-9]{2,4})\)")


class Gs1Error(Exception):
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
    if len(yymmdd) != 6 or not is_digits(yymmdd):
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
        raise Gs1Error("bad_gs1", f"({ai}) needs {size} characters, got {len(value)}: {value!r}")
    if spec.chars == "x":
        bad = next((c for c in value if c not in CSET82), None)
        if bad is not None:
            raise Gs1Error("bad_gs1", f"({ai}) has a character outside the GS1 set: {bad!r}")
    elif not is_digits(value):
        raise Gs1Error("bad_gs1", f"({ai}) must be digits, got {value!r}")
    if spec.chars == "date" and gs1_date(value, ref_year) is None:
        raise Gs1Error("bad_gs1", f"({ai}) {value} is not a date (YYMMDD)")
    if ai == "7003" and (gs1_date(value[:6], ref_year) is None or value[4:6] == "00"
                         or int(value[6:8]) > 23 or int(value[8:]) > 59):
        raise Gs1Error("bad_gs1", f"(7003) {value} is not a date and time (YYMMDDHHMM)")
    if ai in _CHECKED and not gtin_valid(value):
        raise Gs1Error("bad_check_digit",
                        f"({ai}) {value}: check digit is {value[-1]}, should be {gtin_check_digit(value[:-1])}")


def _ai_at(text: str, pos: int) -> str:
    for size in (2, 3, 4):
        ai = text[pos:pos + size]
        if len(ai) == size and ai in AI_TABLE:
            return ai
    raise Gs1Error("bad_gs1", f"no known AI at position {pos}: {text[pos:pos + 4]!r}")


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
                raise Gs1Error("bad_gs1", f"({ai}) needs {spec.max} characters, the string ends first")
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
    marks = [m for m in HRI_AI.finditer(text) if m.group(1) in AI_TABLE]
    if not marks or marks[0].start() != 0:
        raise Gs1Error("bad_gs1", "not (AI)value(AI)value...")
    pairs = []
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        pairs.append((mark.group(1), text[mark.end():end]))
    return pairs


def _money_fen(amount: str, decimals: int) -> int:
    """An amount in yuan with `decimals` implied decimals, in fen (half up if finer than a fen)."""
    return int((Decimal(int(amount)).scaleb(2 - decimals)).quantize(Decimal(1), rounding=ROUND_HALF_UP))



@dataclass(frozen=True)
class Gs1Data:
    ais: Mapping[str, str]           # AI -> raw value, in scan order
    gtin: str | None                 # (01)
    weight_g: int | None             # (310n)
    price_fen: int | None            # (390n/392n; 391n/393n in CNY)
    expiry: date | None              # (17)
    best_before: date | None         # (15)


def parse(text: str, form: str, ref_year: int) -> Gs1Data:
    """A GS1 element string (without its symbology identifier) in `form` ("hri", or any other for the
    GS and bare forms), checked against the AI table; Gs1Error says why not."""
    pairs = _parse_hri(text) if form == "hri" else _parse_gs(text)
    if not pairs:
        raise Gs1Error("bad_gs1", "no element")
    ais: dict[str, str] = {}
    for ai, value in pairs:
        if ai in ais:
            raise Gs1Error("bad_gs1", f"({ai}) appears twice")
        _check_value(ai, value, ref_year)
        ais[ai] = value

    weight_g = price_fen = None
    for ai, value in ais.items():
        if ai.startswith("310") and weight_g is None:        # net weight, kg
            weight_g = int((Decimal(int(value)).scaleb(3 - int(ai[3]))).quantize(Decimal(1),
                                                                                  rounding=ROUND_HALF_UP))
        elif ai[:3] in ("390", "392") and price_fen is None:   # amount payable, local currency
            price_fen = _money_fen(value, int(ai[3]))
        elif ai[:3] in ("391", "393") and price_fen is None and value[:3] == "156":   # ... in CNY
            price_fen = _money_fen(value[3:], int(ai[3]))
    return Gs1Data(MappingProxyType(ais), ais.get("01"), weight_g, price_fen,
                   expiry=gs1_date(ais["17"], ref_year) if "17" in ais else None,
                   best_before=gs1_date(ais["15"], ref_year) if "15" in ais else None)
