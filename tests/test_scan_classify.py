"""edge.core.classify: what a scan or a typed entry at the till is."""

from __future__ import annotations

import base64
import calendar
import json
import tempfile
import tomllib
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from pydantic import ValidationError

from edge.core.classify import KINDS, REASONS, classify, mask_payment_code
from edge.core.gs1 import CSET82, GS
from edge.core.gtin import compress_upca, expand_upce
from edge.core.scales import DEFAULT_FORMATS, ScaleFormat, ScanningSection, price_check_digit

# as tests/test_sync_model.py: Hypothesis keeps nothing in the repo
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "store-edge-hypothesis")


def props(examples=100):
    return settings(max_examples=examples, database=None, deadline=None)


TODAY = date(2026, 11, 22)


def check(body: str) -> str:
    """GS1 mod-10 check digit, written out independently of protocol.barcodes: weights 3,1,3,... from the right."""
    total = 0
    for position, digit in enumerate(reversed(body)):
        total += int(digit) * (3 if position % 2 == 0 else 1)
    return str((10 - total % 10) % 10)


def gtin(body: str) -> str:
    return body + check(body)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jws(header, claims=None, signature=b"\x01" * 64) -> str:
    header_part = b64url(header if isinstance(header, bytes) else json.dumps(header).encode())
    claims_part = b64url(json.dumps(claims or {"sub": "ord_20261122_0001", "exp": 1795604800}).encode())
    return f"{header_part}.{claims_part}.{b64url(signature)}"


def c(text, formats=DEFAULT_FORMATS, **kw):
    return classify(text, formats, today=TODAY, **kw)


# ---------------------------------------------------------------------------------------------- products

def test_known_published_check_digits():
    # Wikipedia's EAN-13 / EAN-8 / UPC-A examples, and GS1's own GTIN-13 example
    for code in ("4006381333931", "96385074", "036000291452", "9501101531000"):
        assert code[-1] == check(code[:-1])


@pytest.mark.parametrize("code, fmt, lookup", [
    ("6901234567892", "ean13", ("6901234567892", "06901234567892")),             # 690-699: GS1 China
    (gtin("692123450000"), "ean13", None),
    (gtin("697111122223"), "ean13", None),
    (gtin("699876543210"), "ean13", None),
    ("4006381333931", "ean13", None),
    ("0036000291452", "ean13", ("0036000291452", "036000291452", "00036000291452")),
    ("96385074", "ean8", None),
    (gtin("6901234"), "ean8", None),                                             # Chinese EAN-8
    ("036000291452", "upca", ("036000291452", "0036000291452", "00036000291452")),  # + the EAN-13 form
    (gtin("1690123456789"), "gtin14", None),
    ("06901234567892", "gtin14", ("06901234567892", "6901234567892")),
])
def test_products(code, fmt, lookup):
    result = c(code)
    assert (result.kind, result.format, result.gtin) == ("product", fmt, code)
    assert result.lookup[0] == code
    if lookup:
        assert result.lookup == lookup


@pytest.mark.parametrize("upce, upca", [
    ("06543217", "065100004327"),   # Wikipedia's UPC-E example (last digit 1: manufacturer ..1 00)
    ("04963406", "049000006346"),   # Coca-Cola 12 oz can (last digit 0)
    ("01234565", "012345000065"),   # last digit 5-9: product 0000d6
])
def test_upce_expansion(upce, upca):
    assert expand_upce(upce) == upca
    assert upca[-1] == check(upca[:-1])
    assert compress_upca(upca) == upce
    result = c(upce)
    assert result.kind == "product"
    assert upca in result.lookup and "0" + upca in result.lookup
    strict = c("]E0" + upce)              # the scanner's AIM identifier says UPC/EAN: 8 digits are a UPC-E
    assert (strict.kind, strict.format, strict.gtin) == ("product", "upce", upca)
    assert strict.lookup[:2] == (upca, "0" + upca) and upce in strict.lookup


def test_upce_cases():
    for upce, upca in [("01234505", "012000003455"), ("01234535", "012300000455"),
                       ("01234545", "012340000055"), ("11234565", "112345000065")]:
        assert expand_upce(upce)[:11] == upca[:11]
    assert compress_upca("012345678905") is None


