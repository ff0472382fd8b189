"""Member sales and returns on paper, through the real path: the store records them (edge/store/sales.py,
with tests/test_member_sales.py's till), the print jobs are queued in their transactions, their data is
read as the printer worker reads it (edge/services/printing.py document_data), and the document is
rendered and decoded as the virtual printer decodes it. The layout is pinned by tests/test_documents.py."""

from __future__ import annotations

import json

import pytest

from drivers.documents import PrintOptions, render
from edge.core.schemas import SaleIn
from edge.services.printing import document_data
from edge.store import db, sales, spool
from edge.store.member_sales import Hold
from tests.test_documents import decode
from tests.test_member_sales import Till, line

STORE_INFO = {"id": "test-store", "name": "测试门店", "timezone": "Asia/Shanghai"}
HOLD = Hold("h-00000000-0000-4000-8000-00000000abcd", 500, 1000, 780, 4000)


@pytest.fixture
def till(tmp_path):
    t = Till(tmp_path / "store.db")
    with db.transaction(t.conn):
        spool.set_routes(t.conn, {"receipt": ("front", 3600)}, ["front"])
    yield t
    t.conn.close()


def printed(till: Till, key: str) -> list[str]:
    row = till.conn.execute("SELECT kind, payload, created_at FROM print_jobs WHERE key = ?", (key,)).fetchone()
    assert row is not None, f"no print job {key}"
    data = document_data(till.conn, {"kind": row[0], "payload": json.loads(row[1]), "created_at": row[2]}, STORE_INFO)
    return [ln["text"] for ln in decode(render(row[0], data, PrintOptions(paper_mm=58))).lines]


def shows(texts: list[str], label: str, value: str) -> bool:
    return any(t.startswith(label + " ") and t.endswith(" " + value) for t in texts)


def test_a_member_sale_and_its_returns_print_what_the_member_got_and_got_back(till):
    body = {"lines": [line("DRK-001", 2), line("SNK-001", 3)], "member": {"member_id": "m-000123"},
            "payments": [{"method": "points", "amount_fen": 500}, {"method": "stored_value", "amount_fen": 1000},
                         {"method": "cash", "amount_fen": 2000}]}
    with db.transaction(till.conn):
        sale = sales.record_sale(till.conn, SaleIn.model_validate(body), till.ctx(), None, frozenset(),
                                 till.checks(hold=HOLD))["sale"]
    m = sale["member"]
    texts = printed(till, f"receipt:{sale['id']}")
    assert f"会员：{m['name']} {m['phone']} {m['level']}" in texts
    assert shows(texts, "积分抵扣 500分", "￥5.00") and shows(texts, "储值支付", "￥10.00")
    assert shows(texts, "本次积分", f"+{m['points_earned']}") and shows(texts, "积分余额", str(m["points_balance"]))
    assert shows(texts, "储值余额", f"￥{m['stored_value_balance_fen'] / 100:.2f}")
    assert m["saved_fen"] > 0 and shows(texts, "会员优惠", f"￥{m['saved_fen'] / 100:.2f}")
    for sold in sale["lines"]:      # each line at its list price, the member price under it
        assert shows(texts, f"  会员价 ￥{sold['unit_price_fen'] / 100:.2f}", f"-￥{sold['member_saved_fen'] / 100:.2f}")
    assert m["member_id"] not in "\n".join(texts)

    # the first return prints its 退货单 with the points and stored value given back; the last takes the rest
    first = till.give_back(sale, [{"line_no": 1, "qty": 1}])
    texts = printed(till, f"receipt:return:{first['id']}")
    back = first["member"]
    assert "退货单" in [t.strip() for t in texts]
    assert shows(texts, f"积分抵扣 {back['points_given_back']}分", f"-￥{back['points_value_fen'] / 100:.2f}")
    assert shows(texts, "储值支付", f"-￥{back['stored_value_fen'] / 100:.2f}")
    rest = first["refund_fen"] - back["stored_value_fen"] - back["points_value_fen"]
    assert shows(texts, "现金", f"-￥{rest / 100:.2f}") and shows(texts, "退回积分", f"+{back['points_given_back']}")
    assert back["points_given_back"] > 0 and back["stored_value_fen"] > 0
    last = till.give_back(sale, [{"line_no": 1, "qty": 1}, {"line_no": 2, "qty": 3}])
    texts = printed(till, f"receipt:return:{last['id']}")
    given = back["points_given_back"] + last["member"]["points_given_back"]
    assert given == m["points_spent"] and back["stored_value_fen"] + last["member"]["stored_value_fen"] == 1000
    assert shows(texts, "扣回积分", f"-{last['member']['points_taken_back']}")


def test_a_return_without_a_member_prints_nothing(till):
    with db.transaction(till.conn):
        sale = sales.record_sale(till.conn, SaleIn.model_validate(
            {"lines": [line("SNK-001")], "payments": [{"method": "cash", "amount_fen": 1000}]}), till.ctx())["sale"]
    back = till.give_back(sale, [{"line_no": 1, "qty": 1}])
    assert till.conn.execute("SELECT count(*) FROM print_jobs WHERE key = ?",
                             (f"receipt:return:{back['id']}",)).fetchone()[0] == 0
    assert till.conn.execute("SELECT count(*) FROM print_jobs WHERE kind = 'receipt'").fetchone()[0] == 1  # the sale's
