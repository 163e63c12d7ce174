-- 0005: limit orders. A limit order waits in `watching` until the price watch finds
-- its limit met (watch.py), and ends `expired` if its price never comes; `cancelled`
-- ends an order cancelled before its transaction was built. Every status CHECK lists
-- all of them, so a later migration that adds one must list these too.

ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('pending', 'watching', 'routing', 'building', 'submitted',
                      'confirmed', 'failed', 'expired', 'cancelled'));
ALTER TABLE order_events DROP CONSTRAINT IF EXISTS order_events_from_status_check;
ALTER TABLE order_events ADD CONSTRAINT order_events_from_status_check
    CHECK (from_status IN ('pending', 'watching', 'routing', 'building', 'submitted',
                           'confirmed', 'failed', 'expired', 'cancelled'));
ALTER TABLE order_events DROP CONSTRAINT IF EXISTS order_events_to_status_check;
ALTER TABLE order_events ADD CONSTRAINT order_events_to_status_check
    CHECK (to_status IN ('pending', 'watching', 'routing', 'building', 'submitted',
                         'confirmed', 'failed', 'expired', 'cancelled'));

-- The least tokenOut per tokenIn the order accepts, net of fees, and when it stops
-- waiting; both NULL for a market order, both set for a limit order.
ALTER TABLE orders ADD COLUMN limit_price numeric CHECK (limit_price > 0);
ALTER TABLE orders ADD COLUMN expires_at timestamptz;
ALTER TABLE orders ADD CONSTRAINT orders_limit_has_price_and_expiry
    CHECK ((type = 'limit') = (limit_price IS NOT NULL AND expires_at IS NOT NULL));

-- The watch's questions, each tick: which pairs have waiting orders, which of them
-- does this price meet, which have expired. Only waiting orders are in the index.
CREATE INDEX orders_watching_by_pair ON orders (token_in, token_out, limit_price)
    WHERE status = 'watching';

-- Waiting is not being stuck: the sweeper's index leaves out watching orders, and
-- the statuses that are terminal now.
DROP INDEX IF EXISTS orders_active_by_updated_at;
CREATE INDEX orders_active_by_updated_at ON orders (updated_at)
    WHERE status NOT IN ('confirmed', 'failed', 'expired', 'cancelled', 'watching');

-- The watch's clock: one row, whose tick only ever moves one step on. A tick message
-- claims its number with a conditional UPDATE (tick = n - 1 -> n), so a duplicate
-- delivery, or a second chain seeded beside a live one, claims nothing and stops:
-- exactly one chain of ticks survives.
CREATE TABLE watch_clock (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id),
    tick      bigint NOT NULL DEFAULT 0 CHECK (tick >= 0),
    ticked_at timestamptz NOT NULL DEFAULT 'epoch'
);
INSERT INTO watch_clock DEFAULT VALUES;

-- The best net price the watch's last quote of each waiting pair found, so a client
-- can show a waiting order's price against its limit.
CREATE TABLE watch_prices (
    token_in  text NOT NULL,
    token_out text NOT NULL,
    price     numeric NOT NULL CHECK (price > 0),
    venue     text NOT NULL,
    tick      bigint NOT NULL,
    quoted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (token_in, token_out)
);
