-- How an upload's slice starts (hub/events.py): its store's row locked, then the ids among the
-- slice's events that the store already has applied, in one round trip instead of two.
-- A function, not one statement: in READ COMMITTED a statement reads the data as of its own start,
-- so a query beside the lock would miss what the upload that held the lock before had committed
-- (a retry sent beside its original would find its events' seqs taken instead of applied). A
-- VOLATILE function's statements each read afresh: the second one runs once the lock is held.
CREATE FUNCTION hub_slice_start(p_store TEXT, p_ids TEXT[], OUT next_seq BIGINT, OUT applied TEXT[])
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- NO KEY UPDATE, not UPDATE: rows that reference the store (a member's hold, say) only take a KEY
    -- SHARE lock on it, and must not wait for the slice while it waits for them (a deadlock).
    SELECT s.next_seq INTO next_seq FROM stores s WHERE s.store_id = p_store FOR NO KEY UPDATE;
    SELECT coalesce(array_agg(DISTINCT e.event_id), '{}') INTO applied FROM events e
        WHERE e.store_id = p_store AND e.status = 'applied' AND e.event_id = ANY(p_ids);
END $$;
