//! One simulated device's behaviour: an IR hub with its room and appliances, or a
//! smart-meter gateway with its household and an ECHONET Lite air conditioner.
//!
//! Turns command payloads into acks and state changes (with configurable failure
//! and silent-ignore fractions) and produces telemetry for a time step. Pure: the
//! network runtime feeds it bytes and times and publishes what it returns.

use std::sync::LazyLock;

use super::appliance::Appliances;
use super::echonet::ElAircon;
use super::meter::{self, MeterReading, SmartMeter};
use super::rng::SimRng;
use super::sensors::{HubSensors, SensorReadings};
use kumo_contract::appliance::echonet::Eoj;
use kumo_contract::payload::{
    Ack, AckData, AckResult, Action, ApplianceStates, Command, DeviceKind, EchonetProperty,
    IrMessage, MeterReport, StateReport,
};

/// Firmware version the simulated devices report.
pub const FIRMWARE_VERSION: &str = "Remo/1.14.6-kumo-sim";

/// How often commands go wrong, to exercise the cloud's error paths.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CommandPolicy {
    /// Fraction of valid commands acked as failed ("appliance did not respond").
    pub failure_rate: f64,
    /// Fraction of commands silently dropped: no state change, no ack.
    pub ignore_rate: f64,
}

/// What became of one command payload.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandOutcome {
    /// Publish this ack; publish the state report too if `state_changed`
    /// (after every accepted appliance command, so the report matches the ack).
    Ack {
        ack: Box<Ack>,
        state_changed: bool,
        issued_at: Option<u64>,
    },
    /// Deliberately dropped (ignore fraction); no ack.
    Ignored { id: String },
    /// Not a command at all (no id, not JSON): nothing to ack.
    Unparseable,
}

/// Telemetry produced by one time step.
#[derive(Debug, Clone, PartialEq)]
pub enum Telemetry {
    Sensors(SensorReadings),
    Meter(MeterReading),
}

/// A hub's appliances: as a command left them, or as they start.
fn as_they_are(appliances: &Option<Box<Appliances>>) -> &Appliances {
    static AS_THEY_START: LazyLock<Appliances> = LazyLock::new(Appliances::default);
    appliances.as_deref().unwrap_or(&AS_THEY_START)
}

/// A hub's appliances, made its own for a command to change.
fn to_change(appliances: &mut Option<Box<Appliances>>) -> &mut Appliances {
    appliances.get_or_insert_with(Default::default)
}

/// A device's whole behaviour.
#[derive(Debug, Clone)]
pub struct DeviceModel {
    rng: SimRng,
    policy: CommandPolicy,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    Hub {
        room: HubSensors,
        /// `None` until a command first changes an appliance: they start as
        /// [`Appliances::default`] says, and most hubs of a fleet are never
        /// commanded (the states take ~700 bytes, paid by every device).
        appliances: Option<Box<Appliances>>,
    },
    Meter {
        meter: SmartMeter,
        aircon: ElAircon,
    },
}

impl DeviceModel {
    /// A device of `kind` whose randomness all flows from `rng`.
    pub fn new(kind: DeviceKind, mut rng: SimRng, policy: CommandPolicy) -> Self {
        let child = SimRng::new(rng.next_u64());
        let body = match kind {
            DeviceKind::Hub => Body::Hub {
                room: HubSensors::new(child),
                appliances: None,
            },
            DeviceKind::Meter => {
                let mut child = child;
                let aircon = ElAircon::new(&mut child);
                Body::Meter {
                    meter: SmartMeter::new(child),
                    aircon,
                }
            }
        };
        Self { rng, policy, body }
    }

    /// A gateway's household runs its air conditioner as it usually does
    /// (cooling or heating for its climate) with chance `fraction`, instead
    /// of leaving it off until commanded. Hubs are unchanged.
    pub fn household_habits(&mut self, fraction: f64) {
        if let Body::Meter { aircon, .. } = &mut self.body {
            if self.rng.chance(fraction) {
                aircon.run_as_usual(&mut self.rng);
            }
        }
    }

    /// A gateway's meter totals, kWh bought and sold; `None` for hubs.
    pub fn meter_totals(&self) -> Option<(f64, f64)> {
        match &self.body {
            Body::Meter { meter, .. } => Some(meter.totals_kwh()),
            Body::Hub { .. } => None,
        }
    }

