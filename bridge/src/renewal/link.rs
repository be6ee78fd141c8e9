//! One MQTT 5 connection to one broker node for certificate renewal:
//! subscribes to every device's requests, answers each on the device's
//! response topic with the request's Correlation Data. Clean start: a request
//! that arrives while the bridge is away is lost, and the device asks again.

use std::sync::Arc;
use std::time::Duration;

use kumo_contract::topic::{parse_device_topic, Leaf};
use rumqttc::v5::mqttbytes::v5::{Packet, Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{Renewer, REQUESTS};

/// Requests answered at once per node (signing itself is one at a time).
const CONCURRENT: usize = 16;
/// Largest packet either way: a CSR or a certificate chain in JSON.
const MAX_PACKET: u32 = 64 * 1024;

/// Where and as whom to connect.
pub(super) struct Target {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub tls: Arc<rustls::ClientConfig>,
    /// The TLS configuration from the files as they are now (after a CA
    /// rollover re-issued them), or `None` to keep the current one.
    pub reload: Arc<dyn Fn() -> Option<Arc<rustls::ClientConfig>> + Send + Sync>,
    pub reconnect: Duration,
}

/// Keeps the connection up until `shutdown`, answering requests.
pub(super) async fn run(target: Target, renewer: Arc<Renewer>, shutdown: CancellationToken) {
    let node = format!("{}:{}", target.host, target.port);
    let mut options = MqttOptions::new(&target.client_id, &target.host, target.port);
    options
        .set_clean_start(true)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(Some(MAX_PACKET))
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            target.tls.clone(),
        )));
    let (client, mut eventloop) = AsyncClient::new(options, 256);
    let slots = Arc::new(Semaphore::new(CONCURRENT));
    let mut failures = 0u32;
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => break,
            e = eventloop.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                failures = 0;
                tracing::info!(node = %node, "renewal link connected");
                if let Err(e) = client.try_subscribe(REQUESTS, QoS::AtLeastOnce) {
                    tracing::error!(node = %node, error = %e, "cannot subscribe to renewal requests");
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break;
                };
                let (renewer, client, node) = (renewer.clone(), client.clone(), node.clone());
                tokio::spawn(async move {
                    answer(&renewer, &client, p, &node).await;
                    drop(permit);
                });
            }
            Ok(_) => {}
            Err(e) => {
                failures += 1;
                if let Some(tls) = (target.reload)() {
                    eventloop
                        .options
                        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
                }
                if failures == 1 {
                    tracing::warn!(node = %node, error = %e, "renewal link lost; reconnecting");
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(target.reconnect) => {}
                }
            }
        }
    }
    let _ = client.try_disconnect();
}

async fn answer(renewer: &Renewer, client: &AsyncClient, p: Publish, node: &str) {
    let topic = String::from_utf8_lossy(&p.topic);
    let Some((device, Leaf::CertRequest)) = parse_device_topic(&topic) else {
        return;
    };
    let props = p.properties.unwrap_or_default();
    let answer = renewer
        .answer(&device, &p.payload, props.response_topic.as_deref(), node)
        .await;
    tracing::debug!(device_id = %device, outcome = answer.outcome, topic = %answer.topic,
        "renewal answered");
    let body = match serde_json::to_vec(&answer.response) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "renewal response not serializable");
            return;
        }
    };
    let out = PublishProperties {
        correlation_data: props.correlation_data,
        content_type: Some("application/json".into()),
        ..PublishProperties::default()
    };
    if let Err(e) = client
        .publish_with_properties(answer.topic, QoS::AtLeastOnce, false, body, out)
        .await
    {
        tracing::warn!(device_id = %device, error = %e, "renewal response not sent");
    }
}
