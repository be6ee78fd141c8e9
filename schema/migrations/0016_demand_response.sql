-- Demand response (#15): aggregators (their own principals, not accounts),
-- their programs, the appliances users enrol with their comfort limits,
-- events, and one dispatch row per (event, enrolled appliance) that the
-- bridge's worker moves from pending to dispatched to restored (or skipped,
-- with a reason). Commands themselves are ordinary rows of `commands`.

CREATE TABLE aggregators (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Only a SHA-256 of an aggregator token is stored, as for access_tokens; an
-- account's token can never be one of these.
CREATE TABLE aggregator_tokens (
    id             uuid PRIMARY KEY,
    aggregator_id  text NOT NULL REFERENCES aggregators (id) ON DELETE CASCADE,
    token_hash     bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz
);

CREATE TABLE dr_programs (
    id             text PRIMARY KEY,
    -- A number for the events' exclusion constraint (ranges of it compare
    -- with gist's built-in range operators; no btree_gist needed).
    no             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    aggregator_id  text NOT NULL REFERENCES aggregators (id) ON DELETE CASCADE,
    name           text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- One appliance of a user in a program, with the limits of their consent.
-- Opting out sets opted_out_at (the row stays: past events still name it).
CREATE TABLE dr_enrolments (
    program_id           text NOT NULL REFERENCES dr_programs (id) ON DELETE CASCADE,
    appliance_id         text NOT NULL REFERENCES appliances (id) ON DELETE CASCADE,
    user_id              text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    max_setpoint_change  real NOT NULL CHECK (max_setpoint_change BETWEEN 0 AND 10),
    allow_off            boolean NOT NULL,
    -- Local hours (0–23) at utc_offset_minutes in which nothing may be done.
    excluded_hours       smallint[] NOT NULL DEFAULT '{}',
    utc_offset_minutes   integer NOT NULL CHECK (utc_offset_minutes BETWEEN -1440 AND 1440),
    enrolled_at          timestamptz NOT NULL DEFAULT now(),
    opted_out_at         timestamptz,
    PRIMARY KEY (program_id, appliance_id)
);
CREATE INDEX dr_enrolments_user_idx ON dr_enrolments (user_id);

CREATE TABLE dr_events (
    id               text PRIMARY KEY,
    program_id       text NOT NULL REFERENCES dr_programs (id) ON DELETE CASCADE,
    program_no       bigint NOT NULL REFERENCES dr_programs (no) ON DELETE CASCADE,
    during           tstzrange NOT NULL CHECK (NOT isempty(during) AND lower_inc(during)
                                               AND NOT upper_inc(during)),
    -- 'setpoint': raise a cooling unit's setpoint (lower a heating one's) by
    -- setpoint_change °C; 'off': turn units off; 'kw': reduce by reduction_kw
    -- in total, turned into the setpoint_change every unit gets.
    target           text NOT NULL CHECK (target IN ('setpoint', 'off', 'kw')),
    setpoint_change  real CHECK (setpoint_change > 0 AND setpoint_change <= 10),
    reduction_kw     real CHECK (reduction_kw > 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((target = 'off') = (setpoint_change IS NULL)),
    CHECK ((target = 'kw') = (reduction_kw IS NOT NULL)),
    EXCLUDE USING gist (int8range(program_no, program_no, '[]') WITH =, during WITH &&)
);

-- What happens to one enrolled appliance in one event.
CREATE TABLE dr_dispatches (
    event_id            text NOT NULL REFERENCES dr_events (id) ON DELETE CASCADE,
    program_id          text NOT NULL,
    appliance_id        text NOT NULL,
    user_id             text NOT NULL,
    device_id           text NOT NULL,
    home_id             text,
    dispatch_at         timestamptz NOT NULL,
    restore_at          timestamptz NOT NULL,
    state               text NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'dispatched', 'skipped', 'restored',
                                         'restore_skipped')),
    reason              text,
    -- AC settings before the event, and those the event's command leads to.
    previous            jsonb,
    expected            jsonb,
    command_id          uuid,
    restore_command_id  uuid,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, appliance_id),
    FOREIGN KEY (program_id, appliance_id) REFERENCES dr_enrolments (program_id, appliance_id)
        ON DELETE CASCADE
);
CREATE INDEX dr_dispatches_due_idx ON dr_dispatches (dispatch_at) WHERE state = 'pending';
CREATE INDEX dr_dispatches_restore_idx ON dr_dispatches (restore_at) WHERE state = 'dispatched';
CREATE INDEX dr_dispatches_user_idx ON dr_dispatches (user_id);
