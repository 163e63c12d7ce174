-- 0002: accounts and their API keys. Orders, Idempotency-Keys and WebSocket
-- connections belong to an account; a per-key counter backs the rate limit.

CREATE TABLE accounts (
    id         uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 100),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- A key (oe_live_<prefix>_<secret>) is shown once and never stored: only its SHA-256.
-- The secret is 256 random bits, so an unsalted fast hash cannot be brute-forced, and
-- a request's key is found by its hash alone. `prefix` is the visible handle that
-- `order-engine keys list` shows and `keys revoke` takes.
CREATE TABLE api_keys (
    prefix       text PRIMARY KEY CHECK (prefix ~ '^[0-9a-f]{8}$'),
    key_hash     bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    account_id   uuid NOT NULL REFERENCES accounts (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- Refreshed at most once a minute, so reading a key is not a write per request.
    last_used_at timestamptz,
    -- A revoked key stays listed (and its prefix taken), but authenticates nothing.
    revoked_at   timestamptz
);

-- Orders placed before accounts existed belong to the account "legacy", created only
-- when there are such orders; `order-engine keys create NAME --account legacy` makes a
-- key that can read them. The constant default makes adding the NOT NULL column a
-- catalogue change (no table rewrite); it is dropped at once, so new orders must say
-- whose they are.
INSERT INTO accounts (id, name)
SELECT '00000000-0000-0000-0000-000000000000', 'legacy'
 WHERE EXISTS (SELECT 1 FROM orders);

ALTER TABLE orders
    ADD COLUMN account_id uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000'
        REFERENCES accounts (id);
ALTER TABLE orders ALTER COLUMN account_id DROP DEFAULT;

-- An Idempotency-Key is the client's name for a request, so it is scoped per account:
-- two accounts may use the same key independently.
ALTER TABLE idempotency_keys
    ADD COLUMN account_id uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000'
        REFERENCES accounts (id);
ALTER TABLE idempotency_keys ALTER COLUMN account_id DROP DEFAULT;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (account_id, key);

-- $connect authenticates (as an API Gateway authorizer would) and records who the
-- connection is; $default messages act for that account and key. Nullable: rows from
-- before this migration, and connections the notifier recreates, belong to no one and
-- may not subscribe or place orders.
ALTER TABLE connections
    ADD COLUMN account_id uuid REFERENCES accounts (id),
    ADD COLUMN key_prefix text REFERENCES api_keys (prefix);
-- Revoking a key forgets its connections.
CREATE INDEX connections_by_key ON connections (key_prefix);

-- The rate limit's fixed-window counter, one row per key: the upsert that counts a
-- request also starts a new window when the stored one has ended, so the table never
-- grows beyond one row per key and needs no cleanup.
CREATE TABLE rate_limits (
    key_prefix   text PRIMARY KEY REFERENCES api_keys (prefix),
    window_start timestamptz NOT NULL,
    hits         integer NOT NULL CHECK (hits >= 1)
);
