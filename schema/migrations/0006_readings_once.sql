-- A reading is stored once (issue #5).
--
-- QoS 1 delivers at least once: after a bridge restart the broker sends again
-- what the old bridge had stored but not yet acknowledged, and a device that
-- lost its connection publishes again what the node had not acknowledged. A
-- repeat is the same device, sensor, measurement time and value; the unique
-- index lets the writer store it once (ON CONFLICT DO NOTHING). Two different
-- values stamped with the same millisecond (a coarse device clock) are both
-- kept. The index replaces the plain one on (device_id, sensor, at): history
-- queries use its prefix and ingest maintains no extra index.

-- Repeats stored before this migration: keep the first received.
DELETE FROM readings r
USING (
    SELECT tableoid, ctid,
           row_number() OVER (PARTITION BY device_id, sensor, at, val ORDER BY received_at) AS n
    FROM readings
) d
WHERE d.n > 1 AND r.tableoid = d.tableoid AND r.ctid = d.ctid;

DROP INDEX readings_device_sensor_at_idx;
CREATE UNIQUE INDEX readings_device_sensor_at_val_key ON readings (device_id, sensor, at, val);
