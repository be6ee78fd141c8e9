//! ECHONET Lite objects a gateway reaches on the home network: which
//! properties each class has, which may be set, and which values (EDT) a set
//! may carry.
//!
//! The bridge checks REST `set`/`refresh` requests with these tables before a
//! command is written; the simulated gateway runs the same checks before it
//! applies a set, so both refuse the same things. Values travel as hex
//! strings, two digits per byte, as the Nature API's `SetELPropertyRequest`
//! writes them. Pure: no I/O.

use std::fmt;

/// An ECHONET Lite object: class group, class and instance (EOJ), written as
/// six hex digits (`013001`: home air conditioner, instance 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Eoj {
    pub class_group: u8,
    pub class: u8,
    pub instance: u8,
}

/// The history reading the bridge stores from a smart meter's property:
/// `power` from 0xE7, `energy` from 0xE0, `energy_sold` from 0xE3; none for
/// the other EPCs (nor for any property of another ECHONET Lite object).
pub fn meter_reading_sensor(epc: u8) -> Option<&'static str> {
    match epc {
        0xE7 => Some("power"),
        0xE0 => Some("energy"),
        0xE3 => Some("energy_sold"),
        _ => None,
    }
}

impl Eoj {
    /// The low-voltage smart electric energy meter, instance 1.
    pub const SMART_METER: Eoj = Eoj::new(0x02, 0x88, 0x01);
    /// The home air conditioner, instance 1.
    pub const HOME_AIR_CONDITIONER: Eoj = Eoj::new(0x01, 0x30, 0x01);

    pub const fn new(class_group: u8, class: u8, instance: u8) -> Self {
        Self {
            class_group,
            class,
            instance,
        }
    }

    /// Parses six hex digits; `None` otherwise.
    pub fn parse(s: &str) -> Option<Self> {
        match hex_bytes(s)?.as_slice() {
            &[g, c, i] => Some(Self::new(g, c, i)),
            _ => None,
        }
    }

    /// The properties of this object's class, if Kumo knows the class.
    pub fn class_properties(self) -> Option<&'static [PropertyDef]> {
        match (self.class_group, self.class) {
            (0x02, 0x88) => Some(SMART_METER),
            (0x01, 0x30) => Some(HOME_AIR_CONDITIONER),
            _ => None,
        }
    }
}

impl fmt::Display for Eoj {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}{:02x}{:02x}",
            self.class_group, self.class, self.instance
        )
    }
}

/// Whether a property may be set (`Set`) or only read (`Get`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Get,
    GetSet,
}

/// One property of a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PropertyDef {
    pub epc: u8,
    /// Informative name, as Nature names smart-meter properties.
    pub name: &'static str,
    pub access: Access,
    /// EDT length in bytes.
    pub size: usize,
    /// Which one-byte values a set may carry, and how to describe them.
    pub settable: Option<Settable>,
}

/// The values a settable one-byte property accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settable {
    /// Exactly these codes.
    Codes(&'static [(u8, &'static str)]),
    /// A whole number in this range (inclusive).
    Range(u8, u8, &'static str),
}

impl Settable {
    fn accepts(self, v: u8) -> bool {
        match self {
            Self::Codes(codes) => codes.iter().any(|(c, _)| *c == v),
            Self::Range(lo, hi, _) => (lo..=hi).contains(&v),
        }
    }

    fn describe(self) -> String {
        match self {
            Self::Codes(codes) => codes
                .iter()
                .map(|(c, what)| format!("{c:02x} ({what})"))
                .collect::<Vec<_>>()
                .join(", "),
            Self::Range(lo, hi, what) => format!("{lo:02x} to {hi:02x} ({what})"),
        }
    }
}

const fn get(epc: u8, name: &'static str, size: usize) -> PropertyDef {
    PropertyDef {
        epc,
        name,
        access: Access::Get,
        size,
        settable: None,
    }
}

const fn set(epc: u8, name: &'static str, settable: Settable) -> PropertyDef {
    PropertyDef {
        epc,
        name,
        access: Access::GetSet,
        size: 1,
        settable: Some(settable),
    }
}

/// Operation status (0x80): ON or OFF.
pub const EPC_OPERATION_STATUS: u8 = 0x80;
/// Operation mode setting (0xB0) of an air conditioner.
pub const EPC_OPERATION_MODE: u8 = 0xB0;
/// Set temperature (0xB3), °C.
pub const EPC_SET_TEMPERATURE: u8 = 0xB3;
/// Measured room temperature (0xBB), °C, signed.
pub const EPC_ROOM_TEMPERATURE: u8 = 0xBB;

