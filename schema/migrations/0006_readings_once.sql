-- A reading is stored once (issue #5).
--
-- A reading is identified by its device, sensor and measurement time. QoS 1
-- delivers at least once: after a bridge restart the broker sends again what
-- the old bridge had stored but not yet acknowledged, and a device that lost
-- its connection publishes again what the node had not acknowledged. The
-- unique index lets the writer store such a repeat once (ON CONFLICT DO
-- NOTHING); it replaces the plain index on the same columns, so history
-- queries keep it and ingest maintains no extra index.

-- Repeats stored before this migration: keep the first received.
DELETE FROM readings r
USING (
    SELECT tableoid, ctid,
           row_number() OVER (PARTITION BY device_id, sensor, at ORDER BY received_at) AS n
    FROM readings
) d
WHERE d.n > 1 AND r.tableoid = d.tableoid AND r.ctid = d.ctid;

DROP INDEX readings_device_sensor_at_idx;
CREATE UNIQUE INDEX readings_device_sensor_at_key ON readings (device_id, sensor, at);