def test_aim_identifiers_for_ean():
    assert c("]E4" + "96385074").format == "ean8"
    assert c("]E0" + "4006381333931").format == "ean13"
    assert c("]E4" + "96385075").reason == "bad_check_digit"    # a symbol, never a pickup code
    assert c("]E0" + "06543218").reason == "bad_check_digit"
    assert c("]E0").reason == "empty"


@pytest.mark.parametrize("code", ["6901234567891", "036000291453", "06901234567893", "4006381333932"])
def test_bad_check_digit(code):
    result = c(code)
    assert (result.kind, result.reason) == ("unknown", "bad_check_digit")
    assert "should be" in result.detail


def test_whitespace_and_line_endings():
    for text in (" 6901234567892", "6901234567892\r\n", "\t6901234567892\n", "6901234567892\r", "\u30006901234567892"):
        assert c(text).text == "6901234567892" and c(text).kind == "product"


# ---------------------------------------------------------------------------------------------- weighed

def test_weighed_default_price_format():
    code = gtin("22" + "01234" + "01580")            # PLU 01234, ￥15.80
    result = c(code)
    assert (result.kind, result.format, result.item, result.price_fen, result.weight_g) == \
        ("weighed", "price", "01234", 1580, None)
    for prefix in ("20", "21", "23", "24", "25", "26", "27", "29"):
        assert c(gtin(prefix + "00007" + "00099")).price_fen == 99


def test_weighed_default_weight_format():
    result = c(gtin("28" + "00123" + "01500"))      # PLU 00123, 1.500 kg
    assert (result.kind, result.format, result.item, result.weight_g, result.price_fen) == \
        ("weighed", "weight", "00123", 1500, None)


def test_weighed_bad_check_digit_and_no_format():
    code = gtin("22" + "01234" + "01580")
    bad = code[:-1] + str((int(code[-1]) + 1) % 10)
    assert c(bad).reason == "bad_check_digit"
    assert c(code, formats=()).kind == "product"    # no scale formats: an in-store product code
    only_28 = [f for f in DEFAULT_FORMATS if f.name == "weight"]
    assert c(code, formats=only_28).kind == "product"


def test_weighed_custom_formats():
    # 1-digit flag, 6-digit item, GS1 price verifier digit before a 4-digit price (2875 -> verifier 9)
    verified = ScaleFormat(name="gs1-verified", prefixes=["2"], item_digits=6, value="price", value_digits=5,
                           value_check="before")
    code = gtin("2" + "123456" + "9" + "2875")
    assert (c(code, [verified]).kind, c(code, [verified]).price_fen, c(code, [verified]).item) == \
        ("weighed", 2875, "123456")
    wrong = gtin("2" + "123456" + "8" + "2875")
    assert c(wrong, [verified]).reason == "bad_price_check_digit"
    after = ScaleFormat(name="after", prefixes=["27"], item_digits=4, value="weight", value_digits=6,
                        value_check="after", weight_unit="10g")
    assert c(gtin("27" + "0042" + "14685" + "6"), [after]).weight_g == 146850
    jiao = ScaleFormat(name="jiao", prefixes=["21"], value="price", price_decimals=1)
    assert c(gtin("21" + "00001" + "00158"), [jiao]).price_fen == 1580


def test_price_check_digit_gs1_examples():
    assert price_check_digit("2875") == 9          # GS1 General Specifications, 4-digit example
    assert price_check_digit("14685") == 6         # GS1 General Specifications, 5-digit example
    with pytest.raises(ValueError):
        price_check_digit("123")


# ---------------------------------------------------------------------------------------------- config model

def test_scale_config_from_toml():
    text = """
[scanning]
[[scanning.scales]]
name = "dahua-weight"
prefixes = ["28"]
value = "weight"
weight_unit = "10g"

[[scanning.scales]]
name = "dahua-price"
prefixes = ["20", "21", "22"]
item_digits = 5
value = "price"
value_digits = 5
price_decimals = 2
"""
    section = ScanningSection.model_validate(tomllib.loads(text)["scanning"])
    assert [s.name for s in section.scales] == ["dahua-weight", "dahua-price"]
    assert c(gtin("28" + "00123" + "00150"), section.scales).weight_g == 1500
    assert ScanningSection().scales == list(DEFAULT_FORMATS)


