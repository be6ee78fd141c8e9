-- Homes and their members (issue #19): Nature's `/1/homes…` and `/1/invites…`.
--
-- A home groups devices; its members see and control them. Exactly one member
-- is the owner (`homes.owner_id`, mirrored as role 'owner' in home_members).
-- A device's account (`devices.user_id`) stays its home owner's account: the
-- ownership feed to broker nodes (migration 0005) and integrations keep
-- meaning "the account that owns the device", and they follow an owner
-- transfer through the same log. Who may *see* a device is the view
-- `device_access`: the members of its home.
--
-- Invariants kept by triggers here, whichever path writes (REST, the CLI,
-- provisioning, tests):
-- - every user has a home (one is created with the user; a device registered
--   to an account without a home gets one);
-- - a device with an account is in a home that account owns (registering it to
--   another account moves it to that account's first home);
-- - the owner is a member; an owner transfer moves the home's devices and
--   appliances to the new owner's account without resetting anything (the same
--   people see the device);
-- - moving a device to another home, or releasing it, is a change of hands as
--   in migration 0008: history restarts, latest values are dropped, commands
--   of people who are not members of the new home fail;
-- - a member who leaves (kicked or parted) has their unfinished commands on the
--   home's devices failed, and every device of the home is written to
--   device_ownership_log so live streams re-route at once.

CREATE TABLE homes (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    owner_id    text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    latitude    double precision CHECK (latitude BETWEEN -90 AND 90),
    longitude   double precision CHECK (longitude BETWEEN -180 AND 180),
    radius      double precision CHECK (radius > 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((latitude IS NULL) = (longitude IS NULL) AND (latitude IS NULL) = (radius IS NULL))
);
CREATE INDEX homes_owner_idx ON homes (owner_id, created_at);

CREATE TABLE home_members (
    home_id              text NOT NULL REFERENCES homes (id) ON DELETE CASCADE,
    user_id              text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role                 text NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'member')),
    -- Geofencing: where the member's phone last said they are.
    location_state       text NOT NULL DEFAULT 'unknown'
                         CHECK (location_state IN ('unknown', 'home', 'away')),
    location_updated_at  timestamptz,
    joined_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (home_id, user_id)
);
CREATE INDEX home_members_user_idx ON home_members (user_id);

