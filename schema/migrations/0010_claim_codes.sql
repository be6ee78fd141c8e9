-- Claim codes and self-provisioning (issue #13).
--
-- A user creates a claim code for their account; a device that holds only the
-- CA certificate sends a CSR with the code to the provisioning endpoint and
-- gets its certificate, registered to the code's account. Only a hash of the
-- code is stored (the code itself is shown once). A code expires, may be
-- revoked, and allows `uses` provisionings (1 by default). Every attempt,
-- good or bad, is an audit row.

CREATE TABLE claim_codes (
    id          uuid PRIMARY KEY,
    user_id     text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash   bytea NOT NULL UNIQUE,
    uses        integer NOT NULL CHECK (uses > 0),
    uses_left   integer NOT NULL CHECK (uses_left >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX claim_codes_user ON claim_codes (user_id, created_at DESC);

CREATE TABLE provisioning_attempts (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    remote      text NOT NULL,
    claim_code  uuid REFERENCES claim_codes (id) ON DELETE SET NULL,
    outcome     text NOT NULL,
    device_id   text,
    serial      text
);
CREATE INDEX provisioning_attempts_at ON provisioning_attempts (at);
