-- 0003: cancelled orders.

-- A status is one of order_engine.orders.Status: 'cancelled' joins them (terminal, for
-- an order its owner cancelled before its transaction was built).
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('pending', 'routing', 'building', 'submitted', 'confirmed', 'failed',
                      'cancelled'));
ALTER TABLE order_events DROP CONSTRAINT order_events_from_status_check;
ALTER TABLE order_events ADD CONSTRAINT order_events_from_status_check
    CHECK (from_status IN ('pending', 'routing', 'building', 'submitted', 'confirmed',
                           'failed', 'cancelled'));
ALTER TABLE order_events DROP CONSTRAINT order_events_to_status_check;
ALTER TABLE order_events ADD CONSTRAINT order_events_to_status_check
    CHECK (to_status IN ('pending', 'routing', 'building', 'submitted', 'confirmed',
                         'failed', 'cancelled'));

-- The sweeper's index of live orders leaves every terminal status out, cancelled too
-- (outbox.OutboxStore.claim_stuck spells the same predicate).
DROP INDEX orders_active_by_updated_at;
CREATE INDEX orders_active_by_updated_at ON orders (updated_at)
    WHERE status NOT IN ('confirmed', 'failed', 'cancelled');
