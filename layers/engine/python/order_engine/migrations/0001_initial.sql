-- 0001: the order engine's schema.
--
-- Applied by order_engine.migrate in one transaction, together with its row in
-- schema_migrations (a table the runner creates itself, since it must read it before
-- any migration has run).

-- Every order is a state machine; `status` changes only through a conditional UPDATE
-- (WHERE id = … AND status = <from>), which makes duplicate messages harmless.
CREATE TABLE orders (
    id             uuid PRIMARY KEY,
    status         text NOT NULL
                   CHECK (status IN ('pending', 'routing', 'building', 'submitted',
                                     'confirmed', 'failed')),
    -- Bumped by every applied transition: an optimistic-lock token for readers.
    version        integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    type           text NOT NULL,
    token_in       text NOT NULL,
    token_out      text NOT NULL,
    amount         numeric NOT NULL CHECK (amount > 0),
    slippage_bps   integer NOT NULL CHECK (slippage_bps BETWEEN 0 AND 10000),
    -- The canonical request (OrderRequest.to_dict()), as the client's intent.
    request        jsonb NOT NULL,
    -- The routing decision: both quotes, the chosen venue and why.
    route          jsonb,
    -- The signed transaction, built once: resubmitting it can never swap twice.
    transaction    jsonb,
    -- A signature names one transaction, so no two orders may share it.
    tx_signature   text UNIQUE,
    amount_out     numeric,
    executed_price numeric,
    -- Failed attempts of the current step; reset when a transition applies.
    attempts       integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error     text,
    failure_reason text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    -- A failed order always says why (the reason is persisted and pushed to clients).
    CONSTRAINT orders_failed_has_reason CHECK (status <> 'failed' OR failure_reason IS NOT NULL)
);

-- The sweeper's question: which live orders made no progress lately? Terminal orders,
-- the vast majority over time, stay out of the index.
CREATE INDEX orders_active_by_updated_at ON orders (updated_at)
    WHERE status NOT IN ('confirmed', 'failed');

-- One row per applied transition, written in the transition's transaction.
CREATE TABLE order_events (
    order_id    uuid NOT NULL REFERENCES orders (id),
    seq         integer NOT NULL CHECK (seq >= 1),
    from_status text CHECK (from_status IN ('pending', 'routing', 'building', 'submitted',
                                            'confirmed', 'failed')),
    to_status   text NOT NULL
                CHECK (to_status IN ('pending', 'routing', 'building', 'submitted',
                                     'confirmed', 'failed')),
    data        jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, seq),
    -- The graph has no cycles, so each status is entered at most once per order.
    UNIQUE (order_id, to_status),
    -- Only the first event (creation, seq 1) comes from nowhere.
    CHECK ((seq = 1) = (from_status IS NULL))
);

-- Transactional outbox: a message commits with the state change that makes it
-- necessary, is published right after commit, and a relay publishes leftovers.
CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    order_id   uuid NOT NULL REFERENCES orders (id),
    topic      text NOT NULL,
    payload    jsonb NOT NULL,
    -- Writing the same message twice (a replayed transition) is a no-op.
    dedupe_key text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz,
    attempts   integer NOT NULL DEFAULT 0 CHECK (attempts >= 0)
);

-- Unsent rows are few and short-lived; both indexes stay tiny.
CREATE INDEX outbox_unsent_by_created_at ON outbox (created_at) WHERE sent_at IS NULL;
CREATE INDEX outbox_unsent_by_order ON outbox (order_id) WHERE sent_at IS NULL;

-- WebSocket connections (API Gateway connection ids) and what each one follows.
CREATE TABLE connections (
    connection_id text PRIMARY KEY,
    connected_at  timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    metadata      jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE subscriptions (
    connection_id text NOT NULL REFERENCES connections (connection_id) ON DELETE CASCADE,
    order_id      uuid NOT NULL REFERENCES orders (id),
    -- The highest event seq already delivered to this connection: the notifier sends
    -- only what comes after it, in order.
    last_seq      integer NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connection_id, order_id)
);

-- The notifier's question: who follows this order?
CREATE INDEX subscriptions_by_order ON subscriptions (order_id);

-- Idempotency-Key of POST /api/orders/execute. The key is inserted before its order
-- in the same transaction, so the foreign key is checked at commit.
CREATE TABLE idempotency_keys (
    key         text PRIMARY KEY,
    fingerprint text NOT NULL,
    order_id    uuid NOT NULL UNIQUE
                REFERENCES orders (id) DEFERRABLE INITIALLY DEFERRED,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The simulated chain's memory of signed transactions: a venue that sees a signature
-- again answers with the first result, as Solana does. No foreign key: the chain is
-- not part of our database, it only lives in it for the simulation.
CREATE TABLE dex_submissions (
    signature    text PRIMARY KEY,
    -- At most one swap per order, whatever the signature.
    order_id     uuid NOT NULL UNIQUE,
    venue        text NOT NULL,
    payload      jsonb NOT NULL DEFAULT '{}',
    submitted_at timestamptz NOT NULL DEFAULT now()
);
