"""Schema of the reference cloud hub's database (DIR/hub.db), as versioned migrations.

Used with edge.store.db.Store(path, migrations=HUB_MIGRATIONS): PRAGMA user_version counts the applied
ones. Append new migrations at the end; never edit one that has shipped.
"""

INITIAL = """
-- Key/value settings of the hub itself: 'epoch'.
CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

-- The stores the hub serves. Only a SHA-256 of each store's token is kept. next_seq is the
-- sequence number the hub expects next from the store (docs/sync-protocol.md 2.2).
CREATE TABLE stores (
    store_id        TEXT PRIMARY KEY CHECK (length(store_id) BETWEEN 1 AND 64),
    name            TEXT NOT NULL,
    token_hash      TEXT NOT NULL UNIQUE,
    next_seq        INTEGER NOT NULL DEFAULT 1 CHECK (next_seq >= 1),
    last_upload_at  TEXT,
    created_at      TEXT NOT NULL,
    token_set_at    TEXT NOT NULL
);

-- The chain catalog. Every SKU a store's moves name must be here.
CREATE TABLE products (
    sku         TEXT PRIMARY KEY CHECK (length(sku) BETWEEN 1 AND 64),
    name        TEXT NOT NULL,
    price_fen   INTEGER NOT NULL CHECK (price_fen >= 0),
    unit        TEXT NOT NULL,
    category    TEXT,
    low_stock   INTEGER NOT NULL DEFAULT 0,
    barcodes    TEXT NOT NULL DEFAULT '[]',
    active      INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    updated_at  TEXT NOT NULL
);
CREATE TABLE barcodes (
    code  TEXT PRIMARY KEY,
    sku   TEXT NOT NULL REFERENCES products(sku)
);
CREATE INDEX barcodes_sku ON barcodes(sku);

-- Every event a store uploaded that took a sequence number, applied or rejected. The same event id
-- may appear more than once: rejected, then resent at a new seq and validated again.
CREATE TABLE events (
    event_row    INTEGER PRIMARY KEY AUTOINCREMENT,
    store_id     TEXT NOT NULL REFERENCES stores(store_id),
    seq          INTEGER NOT NULL,
    event_id     TEXT,                 -- NULL when the envelope had no usable id
    type         TEXT,
    created_at   TEXT,
    payload      TEXT NOT NULL,        -- JSON, as sent
    digest       TEXT NOT NULL,        -- SHA-256 of the whole envelope: a resent id-less event is recognised
    status       TEXT NOT NULL CHECK (status IN ('applied', 'rejected')),
    reason       TEXT,
    received_at  TEXT NOT NULL,
    UNIQUE (store_id, seq)
);
CREATE INDEX events_id ON events(store_id, event_id);
CREATE INDEX events_status ON events(store_id, status, seq);

-- The hub's copy of each store's balances: the sum of the moves of its applied events.
CREATE TABLE balances (
    store_id    TEXT NOT NULL REFERENCES stores(store_id),
    sku         TEXT NOT NULL,
    on_hand     INTEGER NOT NULL DEFAULT 0,
    reserved    INTEGER NOT NULL DEFAULT 0,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (store_id, sku)
) WITHOUT ROWID;

-- The download feed. store_id NULL: a change for every store.
CREATE TABLE changes (
    cursor      INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    store_id    TEXT REFERENCES stores(store_id),
    type        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    payload     TEXT NOT NULL
);
CREATE INDEX changes_store ON changes(store_id, cursor);

-- Online orders the hub created. Pending (counted against online availability) while state is
-- 'created' and the store has not acknowledged it (order.received).
CREATE TABLE orders (
    order_id            TEXT PRIMARY KEY,
    store_id            TEXT NOT NULL REFERENCES stores(store_id),
    number              TEXT NOT NULL,
    day                 TEXT NOT NULL,
    kind                TEXT NOT NULL CHECK (kind IN ('pickup', 'delivery')),
    state               TEXT NOT NULL CHECK (state IN ('created', 'accepted', 'ready', 'picked_up',
                                                       'cancelled', 'refunded', 'rejected')),
    total_fen           INTEGER NOT NULL CHECK (total_fen >= 0),
    pickup_code_sha256  TEXT NOT NULL,
    pickup_after        TEXT,
    customer_note       TEXT,
    change_id           TEXT NOT NULL,
    received_at         TEXT,
    short               TEXT,
    conflict            TEXT,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    UNIQUE (store_id, day, number)
);
CREATE INDEX orders_store ON orders(store_id, state);
CREATE INDEX orders_change ON orders(change_id);

CREATE TABLE order_lines (
    order_id   TEXT NOT NULL REFERENCES orders(order_id),
    line_no    INTEGER NOT NULL,
    sku        TEXT NOT NULL,
    name       TEXT NOT NULL,
    qty        INTEGER NOT NULL CHECK (qty > 0),
    price_fen  INTEGER NOT NULL CHECK (price_fen >= 0),
    PRIMARY KEY (order_id, line_no)
) WITHOUT ROWID;
"""

