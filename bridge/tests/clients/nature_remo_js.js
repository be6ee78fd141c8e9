#!/usr/bin/env node
// Drives a running bridge with the published npm client `nature-remo` (pinned by
// scripts/install-test-deps), unchanged except for its base URL.
//
// Every Cloud method is called the way a user would call it; the results are
// checked for the fields the client's TypeScript types promise. Prints one
// `OK <step> <detail>` line per step and a final `DONE`; any failure exits
// non-zero with the error on stderr.
//
// Not called: `detectAppliance` (the client posts it to /1/users/me, a bug in
// the client that no server could answer correctly) and the Local class (the
// Local API is served by a Remo on the LAN, not by the cloud).
//
// Usage: NODE_PATH=<dir>/node_modules nature_remo_js.js BASE_URL TOKEN DEVICE_ID

const assert = require("assert");
const { Cloud } = require("nature-remo");

const IR = { format: "us", freq: 38, data: [3400, 1700, 430, 430, 430, 1300, 430, 1300] };

function ok(step, detail = "") {
  console.log(`OK ${step} ${detail}`.trimEnd());
}

async function main() {
  const [base, token, deviceId] = process.argv.slice(2);
  const cloud = new Cloud(token);
  cloud.instance.defaults.baseURL = base;

  const user = await cloud.getUser();
  assert.ok(user.id && typeof user.nickname === "string", JSON.stringify(user));
  ok("getUser", user.id);
  const renamed = await cloud.updateUser("js-client");
  assert.strictEqual(renamed.nickname, "js-client");
  ok("updateUser", renamed.nickname);

  const devices = await cloud.getDevices();
  const dev = devices.find((d) => d.id === deviceId);
  assert.ok(dev, JSON.stringify(devices));
  for (const k of ["id", "name", "created_at", "updated_at", "firmware_version", "mac_address", "serial_number"]) {
    assert.strictEqual(typeof dev[k], "string", k);
  }
  assert.strictEqual(typeof dev.temperature_offset, "number");
  assert.strictEqual(typeof dev.humidity_offset, "number");
  ok("getDevices", dev.id);
  const sensors = await cloud.getSensorValue();
  assert.strictEqual(typeof sensors.temperature, "number", JSON.stringify(sensors));
  ok("getSensorValue", `te=${sensors.temperature} hu=${sensors.humidity} il=${sensors.illumination}`);
  await cloud.updateDevice(deviceId, "Study");
  await cloud.updateTemperatureOffset(deviceId, 1);
  await cloud.updateHumidityOffset(deviceId, 4);
  const dev2 = (await cloud.getDevices()).find((d) => d.id === deviceId);
  assert.deepStrictEqual([dev2.name, dev2.temperature_offset, dev2.humidity_offset], ["Study", 1, 4]);
  ok("updateDevice", `${dev2.name} ${dev2.temperature_offset} ${dev2.humidity_offset}`);

  // An IR appliance: the client sends `model=` (empty) when no model is given.
  const ir = await cloud.createAppliance("Fan", deviceId, "ico_fan");
  assert.strictEqual(ir.nickname, "Fan");
  assert.strictEqual(ir.device.id, deviceId);
  ok("createAppliance", `${ir.id} ${ir.type}`);
  const ir2 = await cloud.updateAppliance(ir.id, "Fan 2", "ico_fan");
  assert.strictEqual(ir2.nickname, "Fan 2");
  ok("updateAppliance", ir2.nickname);

  const s1 = await cloud.createApplianceSignal(ir.id, "on", IR, "ico_on");
  const s2 = await cloud.createApplianceSignal(ir.id, "off", IR, "ico_off");
  assert.ok(s1.id && s1.name === "on" && s1.image === "ico_on", JSON.stringify(s1));
  ok("createApplianceSignal", s1.id);
  await cloud.updateSignal(s1.id, "on!", "ico_on");
  await cloud.updateSignalOrders(ir.id, [s2.id, s1.id]);
  const names = (await cloud.getApplianceSignals(ir.id)).map((s) => s.name);
  assert.deepStrictEqual(names, ["off", "on!"]);
  ok("signals", names.join(","));
  await cloud.sendSignal(s1.id);
  ok("sendSignal", s1.id);
  await cloud.deleteSignal(s2.id);
  assert.deepStrictEqual((await cloud.getApplianceSignals(ir.id)).map((s) => s.id), [s1.id]);
  ok("deleteSignal", s2.id);

  // Catalogue appliances (the client sends `model` without `model_type`).
  const ac = await cloud.createAppliance("AC", deviceId, "ico_ac", "kumo-ac-generic");
  assert.strictEqual(ac.type, "AC");
  assert.ok(ac.aircon.range.modes.cool.temp.length > 0, JSON.stringify(ac.aircon));
  ok("createAppliance AC", ac.id);
  assert.deepStrictEqual([ac.settings.mode, ac.settings.temp], ["cool", "26"]);
  await cloud.updateAirconSettings(ac.id, { operation_mode: "cool", temperature: "27" });
  // The settings change once the device confirms the command.
  const deadline = Date.now() + 10000;
  let acNow;
  for (;;) {
    acNow = (await cloud.listAircon()).find((a) => a.id === ac.id);
    if (acNow.settings.temp === "27") break;
    assert.ok(Date.now() < deadline, `settings never confirmed: ${JSON.stringify(acNow.settings)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  ok("updateAirconSettings", `${acNow.settings.mode} ${acNow.settings.temp}`);
  await assert.rejects(
    cloud.updateAirconSettings(ac.id, { operation_mode: "warm", temperature: "99" }),
    /Bad Request \(400\)/,
  );
  ok("updateAirconSettings refused", "99");

  const tv = await cloud.createAppliance("TV", deviceId, "ico_tv", "kumo-tv-generic");
  assert.ok(tv.tv && tv.tv.buttons.length > 0 && tv.tv.state, JSON.stringify(tv.tv));
  const tvs = await cloud.listTV();
  assert.ok(tvs.some((a) => a.id === tv.id));
  const tvRes = await cloud.updateTV(tv.id, tv.tv.buttons[0].name);
  ok("updateTV", JSON.stringify(tvRes));
  const light = await cloud.createAppliance("Light", deviceId, "ico_light", "kumo-light-generic");
  assert.ok(light.light && light.light.buttons.length > 0 && light.light.state);
  const lights = await cloud.listLight();
  assert.ok(lights.some((a) => a.id === light.id));
  const lightRes = await cloud.updateLight(light.id, light.light.buttons[0].name);
  ok("updateLight", JSON.stringify(lightRes));

  const all = (await cloud.getAppliances()).map((a) => a.id);
  await cloud.updateAppliancesOrder([...all].reverse());
  assert.deepStrictEqual((await cloud.getAppliances()).map((a) => a.id), [...all].reverse());
  ok("updateAppliancesOrder", String(all.length));

  for (const a of [ir, ac, tv, light]) await cloud.deleteAppliance(a.id);
  const left = (await cloud.getAppliances()).map((a) => a.id);
  assert.ok(![ir, ac, tv, light].some((a) => left.includes(a.id)));
  ok("deleteAppliance");

  await assert.rejects(cloud.sendSignal("00000000-0000-0000-0000-000000000000"), /\(404\)/);
  ok("unknown signal", "404");
  console.log("DONE");
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
