//! Device-protocol documents (`kumo_contract::payload`) for tests whose
//! messages must pass the node's check of device payloads
//! (`broker.check_payloads`, on by default). Each takes a tag or a value so a
//! test can tell its messages apart.

/// A state report (`devices/{id}/state`); `tag` is its firmware version.
pub fn state(tag: &str) -> Vec<u8> {
    format!(r#"{{"online":true,"kind":"hub","firmware_version":"{tag}","ts":1767225600000}}"#)
        .into_bytes()
}

/// The last-will state report: `online` false.
pub fn will_state() -> Vec<u8> {
    br#"{"online":false,"kind":"hub","firmware_version":"1.0","ts":1767225600000}"#.to_vec()
}

/// A sensor reading (`devices/{id}/sensors/{te|hu|il|mo}`).
pub fn reading(val: f64) -> Vec<u8> {
    format!(r#"{{"val":{val}}}"#).into_bytes()
}

/// A device's ack of command `id` (`devices/{id}/acks`).
pub fn ack(id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","result":"ok","ts":1767225600000}}"#).into_bytes()
}

#[cfg(test)]
mod tests {
    use kumo_contract::payload::from_device::check;

    #[test]
    fn every_document_here_passes_the_nodes_check() {
        check("state", &super::state("x")).unwrap();
        check("state", &super::will_state()).unwrap();
        check("sensors/te", &super::reading(21.5)).unwrap();
        check("acks", &super::ack("c1")).unwrap();
    }
}
