"""GTIN arithmetic for reading scans: validity, UPC-E, the lengths one GTIN is written in. Pure functions
the scan classifier (edge/core/classify.py) and GS1 element strings (edge/core/gs1.py) share; the check
digit itself is the wire contract's (protocol/barcodes.py), which the catalog validates with."""

from __future__ import annotations

from protocol.barcodes import gtin_check_digit


def is_digits(text: str) -> bool:
    """ASCII digits only (str.isdigit() also accepts '²', '١' ... that int() or GS1 do not)."""
    return text.isascii() and text.isdigit()


def gtin_valid(code: str) -> bool:
    return len(code) >= 2 and is_digits(code) and gtin_check_digit(code[:-1]) == int(code[-1])


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
    if len(upca) != 12 or not is_digits(upca) or upca[0] not in "01":
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
    return len(code) == 8 and is_digits(code) and code[0] in "01" and gtin_valid(expand_upce(code))


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

