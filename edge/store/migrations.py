"""Versioned schema migrations. PRAGMA user_version holds how many have been applied.

Append new migrations at the end; never edit one that has shipped.
Money is integer fen; quantities are integers in the product's unit (weighed goods: grams).
"""

from edge.store.pinyin import fill_name_keys
from edge.store.schema_day import DAY_MIGRATIONS
from edge.store.schema_members import MEMBER_MIGRATIONS
from protocol.stock import MOVE_REASONS

_reasons = ", ".join(f"'{r}'" for r in MOVE_REASONS)
_payment_methods = "'cash', 'wechat', 'alipay', 'card', 'unionpay', 'voucher', 'other'"

INITIAL = f"""
CREATE TABLE products (
    sku         TEXT PRIMARY KEY CHECK (length(sku) BETWEEN 1 AND 64),
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    price_fen   INTEGER NOT NULL CHECK (price_fen >= 0),
    unit        TEXT NOT NULL DEFAULT '件',
    category    TEXT,
    low_stock   INTEGER NOT NULL DEFAULT 0 CHECK (low_stock >= 0),
    active      INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    updated_at  TEXT NOT NULL
);

CREATE TABLE barcodes (
    code TEXT PRIMARY KEY CHECK (length(code) BETWEEN 1 AND 64),
    sku  TEXT NOT NULL REFERENCES products(sku) ON DELETE CASCADE
);
CREATE INDEX barcodes_sku ON barcodes(sku);

-- Append-only: a correction is a new move, never an edit. No running balance on the rows: a late
-- offline move would force every later row to be rewritten.
CREATE TABLE stock_moves (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    sku         TEXT NOT NULL REFERENCES products(sku),
    qty         INTEGER NOT NULL CHECK (qty <> 0),
    reason      TEXT NOT NULL CHECK (reason IN ({_reasons})),
    ref_type    TEXT,
    ref_id      TEXT,
    device      TEXT NOT NULL,
    note        TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX stock_moves_sku ON stock_moves(sku, id);
CREATE INDEX stock_moves_ref ON stock_moves(ref_type, ref_id);
CREATE TRIGGER stock_moves_no_update BEFORE UPDATE ON stock_moves
BEGIN SELECT RAISE(ABORT, 'stock_moves is append-only'); END;
CREATE TRIGGER stock_moves_no_delete BEFORE DELETE ON stock_moves
BEGIN SELECT RAISE(ABORT, 'stock_moves is append-only'); END;

CREATE TABLE stock_balances (
    sku         TEXT PRIMARY KEY REFERENCES products(sku),
    on_hand     INTEGER NOT NULL DEFAULT 0,
    reserved    INTEGER NOT NULL DEFAULT 0,
    available   INTEGER GENERATED ALWAYS AS (on_hand - reserved) VIRTUAL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE sales (
    id             TEXT PRIMARY KEY,
    number         INTEGER NOT NULL UNIQUE,
    device         TEXT NOT NULL,
    cashier        TEXT,
    business_date  TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    subtotal_fen   INTEGER NOT NULL,
    discount_fen   INTEGER NOT NULL,
    total_fen      INTEGER NOT NULL CHECK (total_fen >= 0),
    paid_fen       INTEGER NOT NULL,
    change_fen     INTEGER NOT NULL CHECK (change_fen >= 0),
    note           TEXT
);
CREATE INDEX sales_business_date ON sales(business_date);

CREATE TABLE sale_lines (
    sale_id         TEXT NOT NULL REFERENCES sales(id),
    line_no         INTEGER NOT NULL,
    sku             TEXT NOT NULL REFERENCES products(sku),
    barcode         TEXT,
    name            TEXT NOT NULL,
    qty             INTEGER NOT NULL CHECK (qty > 0),
    unit_price_fen  INTEGER NOT NULL CHECK (unit_price_fen >= 0),
    discount_fen    INTEGER NOT NULL CHECK (discount_fen >= 0),
    amount_fen      INTEGER NOT NULL CHECK (amount_fen >= 0),
    PRIMARY KEY (sale_id, line_no)
);

CREATE TABLE sale_payments (
    sale_id     TEXT NOT NULL REFERENCES sales(id),
    seq         INTEGER NOT NULL,
    method      TEXT NOT NULL CHECK (method IN ({_payment_methods})),
    amount_fen  INTEGER NOT NULL CHECK (amount_fen > 0),
    PRIMARY KEY (sale_id, seq)
);

CREATE TABLE returns (
    id             TEXT PRIMARY KEY,
    sale_id        TEXT NOT NULL REFERENCES sales(id),
    device         TEXT NOT NULL,
    business_date  TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    refund_fen     INTEGER NOT NULL CHECK (refund_fen >= 0),
    refund_method  TEXT NOT NULL CHECK (refund_method IN ({_payment_methods})),
    restock        INTEGER NOT NULL CHECK (restock IN (0, 1)),
    reason         TEXT
);
CREATE INDEX returns_sale ON returns(sale_id);
CREATE INDEX returns_business_date ON returns(business_date);

CREATE TABLE return_lines (
    return_id   TEXT NOT NULL REFERENCES returns(id),
    line_no     INTEGER NOT NULL,
    sku         TEXT NOT NULL REFERENCES products(sku),
    qty         INTEGER NOT NULL CHECK (qty > 0),
    refund_fen  INTEGER NOT NULL CHECK (refund_fen >= 0),
    PRIMARY KEY (return_id, line_no)
);

-- Goods received, adjustments and stock counts: one document each, its lines, and their moves.
CREATE TABLE stock_documents (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('receipt', 'adjustment', 'count')),
    device      TEXT NOT NULL,
    supplier    TEXT,
    note        TEXT,
    created_at  TEXT NOT NULL
);
CREATE TABLE stock_document_lines (
    document_id  TEXT NOT NULL REFERENCES stock_documents(id),
    line_no      INTEGER NOT NULL,
    sku          TEXT NOT NULL REFERENCES products(sku),
    qty          INTEGER NOT NULL,      -- receipt/adjustment: the change; count: the difference
    counted      INTEGER,               -- count only: what was counted
    expected     INTEGER,               -- count only: on hand before the count
    cost_fen     INTEGER,
    note         TEXT,
    PRIMARY KEY (document_id, line_no)
);

-- A write replayed with the same key returns the stored answer; another body is refused.
CREATE TABLE idempotency_keys (
    device        TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    status        INTEGER NOT NULL,
    response      TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    PRIMARY KEY (device, key)
);

-- Transactional outbox: written in the same transaction as the fact it reports.
CREATE TABLE outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    type        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE api_tokens (
    device      TEXT PRIMARY KEY CHECK (length(device) BETWEEN 1 AND 32),
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
"""

