#!/usr/bin/env python3
"""Drives a running bridge with the published Python client `nature-remo`
(PyPI, pinned by scripts/install-test-deps), unchanged except for its base URL.

Every call the client offers is made in the order a user would make them; the
client's own marshmallow schemas parse each response, so a missing or
mistyped field fails here. Prints one `OK <step> <detail>` line per step and a
final `DONE`; any failure raises (non-zero exit, traceback on stderr).

Usage: nature_remo_py.py BASE_URL TOKEN DEVICE_ID
"""

import json
import sys
import time

from remo import NatureRemoAPI, NatureRemoError

IR = {"format": "us", "freq": 38, "data": [3400, 1700, 430, 430, 430, 1300, 430, 1300]}


def ok(step, detail=""):
    print(f"OK {step} {detail}".rstrip(), flush=True)


def main():
    base, token, device_id = sys.argv[1:4]
    api = NatureRemoAPI(token)
    api.base_url = base

    user = api.get_user()
    ok("get_user", user.id)
    user = api.update_user("py-client")
    assert user.nickname == "py-client", user
    ok("update_user", user.nickname)
    assert api.rate_limit.limit and api.rate_limit.remaining is not None, api.rate_limit
    assert api.rate_limit.reset and api.rate_limit.checked_at, api.rate_limit
    ok("rate_limit", f"{api.rate_limit.remaining}/{api.rate_limit.limit}")

    devices = api.get_devices()
    dev = next(d for d in devices if d.id == device_id)
    te = dev.newest_events["te"]
    ok("get_devices", f"{dev.id} te={te.val} at={te.created_at.isoformat()}")
    api.update_device(device_id, "Kitchen")
    api.update_temperature_offset(device_id, 2)
    api.update_humidity_offset(device_id, -3)
    dev = next(d for d in api.get_devices() if d.id == device_id)
    assert dev.name == "Kitchen", dev
    assert (dev.temperature_offset, dev.humidity_offset) == (2, -3), dev
    ok("update_device", f"{dev.name} {dev.temperature_offset} {dev.humidity_offset}")

    models = api.detect_appliance(json.dumps(IR))
    ok("detect_appliance", str(len(models)))

    # An IR appliance of our own, then one from the catalogue per kind.
    tv = api.create_appliance(device_id, "Old TV", "ico_tv")
    assert tv.nickname == "Old TV" and tv.device.id == device_id, tv
    ok("create_appliance", tv.id)
    tv = api.update_appliance(tv.id, "TV", "ico_tv")
    assert tv.nickname == "TV", tv
    ok("update_appliance", tv.nickname)

    sig = api.create_signal(tv.id, "power", json.dumps(IR), "ico_io")
    ok("create_signal", sig.id)
    sig2 = api.create_signal(tv.id, "mute", json.dumps(IR), "ico_mute")
    api.update_signal(sig.id, "power!", "ico_on")
    api.update_signal_orders(tv.id, f"{sig2.id},{sig.id}")
    names = [s.name for s in api.get_signals(tv.id)]
    assert names == ["mute", "power!"], names
    ok("signals", ",".join(names))
    api.send_signal(sig.id)
    ok("send_signal", sig.id)
    api.delete_signal(sig2.id)
    assert [s.id for s in api.get_signals(tv.id)] == [sig.id]
    ok("delete_signal", sig2.id)

    appliances = api.get_appliances()
    by_id = {a.id: a for a in appliances}
    assert tv.id in by_id, by_id
    ok("get_appliances", str(len(appliances)))
    ids = [a.id for a in appliances]
    api.update_appliance_orders(",".join(reversed(ids)))
    assert [a.id for a in api.get_appliances()] == list(reversed(ids))
    ok("update_appliance_orders")

    ac = make_from_catalogue(api, device_id, "AC")
    assert (ac.settings.mode, ac.settings.temp) == ("cool", "26"), ac.settings
    api.update_aircon_settings(ac.id, operation_mode="warm", temperature="23")
    ok("update_aircon_settings", ac.id)
    # The settings change once the device confirms the command.
    deadline = time.monotonic() + 10
    while True:
        ac = next(a for a in api.get_appliances() if a.id == ac.id)
        if (ac.settings.mode, ac.settings.temp) == ("warm", "23"):
            break
        assert time.monotonic() < deadline, f"settings never confirmed: {ac.settings}"
        time.sleep(0.05)
    ok("aircon_state", f"{ac.settings.mode} {ac.settings.temp}")
    try:
        api.update_aircon_settings(ac.id, operation_mode="warm", temperature="99")
        raise AssertionError("an impossible temperature was accepted")
    except NatureRemoError as e:
        ok("aircon_refused", str(e).replace("\n", " "))

    light = make_from_catalogue(api, device_id, "LIGHT")
    api.send_light_infrared_signal(light.id, light.light.buttons[0].name)
    ok("send_light", light.light.buttons[0].name)
    tvm = make_from_catalogue(api, device_id, "TV")
    api.send_tv_infrared_signal(tvm.id, tvm.tv.buttons[0].name)
    ok("send_tv", tvm.tv.buttons[0].name)

    for a in (tv, ac, light, tvm):
        api.delete_appliance(a.id)
    assert api.get_appliances() == [] or all(
        a.id not in {tv.id, ac.id, light.id, tvm.id} for a in api.get_appliances()
    )
    ok("delete_appliance")

    try:
        api.send_signal("00000000-0000-0000-0000-000000000000")
        raise AssertionError("an unknown signal was accepted")
    except NatureRemoError as e:
        ok("unknown_signal", str(e).replace("\n", " "))

    print("DONE", flush=True)


CATALOGUE = {"AC": "kumo-ac-generic", "TV": "kumo-tv-generic", "LIGHT": "kumo-light-generic"}


def make_from_catalogue(api, device_id, kind):
    """An appliance from Kumo's model catalogue, as the app creates one."""
    a = api.create_appliance(device_id, kind.lower(), "ico_" + kind.lower(), CATALOGUE[kind], kind)
    assert a.type == kind and a.model.id == CATALOGUE[kind], a
    ok("create_" + kind.lower(), a.id)
    return a


if __name__ == "__main__":
    main()
