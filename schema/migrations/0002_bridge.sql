-- The bridge's system of record: Nature-style profile fields, appliances and
-- their IR signals, durable commands, the newest sensor values per device,
-- smart-meter properties, and every reading in a time-partitioned table.

ALTER TABLE users
    ADD COLUMN temp_unit      text NOT NULL DEFAULT 'c' CHECK (temp_unit IN ('c', 'f')),
    ADD COLUMN distance_unit  text NOT NULL DEFAULT 'metric'
                              CHECK (distance_unit IN ('metric', 'imperial')),
    ADD COLUMN country        text NOT NULL DEFAULT 'JP';

CREATE TABLE appliances (
    id          text PRIMARY KEY,
    user_id     text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_id   text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    type        text NOT NULL CHECK (type IN ('AC', 'TV', 'LIGHT', 'IR', 'EL_SMART_METER')),
    nickname    text NOT NULL,
    image       text NOT NULL DEFAULT '',
    -- A model of the built-in appliance catalog; NULL for learned-IR appliances.
    model_id    text,
    position    integer NOT NULL DEFAULT 0,
    -- Confirmed state: AC settings, or TV/LIGHT state. Changes only on a device ack.
    settings    jsonb,
    state       jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX appliances_user_idx ON appliances (user_id, position);
CREATE INDEX appliances_device_idx ON appliances (device_id);

CREATE TABLE signals (
    id            text PRIMARY KEY,
    appliance_id  text NOT NULL REFERENCES appliances (id) ON DELETE CASCADE,
    name          text NOT NULL,
    image         text NOT NULL DEFAULT '',
    -- {"format": "us", "freq": 38, "data": [...]}
    message       jsonb NOT NULL,
    position      integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX signals_appliance_idx ON signals (appliance_id, position);

-- Every call that reaches a device writes one of these first.
-- queued -> sent -> acked | failed, or expired once expires_at passes undelivered.
CREATE TABLE commands (
    id               uuid PRIMARY KEY,
    device_id        text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    user_id          text REFERENCES users (id) ON DELETE SET NULL,
    appliance_id     text REFERENCES appliances (id) ON DELETE SET NULL,
    kind             text NOT NULL CHECK (kind IN ('ir', 'aircon', 'tv', 'light')),
    payload          jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'sent', 'acked', 'failed', 'expired')),
    idempotency_key  text,
    node_id          text,
    attempts         integer NOT NULL DEFAULT 0,
    result           jsonb,
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    completed_at     timestamptz,
    expires_at       timestamptz NOT NULL
);
CREATE UNIQUE INDEX commands_idempotency_idx ON commands (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX commands_pending_idx ON commands (device_id, created_at)
    WHERE status IN ('queued', 'sent');
CREATE INDEX commands_expiry_idx ON commands (expires_at)
    WHERE status IN ('queued', 'sent');

-- Nature's newest_events: one row per device and sensor (te, hu, il, mo).
CREATE TABLE device_newest_events (
    device_id   text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    sensor      text NOT NULL CHECK (sensor IN ('te', 'hu', 'il', 'mo')),
    val         double precision NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (device_id, sensor)
);

-- The newest value of each ECHONET Lite property a smart meter reported.
CREATE TABLE smart_meter_properties (
    device_id   text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    epc         integer NOT NULL CHECK (epc BETWEEN 0 AND 255),
    name        text NOT NULL,
    val         text NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (device_id, epc)
);

-- Every reading, partitioned by month. No foreign key: ingest speed matters
-- more than referential checks on an append-only log.
CREATE TABLE readings (
    device_id    text NOT NULL,
    sensor       text NOT NULL,
    val          double precision NOT NULL,
    at           timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (at);
CREATE INDEX readings_device_sensor_at_idx ON readings (device_id, sensor, at);
CREATE TABLE readings_default PARTITION OF readings DEFAULT;

-- Creates the monthly partition holding `day` if it does not exist yet.
CREATE FUNCTION kumo_ensure_readings_partition(day timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    month_start timestamptz := date_trunc('month', day AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    part text := 'readings_' || to_char(month_start AT TIME ZONE 'UTC', 'YYYYMM');
BEGIN
    IF to_regclass(part) IS NULL THEN
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF readings FOR VALUES FROM (%L) TO (%L)',
            part, month_start, month_start + interval '1 month');
    END IF;
END
$$;

SELECT kumo_ensure_readings_partition(now());
SELECT kumo_ensure_readings_partition(now() + interval '1 month');
