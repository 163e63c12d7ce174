-- 0006: how many subscriptions were ever written for each order.

-- Every subscription bumps it in the statement that writes it, so a subscribe writes the
-- order's row and waits for a transition in flight on it. A transition reads what the
-- order's subscribers lack in its own statement, from the statement's snapshot; when
-- the count it wrote through differs from the count that snapshot holds, a subscription
-- committed after the snapshot, and the transition's caller reads the subscribers again
-- (store.py, `_SUBSCRIBERS`). Only ever compared, never shown.
ALTER TABLE orders ADD COLUMN subscribes integer NOT NULL DEFAULT 0 CHECK (subscribes >= 0);
