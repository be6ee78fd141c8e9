-- Nature's `newest_events` are read from `readings` (the newest row per device
-- and sensor since the current ownership began, by the readings index), not
-- kept in a table of their own. Keeping that table cost an upsert of every
-- batch of readings — at 12,500 readings/s the largest single item of the
-- database's work in the fleet run — for a value the index answers in a few
-- page reads when a device list is asked for.

CREATE OR REPLACE FUNCTION devices_owner_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.user_id IS NOT NULL OR OLD.owner_since <> '-infinity' THEN
        NEW.owner_since := now();
    END IF;
    DELETE FROM smart_meter_properties WHERE device_id = NEW.id;
    UPDATE commands
       SET status = 'failed', error = 'the device left the account',
           completed_at = now(), updated_at = now()
     WHERE device_id = NEW.id AND status IN ('queued', 'sent')
       AND user_id IS DISTINCT FROM NEW.user_id;
    RETURN NEW;
END
$$;

DROP TABLE device_newest_events;
