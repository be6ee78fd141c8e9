//! `[bridge]`: the REST and metrics listeners, rate limits, command lifetime
//! and the MQTT nodes the bridge connects to. Validated before anything binds.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Settings of the bridge.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// REST listen address (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// Prometheus `/metrics` listen address (default `127.0.0.1:9080`). It has
    /// no authentication, so it is a listener of its own, never the REST port.
    pub metrics_listen: SocketAddr,
    /// Per-token request limit.
    pub rate_limit: RateLimitSettings,
    /// Commands not delivered and acknowledged within this many seconds expire (default 600).
    pub command_ttl_secs: u64,
    /// Seconds in-flight requests get to finish after shutdown begins (default 10).
    pub shutdown_grace_secs: u64,
    /// Threads of the REST API's own runtime (default 1; 0 = serve requests on the
    /// bridge's main runtime). On their own threads requests never queue behind the
    /// readings the bridge ingests, for a place in the run queue or for a core.
    pub api_threads: usize,
    /// Database connections of the REST API's own pool (default 16; 0 = requests
    /// share the bridge's pool, `database.pool_size`). Its own connections, driven
    /// by the API's threads: a request never waits for a connection behind the
    /// readings being written, nor for the bridge's busy main runtime to carry
    /// its queries.
    pub api_pool_size: usize,
    /// Seconds an accepted access token is trusted without asking the
    /// database again (default 10; 0 = every request looks it up). Every
    /// bridge forgets a token the moment it is revoked, wherever that
    /// happened (PostgreSQL `LISTEN`), and trusts none while it cannot
    /// listen; an entry never outlives the token's expiry. At most 3,600.
    pub auth_cache_secs: u64,
    /// The broker nodes the bridge subscribes to and publishes commands through.
    pub mqtt: MqttSettings,
    /// `GET /v1/events`: backlog, buffers, keep-alives.
    pub events: EventSettings,
    /// Outgoing webhooks: targets, retries, auto-disable.
    pub webhooks: WebhookSettings,
    /// Device self-provisioning with claim codes (off unless `listen` is set).
    pub provision: ProvisionSettings,
    /// Device certificates: their lifetime, and renewal over the live session.
    pub certs: DeviceCertSettings,
    /// Homes: how long an invite stays good.
    pub homes: HomeSettings,
    /// The reading writer: its buffer and batches.
    pub ingest: IngestSettings,
    /// Energy history from smart meters.
    pub energy: EnergySettings,
    /// Demand response: how events reach the enrolled air conditioners.
    pub demand_response: DemandResponseSettings,
}

/// `[bridge.demand_response]`: dispatching demand-response events.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemandResponseSettings {
    /// Commands of an event are spread over this many seconds after its
    /// start (and restores after its end), at most half the window, so the
    /// units do not all switch at once (default 300; 0 to 3,600).
    pub stagger_secs: u64,
    /// How often the worker looks for due commands and restores, in
    /// milliseconds (default 1,000; 50 to 60,000).
    pub poll_interval_ms: u64,
    /// How much less a unit draws per kelvin its setpoint moves, kW: turns
    /// an event's kW target into a setpoint change (default 0.06, the
    /// simulator's unit: 180 W/K through the walls at a COP of 3; 0.001 to 10).
    pub kw_per_kelvin: f64,
}

impl Default for DemandResponseSettings {
    fn default() -> Self {
        Self {
            stagger_secs: 300,
            poll_interval_ms: 1000,
            kw_per_kelvin: 0.06,
        }
    }
}

/// `[bridge.ingest]`: how readings reach PostgreSQL.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestSettings {
    /// Readings waiting for the database before the nodes' data connections
    /// stop being read (the back-pressure reaches the nodes, which hold
    /// device publishes); default 65,536.
    pub buffer: usize,
    /// Most readings per insert statement; default 5,000.
    pub batch_size: usize,
    /// Longest a reading waits for its batch to fill, in ms; default 50.
    pub flush_after_ms: u64,
}

impl Default for IngestSettings {
    fn default() -> Self {
        let d = crate::ingest::IngestOptions::default();
        Self {
            buffer: d.buffer,
            batch_size: d.batch_size,
            flush_after_ms: d.flush_after.as_millis() as u64,
        }
    }
}

