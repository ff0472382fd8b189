"""Migrations of members at the till (issue 12), appended to edge/store/migrations.py's list after the
store's day (schema_day.py). Append new ones at the end; never edit one that has shipped.
"""

MEMBER_MIGRATIONS: list[tuple[str, str]] = []

# A member code is good for its 30-second step and one step either side (docs/members.md): each (member,
# step) is accepted once, so a code photographed over the customer's shoulder and shown again is refused.
# Only the member id and the step are kept: no name, no phone, never the code. Steps older than the
# window are deleted as new codes arrive (edge/store/members.py), so the table holds minutes, not years.
MEMBER_CODE_USES = """
CREATE TABLE member_code_uses (
    member_id   TEXT NOT NULL,
    step        INTEGER NOT NULL,          -- RFC 6238's T: floor(unix / 30)
    used_at     TEXT NOT NULL,
    PRIMARY KEY (member_id, step)
) WITHOUT ROWID;
CREATE INDEX member_code_uses_step ON member_code_uses(step);
"""

MEMBER_MIGRATIONS.append(("members: each member code's (member, time step) accepted once", MEMBER_CODE_USES))

# Members in the sale (issue 12 parts 2-4, docs/members.md "At the till"): one migration, in one block.
# - member_program: the feed's `member.program`, whole (the newest replaces it); member_prices per
#   (sku, level), level '' meaning every level, as `member.prices` upserts them.
# - members_seen: the masked view of a member this store verified by code or looked up by phone (what a
#   sale by member id may use for 30 minutes); never a whole name or number (docs/members.md, privacy).
# - sale_members: the member block of a sale as the receipt shows it, kept as it was at the sale.
# - member_activity: what this store did to each member's points and balance (signed deltas, as the
#   `member.activity` event says); the offline caps are sums over it since a certificate's snapshot.
# - payments by points and stored value: sale_payments' CHECK names the methods, and SQLite cannot
#   alter a CHECK, so the table is copied into its new form. A return's refund keeps its total in
#   refund_fen; the parts paid back to the balance and as points are columns of their own, and the view
#   return_refunds splits each return by method for every sum by method (day close, shifts, reports).
MEMBER_SALES = """
CREATE TABLE member_program (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    version     INTEGER NOT NULL,
    program     TEXT NOT NULL,             -- the feed's payload, JSON
    updated_at  TEXT NOT NULL
);

CREATE TABLE member_prices (
    sku         TEXT NOT NULL,
    level       TEXT NOT NULL,             -- '' = every level
    price_fen   INTEGER NOT NULL CHECK (price_fen >= 0),
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (sku, level)
) WITHOUT ROWID;

CREATE TABLE members_seen (
    member_id    TEXT PRIMARY KEY,
    level        TEXT NOT NULL,
    name         TEXT,                     -- masked by the cloud: 张*
    phone        TEXT,                     -- masked by the cloud: 138****5678
    points       INTEGER NOT NULL,
    balance_fen  INTEGER NOT NULL,
    snapshot_at  TEXT NOT NULL,            -- when the cloud took points and balance
    source       TEXT NOT NULL CHECK (source IN ('code', 'lookup')),
    seen_at      TEXT NOT NULL
);

CREATE TABLE sale_members (
    sale_id                   TEXT PRIMARY KEY REFERENCES sales(id),
    member_id                 TEXT NOT NULL,
    level                     TEXT NOT NULL,
    name                      TEXT,
    phone                     TEXT,
    points_earned             INTEGER NOT NULL CHECK (points_earned >= 0),
    points_spent              INTEGER NOT NULL CHECK (points_spent >= 0),
    points_value_fen          INTEGER NOT NULL CHECK (points_value_fen >= 0),
    stored_value_fen          INTEGER NOT NULL CHECK (stored_value_fen >= 0),
    saved_fen                 INTEGER NOT NULL CHECK (saved_fen >= 0),
    points_balance            INTEGER NOT NULL,
    stored_value_balance_fen  INTEGER NOT NULL,
    hold_id                   TEXT,
    offline                   INTEGER NOT NULL CHECK (offline IN (0, 1))
);
CREATE INDEX sale_members_member ON sale_members(member_id);

CREATE TABLE member_activity (
    activity_id       TEXT PRIMARY KEY,    -- sale:<id> or return:<id>, as the event's
    member_id         TEXT NOT NULL,
    sale_id           TEXT NOT NULL REFERENCES sales(id),
    return_id         TEXT REFERENCES returns(id),
    points_earned     INTEGER NOT NULL,    -- signed, as in the event
    points_spent      INTEGER NOT NULL,
    points_value_fen  INTEGER NOT NULL,
    stored_value_fen  INTEGER NOT NULL,
    hold_id           TEXT,
    offline           INTEGER NOT NULL CHECK (offline IN (0, 1)),
    at                TEXT NOT NULL
);
CREATE INDEX member_activity_member ON member_activity(member_id, at);

ALTER TABLE sale_lines ADD COLUMN list_price_fen INTEGER;           -- NULL on sales from before: unit price
ALTER TABLE sale_lines ADD COLUMN member_saved_fen INTEGER NOT NULL DEFAULT 0;

ALTER TABLE returns ADD COLUMN stored_value_fen INTEGER NOT NULL DEFAULT 0 CHECK (stored_value_fen >= 0);
ALTER TABLE returns ADD COLUMN points_value_fen INTEGER NOT NULL DEFAULT 0 CHECK (points_value_fen >= 0);

CREATE TABLE sale_payments_new (
    sale_id     TEXT NOT NULL REFERENCES sales(id),
    seq         INTEGER NOT NULL,
    method      TEXT NOT NULL CHECK (method IN ('cash', 'wechat', 'alipay', 'card', 'unionpay', 'voucher',
                                                'other', 'points', 'stored_value')),
    amount_fen  INTEGER NOT NULL CHECK (amount_fen > 0),
    PRIMARY KEY (sale_id, seq)
);
INSERT INTO sale_payments_new SELECT sale_id, seq, method, amount_fen FROM sale_payments;
DROP TABLE sale_payments;
ALTER TABLE sale_payments_new RENAME TO sale_payments;

CREATE VIEW return_refunds (return_id, business_date, shift_id, method, amount_fen) AS
    SELECT id, business_date, shift_id, refund_method, refund_fen - stored_value_fen - points_value_fen
    FROM returns
    UNION ALL SELECT id, business_date, shift_id, 'stored_value', stored_value_fen FROM returns
    WHERE stored_value_fen > 0
    UNION ALL SELECT id, business_date, shift_id, 'points', points_value_fen FROM returns
    WHERE points_value_fen > 0;
"""

MEMBER_MIGRATIONS.append(("members: programme, member prices, members seen, sales with a member, their activity, "
                          "payments by points and stored value", MEMBER_SALES))