@pytest.mark.parametrize("bad, message", [
    ({"name": "x", "prefixes": ["22"], "item_digits": 6, "value": "price"}, "13"),
    ({"name": "x", "prefixes": ["32"], "value": "price"}, "pattern"),
    ({"name": "x", "prefixes": ["22", "22"], "value": "price"}, "twice"),
    ({"name": "x", "prefixes": ["22"], "value": "price", "item_digits": "5"}, "integer"),      # strict
    ({"name": "x", "prefixes": ["22"], "value": "weight", "price_decimals": 1}, "price_decimals"),
    ({"name": "x", "prefixes": ["22"], "value": "price", "weight_unit": "g"}, "weight_unit"),
    ({"name": "x", "prefixes": ["22"], "value": "price", "value_digits": 4, "item_digits": 6,
      "value_check": "after"}, "value_check"),
    ({"name": "x", "prefixes": ["22"], "value": "price", "colour": "red"}, "Extra"),
])
def test_scale_config_errors(bad, message):
    with pytest.raises(ValidationError, match=message):
        ScaleFormat.model_validate(bad)


def test_scanning_section_rejects_shadowed_prefixes():
    catch_all = {"name": "all", "prefixes": ["2"], "item_digits": 6, "value": "price"}
    weight = {"name": "w", "prefixes": ["28"], "value": "weight"}
    with pytest.raises(ValidationError, match="never matches"):
        ScanningSection.model_validate({"scales": [catch_all, weight]})
    assert len(ScanningSection.model_validate({"scales": [weight, catch_all]}).scales) == 2   # specific first: fine
    with pytest.raises(ValidationError, match="twice"):
        ScanningSection.model_validate({"scales": [weight, weight | {"prefixes": ["27"]}]})


# ---------------------------------------------------------------------------------------------- GS1

GTIN14 = "0" + "6901234567892"
GOOD_SSCC = gtin("00690123400000001")
BAD_SSCC = GOOD_SSCC[:-1] + str((int(GOOD_SSCC[-1]) + 3) % 10)


@pytest.mark.parametrize("text, form", [
    ("]C1" + "01" + GTIN14 + "17261231" + "10" + "LOT-7A" + GS + "3103001250", "aim"),
    ("]d2" + "01" + GTIN14 + "17261231" + "10" + "LOT-7A" + GS + "3103001250", "aim"),
    ("]Q3" + "01" + GTIN14 + "17261231" + "10" + "LOT-7A" + GS + "3103001250", "aim"),
    (GS + "01" + GTIN14 + "17261231" + "10" + "LOT-7A" + GS + "3103001250", "gs"),
    ("01" + GTIN14 + "17261231" + "10" + "LOT-7A" + GS + "3103001250" + GS, "gs"),
    ("(01)" + GTIN14 + "(17)261231(10)LOT-7A(3103)001250", "hri"),
])
def test_gs1_three_forms(text, form):
    result = c(text)
    assert (result.kind, result.format) == ("gs1", form)
    assert dict(result.ais) == {"01": GTIN14, "17": "261231", "10": "LOT-7A", "3103": "001250"}
    assert result.gtin == GTIN14 and "6901234567892" in result.lookup
    assert result.weight_g == 1250 and result.expiry == date(2026, 12, 31)


def test_gs1_variable_fields_and_prices():
    text = ("]C1" + "01" + GTIN14 + "21" + "SN0001" + GS + "10" + "B42" + GS + "3922" + "1299" + GS
            + "30" + "12" + GS + "91" + "internal-A" + GS + "99" + "Z")
    result = c(text)
    assert dict(result.ais) == {"01": GTIN14, "21": "SN0001", "10": "B42", "3922": "1299", "30": "12",
                                "91": "internal-A", "99": "Z"}
    assert list(result.ais) == ["01", "21", "10", "3922", "30", "91", "99"]      # scan order
    assert result.price_fen == 1299                                              # ￥12.99
    assert c("(01)" + GTIN14 + "(3921)1299").price_fen == 12990                   # ￥129.9
    assert c("(01)" + GTIN14 + "(3925)123456").price_fen == 123                   # ￥1.23456, half up
    assert c("(01)" + GTIN14 + "(3902)500").price_fen == 500
    assert c("(01)" + GTIN14 + "(3932)1561299").price_fen == 1299                 # CNY (156)
    assert c("(01)" + GTIN14 + "(3932)8401299").price_fen is None                 # USD: left in ais
    assert c("(02)" + GTIN14 + "(37)24").ais == {"02": GTIN14, "37": "24"}
    assert c("(02)" + GTIN14 + "(37)24").gtin is None                             # contents of a case, not the item
    assert c("(01)" + GTIN14 + "(3205)001000").weight_g is None                   # pounds: raw only
    assert c("(01)" + GTIN14 + "(3100)000002").weight_g == 2000
    assert c("(01)" + GTIN14 + "(3105)012345").weight_g == 123                    # 0.12345 kg
    assert c("(01)" + GTIN14 + "(15)270100(11)260101(13)260102").best_before == date(2027, 1, 31)
    assert c("(00)" + gtin("00690123400000001")).ais["00"] == gtin("00690123400000001")


