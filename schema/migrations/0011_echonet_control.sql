-- ECHONET Lite control (issue #19): appliances a gateway reaches on the home
-- network besides its smart meter (a home air conditioner, `EL_AIRCON`), the
-- `echonet` command kind (set and refresh), and each such appliance's newest
-- property values as the device reported them (hex EDT, as Nature's
-- /1/echonetlite shows them). The smart meter keeps its own table.

ALTER TABLE appliances DROP CONSTRAINT appliances_type_check;
ALTER TABLE appliances ADD CONSTRAINT appliances_type_check
    CHECK (type IN ('AC', 'TV', 'LIGHT', 'IR', 'EL_SMART_METER', 'EL_AIRCON'));

ALTER TABLE commands DROP CONSTRAINT commands_kind_check;
ALTER TABLE commands ADD CONSTRAINT commands_kind_check
    CHECK (kind IN ('ir', 'aircon', 'tv', 'light', 'echonet'));

CREATE TABLE echonet_properties (
    appliance_id  text NOT NULL REFERENCES appliances (id) ON DELETE CASCADE,
    epc           integer NOT NULL CHECK (epc BETWEEN 0 AND 255),
    name          text NOT NULL,
    val           text NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (appliance_id, epc)
);
