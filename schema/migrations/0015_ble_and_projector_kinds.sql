-- The newer appliance kinds of the official API (issue #19): floor heaters
-- (`floor_heater_settings`), light projectors (`light_projector`) and BLE
-- SESAME bots (`sesame_bot/click`, BLE private macros), their command kinds,
-- and each BLE appliance's private macros, addressed by an id of their own
-- (`POST /1/ble/private_macros/{id}/exec` names no appliance).

ALTER TABLE appliances DROP CONSTRAINT appliances_type_check;
ALTER TABLE appliances ADD CONSTRAINT appliances_type_check
    CHECK (type IN ('AC', 'TV', 'LIGHT', 'IR', 'EL_SMART_METER', 'EL_AIRCON',
                    'FLOOR_HEATER', 'LIGHT_PROJECTOR', 'SESAME_BOT'));

ALTER TABLE commands DROP CONSTRAINT commands_kind_check;
ALTER TABLE commands ADD CONSTRAINT commands_kind_check
    CHECK (kind IN ('ir', 'aircon', 'tv', 'light', 'echonet',
                    'floor_heater', 'light_projector', 'sesame_bot'));

CREATE TABLE ble_private_macros (
    id            text PRIMARY KEY,
    appliance_id  text NOT NULL REFERENCES appliances (id) ON DELETE CASCADE,
    -- The macro's name in the appliance's model (`press`, `hold`, …).
    name          text NOT NULL,
    position      integer NOT NULL,
    UNIQUE (appliance_id, name)
);