MIGRATIONS: list[tuple[str, str]] = [
    ("initial schema", INITIAL),
]

SYNC = """
-- Key/value state of the sync engine: acked_seq (outbox seq the cloud has through), seq_offset
-- (wire seq = outbox seq + offset), epoch (the cloud's, last seen), cursor (download position).
CREATE TABLE sync_state (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

-- Events the cloud rejected by id. Leaving this list is an operator's act: retry (a new event
-- with retry_of) or discard (itself reported up); both are recorded here.
CREATE TABLE dead_letters (
    seq          INTEGER PRIMARY KEY REFERENCES outbox(seq),
    reason       TEXT NOT NULL,
    rejected_at  TEXT NOT NULL,
    resolution   TEXT CHECK (resolution IN ('retried', 'discarded')),
    resolved_at  TEXT,
    operator     TEXT,
    note         TEXT
);

-- Every downloaded change, applied or rejected: re-delivery is a no-op.
CREATE TABLE inbox (
    id           TEXT PRIMARY KEY,
    cursor       INTEGER NOT NULL,
    type         TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('applied', 'rejected')),
    reason       TEXT,
    received_at  TEXT NOT NULL
);
CREATE INDEX inbox_rejected ON inbox(status) WHERE status = 'rejected';

CREATE TABLE orders (
    id                  TEXT PRIMARY KEY,
    number              TEXT NOT NULL,
    kind                TEXT NOT NULL CHECK (kind IN ('pickup', 'delivery')),
    state               TEXT NOT NULL CHECK (state IN ('received', 'accepted', 'ready', 'picked_up',
                                                       'cancelled', 'refunded')),
    short               INTEGER NOT NULL DEFAULT 0 CHECK (short IN (0, 1)),
    conflict            TEXT,
    total_fen           INTEGER NOT NULL CHECK (total_fen >= 0),
    pickup_code_sha256  TEXT,
    pickup_after        TEXT,
    customer_note       TEXT,
    created_at          TEXT NOT NULL,
    received_at         TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);
CREATE INDEX orders_state ON orders(state, received_at);

CREATE TABLE order_lines (
    order_id   TEXT NOT NULL REFERENCES orders(id),
    line_no    INTEGER NOT NULL,
    sku        TEXT NOT NULL REFERENCES products(sku),
    name       TEXT NOT NULL,
    qty        INTEGER NOT NULL CHECK (qty > 0),
    price_fen  INTEGER NOT NULL CHECK (price_fen >= 0),
    short_qty  INTEGER NOT NULL DEFAULT 0 CHECK (short_qty >= 0),
    PRIMARY KEY (order_id, line_no)
);

-- Definitions the verification of pickups and coupons will use (issue 5), kept as the cloud sent them.
CREATE TABLE coupon_definitions (
    id             TEXT PRIMARY KEY,
    definition     TEXT NOT NULL,
    revoked_at     TEXT,
    revoke_reason  TEXT,
    updated_at     TEXT NOT NULL
);
CREATE TABLE verification_keys (
    kid         TEXT PRIMARY KEY,
    alg         TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    revoked_at  TEXT,
    updated_at  TEXT NOT NULL
);

-- Differences found between the store's balances and the cloud's copy, and what was sent to fix them.
CREATE TABLE reconciliations (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    run_at          TEXT NOT NULL,
    sku             TEXT NOT NULL,
    store_on_hand   INTEGER NOT NULL,
    store_reserved  INTEGER NOT NULL,
    cloud_on_hand   INTEGER NOT NULL,
    cloud_reserved  INTEGER NOT NULL,
    event_id        TEXT NOT NULL
);
"""

