-- Rule trigger state across bridge restarts (issue #7).
--
-- The rules worker keeps each rule's trigger state in memory and saves what
-- must survive a restart (armed or not, a hold in progress, the last motion,
-- the schedule occurrence used up) every few seconds when it changed. A row
-- belongs to one version of its rule: editing a rule starts it fresh, so the
-- worker uses a row only while rule_version equals the rule's updated_at.

CREATE TABLE rule_trigger_state (
    rule_id       text PRIMARY KEY REFERENCES rules (id) ON DELETE CASCADE,
    rule_version  timestamptz NOT NULL,
    state         jsonb NOT NULL,
    saved_at      timestamptz NOT NULL DEFAULT now()
);
