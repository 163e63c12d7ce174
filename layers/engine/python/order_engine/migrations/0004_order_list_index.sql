-- 0004: the index of an account's order list.

-- GET /api/orders: one account's orders, newest first, by keyset (created_at, id), read
-- backwards from the cursor; the status and type filters are checked on the rows in
-- that order, so a page reads about its own rows and stops.
CREATE INDEX orders_by_account_created ON orders (account_id, created_at, id);