# print.result events (docs/sync-protocol.md 2.4): the last result the store reported for each print job
# kind of an online order (a reprint's result replaces the one before it). seq is the store's seq of
# the event that set the row: the highest across kinds is the order's latest print result.
ORDER_PRINTS = """
CREATE TABLE order_prints (
    order_id     TEXT NOT NULL REFERENCES orders(order_id),
    kind         TEXT NOT NULL CHECK (kind IN ('order_ticket', 'pickup_slip')),
    job_key      TEXT NOT NULL,
    result       TEXT NOT NULL CHECK (result IN ('printed', 'uncertain', 'expired', 'failed',
                                                 'confirmed_printed', 'reprinted')),
    at           TEXT NOT NULL,        -- when the job reached this result, at the store
    printer      TEXT NOT NULL,
    attempts     INTEGER NOT NULL CHECK (attempts >= 0),
    error        TEXT,
    reprint      INTEGER NOT NULL CHECK (reprint IN (0, 1)),
    seq          INTEGER NOT NULL,
    event_id     TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    PRIMARY KEY (order_id, kind)
) WITHOUT ROWID;

-- the admin order listing pages in (created_at, order_id) order
CREATE INDEX orders_created ON orders(created_at, order_id);
"""

# Signed tokens (docs/tokens.md): the hub's Ed25519 signing keys, the pickup tokens and coupon serials
# it issued, what the stores reported of hand-overs (pickup.verified / pickup.reversed) and coupon
# redemptions (coupon.redeemed).
TOKENS = """
-- The keys the hub signs pickup and coupon tokens with. The newest key that is not revoked signs;
-- every key not revoked still verifies at the stores. private_key never leaves the hub.
CREATE TABLE signing_keys (
    kid                  TEXT PRIMARY KEY CHECK (length(kid) BETWEEN 1 AND 64),
    alg                  TEXT NOT NULL CHECK (alg = 'Ed25519'),
    private_key          BLOB NOT NULL CHECK (length(private_key) = 32),   -- the raw 32-byte seed
    public_key           TEXT NOT NULL,                                    -- base64 of the raw 32 bytes
    created_at           TEXT NOT NULL,
    published_change_id  TEXT NOT NULL,
    revoked_at           TEXT,
    revoke_reason        TEXT,
    revoked_change_id    TEXT
);

-- Pickup tokens issued (the plain pickup code is never stored: orders.pickup_code_sha256 only).
CREATE TABLE pickup_tokens (
    jti         TEXT PRIMARY KEY,
    order_id    TEXT NOT NULL REFERENCES orders(order_id),
    kid         TEXT NOT NULL REFERENCES signing_keys(kid),
    issued_at   TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX pickup_tokens_order ON pickup_tokens(order_id);

-- The last hand-over the store reported for an order (pickup.verified), and its reversal if any
-- (pickup.reversed); a hand-over after a reversal replaces the row.
CREATE TABLE order_pickups (
    order_id          TEXT PRIMARY KEY REFERENCES orders(order_id),
    verified_at       TEXT NOT NULL,        -- the store's time of the hand-over
    operator          TEXT NOT NULL,
    method            TEXT NOT NULL CHECK (method IN ('token', 'code')),
    device            TEXT NOT NULL,
    provisional       INTEGER NOT NULL CHECK (provisional IN (0, 1)),
    jti               TEXT,
    event_id          TEXT NOT NULL,
    received_at       TEXT NOT NULL,
    reversed_at       TEXT,                 -- the store's time of the reversal event
    reversed_by       TEXT,
    reverse_reason    TEXT,
    reverse_event_id  TEXT
) WITHOUT ROWID;

-- Coupon definitions (the coupon.defined payload, as published) and the stores they were published to
-- (store_ids: a JSON list, or NULL for every store).
CREATE TABLE coupons (
    coupon_id      TEXT PRIMARY KEY CHECK (length(coupon_id) BETWEEN 1 AND 64),
    definition     TEXT NOT NULL,
    store_ids      TEXT,
    created_at     TEXT NOT NULL,
    revoked_at     TEXT,
    revoke_reason  TEXT
);

-- Serials: one customer's copy of a coupon, and the token issued for it.
CREATE TABLE coupon_serials (
    serial      TEXT PRIMARY KEY CHECK (length(serial) BETWEEN 1 AND 64),
    coupon_id   TEXT NOT NULL REFERENCES coupons(coupon_id),
    store_id    TEXT REFERENCES stores(store_id),     -- NULL: valid at every store
    jti         TEXT NOT NULL UNIQUE,
    kid         TEXT NOT NULL REFERENCES signing_keys(kid),
    issued_at   TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX coupon_serials_coupon ON coupon_serials(coupon_id, issued_at);

-- Every coupon.redeemed a store reported. use_no counts the serial's uses; flags (JSON list) say what
-- was wrong but happened anyway: over_use (more uses than the definition allows: offline double use),
-- revoked (redeemed after the coupon was revoked), wrong_store (a store-bound serial used elsewhere).
CREATE TABLE coupon_redemptions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    serial        TEXT NOT NULL REFERENCES coupon_serials(serial),
    coupon_id     TEXT NOT NULL REFERENCES coupons(coupon_id),
    store_id      TEXT NOT NULL REFERENCES stores(store_id),
    use_no        INTEGER NOT NULL CHECK (use_no >= 1),
    sale_id       TEXT NOT NULL,
    discount_fen  INTEGER NOT NULL CHECK (discount_fen >= 0),
    jti           TEXT NOT NULL,
    provisional   INTEGER NOT NULL CHECK (provisional IN (0, 1)),
    redeemed_at   TEXT NOT NULL,        -- the event's created_at, at the store
    event_id      TEXT NOT NULL,
    received_at   TEXT NOT NULL,
    flags         TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX coupon_redemptions_serial ON coupon_redemptions(serial, id);
CREATE INDEX coupon_redemptions_coupon ON coupon_redemptions(coupon_id, id);
"""