/// Operation status codes.
pub const ON: u8 = 0x30;
pub const OFF: u8 = 0x31;

/// Home air conditioner (class 0x0130): the properties Kumo models.
pub const HOME_AIR_CONDITIONER: &[PropertyDef] = &[
    set(
        EPC_OPERATION_STATUS,
        "operation_status",
        Settable::Codes(&[(ON, "on"), (OFF, "off")]),
    ),
    set(
        EPC_OPERATION_MODE,
        "operation_mode",
        Settable::Codes(&[
            (0x41, "auto"),
            (0x42, "cool"),
            (0x43, "heat"),
            (0x44, "dry"),
            (0x45, "fan"),
            (0x40, "other"),
        ]),
    ),
    set(
        EPC_SET_TEMPERATURE,
        "set_temperature",
        Settable::Range(0, 50, "°C"),
    ),
    get(EPC_ROOM_TEMPERATURE, "measured_room_temperature", 1),
];

/// Low-voltage smart electric energy meter (class 0x0288): read only.
pub const SMART_METER: &[PropertyDef] = &[
    get(0xD3, "coefficient", 4),
    get(0xD7, "cumulative_electric_energy_effective_digits", 1),
    get(0xE0, "normal_direction_cumulative_electric_energy", 4),
    get(0xE1, "cumulative_electric_energy_unit", 1),
    get(0xE3, "reverse_direction_cumulative_electric_energy", 4),
    get(0xE7, "measured_instantaneous", 4),
    get(0xE8, "measured_instantaneous_currents", 4),
];

/// Why a set or a refresh is refused. Messages name the request field
/// (`epc` or `val`) and the value, as the REST API passes them on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EchonetError {
    #[error("epc {0:?} is not an EPC: one byte as two hex digits, e.g. \"80\"")]
    EpcSyntax(String),
    #[error("val {0:?} is not hex: two hex digits per byte, e.g. \"30\"")]
    ValSyntax(String),
    #[error("epc \"{epc:02x}\" is not a property of this {class}; known: {known}")]
    Unknown {
        epc: u8,
        class: &'static str,
        known: String,
    },
    #[error("epc \"{epc:02x}\" ({name}) is read-only")]
    ReadOnly { epc: u8, name: &'static str },
    #[error(
        "val {val:?} is not a valid {name} (epc \"{epc:02x}\"): {size} byte(s), allowed: {allowed}"
    )]
    Value {
        epc: u8,
        name: &'static str,
        val: String,
        size: usize,
        allowed: String,
    },
    #[error("no ECHONET Lite object {0} that Kumo knows")]
    UnknownObject(String),
}

/// `s` as bytes if it is non-empty hex, two digits per byte (either case).
pub fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// `bytes` as lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An EPC as the REST API writes it: exactly two hex digits.
pub fn parse_epc(s: &str) -> Result<u8, EchonetError> {
    match hex_bytes(s).as_deref() {
        Some(&[epc]) => Ok(epc),
        _ => Err(EchonetError::EpcSyntax(s.to_string())),
    }
}

fn class_name(eoj: Eoj) -> &'static str {
    match (eoj.class_group, eoj.class) {
        (0x02, 0x88) => "smart meter",
        (0x01, 0x30) => "air conditioner",
        _ => "object",
    }
}

