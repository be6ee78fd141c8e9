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

/// A full TLS handshake as a device would do it; `true` if it completed.
async fn full_handshake(addr: std::net::SocketAddr, config: Arc<rustls::ClientConfig>) -> bool {
    let Ok(tcp) = TcpStream::connect(addr).await else {
        return false;
    };
    let name = ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_that_stall_between_flights_hold_no_slot() {
    // One handshake slot, a 3 s deadline. 40 clients send a real ClientHello,
    // read the node's answer and then stall until the node gives up on them.
    // Before, each held the one slot for its whole deadline: a device arriving
    // behind them waited or was shed. Now the slot is held only while the node
    // works, so the device connects at once and nothing is shed.
    let node = TestNode::start_with(|s| {
        s.max_concurrent_handshakes = 1;
        s.handshake_timeout_ms = 3_000;
    })
    .await;
    let creds = node.pki.device("remo-storm");
    let hello = client_hello(&client_config(&node, &creds, &rustls::version::TLS13));
    let addr = node.addr;
    let mut stalled = Vec::new();
    for _ in 0..40 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(&hello).await.unwrap();
        let mut b = [0u8; 1];
        assert_eq!(
            tcp.read(&mut b).await.unwrap(),
            1,
            "the node answers the ClientHello"
        );
        stalled.push(tcp);
    }
    let t = std::time::Instant::now();
    let mut device = node.device("remo-punctual", 4).await;
    let took = t.elapsed();
    device.send(Packet::PingReq(PingReq)).await;
    assert!(matches!(device.recv().await, Some(Packet::PingResp(_))));
    assert!(
        took < Duration::from_secs(1),
        "a device behind 40 stalled handshakes took {took:?}"
    );
    assert_eq!(node.metrics.connects_shed.load(Relaxed), 0);
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_handshakes_beyond_the_deadline_is_shed_before_tls_while_a_connected_device_is_served(
) {
    // One handshake slot, a 400 ms deadline. The storm is sized from a
    // measured handshake (client and node together) so that the queue it makes is many times the
    // deadline whatever this machine's speed: most of it could only time
    // out, and the node refuses that part after the ClientHello instead.
    let node = TestNode::start_with(|s| {
        s.max_concurrent_handshakes = 1;
        s.handshake_timeout_ms = 400;
    })
    .await;
    let mut calm = node.device("remo-calm", 4).await;
    let creds = node.pki.device("remo-storm");
    let config = client_config(&node, &creds, &rustls::version::TLS13);
    let addr = node.addr;
    let t = std::time::Instant::now();
    for _ in 0..20 {
        assert!(full_handshake(addr, config.clone()).await);
    }
    let one = t.elapsed() / 20;
    let size = (Duration::from_millis(4_800).as_secs_f64() / one.as_secs_f64())
        .clamp(600.0, 6_000.0) as usize;
    let storm = tokio::spawn(async move {
        let clients: Vec<_> = (0..size)
            .map(|_| tokio::spawn(full_handshake(addr, config.clone())))
            .collect();
        let mut done = 0;
        for c in clients {
            done += usize::from(c.await.unwrap_or(false));
        }
        done
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = storm.await.unwrap();
    let shed = node.metrics.connects_shed.load(Relaxed);
    let timed_out = node.metrics.handshakes_with("timeout");
    eprintln!(
        "storm of {size} (one handshake {one:?}): {done} completed, {shed} shed, {timed_out} timed out; slowest PINGRESP {slowest:?}"
    );
    assert!(shed > 0, "nothing of {size} shed ({timed_out} timed out)");
    assert!(done > 0, "nothing of {size} completed");
    assert_eq!(node.metrics.handshakes_with("shed"), shed);
    assert!(
        slowest < Duration::from_secs(1),
        "slowest PINGRESP {slowest:?}"
    );
    // The storm over (every handshake the node admitted ends within its
    // 400 ms deadline; until then a newcomer may still be turned away, as a
    // device that backs off would see), a device connects as usual.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut after = node.device("remo-after", 5).await;
    after.send(Packet::PingReq(PingReq)).await;
    assert!(matches!(after.recv().await, Some(Packet::PingResp(_))));
    let metrics = node.http_get("/metrics").await;
    assert!(metrics.contains(&format!("kumo_broker_connects_shed_total {shed}")));
}
