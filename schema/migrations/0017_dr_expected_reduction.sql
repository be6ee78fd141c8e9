-- A kW target is turned into one setpoint change for every unit, each unit
-- clamped to its user's limit (none in an excluded hour), so the units that
-- may move further make up for those that may not. What that change is
-- expected to give is kept with the event: the target, or less when even the
-- largest change the consents allow falls short (issue #15).
ALTER TABLE dr_events ADD COLUMN expected_reduction_kw real
    CHECK (expected_reduction_kw >= 0 AND (target = 'kw' OR expected_reduction_kw IS NULL));
