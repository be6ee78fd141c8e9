//! Two nodes of one cloud behind a real HAProxy in TCP mode: TLS passes
//! through, so mutual TLS still ends at the node and the device's certificate
//! is its identity there; when a node goes away its devices reconnect through
//! the same address and land on the other.
#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{doc, free_port, tls_connect, Client, Pki, TestNode};
use rumqttd::protocol::QoS;

/// A running `haproxy` process; killed on drop.
struct Haproxy {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// HAProxy in front of `nodes`, configured like `deploy/haproxy.cfg`: TCP
/// mode, least connections, health from each node's `/healthz`.
fn haproxy(nodes: &[&TestNode]) -> Haproxy {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cfg = format!(
        "global\n  maxconn 1000\n\
         defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 1h\n  timeout server 1h\n  \
         retries 2\n  option redispatch\n\
         frontend mqtt\n  bind 127.0.0.1:{port}\n  default_backend nodes\n\
         backend nodes\n  balance leastconn\n  option httpchk GET /healthz\n  \
         default-server inter 200ms fall 1 rise 1 on-marked-down shutdown-sessions\n"
    );
    for (i, n) in nodes.iter().enumerate() {
        cfg.push_str(&format!(
            "  server node-{i} {} check port {}\n",
            n.addr,
            n.http.port()
        ));
    }
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let bin = if std::path::Path::new("/usr/sbin/haproxy").exists() {
        "/usr/sbin/haproxy"
    } else {
        "haproxy"
    };
    let child = Command::new(bin)
        .arg("-f")
        .arg(&path)
        .arg("-db")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy (Debian package `haproxy`) must be installed");
    Haproxy {
        child,
        port,
        _dir: dir,
    }
}

/// A device connected through the load balancer, retrying while HAProxy starts.
async fn device_via(lb: &Haproxy, pki: &Pki, id: &str) -> Client {
    let creds = pki.device(id);
    let addr = format!("127.0.0.1:{}", lb.port).parse().unwrap();
    for _ in 0..50 {
        if let Ok(stream) = tls_connect(addr, &pki.ca_path, Some(&creds)).await {
            let mut c = Client::from_stream(stream, 4);
            if c.connect(id, 30, None).await == 0 {
                return c;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{id} could not connect through HAProxy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_behind_haproxy_keep_mutual_tls_and_move_to_the_other_node_when_theirs_stops() {
    let pki = Arc::new(Pki::new());
    let mut a = TestNode::start_in(pki.clone(), |s| s.node_id = "node-a".into()).await;
    let b = TestNode::start_in(pki.clone(), |s| s.node_id = "node-b".into()).await;
    let lb = haproxy(&[&a, &b]);
    let mut on_a = a.service(4).await;
    let mut on_b = b.service(4).await;
    on_a.subscribe(&["devices/+/state"], QoS::AtMostOnce).await;
    on_b.subscribe(&["devices/+/state"], QoS::AtMostOnce).await;

    let mut dev = device_via(&lb, &pki, "remo-lb").await;
    dev.publish("devices/remo-lb/state", &doc::state("first"), false)
        .await;
    // The certificate's identity reached whichever node holds the device.
    let landed_on_a = tokio::select! {
        Some(_) = on_a.expect_publish("devices/remo-lb/state") => true,
        Some(_) = on_b.expect_publish("devices/remo-lb/state") => false,
    };
    // A certificate that is not the device's own cannot pass through as it.
    let stranger = pki.device("remo-stranger");
    let addr = format!("127.0.0.1:{}", lb.port).parse().unwrap();
    let mut s = Client::from_stream(
        tls_connect(addr, &pki.ca_path, Some(&stranger))
            .await
            .unwrap(),
        4,
    );
    assert_ne!(s.connect("remo-lb", 30, None).await, 0);

    // The node holding the device stops; the device comes back through the
    // same address and lands on the other one.
    let (survivor, stopped) = if landed_on_a {
        a.stop().await;
        (&mut on_b, "node-a")
    } else {
        drop(on_b);
        let mut b = b;
        b.stop().await;
        (&mut on_a, "node-b")
    };
    assert!(
        dev.closed_within(Duration::from_secs(5)).await,
        "{stopped} kept the device"
    );
    let mut dev = device_via(&lb, &pki, "remo-lb").await;
    dev.publish("devices/remo-lb/state", &doc::state("second"), false)
        .await;
    assert_eq!(
        survivor
            .expect_publish("devices/remo-lb/state")
            .await
            .unwrap(),
        doc::state("second")
    );
}
