-- Energy history (issue #15): the scale a smart meter reported, as it changed.
--
-- Energy per slot is computed from the cumulative counters kept in
-- `readings` (`energy` = EPC 0xE0, `energy_sold` = 0xE3). A count becomes
-- kWh through the coefficient (0xD3) and unit (0xE1), and the counters wrap
-- at 10^effective digits (0xD7); `smart_meter_properties` keeps only their
-- newest values, so every change is logged here with the time of the report
-- that carried it. Reports repeat these values each time; only a change (or
-- a first value, also after a change of hands emptied the properties) is
-- written, so the log stays a few rows per meter.

CREATE TABLE meter_scale_log (
    id          bigserial PRIMARY KEY,
    device_id   text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    epc         integer NOT NULL CHECK (epc IN (211, 215, 225)),
    val         text NOT NULL,
    at          timestamptz NOT NULL
);

CREATE INDEX meter_scale_log_device_at_idx ON meter_scale_log (device_id, at);

CREATE FUNCTION meter_scale_logged() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO meter_scale_log (device_id, epc, val, at)
    VALUES (NEW.device_id, NEW.epc, NEW.val, NEW.updated_at);
    RETURN NULL;
END
$$;

CREATE TRIGGER meter_scale_reported
    AFTER INSERT ON smart_meter_properties
    FOR EACH ROW
    WHEN (NEW.epc IN (211, 215, 225))
    EXECUTE FUNCTION meter_scale_logged();

CREATE TRIGGER meter_scale_changed
    AFTER UPDATE ON smart_meter_properties
    FOR EACH ROW
    WHEN (NEW.epc IN (211, 215, 225) AND OLD.val IS DISTINCT FROM NEW.val)
    EXECUTE FUNCTION meter_scale_logged();

-- Meters that reported before this migration: their current scale, from the
-- time it was last reported (earlier readings use it too, see energy/store.rs).
INSERT INTO meter_scale_log (device_id, epc, val, at)
SELECT device_id, epc, val, updated_at FROM smart_meter_properties
WHERE epc IN (211, 215, 225)
ORDER BY updated_at;
