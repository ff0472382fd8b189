"""Member codes (会员码) verified offline at the store (docs/members.md): keys from the feed as they
arrive from the cloud, certificates signed as the hub signs them, dynamic codes made by the simulated
phone at a frozen clock. Every refusal has its reason and Chinese words, and writes nothing."""

from __future__ import annotations

import json

import pytest

from edge.core import jws, member_code
from edge.core.context import WriteContext
from edge.core.refusals import MESSAGES_ZH
from edge.ops.demo.phone import Phone
from edge.store import db, members
from edge.store.signed_tokens import TokenRefused
from sync.changes import apply_page
from tests.conftest import dump

CHAIN = "chain-01"
STORE = "test-store"
NOW = 1_796_000_015.0               # a frozen clock: 15 s into step 59_866_667
STEP = member_code.time_step(NOW)
CTX = WriteContext("cloud", "2026-11-22T01:00:00.000Z", "2026-11-22")
KEY, KEY_PUBLIC = jws.new_key()
OTHER, OTHER_PUBLIC = jws.new_key()


def claims(phone: Phone, **over) -> dict:
    return {"sub": "m-000123", "chn": CHAIN, "lv": "金卡", "nm": "张*", "ph": "138****5678", "pts": 1280,
            "bal": 5000, "snp": int(NOW) - 3600, "dk": phone.device_key, "iat": int(NOW) - 86400,
            "exp": int(NOW) + 30 * 86400, **over}


def issued(phone: Phone | None = None, *, key=KEY, kid="k1", **over) -> Phone:
    phone = phone or Phone()
    phone.certificate = jws.sign(key, kid, jws.TYP_MEMBER, claims(phone, **over))
    return phone


def feed(conn, changes) -> None:
    cursor = conn.execute("SELECT coalesce(max(cursor), 0) FROM inbox").fetchone()[0]
    page = [{"cursor": cursor + i + 1, "id": f"ch-{cursor + i + 1}", "type": t, "created_at": CTX.now,
             "payload": p} for i, (t, p) in enumerate(changes)]
    with db.transaction(conn):
        assert apply_page(conn, page, cursor + len(page), CTX)["rejected"] == 0


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "store.db"
    conn = db.open_store_db(path)
    feed(conn, [("key.published", {"kid": "k1", "alg": "Ed25519", "public_key": KEY_PUBLIC})])
    yield conn, path
    conn.close()


def chain_config(tmp_path):
    """The tests' store (tests/conftest.py, its catalog seeded) with `[store] chain` set: member codes on."""
    from edge.core import config as config_mod
    from tests.conftest import seed
    path = tmp_path / "config.toml"
    path.write_text(f'[store]\nid = "{STORE}"\nname = "测试门店"\nchain = "{CHAIN}"\ndata_dir = "var"\n',
                    encoding="utf-8")
    cfg = config_mod.load(path)
    seed(cfg.db_path)
    return cfg


def verify(conn, text, now=NOW, chain=CHAIN):
    with db.transaction(conn):
        return members.verify_member_code(conn, text, chain=chain, store_id=STORE, now=now)


def refused(store, text, reason, now=NOW, chain=CHAIN) -> TokenRefused:
    """The code is refused for `reason`, with Chinese words, and the database is as it was."""
    conn, path = store
    before, changes = dump(path), conn.total_changes
    with pytest.raises(TokenRefused) as caught:
        verify(conn, text, now, chain)
    assert caught.value.reason == reason, (caught.value.reason, caught.value.message)
    assert MESSAGES_ZH[reason] and any("\u4e00" <= c <= "\u9fff" for c in MESSAGES_ZH[reason])
    assert conn.total_changes == changes and dump(path) == before
    return caught.value


def test_a_code_of_about_540_bytes_gives_the_masked_member(store):
    phone = issued()
    code = phone.code(NOW)
    assert 380 <= len(code.encode()) <= 560, len(code)
    member = verify(store[0], code)
    assert (member.member_id, member.level, member.name, member.phone) == ("m-000123", "金卡", "张*", "138****5678")
    assert (member.points, member.balance_fen, member.step) == (1280, 5000, STEP)
    assert member.snapshot_at == members.iso_unix(NOW - 3600)
    assert [tuple(r) for r in store[0].execute("SELECT member_id, step FROM member_code_uses")] == [("m-000123", STEP)]


@pytest.mark.parametrize("offset, ok", [(-2, False), (-1, True), (0, True), (1, True), (2, False)])
def test_the_step_window_is_one_step_either_side(store, offset, ok):
    """RFC 6238 §5.2: T-1, T and T+1 are accepted at a frozen clock; T-2 is too old, T+2 a clock ahead."""
    code = issued().code(NOW + offset * member_code.STEP_SECONDS)
    if ok:
        assert verify(store[0], code).step == STEP + offset
    else:
        refused(store, code, "code_stale" if offset < 0 else "code_ahead")


def test_the_window_edges_at_the_step_boundaries(store):
    phone = issued()
    start = STEP * member_code.STEP_SECONDS          # the first second of step T
    # shown in the last second of T-1, read in the first of T+1: still one step either side? no: two
    refused(store, phone.code(start - 1), "code_stale", now=start + member_code.STEP_SECONDS)
    assert verify(store[0], phone.code(start - 1), now=start + member_code.STEP_SECONDS - 1).step == STEP - 1


