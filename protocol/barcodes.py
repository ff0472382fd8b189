"""Barcode arithmetic: GTIN (EAN-13, EAN-8, UPC-A, GTIN-14) check digits."""

from __future__ import annotations

GTIN_LENGTHS = (8, 12, 13, 14)


def gtin_check_digit(body: str) -> int:
    """The check digit for the digits before it (GS1 mod-10, weights 3,1 from the right)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def gtin_problem(code: str) -> str | None:
    """Why a numeric code of a GTIN length is not a valid GTIN, or None. Other codes pass."""
    if not code.isdigit() or len(code) not in GTIN_LENGTHS:
        return None
    expected = gtin_check_digit(code[:-1])
    if int(code[-1]) != expected:
        return f"check digit is {code[-1]}, should be {expected}"
    return None