def test_gs1_bare_without_identifier():
    result = c("01" + GTIN14 + "17261231" + "10" + "ABC")   # the scanner dropped ]C1; a variable field last
    assert result.kind == "gs1" and result.format == "bare" and result.ais["10"] == "ABC"
    assert c("01" + GTIN14).kind == "gs1"


@pytest.mark.parametrize("text, reason", [
    ("]C1" + "01" + "06901234567891" + "17261231", "bad_check_digit"),
    ("(01)06901234567891(17)261231", "bad_check_digit"),
    (GS + "0106901234567891", "bad_check_digit"),
    ("0106901234567891", "bad_check_digit"),
    ("(00)" + BAD_SSCC, "bad_check_digit"),
    ("(01)" + GTIN14 + "(17)261300", "bad_gs1"),          # month 13
    ("(01)" + GTIN14 + "(17)250229", "bad_gs1"),          # not a leap year
    ("(01)" + GTIN14 + "(17)26123", "bad_gs1"),           # 5 digits
    ("(01)" + GTIN14 + "(10)" + "A" * 21, "bad_gs1"),     # lot longer than 20
    ("(01)" + GTIN14 + "(10)a b", "bad_gs1"),             # space is not in the GS1 character set
    ("(01)" + GTIN14 + "(30)", "bad_gs1"),
    ("(01)" + GTIN14 + "(01)" + GTIN14, "bad_gs1"),       # twice
    ("]C1" + "0106901234", "bad_gs1"),                     # truncated
    ("]C1" + "05" + GTIN14, "bad_gs1"),                    # no such AI
    ("]C1", "bad_gs1"),
    ("(05)123", "bad_gs1"),
    ("01" + GTIN14 + "3103" + "00125" + GS, "bad_gs1"),   # fixed field cut short by a GS
])
def test_gs1_errors(text, reason):
    result = c(text)
    assert (result.kind, result.reason) == ("unknown", reason), result


def test_gs1_dates():
    assert c("(17)261200").expiry == date(2026, 12, 31)          # DD = 00: the end of the month
    assert c("(17)240200").expiry == date(2024, 2, 29)
    assert c("(17)240229").expiry == date(2024, 2, 29)
    assert c("(11)990101").ais["11"] == "990101"
    assert classify("(17)990101", today=TODAY).expiry == date(1999, 1, 1)   # GS1's sliding century window
    assert classify("(17)760101", today=TODAY).expiry == date(2076, 1, 1)
    assert classify("(17)770101", today=TODAY).expiry == date(1977, 1, 1)


# ---------------------------------------------------------------------------------------------- tokens

PICKUP_HEADER = {"alg": "EdDSA", "kid": "k-2026-11", "typ": "se-pickup+jwt"}
COUPON_HEADER = {"alg": "EdDSA", "kid": "k-2026-11", "typ": "se-coupon+jwt"}


def test_tokens():
    pickup = c(jws(PICKUP_HEADER))
    assert (pickup.kind, pickup.format, pickup.kid) == ("pickup_token", "jws", "k-2026-11")
    coupon = c(jws(COUPON_HEADER, {"sub": "cs-000123", "cid": "cpn-20off100", "exp": 1797600000}))
    assert (coupon.kind, coupon.kid) == ("coupon_token", "k-2026-11")
    assert c("]Q1" + jws(PICKUP_HEADER)).kind == "pickup_token"          # a QR scanner sending AIM ids
    assert c(jws(PICKUP_HEADER) + "\r\n").kind == "pickup_token"