impl IngestSettings {
    /// The writer's options.
    pub fn options(&self) -> crate::ingest::IngestOptions {
        crate::ingest::IngestOptions {
            buffer: self.buffer,
            batch_size: self.batch_size,
            flush_after: std::time::Duration::from_millis(self.flush_after_ms),
        }
    }
}

/// `[bridge.energy]`: energy history (`GET /v1/devices/{id}/energy`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnergySettings {
    /// Two consecutive meter readings on either side of a slot boundary
    /// further apart than this many seconds leave both slots a gap: the
    /// energy between them cannot be placed (default 600; 1 to 1,800).
    pub max_sample_gap_secs: u64,
}

impl Default for EnergySettings {
    fn default() -> Self {
        Self {
            max_sample_gap_secs: 600,
        }
    }
}

impl EnergySettings {
    /// `max_sample_gap_secs` as a duration (validated to 1..=1,800 s).
    pub fn max_gap(&self) -> time::Duration {
        time::Duration::seconds(i64::try_from(self.max_sample_gap_secs).unwrap_or(i64::MAX))
    }
}

/// `[bridge.homes]`: homes and their members.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HomeSettings {
    /// Seconds a home invite can be accepted (default 86,400 = 1 day; at
    /// most 30 days).
    pub invite_ttl_secs: u64,
}

impl Default for HomeSettings {
    fn default() -> Self {
        Self {
            invite_ttl_secs: 86_400,
        }
    }
}

/// `[bridge.certs]`: device certificates the bridge signs (at provisioning and
/// renewal) and renewal over a device's live MQTT session.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceCertSettings {
    /// The PKI directory whose CA signs; default `bridge.provision.pki_dir`.
    /// Renewal is on when either is set and the MQTT side is configured.
    pub pki_dir: Option<PathBuf>,
    /// Lifetime of a device certificate the bridge signs, seconds (default
    /// 7,776,000 = 90 days).
    pub validity_secs: u64,
    /// Devices are told to renew once this share of the lifetime has passed,
    /// percent (default 67: a 90-day certificate renews after 60 days).
    pub renew_at_percent: u8,
    /// A renewed device's earlier certificates stay valid this long, then are
    /// revoked (default 86,400 = 1 day): time to reconnect with the new one.
    pub grace_secs: u64,
    /// One renewal per device per this many seconds at most (default 60).
    pub min_interval_secs: u64,
    /// Seconds between checks for earlier certificates due for revocation (default 10).
    pub revoke_check_secs: u64,
}

impl Default for DeviceCertSettings {
    fn default() -> Self {
        Self {
            pki_dir: None,
            validity_secs: 90 * 86_400,
            renew_at_percent: 67,
            grace_secs: 86_400,
            min_interval_secs: 60,
            revoke_check_secs: 10,
        }
    }
}

/// `[bridge.provision]`: the TLS listener devices enrol through.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvisionSettings {
    /// Where `POST /v1/provision` listens (TLS); unset = off. `kumo up` sets
    /// `127.0.0.1:8443` unless configured.
    pub listen: Option<SocketAddr>,
    /// The PKI directory whose CA signs device CSRs.
    pub pki_dir: Option<std::path::PathBuf>,
    /// The listener's server certificate and key (PEM).
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
    /// Node addresses handed to provisioned devices; default `bridge.mqtt.nodes`.
    pub nodes: Vec<String>,
    /// Attempts allowed per remote address and minute (default 10).
    pub attempts_per_minute: u32,
}

impl Default for ProvisionSettings {
    fn default() -> Self {
        Self {
            listen: None,
            pki_dir: None,
            cert: None,
            key: None,
            nodes: Vec::new(),
            attempts_per_minute: 10,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9080)),
            rate_limit: RateLimitSettings::default(),
            command_ttl_secs: 600,
            shutdown_grace_secs: 10,
            api_threads: 1,
            api_pool_size: 16,
            auth_cache_secs: 10,
            mqtt: MqttSettings::default(),
            events: EventSettings::default(),
            webhooks: WebhookSettings::default(),
            provision: ProvisionSettings::default(),
            certs: DeviceCertSettings::default(),
            homes: HomeSettings::default(),
            ingest: IngestSettings::default(),
            energy: EnergySettings::default(),
            demand_response: DemandResponseSettings::default(),
        }
    }
}

