//! Fuzzing of the TLS record layer from the server side, over real loopback
//! sockets: a real ClientHello mutated (flipped and rewritten bytes, record
//! headers with other types, versions and lengths, the hello fragmented over
//! records, junk records around it), and after a real handshake, streams of
//! valid application records mixed with mangled ones (bit flips, truncated,
//! relabelled or oversized records, random bytes).
//!
//! Properties: the server's handshake or read ends — error or EOF — within a
//! deadline, never panics, never yields bytes the client did not encrypt,
//! and holds bounded buffers.

use std::time::Duration;

use kumo_testkit::fuzz::config;
use proptest::prelude::*;
use proptest::sample::select;
use rustls::unbuffered::ConnectionState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::tests::{configs, held, localhost};
use super::{encrypt_into, TlsIo, READ_SIZE, RECORD_HEADER};

/// Most a server may hold after a failed or finished exchange: one maximal
/// record (2^16 − 1 bytes of body, as a header can announce) and a read.
const HELD_LIMIT: usize = RECORD_HEADER + 65_535 + READ_SIZE + 512;

const DEADLINE: Duration = Duration::from_secs(10);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A real ClientHello, as the first flight on the wire.
fn client_hello() -> Vec<u8> {
    let (_, client) = configs();
    let mut conn = rustls::ClientConnection::new(client, localhost()).expect("client");
    let mut out = Vec::new();
    conn.write_tls(&mut out).expect("hello");
    out
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(f64, u8),
    Set(f64, u8),
    Truncate(f64),
    /// Re-frame the whole flight as records of at most this many bytes.
    Fragment(usize),
    /// Rewrite the first record header: type, version minor, length.
    Header(u8, u8, u16),
    Prepend(Vec<u8>),
    Append(Vec<u8>),
}

fn record(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![kind, 3, 3];
    r.extend_from_slice(&(body.len() as u16).to_be_bytes());
    r.extend_from_slice(body);
    r
}

fn junk_record() -> impl Strategy<Value = Vec<u8>> {
    (
        select(vec![20u8, 21, 22, 23, 24, 0, 0xff]),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(kind, body)| record(kind, &body))
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = 0.0..1.0f64;
    prop_oneof![
        3 => (at.clone(), 0..8u8).prop_map(|(a, b)| Mutation::Flip(a, b)),
        2 => (at.clone(), any::<u8>()).prop_map(|(a, v)| Mutation::Set(a, v)),
        1 => at.prop_map(Mutation::Truncate),
        2 => (1..200usize).prop_map(Mutation::Fragment),
        2 => (select(vec![22u8, 20, 21, 23, 0]), 0..5u8, any::<u16>())
            .prop_map(|(t, v, l)| Mutation::Header(t, v, l)),
        1 => junk_record().prop_map(Mutation::Prepend),
        1 => junk_record().prop_map(Mutation::Append),
    ]
}

fn apply(flight: &mut Vec<u8>, m: &Mutation) {
    let at = |f: f64, len: usize| ((f * len as f64) as usize).min(len.saturating_sub(1));
    match m {
        Mutation::Flip(f, bit) if !flight.is_empty() => {
            let i = at(*f, flight.len());
            flight[i] ^= 1 << bit;
        }
        Mutation::Set(f, v) if !flight.is_empty() => {
            let i = at(*f, flight.len());
            flight[i] = *v;
        }
        Mutation::Truncate(f) => flight.truncate(at(*f, flight.len()).max(1)),
        Mutation::Fragment(size) if flight.len() > RECORD_HEADER => {
            let kind = flight[0];
            let body = flight[RECORD_HEADER..].to_vec();
            *flight = body.chunks(*size).flat_map(|c| record(kind, c)).collect();
        }
        Mutation::Header(kind, minor, len) if flight.len() >= RECORD_HEADER => {
            flight[0] = *kind;
            flight[2] = *minor;
            flight[3..5].copy_from_slice(&len.to_be_bytes());
        }
        Mutation::Prepend(r) => {
            flight.splice(0..0, r.iter().copied());
        }
        Mutation::Append(r) => flight.extend_from_slice(r),
        _ => {}
    }
}

/// Connects a raw client that sends `bytes`, then closes its side.
async fn raw_client(bytes: Vec<u8>) -> (TcpStream, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client = tokio::spawn(async move {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let _ = tcp.write_all(&bytes).await;
        let _ = tcp.shutdown().await;
        // Drain the server's answer so its writes never block.
        let _ = tcp.read_to_end(&mut Vec::new()).await;
    });
    let (tcp, _) = listener.accept().await.expect("accept");
    (tcp, client)
}

/// What the client sends after the handshake.
#[derive(Debug, Clone)]
enum Item {
    /// Application data in a valid record.
    Data(Vec<u8>),
    /// A valid record with one bit flipped.
    Flipped(Vec<u8>, f64, u8),
    /// A valid record cut short, the rest never sent.
    Cut(Vec<u8>, f64),
    /// A record of random bytes with any header.
    Junk(Vec<u8>),
}

