//! Admission control under a connect storm: handshakes that could not finish
//! in time are refused at accept, and connected sessions keep being served.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{client_config, TestNode, WAIT};
use rumqttd::protocol::{Packet, PingReq};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The bytes of a real ClientHello for `config`.
fn client_hello(config: &Arc<rustls::ClientConfig>) -> Vec<u8> {
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_stalling_handshakes_is_shed_before_tls_while_a_connected_device_is_served() {
    // One handshake at a time, a 1 s deadline. Each storm client sends a real
    // ClientHello, and once the node answers it stalls for 100 ms and gives
    // up: the queue moves at
    // about 10 handshakes per second while 50 per second arrive, so most of
    // the storm could only time out.
    let node = TestNode::start_with(|s| {
        s.max_concurrent_handshakes = 1;
        s.handshake_timeout_ms = 1_000;
    })
    .await;
    let mut calm = node.device("remo-calm", 4).await;
    let creds = node.pki.device("remo-storm");
    let hello = client_hello(&client_config(&node, &creds, &rustls::version::TLS13));
    let addr = node.addr;
    let storm = tokio::spawn(async move {
        let mut held = Vec::new();
        for _ in 0..60 {
            let hello = hello.clone();
            held.push(tokio::spawn(async move {
                let Ok(mut tcp) = TcpStream::connect(addr).await else {
                    return;
                };
                let _ = tcp.write_all(&hello).await;
                // The node answers once the handshake has its slot; then stall.
                let mut b = [0u8; 1];
                if matches!(tcp.read(&mut b).await, Ok(1)) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for h in held {
            let _ = h.await;
        }
    });
    // The connected device is answered promptly all through the storm.
    let mut slowest = Duration::ZERO;
    while !storm.is_finished() {
        let t = std::time::Instant::now();
        calm.send(Packet::PingReq(PingReq)).await;
        let answer = calm.recv_within(WAIT).await;
        assert!(
            matches!(answer, Some(Packet::PingResp(_))),
            "PINGREQ during the storm got {answer:?}"
        );
        slowest = slowest.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    storm.await.unwrap();
    let shed = node.metrics.connects_shed.load(Relaxed);
    let timed_out = node.metrics.handshakes_with("timeout");
    eprintln!("storm of 60: {shed} shed, {timed_out} timed out; slowest PINGRESP {slowest:?}");
    // Shed instead of left to time out: few of the admitted ones ran out of time.
    assert!(shed >= 20, "only {shed} of 60 shed ({timed_out} timed out)");
    assert!(timed_out <= 10, "{timed_out} of 60 timed out ({shed} shed)");
    assert_eq!(node.metrics.handshakes_with("shed"), shed);
    assert!(
        slowest < Duration::from_secs(1),
        "slowest PINGRESP {slowest:?}"
    );
    // The storm over, a device connects as usual.
    let mut after = node.device("remo-after", 5).await;
    after.send(Packet::PingReq(PingReq)).await;
    assert!(matches!(after.recv().await, Some(Packet::PingResp(_))));
    let metrics = node.http_get("/metrics").await;
    assert!(metrics.contains(&format!("kumo_broker_connects_shed_total {shed}")));
}