MIGRATIONS.append(("sync: state, dead letters, inbox, online orders, reconciliation", SYNC))

PRINT_JOB_STATES = ("queued", "printing", "printed", "uncertain", "failed", "expired")

PRINTING = f"""
-- Which printer prints each document kind, and for how long a job may wait: rewritten from config.toml at
-- every start, so a transaction that queues a job (a sale, an order arriving) needs no config.
CREATE TABLE print_routes (
    kind         TEXT PRIMARY KEY,
    printer      TEXT NOT NULL,
    ttl_seconds  INTEGER NOT NULL CHECK (ttl_seconds > 0)
);

-- The durable spool. `key` is stable (kind and what is printed), so queuing the same thing twice is a no-op;
-- a reprint is a new job with its own key. A job cut off while being sent becomes 'uncertain' and is never
-- resent by itself: a person confirms it printed, or asks for a reprint.
CREATE TABLE print_jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    key          TEXT NOT NULL UNIQUE,
    kind         TEXT NOT NULL,
    printer      TEXT NOT NULL,
    payload      TEXT NOT NULL,
    order_id     TEXT,
    reprint_of   INTEGER REFERENCES print_jobs(id),
    reprint      INTEGER NOT NULL DEFAULT 0 CHECK (reprint IN (0, 1)),
    state        TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ({", ".join(f"'{s}'" for s in PRINT_JOB_STATES)})),
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    note         TEXT,
    resolution   TEXT CHECK (resolution IN ('confirmed_printed', 'reprinted')),
    resolved_by  TEXT,
    created_by   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    finished_at  TEXT
);
CREATE INDEX print_jobs_queue ON print_jobs(printer, state, id);
CREATE INDEX print_jobs_order ON print_jobs(order_id) WHERE order_id IS NOT NULL;
CREATE INDEX print_jobs_state ON print_jobs(state, id);
"""

MIGRATIONS.append(("printing: routes and the durable print spool", PRINTING))

