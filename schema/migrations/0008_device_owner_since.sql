-- What a device reported for one owner stays that owner's (issue #5).
--
-- A device that changes hands — moved to another account, or released and
-- registered again — must not show its new owner what it measured for the
-- previous one. `owner_since` is when the current ownership began: history
-- (`/v1/devices/{id}/readings`) starts there, and the latest values kept per
-- device (newest_events, smart-meter properties) are dropped at the change.
-- Commands the previous owner queued and the device has not confirmed fail
-- ("the device left the account"): they must never reach the new owner's
-- device. Devices registered before this migration keep their whole history
-- ('-infinity'); a device's first owner sees everything it ever sent.

ALTER TABLE devices ADD COLUMN owner_since timestamptz NOT NULL DEFAULT '-infinity';

CREATE FUNCTION devices_owner_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.user_id IS NOT NULL OR OLD.owner_since <> '-infinity' THEN
        NEW.owner_since := now();
    END IF;
    DELETE FROM device_newest_events WHERE device_id = NEW.id;
    DELETE FROM smart_meter_properties WHERE device_id = NEW.id;
    UPDATE commands
       SET status = 'failed', error = 'the device left the account',
           completed_at = now(), updated_at = now()
     WHERE device_id = NEW.id AND status IN ('queued', 'sent')
       AND user_id IS DISTINCT FROM NEW.user_id;
    RETURN NEW;
END
$$;

CREATE TRIGGER devices_owner_changed
    BEFORE UPDATE OF user_id ON devices
    FOR EACH ROW
    WHEN (OLD.user_id IS DISTINCT FROM NEW.user_id)
    EXECUTE FUNCTION devices_owner_changed();