    /// Takes energy off a gateway's meter totals (see `SmartMeter::rewind`).
    pub fn rewind_meter(&mut self, bought_kwh: f64, sold_kwh: f64) {
        if let Body::Meter { meter, .. } = &mut self.body {
            meter.rewind(bought_kwh, sold_kwh);
        }
    }

    /// Hub or meter.
    pub fn kind(&self) -> DeviceKind {
        match self.body {
            Body::Hub { .. } => DeviceKind::Hub,
            Body::Meter { .. } => DeviceKind::Meter,
        }
    }

    /// Advances the model by `dt_secs` to local time `hour` and returns readings.
    pub fn step(&mut self, hour: f64, dt_secs: f64) -> Telemetry {
        match &mut self.body {
            Body::Hub { room, appliances } => {
                let influence = as_they_are(appliances).influence();
                Telemetry::Sensors(room.step(hour, dt_secs, influence))
            }
            Body::Meter { meter, aircon } => {
                // The unit draws what its state asked for over the step.
                let ac_w = aircon.power_w();
                aircon.step(hour, dt_secs);
                Telemetry::Meter(meter.step(hour, dt_secs, ac_w))
            }
        }
    }

    /// A gateway's report of its ECHONET Lite air conditioner, when this
    /// connection has not seen its values yet; `None` for hubs.
    pub fn echonet_report(&mut self, now_ms: u64) -> Option<MeterReport> {
        match &mut self.body {
            Body::Meter { aircon, .. } => aircon.report_if_changed(now_ms),
            Body::Hub { .. } => None,
        }
    }

    /// A new connection: a gateway reports its ECHONET Lite objects afresh.
    pub fn connected(&mut self) {
        if let Body::Meter { aircon, .. } = &mut self.body {
            aircon.forget_reported();
        }
    }

    /// The retained state report.
    pub fn state(&self, now_ms: u64) -> StateReport {
        StateReport {
            online: true,
            kind: self.kind(),
            firmware_version: FIRMWARE_VERSION.into(),
            mac_address: None,
            serial_number: None,
            appliances: match &self.body {
                Body::Hub { appliances, .. } => Some(as_they_are(appliances).report()),
                Body::Meter { .. } => None,
            },
            ts: now_ms,
        }
    }

    /// Handles one payload received on the commands topic.
    pub fn handle_command(&mut self, payload: &[u8], now_ms: u64) -> CommandOutcome {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(payload) else {
            return CommandOutcome::Unparseable;
        };
        let Some(id) = value.get("id").and_then(|v| v.as_str()).map(str::to_owned) else {
            return CommandOutcome::Unparseable;
        };
        let issued_at = value.get("ts").and_then(|v| v.as_u64());
        if self.rng.chance(self.policy.ignore_rate) {
            return CommandOutcome::Ignored { id };
        }
        let result = match serde_json::from_value::<Command>(value) {
            Err(e) => Err(format!("invalid command: {e}")),
            Ok(_) if self.rng.chance(self.policy.failure_rate) => {
                Err("appliance did not respond".to_owned())
            }
            Ok(cmd) => self.apply(&cmd.action),
        };
        let ack = match result {
            Ok(done) => Ack {
                id,
                result: AckResult::Ok,
                reason: None,
                state: done.state,
                data: done.data,
                echonetlite_properties: done.echonet,
                ts: now_ms,
            },
            Err(reason) => Ack {
                id,
                result: AckResult::Failed,
                reason: Some(reason),
                state: None,
                data: None,
                echonetlite_properties: None,
                ts: now_ms,
            },
        };
        // Every accepted appliance command re-publishes the state report, even
        // when nothing changed: the retained report then always matches the ack.
        let state_changed = ack.state.is_some();
        CommandOutcome::Ack {
            ack: Box::new(ack),
            state_changed,
            issued_at,
        }
    }

