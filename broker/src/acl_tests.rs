use super::*;

fn device(id: &str) -> Identity {
    Identity::Device {
        id: DeviceId::parse(id).expect("valid id"),
    }
}

fn service() -> Identity {
    Identity::Service {
        name: "bridge".into(),
    }
}

fn integration() -> Identity {
    Identity::Integration {
        name: "ifttt".into(),
        account: AccountId::parse("acct-1").expect("valid id"),
    }
}

struct OneDevice;
impl AccountDevices for OneDevice {
    fn owns(&self, account: &AccountId, device: &DeviceId) -> bool {
        account.as_str() == "acct-1" && device.as_str() == "owned"
    }
}

#[test]
fn a_device_may_publish_its_own_readings_state_and_acks() {
    let d = device("remo-1");
    for t in [
        "devices/remo-1/sensors/te",
        "devices/remo-1/state",
        "devices/remo-1/acks",
        "devices/remo-1/meter",
    ] {
        assert_eq!(may_publish(&d, t, &NoAccounts), Ok(()), "{t}");
    }
}

#[test]
fn a_device_may_not_publish_for_another_device_or_outside_its_subtree() {
    let d = device("remo-1");
    for t in [
        "devices/remo-2/state",
        "devices/remo-10/state",
        "devices/remo-1",
        "other/x",
        "devices",
    ] {
        assert_eq!(
            may_publish(&d, t, &NoAccounts),
            Err(Denial::NotOwned),
            "{t}"
        );
    }
}

#[test]
fn a_device_may_not_publish_presence_or_commands() {
    let d = device("remo-1");
    for t in [
        "devices/remo-1/presence",
        "devices/remo-1/commands",
        "devices/remo-1/presence/x",
    ] {
        assert_eq!(
            may_publish(&d, t, &NoAccounts),
            Err(Denial::Reserved),
            "{t}"
        );
    }
}

#[test]
fn a_device_may_request_a_certificate_but_never_publish_a_response() {
    let d = device("remo-1");
    assert_eq!(
        may_publish(&d, "devices/remo-1/cert/request", &NoAccounts),
        Ok(())
    );
    for t in [
        "devices/remo-1/cert/response",
        "devices/remo-1/cert/response/42",
    ] {
        assert_eq!(
            may_publish(&d, t, &NoAccounts),
            Err(Denial::Reserved),
            "{t}"
        );
    }
    assert_eq!(
        may_publish(&d, "devices/remo-2/cert/request", &NoAccounts),
        Err(Denial::NotOwned),
        "never for another device"
    );
}

#[test]
fn a_device_may_subscribe_to_its_own_certificate_responses_only() {
    let d = device("remo-1");
    for f in [
        "devices/remo-1/cert/response",
        "devices/remo-1/cert/response/#",
        "devices/remo-1/cert/response/+",
        "devices/remo-1/cert/+",
        "devices/remo-1/cert/#",
    ] {
        assert_eq!(may_subscribe(&d, f, &NoAccounts), Ok(()), "{f}");
    }
    assert_eq!(
        may_subscribe(&d, "devices/remo-1/cert/request", &NoAccounts),
        Err(Denial::Reserved)
    );
    for f in [
        "devices/remo-2/cert/response",
        "devices/+/cert/response",
        "devices/remo-10/cert/response/#",
    ] {
        assert!(may_subscribe(&d, f, &NoAccounts).is_err(), "{f}");
    }
}

#[test]
fn wildcards_nul_and_dollar_topics_are_never_publishable() {
    for id in [device("remo-1"), service()] {
        for t in [
            "devices/remo-1/+",
            "devices/remo-1/#",
            "devices/remo-1/a\0b",
            "",
        ] {
            assert_eq!(
                may_publish(&id, t, &NoAccounts),
                Err(Denial::Invalid),
                "{t}"
            );
        }
        assert_eq!(may_publish(&id, "$SYS/x", &NoAccounts), Err(Denial::System));
    }
}

#[test]
fn a_device_may_subscribe_only_to_its_own_commands() {
    let d = device("remo-1");
    for f in [
        "devices/remo-1/commands",
        "devices/remo-1/+",
        "devices/remo-1/#",
    ] {
        assert_eq!(may_subscribe(&d, f, &NoAccounts), Ok(()), "{f}");
    }
    assert_eq!(
        may_subscribe(&d, "devices/remo-1/state", &NoAccounts),
        Err(Denial::Reserved)
    );
    assert_eq!(
        may_subscribe(&d, "devices/remo-2/commands", &NoAccounts),
        Err(Denial::NotOwned)
    );
}

#[test]
fn filters_reaching_beyond_one_device_are_refused() {
    let d = device("remo-1");
    for f in [
        "#",
        "+/remo-1/commands",
        "devices/+/commands",
        "devices/#",
        "+",
        "+/+/+",
    ] {
        assert_eq!(
            may_subscribe(&d, f, &NoAccounts),
            Err(Denial::Wildcard),
            "{f}"
        );
    }
    for f in ["$SYS/#", "$share/g/devices/remo-1/commands"] {
        assert_eq!(
            may_subscribe(&d, f, &NoAccounts),
            Err(Denial::System),
            "{f}"
        );
    }
    for f in ["devices/remo-1/comm#", "", "devices/remo-1/a\0"] {
        assert_eq!(
            may_subscribe(&d, f, &NoAccounts),
            Err(Denial::Invalid),
            "{f:?}"
        );
    }
}