fn item() -> impl Strategy<Value = Item> {
    let data = prop::collection::vec(any::<u8>(), 1..300);
    prop_oneof![
        4 => data.clone().prop_map(Item::Data),
        1 => (data.clone(), 0.0..1.0f64, 0..8u8).prop_map(|(d, a, b)| Item::Flipped(d, a, b)),
        1 => (data, 0.0..1.0f64).prop_map(|(d, a)| Item::Cut(d, a)),
        1 => junk_record().prop_map(Item::Junk),
    ]
}

proptest! {
    #![proptest_config(config(150))]

    /// A mangled first flight ends the handshake with an error (or EOF),
    /// in time, with bounded buffers.
    #[test]
    fn mangled_client_hellos_end_the_handshake_in_time(
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut flight = client_hello();
        for m in &mutations {
            apply(&mut flight, m);
        }
        let (server, _) = configs();
        runtime().block_on(async move {
            let (tcp, client) = raw_client(flight).await;
            let outcome = tokio::time::timeout(DEADLINE, async {
                match TlsIo::hello(tcp, || server).await {
                    Err(_) => None,
                    Ok(mut io) => {
                        let r = io.handshake().await;
                        Some((r.is_ok(), held(&io)))
                    }
                }
            })
            .await;
            client.abort();
            let outcome = outcome.map_err(|_| TestCaseError::fail("the handshake hung"))?;
            if let Some((ok, held)) = outcome {
                // The client never sends its Finished: no handshake can complete.
                prop_assert!(!ok, "a mangled hello completed a handshake");
                prop_assert!(held <= HELD_LIMIT, "{held} bytes held");
            }
            Ok(())
        })?;
    }

    /// After a real handshake: the server reads only what the client
    /// encrypted, in order (all of it when nothing was damaged), then an
    /// error or EOF.
    #[test]
    fn mangled_records_after_the_handshake_never_pass_as_data(
        items in prop::collection::vec(item(), 1..8),
    ) {
        let (server, client) = configs();
        runtime().block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            // What the client encrypted, in order, up to the first record
            // cut short (after it the stream is out of step). A flipped
            // record may still pass: rustls builds a TLS 1.3 record's AAD
            // with the constant outer type, so a flip of that byte goes
            // unnoticed — but its payload is still what was encrypted.
            let mut expected = Vec::new();
            for it in &items {
                match it {
                    Item::Data(d) | Item::Flipped(d, ..) => expected.extend_from_slice(d),
                    Item::Junk(_) => {}
                    Item::Cut(..) => break,
                }
            }
            let intact = items.iter().all(|it| matches!(it, Item::Data(_)));
            let peer = tokio::spawn(async move {
                let tcp = TcpStream::connect(addr).await.expect("connect");
                let mut tls = TlsIo::client(tcp, client, localhost()).expect("client");
                if tls.handshake().await.is_err() {
                    return;
                }
                let mut wire = Vec::new();
                for it in items {
                    let (data, damage): (Vec<u8>, Option<Item>) = match it {
                        Item::Junk(r) => {
                            wire.extend_from_slice(&r);
                            continue;
                        }
                        Item::Data(ref d) => (d.clone(), None),
                        Item::Flipped(ref d, ..) | Item::Cut(ref d, _) => (d.clone(), Some(it.clone())),
                    };
                    let mut raw = Vec::new();
                    let _ = encrypt_into(&mut raw, |buf| match tls.conn.process_tls_records(&mut []).state {
                        Ok(ConnectionState::WriteTraffic(mut w)) => w.encrypt(&data, buf),
                        _ => Ok(0),
                    });
                    match damage {
                        Some(Item::Flipped(_, at, bit)) if !raw.is_empty() => {
                            let i = ((at * raw.len() as f64) as usize).min(raw.len() - 1);
                            raw[i] ^= 1 << bit;
                        }
                        Some(Item::Cut(_, at)) => raw.truncate((at * raw.len() as f64) as usize),
                        _ => {}
                    }
                    wire.extend_from_slice(&raw);
                }
                let _ = tls.io.write_all(&wire).await;
                let _ = tls.io.shutdown().await;
                let _ = tls.io.read_to_end(&mut Vec::new()).await;
            });
            let (tcp, _) = listener.accept().await.expect("accept");
            let result = tokio::time::timeout(DEADLINE, async {
                let mut io = TlsIo::hello(tcp, || server).await?;
                io.handshake().await?;
                let mut sink = Vec::new();
                let read = io.read_to_end(&mut sink).await;
                Ok::<_, std::io::Error>((sink, read.is_ok(), held(&io)))
            })
            .await;
            peer.abort();
            let result = result.map_err(|_| TestCaseError::fail("the server hung"))?;
            if let Ok((sink, clean, held)) = result {
                prop_assert!(expected.starts_with(&sink), "read {} bytes that were not sent validly", sink.len());
                if clean && intact {
                    prop_assert_eq!(sink.len(), expected.len());
                }
                prop_assert!(held <= HELD_LIMIT, "{held} bytes held");
            }
            Ok(())
        })?;
    }
}
