-- Automation rules (`/v1/rules`) and the log of every time one fired.
-- The rule document is stored exactly as accepted; `enabled` and `name` are
-- copied out of it so listings and the worker's start-up load need no JSON.

CREATE TABLE rules (
    id          text PRIMARY KEY,
    user_id     text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        text NOT NULL,
    enabled     boolean NOT NULL DEFAULT true,
    definition  jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rules_user_idx ON rules (user_id, created_at);

-- One row per firing: why it fired and what each action did.
-- actions: [{"kind": "command", "command_id": "...", "error": null}, ...]
CREATE TABLE rule_executions (
    id        bigserial PRIMARY KEY,
    rule_id   text NOT NULL REFERENCES rules (id) ON DELETE CASCADE,
    user_id   text NOT NULL,
    fired_at  timestamptz NOT NULL,
    cause     jsonb NOT NULL,
    outcome   text NOT NULL CHECK (outcome IN ('ok', 'failed', 'partial')),
    actions   jsonb NOT NULL
);
CREATE INDEX rule_executions_rule_idx ON rule_executions (rule_id, fired_at DESC);
