-- The member a hand-over was made to (pickup.verified's optional member_id): the PostgreSQL twin of
-- hub/schema.py's PICKUP_MEMBER migration.
ALTER TABLE order_pickups ADD COLUMN member_id TEXT;