#[test]
fn the_service_has_fleet_wide_rights_but_no_system_topics() {
    let s = service();
    assert_eq!(
        may_subscribe(&s, "devices/+/sensors/+", &NoAccounts),
        Ok(())
    );
    assert_eq!(
        may_subscribe(&s, "$share/bridge/devices/+/state", &NoAccounts),
        Ok(())
    );
    assert_eq!(
        may_subscribe(&s, "$SYS/#", &NoAccounts),
        Err(Denial::System)
    );
    assert_eq!(
        may_publish(&s, "devices/remo-9/commands", &NoAccounts),
        Ok(())
    );
}

#[test]
fn an_integration_reaches_only_its_accounts_devices() {
    let i = integration();
    assert_eq!(
        may_publish(&i, "devices/owned/commands", &OneDevice),
        Ok(())
    );
    assert_eq!(
        may_publish(&i, "devices/other/commands", &OneDevice),
        Err(Denial::NotOwned)
    );
    assert_eq!(
        may_publish(&i, "devices/owned/state", &OneDevice),
        Err(Denial::Reserved)
    );
    assert_eq!(
        may_subscribe(&i, "devices/owned/sensors/+", &OneDevice),
        Ok(())
    );
    assert_eq!(
        may_subscribe(&i, "devices/other/#", &OneDevice),
        Err(Denial::NotOwned)
    );
    assert_eq!(may_subscribe(&i, "devices/+/state", &OneDevice), Ok(()));
    assert_eq!(
        may_publish(&i, "devices/owned/commands", &NoAccounts),
        Err(Denial::NotOwned)
    );
}

#[test]
fn an_integration_may_subscribe_fleet_wide_to_readable_leaves() {
    let i = integration();
    for f in [
        "devices/+/sensors/#",
        "devices/+/sensors/+",
        "devices/+/sensors/te",
        "devices/+/sensors",
        "devices/+/state",
        "devices/+/presence",
        "devices/+/meter",
        "devices/+/acks",
        "devices/+/#",
        "devices/+/+",
        "devices/owned/#",
    ] {
        assert_eq!(may_subscribe(&i, f, &OneDevice).map(|_| f), Ok(f), "{f}");
    }
    // A concrete device must be owned at subscribe time.
    assert_eq!(
        may_subscribe(&i, "devices/owned/#", &NoAccounts),
        Err(Denial::NotOwned)
    );
}

#[test]
fn an_integration_may_not_subscribe_to_commands_the_fleet_root_or_internal_topics() {
    let i = integration();
    for (f, d) in [
        ("devices/+/commands", Denial::Reserved),
        ("devices/owned/commands", Denial::Reserved),
        ("devices/+/sensors/xx", Denial::Reserved),
        ("devices/+", Denial::Reserved),
        ("#", Denial::Wildcard),
        ("+/+/state", Denial::Wildcard),
        ("devices/#", Denial::Wildcard),
        ("kumo/#", Denial::Wildcard),
        ("kumo/ownership/+", Denial::NotOwned),
        ("kumo/ownership/devices/owned", Denial::NotOwned),
        ("$SYS/#", Denial::System),
        ("$share/g/devices/+/state", Denial::System),
    ] {
        assert_eq!(may_subscribe(&i, f, &OneDevice), Err(d), "{f}");
    }
}

#[test]
fn only_the_service_may_publish_the_ownership_feed_or_node_epochs() {
    for t in [
        "kumo/ownership/devices/remo-1",
        "kumo/ownership/snapshot/begin",
        "kumo/nodes/node-1/epoch",
    ] {
        assert_eq!(may_publish(&service(), t, &NoAccounts), Ok(()), "{t}");
        assert_eq!(
            may_publish(&device("remo-1"), t, &NoAccounts),
            Err(Denial::NotOwned),
            "{t}"
        );
        assert_eq!(
            may_publish(&integration(), t, &OneDevice),
            Err(Denial::NotOwned),
            "{t}"
        );
    }
    for f in [
        "kumo/#",
        "kumo/ownership/#",
        "kumo/ownership/devices/remo-1",
        "kumo/nodes/+/epoch",
    ] {
        assert!(
            may_subscribe(&device("remo-1"), f, &NoAccounts).is_err(),
            "{f}"
        );
        assert!(may_subscribe(&integration(), f, &OneDevice).is_err(), "{f}");
    }
}

#[test]
fn an_integration_receives_only_readable_leaves_of_devices_it_owns_now() {
    let i = integration();
    for t in [
        "devices/owned/sensors/te",
        "devices/owned/sensors",
        "devices/owned/state",
        "devices/owned/presence",
        "devices/owned/meter",
        "devices/owned/acks",
    ] {
        assert!(may_receive(&i, t, &OneDevice), "{t}");
        assert!(!may_receive(&i, t, &NoAccounts), "{t} once released");
    }
    for t in [
        "devices/other/sensors/te",
        "devices/other/sensors",
        "devices/owned/commands",
        "devices/owned/cert/request",
        "devices/owned/cert/response",
        "devices/owned/sensors/xx",
        "kumo/ownership/devices/owned",
    ] {
        assert!(!may_receive(&i, t, &OneDevice), "{t}");
    }
    assert!(may_receive(&service(), "devices/other/state", &NoAccounts));
}