    fn apply(&mut self, action: &Action) -> Result<Done, String> {
        let appliances = match &mut self.body {
            Body::Hub { appliances, .. } => appliances,
            Body::Meter { aircon, .. } => return echonet(aircon, action),
        };
        let state = match action {
            Action::Aircon { model, settings } => {
                to_change(appliances).aircon(model.as_deref(), settings)
            }
            Action::Tv { model, button } => to_change(appliances).tv(model.as_deref(), button),
            Action::Light { model, button } => {
                to_change(appliances).light(model.as_deref(), button)
            }
            Action::FloorHeater { model, settings } => {
                to_change(appliances).floor_heater(model.as_deref(), settings)
            }
            Action::LightProjector { model, button } => {
                to_change(appliances).light_projector(model.as_deref(), button)
            }
            Action::SesameBot { model, operation } => {
                to_change(appliances).sesame_bot(model.as_deref(), operation)
            }
            Action::Signal { message, .. } => {
                message.check().map_err(|e| e.to_string())?;
                return Ok(Done::default());
            }
            Action::Learn => {
                let message = self.learned_signal();
                return Ok(Done {
                    data: Some(AckData { message }),
                    ..Done::default()
                });
            }
            Action::EchonetSet { .. } | Action::EchonetRefresh { .. } => {
                return Err("an IR hub reaches no ECHONET Lite objects".into())
            }
        };
        state
            .map(|s| Done {
                state: Some(s),
                ..Done::default()
            })
            .map_err(|r| r.to_string())
    }

    /// A plausible NEC-style frame: leader, 32 bits, stop.
    fn learned_signal(&mut self) -> IrMessage {
        let mut data = vec![9000, 4500];
        for _ in 0..32 {
            data.push(560);
            data.push(if self.rng.chance(0.5) { 1690 } else { 560 });
        }
        data.push(560);
        IrMessage {
            format: "us".into(),
            freq: 38,
            data,
        }
    }
}

/// What an accepted command did: the appliance state it led to, its output,
/// the ECHONET Lite properties it set or read.
#[derive(Debug, Default)]
struct Done {
    state: Option<ApplianceStates>,
    data: Option<AckData>,
    echonet: Option<Vec<EchonetProperty>>,
}

/// A gateway's answer to a command: ECHONET Lite set and refresh of its air
/// conditioner; the smart meter is read only and IR is not its business.
fn echonet(aircon: &mut ElAircon, action: &Action) -> Result<Done, String> {
    let object = |eoj: &str| {
        if Eoj::parse(eoj) == Some(ElAircon::EOJ) {
            Ok(())
        } else {
            Err(format!(
                "no controllable ECHONET Lite object {eoj:?} on this gateway"
            ))
        }
    };
    let epcs = match action {
        Action::EchonetSet { eoj, epc, edt } => {
            object(eoj)?;
            aircon.set(*epc, edt)?;
            vec![*epc]
        }
        Action::EchonetRefresh { eoj, epcs } => {
            object(eoj)?;
            if epcs.is_empty() {
                return Err("invalid command: no epcs to refresh".into());
            }
            epcs.clone()
        }
        _ => return Err("a smart-meter gateway takes no IR commands".into()),
    };
    let props = aircon
        .properties(&epcs)
        .ok_or_else(|| format!("the air conditioner has no property among {epcs:?}"))?;
    Ok(Done {
        echonet: Some(props),
        ..Done::default()
    })
}

