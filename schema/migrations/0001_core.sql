-- Core tables: users (an account is a user), hashed access tokens, devices and
-- the certificates the PKI issued. Later migrations add commands, readings, rules.

CREATE TABLE users (
    id          text PRIMARY KEY,
    nickname    text NOT NULL,
    email       text UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Only a SHA-256 of the bearer token is stored; the token itself is shown once.
CREATE TABLE access_tokens (
    id            uuid PRIMARY KEY,
    user_id       text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash    bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    name          text NOT NULL DEFAULT '',
    scopes        text[] NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz
);
CREATE INDEX access_tokens_user_idx ON access_tokens (user_id);

CREATE TABLE devices (
    id                  text PRIMARY KEY
                        CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$'),
    user_id             text REFERENCES users (id) ON DELETE SET NULL,
    kind                text NOT NULL DEFAULT 'remo'
                        CHECK (kind IN ('remo', 'smart_meter')),
    name                text NOT NULL DEFAULT '',
    temperature_offset  double precision NOT NULL DEFAULT 0,
    humidity_offset     double precision NOT NULL DEFAULT 0,
    firmware_version    text NOT NULL DEFAULT '',
    mac_address         text NOT NULL DEFAULT '',
    serial_number       text NOT NULL DEFAULT '',
    online              boolean NOT NULL DEFAULT false,
    node_id             text,
    last_seen_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_user_idx ON devices (user_id);

CREATE TABLE certificates (
    serial       text PRIMARY KEY,
    role         text NOT NULL CHECK (role IN ('device', 'service', 'integration', 'node')),
    identity     text NOT NULL,
    account_id   text REFERENCES users (id) ON DELETE CASCADE,
    fingerprint  text NOT NULL UNIQUE,
    not_before   timestamptz NOT NULL,
    not_after    timestamptz NOT NULL,
    issued_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    reason       text
);
CREATE INDEX certificates_identity_idx ON certificates (role, identity);
