-- Device ownership changes for the broker nodes (issue #7, integrations).
--
-- The bridge announces which account owns each device on the MQTT topic
-- kumo/ownership/devices/{id}; nodes keep that map in memory to scope
-- third-party integrations without a database round trip per message. This
-- log tells the bridge what changed: one row per device whose owner changed,
-- written at commit time in commit order. A row names the device only; the
-- reader looks up its current owner, so reading a row twice is harmless.

CREATE SEQUENCE device_ownership_seq;

CREATE TABLE device_ownership_log (
    seq        bigint PRIMARY KEY,
    device_id  text NOT NULL,
    logged_at  timestamptz NOT NULL DEFAULT now()
);
-- The bridge prunes old rows by time.
CREATE INDEX device_ownership_log_logged_at_idx ON device_ownership_log (logged_at);

CREATE FUNCTION log_device_ownership() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Runs at commit (deferred constraint trigger). The advisory lock is held
    -- until this transaction is visible, so the next writer draws its sequence
    -- number only after: sequence order is commit order, and a reader that
    -- sees row N has seen every committed row below N. A cursor never skips.
    PERFORM pg_advisory_xact_lock(7743215459712331378); -- "kumoownr"
    INSERT INTO device_ownership_log (seq, device_id)
    VALUES (nextval('device_ownership_seq'),
            CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END);
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER devices_ownership_on_insert
    AFTER INSERT ON devices
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.user_id IS NOT NULL)
    EXECUTE FUNCTION log_device_ownership();

-- Also fires for ON DELETE SET NULL when a user is deleted.
CREATE CONSTRAINT TRIGGER devices_ownership_on_update
    AFTER UPDATE OF user_id ON devices
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (OLD.user_id IS DISTINCT FROM NEW.user_id)
    EXECUTE FUNCTION log_device_ownership();

CREATE CONSTRAINT TRIGGER devices_ownership_on_delete
    AFTER DELETE ON devices
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (OLD.user_id IS NOT NULL)
    EXECUTE FUNCTION log_device_ownership();