/// `[bridge.events]`: the live event stream (`GET /v1/events`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventSettings {
    /// Events kept per watched account for `Last-Event-ID` resumption (default 512).
    pub backlog: usize,
    /// Events buffered per SSE client before it is cut off as too slow (default 1024).
    pub subscriber_buffer: usize,
    /// Concurrent SSE streams per account; more are refused with 429 (default 16).
    pub max_streams_per_account: usize,
    /// Seconds between SSE keep-alive comments (default 15).
    pub keepalive_secs: u64,
    /// An account's backlog is dropped this many seconds after its last
    /// subscriber left (default 300).
    pub idle_backlog_secs: u64,
    /// Seconds between reloads of which device belongs to which watched
    /// account (default 30); ownership changes show within this.
    pub owner_refresh_secs: u64,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            backlog: 512,
            subscriber_buffer: 1024,
            max_streams_per_account: 16,
            keepalive_secs: 15,
            idle_backlog_secs: 300,
            owner_refresh_secs: 30,
        }
    }
}

/// `[bridge.webhooks]`: outgoing webhook deliveries.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// Allow targets on loopback, private, link-local and other non-public
    /// addresses (default false: refused at creation and at delivery).
    pub allow_private_targets: bool,
    /// Milliseconds between polls for due deliveries (default 1000).
    pub poll_ms: u64,
    /// Deliveries claimed per poll (default 32).
    pub batch: u32,
    /// Attempts per delivery, the first included (default 6).
    pub max_attempts: u32,
    /// Backoff before the first retry, in milliseconds; doubles per retry (default 2000).
    pub base_delay_ms: u64,
    /// Longest backoff, in seconds (default 300).
    pub max_delay_secs: u64,
    /// A webhook is disabled after this many deliveries in a row failed (default 20; 0 = never).
    pub disable_after_failures: u32,
    /// Finished deliveries (and their attempts) are deleted after this many
    /// days (default 7; 0 = kept forever).
    pub retention_days: u32,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allow_private_targets: false,
            poll_ms: 1000,
            batch: 32,
            max_attempts: 6,
            base_delay_ms: 2000,
            max_delay_secs: 300,
            disable_after_failures: 20,
            retention_days: 7,
        }
    }
}

/// `[bridge.rate_limit]`: a fixed window per bearer token (per peer address
/// for requests without one). Nature allows 30 per 5 minutes; a self-hosted
/// cloud can afford far more, so the default is generous.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Requests allowed per window (default 6000).
    pub requests: u32,
    /// Window length in seconds (default 300).
    pub window_secs: u64,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            requests: 6000,
            window_secs: 300,
        }
    }
}