/// The meter's ECHONET Lite properties in the Nature API's naming.
pub fn meter_report(r: &MeterReading, ts: u64) -> MeterReport {
    let prop = |name: &str, epc: u8, val: String| EchonetProperty {
        name: name.into(),
        epc,
        val,
    };
    MeterReport {
        eoj: None,
        echonetlite_properties: vec![
            prop(
                "coefficient",
                meter::EPC_COEFFICIENT,
                r.coefficient.to_string(),
            ),
            prop(
                "cumulative_electric_energy_effective_digits",
                meter::EPC_EFFECTIVE_DIGITS,
                r.effective_digits.to_string(),
            ),
            prop(
                "normal_direction_cumulative_electric_energy",
                meter::EPC_CUMULATIVE_BOUGHT,
                r.bought_count.to_string(),
            ),
            prop(
                "cumulative_electric_energy_unit",
                meter::EPC_UNIT,
                r.unit.to_string(),
            ),
            prop(
                "reverse_direction_cumulative_electric_energy",
                meter::EPC_CUMULATIVE_SOLD,
                r.sold_count.to_string(),
            ),
            prop(
                "measured_instantaneous",
                meter::EPC_INSTANTANEOUS_POWER,
                r.instantaneous_w.to_string(),
            ),
        ],
        ts: Some(ts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(policy: CommandPolicy) -> DeviceModel {
        DeviceModel::new(DeviceKind::Hub, SimRng::new(1), policy)
    }

    fn outcome_ack(o: CommandOutcome) -> (Ack, bool) {
        match o {
            CommandOutcome::Ack {
                ack, state_changed, ..
            } => (*ack, state_changed),
            other => panic!("expected an ack, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_command_is_applied_acked_and_changes_the_reported_state() {
        let mut d = hub(CommandPolicy::default());
        let cmd = br#"{"id":"c-1","ts":10,"type":"aircon","settings":{"button":"","mode":"warm"}}"#;
        let o = d.handle_command(cmd, 20);
        let CommandOutcome::Ack { issued_at, .. } = &o else {
            panic!("{o:?}")
        };
        assert_eq!(*issued_at, Some(10));
        let (ack, changed) = outcome_ack(o);
        assert_eq!(
            (ack.id.as_str(), ack.result, ack.ts),
            ("c-1", AckResult::Ok, 20)
        );
        assert!(changed);
        let state = d.state(21).appliances.expect("hub has appliances");
        let aircon = state.aircon.expect("aircon");
        assert_eq!((aircon.mode.as_str(), aircon.button.as_str()), ("warm", ""));
        assert_eq!(
            ack.state.and_then(|s| s.aircon),
            Some(aircon),
            "the ack reports the state"
        );
    }

    /// The states are made on a first command; before it, the hub reports
    /// and heats its room as appliances that are all off.
    #[test]
    fn a_hub_nobody_commanded_reports_its_appliances_as_they_start() {
        let mut d = hub(CommandPolicy::default());
        let start = Appliances::default();
        assert_eq!(d.state(1).appliances, Some(start.report()));
        let Body::Hub { appliances, .. } = &d.body else {
            panic!("a hub")
        };
        assert!(appliances.is_none());
        // A refused command changes nothing, and a light command leaves the
        // aircon as it started.
        let _ = d.handle_command(br#"{"id":"c-0","type":"tv","button":"self-destruct"}"#, 2);
        assert_eq!(d.state(3).appliances, Some(start.report()));
        let _ = d.handle_command(br#"{"id":"c-1","type":"light","button":"on"}"#, 4);
        let state = d.state(5).appliances.expect("hub has appliances");
        assert_eq!(state.aircon, Some(start.aircon.clone()));
        assert_ne!(state.light, Some(start.light.clone()));
    }

    #[test]
    fn an_invalid_command_gets_a_failure_ack_with_a_reason() {
        let mut d = hub(CommandPolicy::default());
        for bad in [
            &br#"{"id":"c-2","type":"aircon","settings":{"temp":"99"}}"#[..],
            br#"{"id":"c-3","type":"teleport"}"#,
            br#"{"id":"c-4","type":"tv"}"#,
            br#"{"id":"c-5","type":"signal","message":{"format":"us","freq":900,"data":[1]}}"#,
        ] {
            let (ack, changed) = outcome_ack(d.handle_command(bad, 1));
            assert_eq!(ack.result, AckResult::Failed, "{ack:?}");
            assert!(ack.reason.is_some());
            assert!(!changed);
        }
    }

    #[test]
    fn fields_the_device_does_not_know_are_ignored() {
        let mut d = hub(CommandPolicy::default());
        let cmd = br#"{"id":"c-9","type":"aircon","priority":"high","model":"kumo-ac-generic",
            "settings":{"temp":"24","temp_unit":"c","eco":"on"}}"#;
        let (ack, _) = outcome_ack(d.handle_command(cmd, 1));
        assert_eq!(ack.result, AckResult::Ok, "{ack:?}");
    }

    #[test]
    fn payloads_without_a_command_id_are_not_acked() {
        let mut d = hub(CommandPolicy::default());
        assert_eq!(
            d.handle_command(b"not json", 1),
            CommandOutcome::Unparseable
        );
        assert_eq!(
            d.handle_command(br#"{"type":"learn"}"#, 1),
            CommandOutcome::Unparseable
        );
    }

    #[test]
    fn configured_fractions_of_commands_fail_or_are_ignored() {
        let policy = CommandPolicy {
            failure_rate: 0.2,
            ignore_rate: 0.1,
        };
        let mut d = hub(policy);
        let (mut failed, mut ignored) = (0, 0);
        for i in 0..2000 {
            let cmd = format!(r#"{{"id":"c{i}","type":"light","button":"on"}}"#);
            match d.handle_command(cmd.as_bytes(), 1) {
                CommandOutcome::Ignored { .. } => ignored += 1,
                CommandOutcome::Ack { ack, .. } if ack.result == AckResult::Failed => failed += 1,
                _ => {}
            }
        }
        assert!((140..260).contains(&ignored), "ignored {ignored}");
        // 20% of the 90% not ignored.
        assert!((280..440).contains(&failed), "failed {failed}");
    }

    #[test]
    fn learning_returns_an_ir_signal_in_the_ack() {
        let mut d = hub(CommandPolicy::default());
        let (ack, _) = outcome_ack(d.handle_command(br#"{"id":"l","type":"learn"}"#, 1));
        let message = ack.data.expect("data").message;
        assert_eq!(message.freq, 38);
        assert!(message.check().is_ok());
    }

    fn gateway() -> DeviceModel {
        DeviceModel::new(DeviceKind::Meter, SimRng::new(2), CommandPolicy::default())
    }

    #[test]
    fn a_gateway_sets_its_air_conditioner_and_acks_the_new_value() {
        let mut d = gateway();
        let cmd = br#"{"id":"e-1","type":"echonet_set","eoj":"013001","epc":179,"edt":"14"}"#;
        let (ack, changed) = outcome_ack(d.handle_command(cmd, 3));
        assert_eq!(ack.result, AckResult::Ok, "{ack:?}");
        assert!(
            !changed,
            "a gateway keeps no appliance state in its state report"
        );
        let props = ack.echonetlite_properties.expect("properties");
        assert_eq!((props[0].epc, props[0].val.as_str()), (0xB3, "14"));
        let report = d.echonet_report(4).expect("gateway report");
        assert!(report
            .echonetlite_properties
            .iter()
            .any(|p| p.epc == 0xB3 && p.val == "14"));
    }

    #[test]
    fn a_gateway_refreshes_the_properties_asked_for() {
        let mut d = gateway();
        let cmd = br#"{"id":"e-2","type":"echonet_refresh","eoj":"013001","epcs":[128,187]}"#;
        let (ack, _) = outcome_ack(d.handle_command(cmd, 3));
        let epcs: Vec<u8> = ack
            .echonetlite_properties
            .expect("properties")
            .iter()
            .map(|p| p.epc)
            .collect();
        assert_eq!(epcs, [0x80, 0xBB]);
    }

    #[test]
    fn a_gateway_fails_bad_echonet_commands_with_a_reason() {
        let mut d = gateway();
        for bad in [
            &br#"{"id":"e-3","type":"echonet_set","eoj":"013001","epc":179,"edt":"99"}"#[..],
            br#"{"id":"e-4","type":"echonet_set","eoj":"013001","epc":187,"edt":"10"}"#,
            br#"{"id":"e-5","type":"echonet_set","eoj":"028801","epc":231,"edt":"00000001"}"#,
            br#"{"id":"e-6","type":"echonet_refresh","eoj":"013001","epcs":[207]}"#,
        ] {
            let (ack, _) = outcome_ack(d.handle_command(bad, 1));
            assert_eq!(ack.result, AckResult::Failed, "{ack:?}");
            assert!(ack.reason.is_some() && ack.echonetlite_properties.is_none());
        }
        let (ack, _) = outcome_ack(hub(CommandPolicy::default()).handle_command(
            br#"{"id":"e-7","type":"echonet_refresh","eoj":"013001","epcs":[128]}"#,
            1,
        ));
        assert_eq!(ack.result, AckResult::Failed);
    }

    #[test]
    fn a_meter_gateway_refuses_ir_commands_and_reports_echonet_properties() {
        let mut d = DeviceModel::new(DeviceKind::Meter, SimRng::new(2), CommandPolicy::default());
        let (ack, _) = outcome_ack(d.handle_command(br#"{"id":"m","type":"learn"}"#, 1));
        assert_eq!(ack.result, AckResult::Failed);
        let Telemetry::Meter(r) = d.step(12.0, 60.0) else {
            panic!("meter telemetry")
        };
        let report = meter_report(&r, 5);
        let epcs: Vec<u8> = report
            .echonetlite_properties
            .iter()
            .map(|p| p.epc)
            .collect();
        for epc in [0xE7, 0xE0, 0xE3, 0xD3, 0xE1] {
            assert!(epcs.contains(&epc), "missing EPC {epc:#x}");
        }
        assert!(d.state(1).appliances.is_none());
    }
}
