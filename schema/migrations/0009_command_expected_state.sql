-- The appliance state a command should lead to (issue #11).
--
-- A device acknowledges an appliance command with the state it reached
-- (`state` in the ack, see docs/device-protocol.md); that reported state is
-- what the appliance shows afterwards. `expected` is the state the cloud
-- predicted with the same appliance model, kept for acks that carry no state
-- (older firmware) and for comparing prediction and report. It never travels
-- to the device: `payload` is the command action exactly as sent.

ALTER TABLE commands ADD COLUMN expected jsonb;
