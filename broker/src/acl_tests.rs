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
    assert_eq!(
        may_subscribe(&i, "devices/+/state", &OneDevice),
        Err(Denial::Wildcard)
    );
    assert_eq!(
        may_publish(&i, "devices/owned/commands", &NoAccounts),
        Err(Denial::NotOwned)
    );
}