VERIFICATION = """
-- 核销: a hand-over of an online order. One open row per order: a code works once; a reversal (冲正)
-- closes the row, and the order can be handed over again.
CREATE TABLE pickups (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id        TEXT NOT NULL REFERENCES orders(id),
    method          TEXT NOT NULL CHECK (method IN ('token', 'code')),
    jti             TEXT,
    operator        TEXT NOT NULL,
    device          TEXT NOT NULL,
    provisional     INTEGER NOT NULL CHECK (provisional IN (0, 1)),
    verified_at     TEXT NOT NULL,
    reversed_at     TEXT,
    reversed_by     TEXT,
    reverse_reason  TEXT
);
CREATE UNIQUE INDEX pickups_once ON pickups(order_id) WHERE reversed_at IS NULL;
CREATE INDEX orders_pickup_code ON orders(pickup_code_sha256) WHERE pickup_code_sha256 IS NOT NULL;

-- Coupons redeemed in a sale's transaction; uses per serial are counted here.
CREATE TABLE coupon_redemptions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    coupon_id     TEXT NOT NULL,
    serial        TEXT NOT NULL,
    jti           TEXT NOT NULL,
    title         TEXT NOT NULL,
    sale_id       TEXT NOT NULL REFERENCES sales(id),
    discount_fen  INTEGER NOT NULL CHECK (discount_fen >= 0),
    provisional   INTEGER NOT NULL CHECK (provisional IN (0, 1)),
    device        TEXT NOT NULL,
    redeemed_at   TEXT NOT NULL
);
CREATE INDEX coupon_redemptions_serial ON coupon_redemptions(coupon_id, serial);
CREATE INDEX coupon_redemptions_sale ON coupon_redemptions(sale_id);

-- Every scan, classified, in order; each consumer (a till's POS, the cashier screen) has its own
-- position, so nothing is lost between two polls and nothing is delivered to one consumer twice.
CREATE TABLE scans (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    device      TEXT NOT NULL,
    source      TEXT NOT NULL,
    text        TEXT NOT NULL,
    raw         BLOB,
    kind        TEXT NOT NULL,
    detail      TEXT NOT NULL,
    scanned_at  TEXT NOT NULL
);
CREATE TABLE scan_consumers (
    name        TEXT PRIMARY KEY,
    acked_seq   INTEGER NOT NULL DEFAULT 0,
    updated_at  TEXT NOT NULL
);
"""

MIGRATIONS.append(("verification: pickups, coupon redemptions, the scan queue", VERIFICATION))

DASHBOARD = """
-- People who use the dashboard: cashiers and managers. Passwords as scrypt hashes.
CREATE TABLE users (
    name           TEXT PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 32),
    display_name   TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('cashier', 'manager')),
    password_hash  TEXT NOT NULL,
    active         INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);

-- A login: the cookie holds a random token, the table only its SHA-256.
CREATE TABLE sessions (
    token_sha256  TEXT PRIMARY KEY,
    user_name     TEXT NOT NULL REFERENCES users(name),
    csrf          TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    last_seen_at  TEXT NOT NULL
);
CREATE INDEX sessions_expires ON sessions(expires_at);

-- Who did what sensitive thing, and when (reversal, stock adjustment, dead-letter discard, reprint...).
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         TEXT NOT NULL,
    user_name  TEXT NOT NULL,
    role       TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT,
    detail     TEXT
);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
"""

MIGRATIONS.append(("dashboard: users, sessions, audit log", DASHBOARD))

# The overview counts today's orders and hand-overs: without these it reads their whole history.
DASHBOARD_INDEXES = """
CREATE INDEX orders_received ON orders(received_at);
CREATE INDEX pickups_verified ON pickups(verified_at) WHERE reversed_at IS NULL;
"""

MIGRATIONS.append(("dashboard: indexes for today's orders and hand-overs", DASHBOARD_INDEXES))

# The last run of each scheduled job: a failed backup or ledger check is shown on /metrics, the
# dashboard and `store-edge doctor` (another process, hence the store) until the job next succeeds.
JOBS = """
CREATE TABLE job_runs (
    job          TEXT PRIMARY KEY,
    last_run_at  TEXT NOT NULL,
    ok           INTEGER NOT NULL CHECK (ok IN (0, 1)),
    error        TEXT,                          -- the last run's, NULL when it succeeded
    last_ok_at   TEXT,
    failures     INTEGER NOT NULL DEFAULT 0     -- failed runs in a row
);
"""

MIGRATIONS.append(("scheduled jobs: the last run of each", JOBS))

# The stock search finds 可乐 by `kele` or `kl`: each name's pinyin and initials, kept by
# catalog.upsert_product. SQL cannot compute pinyin: the rows already there are filled by the data
# step below, in this migration's transaction.
PINYIN = """
ALTER TABLE products ADD COLUMN name_pinyin TEXT NOT NULL DEFAULT '';
ALTER TABLE products ADD COLUMN name_initials TEXT NOT NULL DEFAULT '';
"""

MIGRATIONS.append(("catalog: pinyin and initials of product names", PINYIN))

# Python run after the SQL of the migration with that number (edge/core/sqlite.py migrate)
STEPS = {len(MIGRATIONS): fill_name_keys}

# The store's day (issue 14): shifts, the cashier screen's look-ups, stock work. Their SQL is in
# schema_day.py; the order here is the order they run in.
MIGRATIONS += DAY_MIGRATIONS

# Members at the till (issue 12): after the store's day, in schema_members.py's order.
MIGRATIONS += MEMBER_MIGRATIONS