# The last four digits of the customer's phone, all the store gets of it (order.created), so the cashier
# can find the order; and why a store handed an order over without its code (pickup.verified).
CASHIER = """
ALTER TABLE orders ADD COLUMN customer_phone_last4 TEXT;
ALTER TABLE order_pickups ADD COLUMN manual_reason TEXT;
"""

MEMBERS = """
-- The chain's members: the only place their name and whole phone number are kept. points and balance_fen
-- are the cloud's own figures; a certificate carries a snapshot of them (snapshot_at: when it was taken).
CREATE TABLE members (
    member_id    TEXT PRIMARY KEY CHECK (length(member_id) BETWEEN 1 AND 64),
    name         TEXT NOT NULL,
    phone        TEXT NOT NULL,
    level        TEXT NOT NULL,
    points       INTEGER NOT NULL CHECK (points >= 0),
    balance_fen  INTEGER NOT NULL CHECK (balance_fen >= 0),
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX members_phone ON members(phone);

-- Each certificate issued: which device key (the phone's), signed with which key, valid until when.
CREATE TABLE member_certificates (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    member_id   TEXT NOT NULL REFERENCES members(member_id),
    device_key  TEXT NOT NULL,
    kid         TEXT NOT NULL REFERENCES signing_keys(kid),
    issued_at   TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX member_certificates_member ON member_certificates(member_id, id);
"""

