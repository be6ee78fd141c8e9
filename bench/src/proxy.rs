//! A TCP proxy that can cut what it carries, for the chaos benchmark: the
//! bridge reaches a node through it, and a cut closes every connection it
//! carries and turns new ones away (accepted, then closed at once) for a
//! while — a network partition between the two, as either side sees it.
//!
//! Owns only bytes and sockets; it never looks into the TLS it forwards.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// Cuts a running proxy; cheap to clone.
#[derive(Clone)]
pub struct Cutter {
    /// The end of the current cut (`None`: never cut), bumped by every cut so
    /// that live connections notice.
    until: Arc<watch::Sender<Option<Instant>>>,
    /// Connections forwarding now.
    live: Arc<AtomicU64>,
}

impl Cutter {
    /// Closes every live connection and turns new ones away for `period`;
    /// returns how many connections were live.
    pub fn cut(&self, period: Duration) -> u64 {
        let live = self.live.load(Relaxed);
        self.until.send_replace(Some(Instant::now() + period));
        live
    }

    /// Connections forwarding now.
    pub fn live(&self) -> u64 {
        self.live.load(Relaxed)
    }

    fn refusing(&self) -> bool {
        self.until
            .borrow()
            .is_some_and(|until| Instant::now() < until)
    }
}

/// A proxy from a bound listener to `upstream`.
pub struct Proxy {
    listener: TcpListener,
    upstream: SocketAddr,
    cutter: Cutter,
}

impl Proxy {
    /// Proxies connections accepted on `listener` to `upstream`.
    pub fn new(listener: TcpListener, upstream: SocketAddr) -> Proxy {
        let (until, _) = watch::channel(None);
        Proxy {
            listener,
            upstream,
            cutter: Cutter {
                until: Arc::new(until),
                live: Arc::new(AtomicU64::new(0)),
            },
        }
    }

    /// The handle that cuts this proxy.
    pub fn cutter(&self) -> Cutter {
        self.cutter.clone()
    }

    /// Accepts and forwards until the listener fails (never, in practice):
    /// run it in a task and abort that to stop.
    pub async fn run(self) -> std::io::Result<()> {
        loop {
            let (client, _) = self.listener.accept().await?;
            if self.cutter.refusing() {
                drop(client); // turned away: the peer reads an immediate close
                continue;
            }
            let cutter = self.cutter.clone();
            let upstream = self.upstream;
            tokio::spawn(async move {
                cutter.live.fetch_add(1, Relaxed);
                let _ = forward(client, upstream, &cutter).await;
                cutter.live.fetch_sub(1, Relaxed);
            });
        }
    }
}

/// Carries one connection until either side closes it or a cut comes.
async fn forward(
    mut client: TcpStream,
    upstream: SocketAddr,
    cutter: &Cutter,
) -> std::io::Result<()> {
    let mut cut = cutter.until.subscribe();
    cut.mark_unchanged();
    let mut server = tokio::select! {
        s = TcpStream::connect(upstream) => s?,
        _ = cut.changed() => return Ok(()),
    };
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut client, &mut server) => r.map(|_| ()),
        // Dropping both streams closes both connections.
        _ = cut.changed() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An upstream that echoes every byte back, and a proxy in front of it.
    async fn echo_behind_proxy() -> (SocketAddr, Cutter, tokio::task::JoinHandle<()>) {
        let upstream = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let upstream_addr = upstream.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = upstream.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let proxy = Proxy::new(listener, upstream_addr);
        let cutter = proxy.cutter();
        let task = tokio::spawn(async move {
            let _ = proxy.run().await;
        });
        (addr, cutter, task)
    }

    async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        s.write_all(msg).await?;
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got))
            .await
            .map_err(|_| std::io::Error::other("no answer in 5 s"))??;
        Ok(got)
    }

    /// Whether the peer closed `s` (EOF or reset) within a second.
    async fn closed(s: &mut TcpStream) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(1), s.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    #[tokio::test]
    async fn the_proxy_carries_bytes_both_ways() {
        let (addr, cutter, task) = echo_behind_proxy().await;
        let mut s = TcpStream::connect(addr).await.expect("connect");
        assert_eq!(round_trip(&mut s, b"hello").await.expect("echo"), b"hello");
        assert_eq!(cutter.live(), 1);
        task.abort();
    }

    #[tokio::test]
    async fn a_cut_closes_live_connections_and_turns_new_ones_away_until_it_ends() {
        let (addr, cutter, task) = echo_behind_proxy().await;
        let mut before = TcpStream::connect(addr).await.expect("connect");
        round_trip(&mut before, b"x")
            .await
            .expect("echo before the cut");

        assert_eq!(cutter.cut(Duration::from_millis(600)), 1);
        assert!(closed(&mut before).await, "a live connection is closed");
        let mut during = TcpStream::connect(addr).await.expect("accepted");
        assert!(closed(&mut during).await, "a new one is turned away");

        tokio::time::sleep(Duration::from_millis(700)).await;
        let mut after = TcpStream::connect(addr).await.expect("connect");
        assert_eq!(
            round_trip(&mut after, b"back").await.expect("echo"),
            b"back"
        );
        task.abort();
    }
}