@pytest.mark.parametrize("token, reason", [
    (jws({"alg": "EdDSA", "kid": "k", "typ": "JWT"}), "token_unknown_typ"),
    (jws({"alg": "EdDSA", "kid": "k"}), "token_unknown_typ"),
    (jws({"alg": "EdDSA", "kid": "k", "typ": ["se-pickup+jwt"]}), "token_unknown_typ"),
    (jws({"alg": "none", "kid": "k", "typ": "se-pickup+jwt"}), "token_malformed"),
    (jws({"alg": "HS256", "kid": "k", "typ": "se-coupon+jwt"}), "token_malformed"),
    (jws(b'{"alg":"EdDSA","typ":"se-coupon+jwt","typ":"se-pickup+jwt"}'), "token_malformed"),  # duplicate member
    (jws(b"not json"), "token_malformed"),
    (jws(b"\xff\xfe{}"), "token_malformed"),
    (jws(b"[1, 2]"), "token_malformed"),
    (jws(PICKUP_HEADER).rsplit(".", 1)[0] + ".", "token_malformed"),    # no signature
    ("a.b.c", "token_malformed"),                                        # 1 base64 character is not a byte
])
def test_token_problems(token, reason):
    result = c(token)
    assert (result.kind, result.reason) == ("unknown", reason), result


def test_token_lookalikes():
    assert c(jws(PICKUP_HEADER).replace(".", "..", 1)).reason == "unrecognized"
    assert c(jws(PICKUP_HEADER) + "=").reason == "unrecognized"          # padding is not base64url JWS
    assert c("x" * 1025).reason == "too_long"


# ---------------------------------------------------------------------------------------------- pickup codes

def test_pickup_codes_typed_and_scanned():
    assert (c("123456").kind, c("123456").format) == ("pickup_code", "scanned")
    assert c("1234567").kind == "pickup_code"
    assert c("123456", typed=True).format == "typed"
    ean8 = "96385074"
    assert c(ean8).kind == "product"                        # scanned with a valid EAN-8 check digit
    assert c(ean8, typed=True).kind == "pickup_code"       # typed: always a pickup code
    not_ean8 = "96385075"
    assert c(not_ean8).kind == "pickup_code"               # scanned, neither EAN-8 nor UPC-E
    assert c("０１２３４５６７", typed=True).text == "01234567"   # full-width digits from a Chinese IME
    assert c("０１２３４５６７", typed=True).kind == "pickup_code"
    assert c("６９０１２３４５６７８９２", typed=True).kind == "product"
    assert c("6901234567891", typed=True).reason == "bad_check_digit"   # a typo in a typed barcode
    assert c("12345").reason == "unrecognized" and c("123456789").reason == "unrecognized"
    assert c("１２３４５６").kind == "unknown"              # full-width only becomes digits when typed


# ---------------------------------------------------------------------------------------------- payment codes

@pytest.mark.parametrize("text, payer", [
    ("101234567890123456", "wechat_pay"), ("131234567890123456", "wechat_pay"), ("151234567890123456", "wechat_pay"),
    ("2512345678901234", "alipay"), ("28763443825664394", "alipay"), ("301234567890123456789012", "alipay"),
    ("281234567890123456", "alipay"),           # 18 digits from 25-30: Alipay's, not WeChat's
])
def test_payment_codes(text, payer):
    for typed in (False, True):
        result = c(text, typed=typed)
        assert (result.kind, result.format, result.text) == ("payment_code", payer, text)
    assert c(f"]C0{text}").kind == "payment_code"  # Code 128 with its symbology identifier
    assert mask_payment_code(text) == text[:4] + "*" * (len(text) - 8) + text[-4:]
    assert "payment_code" in KINDS


# ---------------------------------------------------------------------------------------------- unknown

@pytest.mark.parametrize("text, reason", [
    ("", "empty"), ("  \r\n", "empty"), ("\u3000", "empty"),
    ("1" * 1025, "too_long"), ("1" * 5_000_000, "too_long"),
    ("6901234\x00567892", "control_character"), ("abc\x1bdef", "control_character"), ("\x7f", "control_character"),
    ("hello", "unrecognized"), ("https://example.com/p?id=1", "unrecognized"), ("农夫山泉", "unrecognized"),
    ("161234567890123456", "unrecognized"),    # 18 digits, but not 10-15: not a WeChat Pay code
    ("3112345678901234", "unrecognized"), ("2512345678901234567890123", "unrecognized"),  # not Alipay
])
def test_unknown(text, reason):
    result = c(text)
    assert (result.kind, result.reason) == ("unknown", reason)
    assert len(result.text) <= 1024