/// The property `epc` of `eoj`'s class.
pub fn property(eoj: Eoj, epc: u8) -> Result<&'static PropertyDef, EchonetError> {
    let props = eoj
        .class_properties()
        .ok_or_else(|| EchonetError::UnknownObject(eoj.to_string()))?;
    props
        .iter()
        .find(|p| p.epc == epc)
        .ok_or_else(|| EchonetError::Unknown {
            epc,
            class: class_name(eoj),
            known: props
                .iter()
                .map(|p| format!("{:02x}", p.epc))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Checks a set of `epc` to the hex value `val` on `eoj`: the property must
/// exist, be settable, and `val` must be one of its values. Returns the EDT.
pub fn check_set(eoj: Eoj, epc: u8, val: &str) -> Result<Vec<u8>, EchonetError> {
    let def = property(eoj, epc)?;
    let Some(settable) = def.settable.filter(|_| def.access == Access::GetSet) else {
        return Err(EchonetError::ReadOnly {
            epc,
            name: def.name,
        });
    };
    let edt = hex_bytes(val).ok_or_else(|| EchonetError::ValSyntax(val.to_string()))?;
    match edt.as_slice() {
        &[v] if def.size == 1 && settable.accepts(v) => Ok(edt),
        _ => Err(EchonetError::Value {
            epc,
            name: def.name,
            val: val.to_string(),
            size: def.size,
            allowed: settable.describe(),
        }),
    }
}

/// Parses a refresh's comma-separated EPCs (`"80,b3"`) and checks each is a
/// property of `eoj`. Duplicates are kept once, in order.
pub fn check_refresh(eoj: Eoj, epcs: &str) -> Result<Vec<u8>, EchonetError> {
    let mut out = Vec::new();
    for raw in epcs.split(',') {
        let epc = parse_epc(raw.trim())?;
        property(eoj, epc)?;
        if !out.contains(&epc) {
            out.push(epc);
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const AC: Eoj = Eoj::HOME_AIR_CONDITIONER;

    #[test]
    fn eojs_read_and_write_as_six_hex_digits() {
        assert_eq!(Eoj::parse("013001"), Some(AC));
        assert_eq!(Eoj::parse("028801"), Some(Eoj::SMART_METER));
        assert_eq!(AC.to_string(), "013001");
        for bad in ["", "0130", "01300", "0130011", "zz3001"] {
            assert_eq!(Eoj::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_epc_is_exactly_one_byte_in_hex() {
        assert_eq!(parse_epc("b3"), Ok(0xB3));
        assert_eq!(parse_epc("B3"), Ok(0xB3));
        for bad in ["", "b", "0b3", "b30", "xx", "+1", " b3"] {
            assert!(
                matches!(parse_epc(bad), Err(EchonetError::EpcSyntax(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn valid_sets_return_the_edt() {
        assert_eq!(check_set(AC, 0x80, "30"), Ok(vec![0x30]));
        assert_eq!(check_set(AC, 0xB0, "42"), Ok(vec![0x42]));
        assert_eq!(check_set(AC, 0xB3, "1A"), Ok(vec![26]));
        assert_eq!(check_set(AC, 0xB3, "00"), Ok(vec![0]));
        assert_eq!(check_set(AC, 0xB3, "32"), Ok(vec![50]));
    }

    #[test]
    fn out_of_range_or_malformed_values_are_refused_naming_val() {
        for (epc, val) in [
            (0x80, "32"),
            (0xB0, "46"),
            (0xB3, "33"),
            (0xB3, "001a"),
            (0xB3, "ff"),
        ] {
            let e = check_set(AC, epc, val).unwrap_err();
            assert!(
                matches!(e, EchonetError::Value { .. }),
                "{epc:x} {val}: {e}"
            );
            assert!(e.to_string().starts_with("val "), "{e}");
        }
        for val in ["", "3", "3g", "0x30"] {
            assert_eq!(
                check_set(AC, 0x80, val),
                Err(EchonetError::ValSyntax(val.into()))
            );
        }
    }

    #[test]
    fn unknown_and_read_only_properties_are_refused_naming_epc() {
        let unknown = check_set(AC, 0xCF, "30").unwrap_err();
        assert!(unknown
            .to_string()
            .starts_with("epc \"cf\" is not a property"));
        let ro = check_set(AC, 0xBB, "19").unwrap_err();
        assert_eq!(
            ro.to_string(),
            "epc \"bb\" (measured_room_temperature) is read-only"
        );
        let meter = check_set(Eoj::SMART_METER, 0xE7, "00000001").unwrap_err();
        assert!(matches!(meter, EchonetError::ReadOnly { epc: 0xE7, .. }));
    }

    #[test]
    fn refresh_takes_known_comma_separated_epcs() {
        assert_eq!(
            check_refresh(AC, "80,b3, BB,80"),
            Ok(vec![0x80, 0xB3, 0xBB])
        );
        assert_eq!(check_refresh(Eoj::SMART_METER, "e7"), Ok(vec![0xE7]));
        assert!(matches!(
            check_refresh(AC, "80,cf"),
            Err(EchonetError::Unknown { epc: 0xCF, .. })
        ));
        assert!(matches!(
            check_refresh(AC, ""),
            Err(EchonetError::EpcSyntax(_))
        ));
        assert!(matches!(
            check_refresh(AC, "80,,b3"),
            Err(EchonetError::EpcSyntax(_))
        ));
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0x00, 0x1a, 0xff]), "001aff");
        assert_eq!(hex_bytes("001AFF"), Some(vec![0, 0x1a, 0xff]));
    }
}