-- Only a SHA-256 of the invite token is stored; the token is shown once.
CREATE TABLE home_invites (
    id          uuid PRIMARY KEY,
    home_id     text NOT NULL REFERENCES homes (id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_by  text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    used_by     text REFERENCES users (id) ON DELETE SET NULL
);
CREATE INDEX home_invites_home_idx ON home_invites (home_id);

ALTER TABLE devices ADD COLUMN home_id text REFERENCES homes (id) ON DELETE SET NULL;
CREATE INDEX devices_home_idx ON devices (home_id);

-- Who may see (and, by role, control) which device.
CREATE VIEW device_access AS
    SELECT d.id AS device_id, m.user_id, m.role, d.home_id
    FROM devices d JOIN home_members m ON m.home_id = d.home_id;

-- The owner is a member; on a transfer the previous owner stays as a member
-- and the home's devices and appliances move to the new owner's account.
CREATE FUNCTION homes_owner_is_member() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO home_members (home_id, user_id, role) VALUES (NEW.id, NEW.owner_id, 'owner')
    ON CONFLICT (home_id, user_id) DO UPDATE SET role = 'owner';
    IF TG_OP = 'UPDATE' AND OLD.owner_id IS DISTINCT FROM NEW.owner_id THEN
        UPDATE home_members SET role = 'member'
         WHERE home_id = NEW.id AND user_id = OLD.owner_id;
        UPDATE devices SET user_id = NEW.owner_id, updated_at = now()
         WHERE home_id = NEW.id AND user_id IS DISTINCT FROM NEW.owner_id;
        UPDATE appliances SET user_id = NEW.owner_id
         WHERE device_id IN (SELECT id FROM devices WHERE home_id = NEW.id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER homes_owner_is_member
    AFTER INSERT OR UPDATE OF owner_id ON homes
    FOR EACH ROW EXECUTE FUNCTION homes_owner_is_member();

-- The first home `account` owns, created ('Home') if it owns none.
CREATE FUNCTION kumo_default_home(account text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    found text;
BEGIN
    SELECT id INTO found FROM homes WHERE owner_id = account ORDER BY created_at, id LIMIT 1;
    IF found IS NULL THEN
        found := gen_random_uuid()::text;
        INSERT INTO homes (id, name, owner_id) VALUES (found, 'Home', account);
    END IF;
    RETURN found;
END
$$;

-- Existing users and their devices: one home each, devices in it. (Only
-- home_id changes here, before the triggers below exist: nothing is reset.)
INSERT INTO homes (id, name, owner_id, created_at)
    SELECT gen_random_uuid()::text, 'Home', id, created_at FROM users;
UPDATE devices d SET home_id = h.id FROM homes h WHERE h.owner_id = d.user_id;

CREATE FUNCTION users_get_a_home() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM kumo_default_home(NEW.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER users_get_a_home
    AFTER INSERT ON users
    FOR EACH ROW EXECUTE FUNCTION users_get_a_home();

-- A device with an account is in a home of that account. Fires only when the
-- account is written (not when a deleted home sets home_id NULL). Named to
-- run before devices_owner_changed (BEFORE triggers fire in name order).
CREATE FUNCTION devices_home_follows_account() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.user_id IS NULL THEN
        NEW.home_id := NULL;
    ELSIF NEW.home_id IS NULL
       OR NOT EXISTS (SELECT 1 FROM homes WHERE id = NEW.home_id AND owner_id = NEW.user_id) THEN
        NEW.home_id := kumo_default_home(NEW.user_id);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER devices_home_follows_account
    BEFORE INSERT OR UPDATE OF user_id ON devices
    FOR EACH ROW EXECUTE FUNCTION devices_home_follows_account();

-- Migration 0008's change of hands (newest events are read from readings
-- since 0012), now about the home: an owner transfer
-- (same home, new account) resets nothing; another home, or none, does.
DROP TRIGGER devices_owner_changed ON devices;

CREATE OR REPLACE FUNCTION devices_owner_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.home_id IS NOT NULL AND OLD.home_id IS NOT DISTINCT FROM NEW.home_id THEN
        RETURN NEW;
    END IF;
    IF OLD.user_id IS NOT NULL OR OLD.owner_since <> '-infinity' THEN
        NEW.owner_since := now();
    END IF;
    DELETE FROM smart_meter_properties WHERE device_id = NEW.id;
    UPDATE commands c
       SET status = 'failed', error = 'the device left the account',
           completed_at = now(), updated_at = now()
     WHERE c.device_id = NEW.id AND c.status IN ('queued', 'sent')
       AND (NEW.home_id IS NULL
            OR NOT EXISTS (SELECT 1 FROM home_members m
                           WHERE m.home_id = NEW.home_id AND m.user_id = c.user_id));
    RETURN NEW;
END
$$;

CREATE TRIGGER devices_owner_changed
    BEFORE UPDATE OF user_id, home_id ON devices
    FOR EACH ROW
    WHEN (OLD.user_id IS DISTINCT FROM NEW.user_id OR OLD.home_id IS DISTINCT FROM NEW.home_id)
    EXECUTE FUNCTION devices_owner_changed();

-- A member who leaves takes nothing along: unfinished commands they sent to
-- the home's devices fail (as a device changing hands fails them).
CREATE FUNCTION home_member_left() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE commands
       SET status = 'failed', error = 'the user left the home',
           completed_at = now(), updated_at = now()
     WHERE user_id = OLD.user_id AND status IN ('queued', 'sent')
       AND device_id IN (SELECT id FROM devices WHERE home_id = OLD.home_id);
    RETURN NULL;
END
$$;

CREATE TRIGGER home_member_left
    AFTER DELETE ON home_members
    FOR EACH ROW EXECUTE FUNCTION home_member_left();

-- Who sees a device changes with membership and with a move between homes:
-- log those devices like an ownership change (same lock, same commit order
-- as migration 0005), so the live-event router re-reads who sees them. Node
-- announcers re-read the device's account, which is harmless.
CREATE FUNCTION log_home_devices() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7743215459712331378); -- "kumoownr"
    INSERT INTO device_ownership_log (seq, device_id)
    SELECT nextval('device_ownership_seq'), d.id
      FROM devices d
     WHERE d.home_id = CASE WHEN TG_OP = 'DELETE' THEN OLD.home_id ELSE NEW.home_id END;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER home_members_logged
    AFTER INSERT OR DELETE ON home_members
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION log_home_devices();

CREATE CONSTRAINT TRIGGER devices_home_logged
    AFTER UPDATE OF home_id ON devices
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (OLD.home_id IS DISTINCT FROM NEW.home_id AND NEW.user_id IS NOT NULL
                       AND OLD.user_id IS NOT DISTINCT FROM NEW.user_id)
    EXECUTE FUNCTION log_device_ownership();
