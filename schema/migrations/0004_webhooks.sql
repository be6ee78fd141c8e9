-- Outgoing webhooks (issue #7): account webhooks fed by the live event stream,
-- an account-level signing secret for rule actions that post to a bare URL,
-- and the durable delivery log the webhook worker drains.

CREATE TABLE webhooks (
    id                    uuid PRIMARY KEY,
    user_id               text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url                   text NOT NULL CHECK (length(url) <= 2048),
    -- Needed in clear to sign deliveries; shown to the user once, at creation.
    secret                text NOT NULL,
    -- Event kinds delivered; empty = every kind except `reading`.
    events                text[] NOT NULL DEFAULT '{}',
    enabled               boolean NOT NULL DEFAULT true,
    consecutive_failures  integer NOT NULL DEFAULT 0,
    disabled_at           timestamptz,
    disabled_reason       text,
    created_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_user_idx ON webhooks (user_id);

-- Signs rule-action deliveries, which target a URL and no webhook row.
CREATE TABLE webhook_secrets (
    user_id     text PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_deliveries (
    id                uuid PRIMARY KEY,
    -- NULL for rule actions, which post to a bare URL.
    webhook_id        uuid REFERENCES webhooks (id) ON DELETE CASCADE,
    user_id           text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    rule_id           text,
    url               text NOT NULL,
    kind              text NOT NULL,
    body              jsonb NOT NULL,
    -- pending: waiting for its next attempt; delivered: a 2xx arrived;
    -- failed: the receiver rejected it (4xx) or the target is not allowed;
    -- gave_up: retries used up, or its webhook was disabled meanwhile.
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'delivered', 'failed', 'gave_up')),
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    last_status_code  integer,
    last_error        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    delivered_at      timestamptz
);
CREATE INDEX webhook_deliveries_due_idx
    ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_webhook_idx
    ON webhook_deliveries (webhook_id, created_at DESC);
-- Retention: finished deliveries older than webhooks.retention_days go.
CREATE INDEX webhook_deliveries_finished_idx
    ON webhook_deliveries (created_at) WHERE status <> 'pending';

-- Every attempt's outcome, for `GET /v1/webhooks/{id}/deliveries`.
CREATE TABLE webhook_attempts (
    delivery_id   uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt       integer NOT NULL,
    at            timestamptz NOT NULL DEFAULT now(),
    status_code   integer,
    error         text,
    latency_ms    integer NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