/// `[bridge.mqtt]`: broker nodes (the first is the default) and the bridge's
/// service certificate.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttSettings {
    /// `host:port` of every broker node (default `["127.0.0.1:8883"]`).
    pub nodes: Vec<String>,
    /// CA certificate (PEM) the nodes' server certificates chain to.
    pub ca: Option<PathBuf>,
    /// The bridge's service certificate (PEM).
    pub cert: Option<PathBuf>,
    /// The service certificate's private key (PEM).
    pub key: Option<PathBuf>,
    /// MQTT client id; must be the service certificate's name (default `bridge`).
    pub client_id: String,
    /// MQTT keepalive in seconds (default 30).
    pub keepalive_secs: u64,
    /// Unacknowledged command publishes per node (default 100).
    pub inflight: u16,
    /// A sent command not acknowledged after this many seconds is sent again
    /// while its device is online, until its TTL (default 10).
    pub resend_after_secs: u64,
    /// Pause between a device coming online and its queued commands being
    /// sent, so the device can subscribe first (default 300 ms).
    pub online_settle_ms: u64,
    /// Seconds between reconnection attempts to a node (default 1).
    pub reconnect_secs: u64,
    /// How often the device-ownership log is read for changes to announce
    /// to the nodes (integrations' scope), in milliseconds (default 200). A
    /// request that removes a home member reads it at once and waits for
    /// every connected node to apply it.
    pub ownership_poll_ms: u64,
    /// A node unreachable for this many seconds is taken as lost: the devices
    /// it held are shown offline until it is reached again (default 30; 0 =
    /// never). When the node answers again with the bridge's session intact
    /// (it was only unreachable), its retained presence restores them.
    pub node_lost_after_secs: u64,
    /// Kernel receive buffer of each data connection (readings), in bytes;
    /// 0 = the kernel's autotuning. What waits in it is ahead of the node's
    /// PINGRESP: autotuned to megabytes while the bridge is busy, it held the
    /// answer past the keepalive, the connection was dropped and the QoS 0
    /// readings in flight with it. Small, the backlog stays in the node,
    /// counted by its flow control (default 64 KiB).
    pub data_recv_buffer: u32,
    /// MQTT keepalive of the data connections, in seconds (default 120).
    /// Longer than the control connection's: while the database is slow the
    /// bridge stops reading readings altogether. While readings keep arriving
    /// the connection is alive whatever the keepalive (a packet received
    /// stands for the PINGRESP waiting behind them); a connection dropped
    /// would lose the QoS 0 readings in flight. A node that dies is still
    /// seen at once (its connections reset), and the control connection
    /// keeps `keepalive_secs`.
    pub data_keepalive_secs: u64,
}

impl Default for MqttSettings {
    fn default() -> Self {
        Self {
            nodes: vec!["127.0.0.1:8883".into()],
            ca: None,
            cert: None,
            key: None,
            client_id: "bridge".into(),
            keepalive_secs: 30,
            inflight: 100,
            resend_after_secs: 10,
            online_settle_ms: 300,
            reconnect_secs: 1,
            ownership_poll_ms: 200,
            node_lost_after_secs: 30,
            data_recv_buffer: 64 * 1024,
            data_keepalive_secs: 120,
        }
    }
}

impl MqttSettings {
    /// Whether the MQTT side is configured (CA, certificate and key all set).
    pub fn enabled(&self) -> bool {
        self.ca.is_some() && self.cert.is_some() && self.key.is_some()
    }
}