def test_result_is_frozen_and_hashable():
    result = c("6901234567892")
    with pytest.raises(AttributeError):
        result.kind = "unknown"
    assert hash(result) == hash(c("6901234567892"))
    assert hash(c("(01)" + GTIN14))   # ais is left out of the hash


# ---------------------------------------------------------------------------------------------- properties



@props()
@given(st.text(alphabet="0123456789", min_size=12, max_size=12))
def test_any_12_digits_plus_check_digit_is_a_product(body):
    code = gtin(body)
    result = classify(code, ())
    assert (result.kind, result.format, result.gtin) == ("product", "ean13", code)
    assert classify(code).kind in ("product", "weighed")       # prefix 2 with the default scale formats


@props()
@given(st.text(alphabet="0123456789", min_size=12, max_size=12), st.integers(0, 12), st.integers(1, 9))
def test_single_digit_errors_are_detected(body, position, delta):
    code = gtin(body)
    wrong = code[:position] + str((int(code[position]) + delta) % 10) + code[position + 1:]
    result = classify(wrong)
    assert (result.kind, result.reason) == ("unknown", "bad_check_digit")


@props()
@given(st.text(alphabet="0123456789", min_size=12, max_size=12), st.integers(0, 11))
def test_adjacent_transpositions_are_detected_unless_the_digits_differ_by_5(body, position):
    # Swapping neighbours a, b changes the weighted sum by 2(a - b) (weights 3 and 1): a multiple of 10
    # exactly when |a - b| = 5. That is EAN's known blind spot: 05 <-> 50, 16 <-> 61, ... go unnoticed.
    code = gtin(body)
    a, b = code[position], code[position + 1]
    assume(a != b)
    swapped = code[:position] + b + a + code[position + 2:]
    result = classify(swapped, ())
    if abs(int(a) - int(b)) == 5:
        assert result.kind == "product"
    else:
        assert (result.kind, result.reason) == ("unknown", "bad_check_digit")


@st.composite
def compressible_upca(draw):
    d = lambda: draw(st.sampled_from("0123456789"))   # noqa: E731
    ns = draw(st.sampled_from("01"))
    case = draw(st.integers(0, 3))
    if case == 0:      # manufacturer ab{0,1,2}00, product 00cde
        body = ns + d() + d() + draw(st.sampled_from("012")) + "0000" + d() + d() + d()
    elif case == 1:    # manufacturer abc00, product 000de
        body = ns + d() + d() + d() + "00000" + d() + d()
    elif case == 2:    # manufacturer abcd0, product 0000e
        body = ns + d() + d() + d() + d() + "00000" + d()
    else:              # manufacturer abcde, product 0000{5-9}
        body = ns + d() + d() + d() + d() + d() + "0000" + draw(st.sampled_from("56789"))
    return gtin(body)


@props()
@given(compressible_upca())
def test_upce_round_trip(upca):
    upce = compress_upca(upca)
    assert upce is not None and len(upce) == 8
    assert expand_upce(upce) == upca
    assert upca in classify(upce).lookup
    assert classify("]E0" + upce).gtin == upca
    assert classify(upca).kind == "product"


@props()
@given(st.text(alphabet="0123456789", min_size=11, max_size=11))
def test_upce_compression_only_when_it_expands_back(body):
    upca = gtin(body)
    upce = compress_upca(upca)
    if upce is not None:
        assert expand_upce(upce) == upca


def _x(max_size, hri):
    alphabet = sorted(CSET82 - set("()")) if hri else sorted(CSET82)
    return st.text(alphabet=alphabet, min_size=1, max_size=max_size)