# -- members' points and stored value (issue 12 parts 3-5, docs/members.md "The cloud's ledgers"): one block ----
# A member's points and balance are the sums of their ledger's deltas; members.points and members.balance_fen
# stay what they were at creation (the `opening` rows below). activity_id is UNIQUE in each ledger: a sale's or
# a return's activity (sale:<id>, return:<id>) counts once whatever event carries it, even a resend under a
# new event id after an epoch change. flags (JSON list) mark what happened though it should not have:
# points_overspent / stored_value_overspent (spent offline past the balance). The PostgreSQL twin is
# hub/sql/postgresql/002_member_ledgers.sql.
MEMBER_LEDGERS = """
CREATE TABLE member_points_ledger (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    member_id      TEXT NOT NULL REFERENCES members(member_id),
    activity_id    TEXT NOT NULL UNIQUE,      -- sale:<id>, return:<id>, opening:<member>, adjust:<uuid>
    store_id       TEXT REFERENCES stores(store_id),     -- NULL: the chain's own row (opening, adjust)
    kind           TEXT NOT NULL CHECK (kind IN ('opening', 'sale', 'return', 'adjust')),
    delta          INTEGER NOT NULL,          -- earned - spent
    earned         INTEGER NOT NULL DEFAULT 0,
    spent          INTEGER NOT NULL DEFAULT 0,
    balance_after  INTEGER NOT NULL,
    hold_id        TEXT,
    offline        INTEGER NOT NULL DEFAULT 0 CHECK (offline IN (0, 1)),
    flags          TEXT NOT NULL DEFAULT '[]',
    reason         TEXT,
    at             TEXT NOT NULL,             -- when it happened (a sale's: the store's time)
    event_id       TEXT,                      -- the event that carried it first
    received_at    TEXT NOT NULL
);
CREATE INDEX member_points_ledger_member ON member_points_ledger(member_id, id);
CREATE INDEX member_points_ledger_flagged ON member_points_ledger(id) WHERE flags <> '[]';

CREATE TABLE member_value_ledger (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    member_id      TEXT NOT NULL REFERENCES members(member_id),
    activity_id    TEXT NOT NULL UNIQUE,      -- sale:<id>, return:<id>, opening:<member>, topup:<uuid>
    store_id       TEXT REFERENCES stores(store_id),
    kind           TEXT NOT NULL CHECK (kind IN ('opening', 'sale', 'return', 'topup')),
    delta          INTEGER NOT NULL,          -- fen: paid from the balance < 0, refunded or topped up > 0
    balance_after  INTEGER NOT NULL,
    hold_id        TEXT,
    offline        INTEGER NOT NULL DEFAULT 0 CHECK (offline IN (0, 1)),
    flags          TEXT NOT NULL DEFAULT '[]',
    reason         TEXT,
    at             TEXT NOT NULL,
    event_id       TEXT,
    received_at    TEXT NOT NULL
);
CREATE INDEX member_value_ledger_member ON member_value_ledger(member_id, id);
CREATE INDEX member_value_ledger_flagged ON member_value_ledger(id) WHERE flags <> '[]';

-- What a store asked to set aside before a sale (protocol 8.2). Open while neither released nor captured
-- and expires_at is ahead; an open hold counts against what the member can spend. points_left and
-- balance_fen_left are the answer given, given again to the same hold asked again.
CREATE TABLE member_holds (
    hold_id           TEXT PRIMARY KEY,
    store_id          TEXT NOT NULL REFERENCES stores(store_id),
    member_id         TEXT NOT NULL REFERENCES members(member_id),
    points            INTEGER NOT NULL CHECK (points >= 0),
    amount_fen        INTEGER NOT NULL CHECK (amount_fen >= 0),
    points_left       INTEGER NOT NULL,
    balance_fen_left  INTEGER NOT NULL,
    created_at        TEXT NOT NULL,
    expires_at        TEXT NOT NULL,
    released_at       TEXT,
    captured_at       TEXT,
    activity_id       TEXT                    -- the activity that captured it
);
CREATE INDEX member_holds_open ON member_holds(member_id, expires_at) WHERE released_at IS NULL AND
    captured_at IS NULL;

-- Each member programme published (member.program); the highest version is the current one.
CREATE TABLE member_programs (
    version       INTEGER PRIMARY KEY,
    program       TEXT NOT NULL,              -- the payload as published (JSON)
    change_id     TEXT NOT NULL,
    published_at  TEXT NOT NULL
);

-- the members created before the ledgers: their amounts become opening rows
INSERT INTO member_points_ledger (member_id, activity_id, kind, delta, balance_after, at, received_at)
    SELECT member_id, 'opening:' || member_id, 'opening', points, points, created_at, created_at FROM members
    WHERE points <> 0;
INSERT INTO member_value_ledger (member_id, activity_id, kind, delta, balance_after, at, received_at)
    SELECT member_id, 'opening:' || member_id, 'opening', balance_fen, balance_fen, created_at, created_at
    FROM members WHERE balance_fen <> 0;
"""

# The member an online order was handed over to, when the cashier's screen carried one (pickup.verified's
# optional member_id, issue 12 part 5). The PostgreSQL twin is hub/sql/postgresql/003_pickup_member.sql.
PICKUP_MEMBER = """
ALTER TABLE order_pickups ADD COLUMN member_id TEXT;
"""

HUB_MIGRATIONS: list[tuple[str, str]] = [
    ("hub: stores, catalog, events, balances, changes, orders", INITIAL),
    ("hub: print results of online orders", ORDER_PRINTS),
    ("hub: signing keys, pickup tokens, hand-overs, coupons", TOKENS),
    ("hub: customers' phone last four digits, hand-overs without the code", CASHIER),
    ("hub: members and their phones' certificates", MEMBERS),
    ("hub: members' points and stored-value ledgers, holds, programmes", MEMBER_LEDGERS),
    ("hub: the member a hand-over was made to", PICKUP_MEMBER),
]