def test_replayed_same_member_same_step(store):
    phone = issued()
    code = phone.code(NOW)
    verify(store[0], code)
    refused(store, code, "replayed")
    # another code of the same member in the same step (the phone's second device signature is the same
    # anyway, Ed25519 being deterministic): refused too; the next step is a new code
    refused(store, phone.code(NOW + 1), "replayed")
    assert verify(store[0], phone.code(NOW + 30), now=NOW + 30).step == STEP + 1


def test_old_steps_are_purged(store):
    conn = store[0]
    phone = issued()
    verify(conn, phone.code(NOW))
    later = NOW + 10 * member_code.STEP_SECONDS
    verify(conn, phone.code(later), now=later)
    assert [r[0] for r in conn.execute("SELECT step FROM member_code_uses")] == [member_code.time_step(later)]


def test_forged_certificate(store):
    """Signed by a key the store never trusted, under the store's kid: the certificate's signature fails."""
    refused(store, issued(key=OTHER).code(NOW), "bad_signature")


def test_altered_claim(store):
    """One byte of a claim changed (the points), the rest as signed: refused before anything is read."""
    phone = issued()
    head, body, sig = phone.certificate.split(".")
    data = jws.b64url_decode(body).replace(b'"pts":1280', b'"pts":9280')
    assert data != jws.b64url_decode(body)
    phone.certificate = f"{head}.{jws.b64url(data)}.{sig}"
    refused(store, phone.code(NOW), "bad_signature")


def test_altered_code_parts(store):
    phone = issued()
    cert, step, sig = phone.code(NOW).rsplit(".", 2)
    # the step changed after signing: the phone's signature no longer covers it
    refused(store, f"{cert}.{int(step) - 1}.{sig}", "device_signature")
    # another phone's signature over this certificate (a copied certificate on a phone of one's own)
    thief = Phone(certificate=phone.certificate)
    refused(store, thief.code(NOW), "device_signature")
    refused(store, phone.code(NOW)[:-3], "malformed")
    refused(store, phone.certificate, "malformed")      # the certificate alone is no code


def test_expired_certificate(store):
    refused(store, issued(exp=int(NOW) - 61).code(NOW), "member_expired")
    assert verify(store[0], issued(exp=int(NOW) - 59).code(NOW))   # 60 s of clock skew, as tokens


def test_other_chain_and_other_store(store):
    refused(store, issued(chn="chain-02").code(NOW), "wrong_chain")
    refused(store, issued().code(NOW), "no_chain", chain=None)
    refused(store, issued(sid="store-9").code(NOW), "wrong_store")


def test_revoked_key(store):
    conn, _ = store
    phone = issued()
    feed(conn, [("key.revoked", {"kid": "k1", "reason": "leaked"})])
    refused(store, phone.code(NOW), "unknown_key")
    refused(store, issued(kid="k-unknown").code(NOW), "unknown_key")


def test_a_pickup_token_is_no_certificate_and_a_certificate_no_pickup(store):
    conn, _ = store
    pickup = jws.sign(KEY, "k1", jws.TYP_PICKUP, {"sub": "o-1", "sid": STORE, "exp": int(NOW) + 60, "jti": "j"})
    phone = Phone(certificate=pickup)
    refused(store, phone.code(NOW), "malformed")
    from edge.store import signed_tokens
    with pytest.raises(TokenRefused) as caught:
        signed_tokens.verify(conn, issued().certificate, store_id=STORE, now=NOW)
    assert caught.value.reason == "malformed"


@pytest.mark.parametrize("over", [{"pts": -1}, {"dk": "AAAA"}, {"nm": "张三"}, {"ph": "13812345678"},
                                  {"sub": ""}, {"bal": "5000"}, {"lv": None}])
def test_claims_of_the_wrong_form(store, over):
    refused(store, issued(**over).code(NOW), "malformed")


def test_mask_keeps_no_signature():
    code = issued().code(NOW)
    masked = member_code.mask(code)
    assert code.rsplit(".", 1)[1] not in masked and len(masked) < 60
    assert json.dumps(masked)


def test_the_classifier_knows_a_member_code():
    from edge.core.classify import classify
    phone = issued()
    code = phone.code(NOW)
    assert (classify(code).kind, classify(code).format, classify(code).kid) == ("member_code", "dynamic", "k1")
    assert classify(f"]Q1{code}\r\n").kind == "member_code"        # a QR symbology identifier, a line end
    assert (classify(phone.certificate).kind, classify(phone.certificate).format) == ("member_code", "certificate")
    pickup = jws.sign(KEY, "k1", jws.TYP_PICKUP, {"sub": "o-1", "sid": STORE, "exp": int(NOW), "jti": "j"})
    assert classify(pickup).kind == "pickup_token"
    assert classify(Phone(certificate=pickup).code(NOW)).kind == "unknown"


def test_the_device_page_shows_a_member_code_masked():
    from edge.services.devices import _masked
    code = issued().code(NOW)
    shown = _masked({"device": "front", "last_scan": {"text": code, "raw_hex": code.encode().hex(" ")}})
    assert shown["last_scan"]["text"] == member_code.mask(code)
    assert code.rsplit(".", 1)[1] not in str(shown) and code.encode()[-40:].hex(" ") not in str(shown)