impl Settings {
    /// Checks values; the error names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if self.api_threads > 64 {
            return Err("bridge.api_threads must be at most 64".into());
        }
        if self.api_pool_size > 1024 {
            return Err("bridge.api_pool_size must be at most 1024".into());
        }
        if self.auth_cache_secs > 3600 {
            return Err("bridge.auth_cache_secs must be at most 3600".into());
        }
        if self.rate_limit.requests == 0 {
            return Err("bridge.rate_limit.requests must be at least 1".into());
        }
        if self.rate_limit.window_secs == 0 {
            return Err("bridge.rate_limit.window_secs must be at least 1".into());
        }
        if !(1..=30 * 86_400).contains(&self.homes.invite_ttl_secs) {
            return Err(
                "bridge.homes.invite_ttl_secs must be between 1 and 2592000 (30 days)".into(),
            );
        }
        let i = &self.ingest;
        if i.buffer == 0 || i.batch_size == 0 || i.flush_after_ms == 0 {
            return Err(
                "bridge.ingest.buffer, batch_size and flush_after_ms must be at least 1".into(),
            );
        }
        if !(1..=1800).contains(&self.energy.max_sample_gap_secs) {
            return Err("bridge.energy.max_sample_gap_secs must be between 1 and 1800".into());
        }
        if self.demand_response.stagger_secs > 3600 {
            return Err("bridge.demand_response.stagger_secs must be at most 3600".into());
        }
        if !(50..=60_000).contains(&self.demand_response.poll_interval_ms) {
            return Err(
                "bridge.demand_response.poll_interval_ms must be between 50 and 60000".into(),
            );
        }
        if !(0.001..=10.0).contains(&self.demand_response.kw_per_kelvin) {
            return Err("bridge.demand_response.kw_per_kelvin must be between 0.001 and 10".into());
        }
        if self.command_ttl_secs == 0 {
            return Err("bridge.command_ttl_secs must be at least 1".into());
        }
        if self.metrics_listen == self.listen && self.listen.port() != 0 {
            return Err(
                "bridge.metrics_listen must not be bridge.listen: metrics have no authentication"
                    .into(),
            );
        }
        if self.mqtt.nodes.is_empty() {
            return Err("bridge.mqtt.nodes must list at least one broker node".into());
        }
        let certs = &self.certs;
        if certs.validity_secs < 10 {
            return Err("bridge.certs.validity_secs must be at least 10".into());
        }
        if !(1..=99).contains(&certs.renew_at_percent) {
            return Err("bridge.certs.renew_at_percent must be between 1 and 99".into());
        }
        if certs.revoke_check_secs == 0 {
            return Err("bridge.certs.revoke_check_secs must be at least 1".into());
        }
        if self.mqtt.client_id.is_empty() {
            return Err("bridge.mqtt.client_id must not be empty".into());
        }
        if self.mqtt.keepalive_secs < 5 {
            return Err("bridge.mqtt.keepalive_secs must be at least 5".into());
        }
        if self.mqtt.data_keepalive_secs < 5 {
            return Err("bridge.mqtt.data_keepalive_secs must be at least 5".into());
        }
        if self.mqtt.inflight == 0 {
            return Err("bridge.mqtt.inflight must be at least 1".into());
        }
        if self.mqtt.ownership_poll_ms == 0 {
            return Err("bridge.mqtt.ownership_poll_ms must be at least 1".into());
        }
        if self.mqtt.resend_after_secs == 0 {
            return Err("bridge.mqtt.resend_after_secs must be at least 1".into());
        }
        let tls = [&self.mqtt.ca, &self.mqtt.cert, &self.mqtt.key];
        if tls.iter().any(|p| p.is_some()) && !tls.iter().all(|p| p.is_some()) {
            return Err("bridge.mqtt.ca, cert and key must be set together".into());
        }
        self.validate_events()?;
        for node in &self.mqtt.nodes {
            let valid = node
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !valid {
                return Err(format!("bridge.mqtt.nodes entry {node:?} is not host:port"));
            }
        }
        Ok(())
    }
}

impl Settings {
    fn validate_events(&self) -> Result<(), String> {
        let e = &self.events;
        if e.backlog == 0 || e.subscriber_buffer == 0 || e.max_streams_per_account == 0 {
            return Err(
                "bridge.events.backlog, subscriber_buffer and max_streams_per_account must be at least 1"
                    .into(),
            );
        }
        if e.keepalive_secs == 0 || e.owner_refresh_secs == 0 {
            return Err(
                "bridge.events.keepalive_secs and owner_refresh_secs must be at least 1".into(),
            );
        }
        let w = &self.webhooks;
        if w.poll_ms == 0 || w.batch == 0 {
            return Err("bridge.webhooks.poll_ms and batch must be at least 1".into());
        }
        if w.max_attempts == 0 {
            return Err("bridge.webhooks.max_attempts must be at least 1".into());
        }
        if w.base_delay_ms == 0 || w.max_delay_secs == 0 {
            return Err(
                "bridge.webhooks.base_delay_ms and max_delay_secs must be at least 1".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Settings::default().validate(), Ok(()));
    }

    #[test]
    fn a_zero_window_is_rejected_by_key() {
        let mut s = Settings::default();
        s.rate_limit.window_secs = 0;
        assert!(s
            .validate()
            .unwrap_err()
            .contains("bridge.rate_limit.window_secs"));
    }

    #[test]
    fn metrics_cannot_share_the_rest_listener() {
        let mut s = Settings::default();
        s.metrics_listen = s.listen;
        assert!(s.validate().unwrap_err().contains("bridge.metrics_listen"));
    }

    #[test]
    fn a_node_without_port_is_rejected() {
        let mut s = Settings::default();
        s.mqtt.nodes = vec!["broker".into()];
        assert!(s.validate().unwrap_err().contains("bridge.mqtt.nodes"));
    }
}