@st.composite
def gs1_elements(draw, hri=False):
    def n(lo, hi):
        return draw(st.text(alphabet="0123456789", min_size=lo, max_size=hi))

    def yymmdd():
        yy, mm = draw(st.integers(0, 99)), draw(st.integers(1, 12))
        return f"{yy:02}{mm:02}{draw(st.integers(0, 28)):02}"

    makers = {
        "01": lambda: gtin(n(13, 13)),
        "10": lambda: draw(_x(20, hri)),
        "11": yymmdd, "13": yymmdd, "15": yymmdd, "17": yymmdd,
        "21": lambda: draw(_x(20, hri)),
        "30": lambda: n(1, 8), "37": lambda: n(1, 8),
        "310": lambda: n(6, 6), "320": lambda: n(6, 6), "392": lambda: n(1, 15),
        **{str(k): (lambda: draw(_x(90, hri))) for k in range(91, 100)},
    }
    chosen = draw(st.lists(st.sampled_from(sorted(makers)), min_size=1, max_size=6, unique=True))
    pairs = []
    for key in chosen:
        ai = key + str(draw(st.integers(0, 5 if key in ("310", "320") else 9))) if len(key) == 3 else key
        pairs.append((ai, makers[key]()))
    return pairs


PREDEFINED_FIXED = ("01", "11", "13", "15", "17", "310", "320")


def _gs_string(pairs):
    out = ""
    for i, (ai, value) in enumerate(pairs):
        out += ai + value
        if i < len(pairs) - 1 and not ai.startswith(PREDEFINED_FIXED):
            out += GS
    return out


@props(150)
@given(gs1_elements(), st.sampled_from(["]C1", "]d2", "]Q3", GS, "]C1" + GS]))
def test_gs1_round_trip_gs_forms(pairs, start):
    result = classify(start + _gs_string(pairs), today=TODAY)
    assert result.kind == "gs1", result
    assert list(result.ais.items()) == pairs
    _check_derived(result, dict(pairs))


@props(150)
@given(gs1_elements(hri=True))
def test_gs1_round_trip_hri(pairs):
    result = classify("".join(f"({ai}){value}" for ai, value in pairs), today=TODAY)
    assert result.kind == "gs1", result
    assert list(result.ais.items()) == pairs
    _check_derived(result, dict(pairs))


def _check_derived(result, ais):
    assert result.gtin == ais.get("01")
    weight = next((v for ai, v in ais.items() if ai.startswith("310")), None)
    if weight is not None:
        ai = next(ai for ai in ais if ai.startswith("310"))
        grams = (Decimal(int(weight)) / 10 ** int(ai[3]) * 1000).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        assert result.weight_g == int(grams)
    else:
        assert result.weight_g is None
    price = next(((ai, v) for ai, v in ais.items() if ai.startswith("392")), None)
    if price is not None:
        fen = (Decimal(int(price[1])) / 10 ** int(price[0][3]) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        assert result.price_fen == int(fen)
    if "17" in ais:
        yy, mm, dd = int(ais["17"][:2]), int(ais["17"][2:4]), int(ais["17"][4:])
        assert (result.expiry.year % 100, result.expiry.month) == (yy, mm)
        assert result.expiry.day == (dd or calendar.monthrange(result.expiry.year, mm)[1])
        assert abs(result.expiry.year - TODAY.year) <= 50


def _assert_sane(result):
    assert result.kind in KINDS
    assert result.reason != "classify_error", result
    assert (result.kind == "unknown") == (result.reason is not None)
    assert result.reason is None or result.reason in REASONS
    assert len(result.text) <= 1024


@props(300)
@given(st.text(), st.booleans())
def test_classify_never_raises(text, typed):
    _assert_sane(classify(text, typed=typed))


NEAR_MISSES = ["]C1", "]d2", "]Q3", "]E0", "]E4", "]Q1", GS, "(01)", "(17)", "(3103)", "01", "0106901234567892",
               "eyJ", jws(PICKUP_HEADER)[:40], "22", "28", " ", "\r\n"]


@props(300)
@given(st.lists(st.one_of(st.sampled_from(NEAR_MISSES), st.text(max_size=8),
                          st.text(alphabet="0123456789()." + GS, max_size=20)), max_size=8), st.booleans())
def test_classify_never_raises_on_near_misses(parts, typed):
    _assert_sane(classify("".join(parts), typed=typed))


@props(25)
@given(st.text(min_size=1000, max_size=1100), st.sampled_from(["", "]C1", "(10)", "01" + GTIN14 + "10"]))
def test_classify_never_raises_on_long_text(text, start):
    _assert_sane(classify(start + text))


@props()
@given(st.binary(max_size=64))
def test_classify_never_raises_on_decoded_bytes(raw):
    _assert_sane(classify(raw.decode("latin-1")))
    _assert_sane(classify(raw.decode("utf-8", errors="replace"), typed=True))
