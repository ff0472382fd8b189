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
- ``member_code``: a member's dynamic code (会员码, docs/members.md): a member certificate, its time
  step and the phone's signature (``format`` ``dynamic``), or a certificate alone (``certificate``,
  which the store refuses: no phone signed it). Checked by edge/store/members.py; like a payment
  code, never kept whole (`edge.core.member_code.mask`).
- ``pickup_code``: 6-8 digits (see `classify` for the 8-digit rule).
- ``payment_code``: a customer's 付款码 shown in WeChat Pay (``format`` ``wechat_pay``: 18 digits
  starting 10-15) or Alipay (``alipay``: 16-24 digits starting 25-30), scanned or typed. It pays
  for about a minute: a bearer credential, never kept whole (`mask_payment_code`, docs/api.md).
- ``unknown``: with a ``reason`` (and a ``detail`` for people).

The 8-digit rule: a TYPED entry (``typed=True``) of 6-8 digits is always a pickup code. A SCANNED
8-digit code is a product when its EAN-8 check digit is valid, else a UPC-E when it starts with 0/1
and its UPC-E check digit is valid, else a pickup code; scanned 6-7 digits are pickup codes. A
scanned pickup code that happens to carry a valid EAN-8/UPC-E check digit (about 1 in 9) therefore
comes back as a product: a caller whose catalog does not know it may try it as a pickup code.

The pieces live beside it: check digits and UPC-E in edge/core/gtin.py, GS1 element strings in
edge/core/gs1.py, the store's scale label formats in edge/core/scales.py, JWS in edge/core/jws.py.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Literal

from edge.core import gs1, jws, member_code
from edge.core.gs1 import CSET82, GS, GS1_SYMBOLOGY_IDS, HRI_AI
from edge.core.gtin import expand_upce, gtin_forms, gtin_valid, is_digits, upce_valid
from edge.core.scales import DEFAULT_FORMATS, ScaleFormat, price_check_digit
from protocol.barcodes import gtin_check_digit

MAX_LENGTH = 1024

KINDS = ("product", "gs1", "weighed", "pickup_token", "coupon_token", "member_code", "pickup_code", "payment_code",
         "unknown")
Kind = Literal["product", "gs1", "weighed", "pickup_token", "coupon_token", "member_code", "pickup_code",
               "payment_code", "unknown"]

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
                                     # weighed: the ScaleFormat's name | tokens: jws | member_code: dynamic certificate
                                     # | pickup_code: typed scanned
                                     # | payment_code: wechat_pay alipay
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
# GS1 element strings (edge/core/gs1.py)

_AIM = re.compile(r"\][A-Za-z][0-9A-Za-z]")


def parse_gs1(text: str, form: str, ref_year: int) -> Classified:
    """A GS1 element string (without its symbology identifier) as `gs1`, or `unknown`."""
    try:
        data = gs1.parse(text, form, ref_year)
    except gs1.Gs1Error as exc:
        return Classified("unknown", text, format=form, reason=exc.reason, detail=exc.detail)
    return Classified("gs1", text, format=form, gtin=data.gtin, lookup=gtin_forms(data.gtin) if data.gtin else (),
                      ais=data.ais, weight_g=data.weight_g, price_fen=data.price_fen, expiry=data.expiry,
                      best_before=data.best_before)


# --------------------------------------------------------------------------------------------
# Tokens

_JWS = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]*)")
TOKEN_TYPES = {jws.TYP_PICKUP: "pickup_token", jws.TYP_COUPON: "coupon_token"}


def _classify_token(text: str, match: re.Match, dynamic: tuple | None = None) -> Classified:
    """A JWS (`match` of _JWS), or with `dynamic` (member_code.split) a member code around one."""
    def malformed(detail):
        return Classified("unknown", text, format="jws", reason="token_malformed", detail=detail)

    try:
        header = jws.unverified_header(match.group(1))
    except ValueError as exc:
        return malformed(f"the header is not base64url JSON ({exc})")
    if not isinstance(header, dict):
        return malformed("the header is not a JSON object")
    typ = header.get("typ")
    if typ == jws.TYP_MEMBER and dynamic is None:   # a certificate alone: a member code without its phone
        return Classified("member_code", text, format="certificate",
                          kid=header.get("kid") if isinstance(header.get("kid"), str) else None)
    kind = "member_code" if dynamic is not None and typ == jws.TYP_MEMBER else \
        TOKEN_TYPES.get(typ) if isinstance(typ, str) and dynamic is None else None
    if kind is None:
        return Classified("unknown", text, format="jws", reason="token_unknown_typ",
                          detail=(f"a member code's form around a {typ!r} token" if dynamic else
                                  f"typ {typ!r} is not a store token") if isinstance(typ, str) else "no typ")
    if header.get("alg") != jws.ALG:
        return malformed(f"alg {header.get('alg')!r} is not EdDSA")
    if not match.group(3):
        return malformed("the signature is empty")
    kid = header.get("kid")
    return Classified(kind, text, format="dynamic" if dynamic else "jws", kid=kid if isinstance(kid, str) else None)


# --------------------------------------------------------------------------------------------
# Payment codes (付款码): the payers' published auth_code rules

def payment_code_format(text: str) -> str | None:
    """"wechat_pay" or "alipay" when `text` (digits only) is a 付款码, else None."""
    if not is_digits(text):
        return None
    n, head = len(text), text[:2]
    if n == 18 and "10" <= head <= "15":
        return "wechat_pay"
    if 16 <= n <= 24 and "25" <= head <= "30":
        return "alipay"
    return None


def mask_payment_code(text: str) -> str:
    """What may be kept of a payment code: its first and last 4 digits (1340**********5678)."""
    return text[:4] + "*" * max(len(text) - 8, 0) + text[-4:] if len(text) > 8 else "*" * len(text)


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
    if HRI_AI.match(text):
        return parse_gs1(text, "hri", ref_year)
    if is_digits(text):
        if len(text) >= 16 and text[:2] in ("00", "01", "02"):
            return parse_gs1(text, "bare", ref_year)
        payer = payment_code_format(text)
        if payer is not None:
            return Classified("payment_code", text, format=payer)
        return _classify_digits(text, formats, typed, aim)
    token = _JWS.fullmatch(text)
    if token:
        return _classify_token(text, token)
    dynamic = member_code.split(text)
    if dynamic is not None:
        return _classify_token(text, _JWS.fullmatch(dynamic[0]), dynamic)
    if len(text) >= 16 and text[:2] in ("00", "01", "02") and all(c in CSET82 for c in text):
        return parse_gs1(text, "bare", ref_year)   # e.g. 01...10LOT: a variable field last needs no GS
    return Classified("unknown", text, reason="unrecognized")
