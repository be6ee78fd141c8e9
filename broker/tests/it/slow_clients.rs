//! A thousand TCP sockets that never send a ClientHello sit on the port while
//! 200 real devices connect: every device must connect promptly.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use crate::common::{Client, TestNode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_do_not_delay_real_devices() {
    let node = TestNode::start_with(|s| s.max_concurrent_handshakes = 64).await;
    let mut silent = Vec::with_capacity(1000);
    for _ in 0..1000 {
        silent.push(tokio::net::TcpStream::connect(node.addr).await.unwrap());
    }
    let creds: Vec<_> = (0..200)
        .map(|i| node.pki.device(&format!("dev-{i}")))
        .collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, c) in creds.into_iter().enumerate() {
        let (addr, ca) = (node.addr, node.pki.ca_path.clone());
        tasks.push(tokio::spawn(async move {
            let stream = crate::common::tls_connect(addr, &ca, Some(&c))
                .await
                .unwrap();
            let mut client = Client::from_stream(stream, 4);
            let code = client.connect(&format!("dev-{i}"), 30, None).await;
            (code, client)
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        let (code, client) = t.await.unwrap();
        assert_eq!(code, 0);
        clients.push(client);
    }
    let took = started.elapsed();
    // Debug builds on a shared 2-core box: well under the 10 s handshake deadline
    // the silent sockets are still holding.
    assert!(took < Duration::from_secs(8), "200 devices took {took:?}");
    assert_eq!(node.metrics.handshakes_with("ok"), 200);
    drop(silent);
}
