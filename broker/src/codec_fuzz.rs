//! Structure-aware fuzzing of the decode path (the node's own checks, then
//! rumqttd's codecs): valid MQTT 3.1.1 and 5 packets are generated, encoded,
//! then mutated the ways a hostile or broken client would — truncation, wrong
//! remaining lengths, reserved flags, rewritten string and property lengths,
//! invalid UTF-8, spliced streams. Properties: nothing panics, every refusal
//! is a typed [`CodecError`], a decode consumes exactly its frame, and valid
//! packets round-trip byte for byte.
//!
//! `PROPTEST_CASES` raises the case count (`bench/fuzz/run.sh`); the default
//! keeps `cargo test` to a few seconds.

use super::*;
use kumo_testkit::fuzz::config;
use proptest::prelude::*;
use proptest::sample::select;
use rumqttd::protocol::*;

const MAX: usize = 1 << 16;

/// Short strings mixing ASCII, topic wildcards, NUL and multi-byte UTF-8.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        select(vec![
            'a', 'z', '0', '/', '+', '#', '$', ' ', '\0', 'é', '€', '😀',
        ]),
        0..10,
    )
    .prop_map(String::from_iter)
}

fn bytes_of(max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn qos() -> impl Strategy<Value = QoS> {
    select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

fn user_properties() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((text(), text()), 0..3)
}

fn connect(v5: bool) -> impl Strategy<Value = Packet> {
    let will = prop::option::of((text(), bytes_of(8), qos(), any::<bool>())).prop_map(|w| {
        w.map(|(topic, message, qos, retain)| LastWill {
            topic: topic.into(),
            message,
            qos,
            retain,
        })
    });
    let login = prop::option::of((text(), text()))
        .prop_map(|l| l.map(|(username, password)| Login { username, password }));
    let props = (
        prop::option::of(any::<u32>()),
        prop::option::of(1..u16::MAX),
        prop::option::of(1..u32::MAX),
        prop::option::of(any::<u16>()),
        prop::option::of(0..2u8),
        user_properties(),
    )
        .prop_map(
            |(expiry, receive, max, alias, rri, user)| ConnectProperties {
                session_expiry_interval: expiry,
                receive_maximum: receive,
                max_packet_size: max,
                topic_alias_max: alias,
                request_response_info: rri,
                request_problem_info: rri,
                user_properties: user,
                authentication_method: None,
                authentication_data: None,
            },
        );
    let will_props = (
        prop::option::of(any::<u32>()),
        prop::option::of(text()),
        user_properties(),
    )
        .prop_map(|(delay, content_type, user)| LastWillProperties {
            delay_interval: delay,
            payload_format_indicator: None,
            message_expiry_interval: delay,
            content_type,
            response_topic: None,
            correlation_data: None,
            user_properties: user,
        });
    (
        any::<u16>(),
        text(),
        any::<bool>(),
        will,
        login,
        props,
        will_props,
    )
        .prop_map(
            move |(keep_alive, client_id, clean_session, will, login, props, will_props)| {
                let connect = Connect {
                    keep_alive,
                    client_id,
                    clean_session,
                };
                match v5 {
                    true => {
                        let will_props = will.as_ref().map(|_| will_props);
                        Packet::Connect(connect, Some(props), will, will_props, login)
                    }
                    false => Packet::Connect(connect, None, will, None, login),
                }
            },
        )
}

fn publish_packet(v5: bool) -> impl Strategy<Value = Packet> {
    let props = (
        prop::option::of(0..2u8),
        prop::option::of(any::<u32>()),
        prop::option::of(1..u16::MAX),
        prop::option::of(text()),
        prop::option::of(bytes_of(6)),
        user_properties(),
        prop::option::of(text()),
    )
        .prop_map(
            |(format, expiry, alias, response, correlation, user, content_type)| {
                PublishProperties {
                    payload_format_indicator: format,
                    message_expiry_interval: expiry,
                    topic_alias: alias,
                    response_topic: response,
                    correlation_data: correlation,
                    user_properties: user,
                    subscription_identifiers: Vec::new(),
                    content_type,
                }
            },
        );
    (
        text(),
        bytes_of(40),
        qos(),
        1..u16::MAX,
        any::<bool>(),
        any::<bool>(),
        props,
    )
        .prop_map(move |(topic, payload, qos, pkid, retain, dup, props)| {
            let dup = dup && qos != QoS::AtMostOnce;
            let p = publish(topic.into(), payload, qos, pkid, retain, dup);
            Packet::Publish(p, v5.then_some(props))
        })
}

fn subscribe(v5: bool) -> impl Strategy<Value = Packet> {
    let rule = select(vec![
        RetainForwardRule::OnEverySubscribe,
        RetainForwardRule::OnNewSubscribe,
        RetainForwardRule::Never,
    ]);
    let filter = (text(), qos(), any::<bool>(), any::<bool>(), rule).prop_map(
        move |(path, qos, nolocal, preserve_retain, retain_forward_rule)| Filter {
            path,
            qos,
            // 3.1.1 has no subscription options beyond the QoS.
            nolocal: nolocal && v5,
            preserve_retain: preserve_retain && v5,
            retain_forward_rule: match v5 {
                true => retain_forward_rule,
                false => RetainForwardRule::OnEverySubscribe,
            },
        },
    );
    let props = (prop::option::of(1..268_435_455usize), user_properties()).prop_map(
        |(id, user_properties)| SubscribeProperties {
            id,
            user_properties,
        },
    );
    (1..u16::MAX, prop::collection::vec(filter, 1..4), props).prop_map(
        move |(pkid, filters, props)| {
            Packet::Subscribe(Subscribe { pkid, filters }, v5.then_some(props))
        },
    )
}

fn unsubscribe(v5: bool) -> impl Strategy<Value = Packet> {
    (
        1..u16::MAX,
        prop::collection::vec(text(), 1..4),
        user_properties(),
    )
        .prop_map(move |(pkid, filters, user_properties)| {
            Packet::Unsubscribe(
                Unsubscribe { pkid, filters },
                v5.then_some(UnsubscribeProperties { user_properties }),
            )
        })
}

fn puback(v5: bool) -> impl Strategy<Value = Packet> {
    let reason = match v5 {
        true => select(vec![
            PubAckReason::Success,
            PubAckReason::NoMatchingSubscribers,
            PubAckReason::UnspecifiedError,
            PubAckReason::NotAuthorized,
            PubAckReason::QuotaExceeded,
        ])
        .boxed(),
        false => Just(PubAckReason::Success).boxed(),
    };
    let props = (prop::option::of(text()), user_properties()).prop_map(
        |(reason_string, user_properties)| PubAckProperties {
            reason_string,
            user_properties,
        },
    );
    (1..u16::MAX, reason, prop::option::of(props)).prop_map(move |(pkid, reason, props)| {
        Packet::PubAck(PubAck { pkid, reason }, props.filter(|_| v5))
    })
}

/// Any packet a client may send, for one protocol version.
fn packet(v5: bool) -> impl Strategy<Value = Packet> {
    prop_oneof![
        2 => connect(v5),
        4 => publish_packet(v5),
        2 => subscribe(v5),
        1 => unsubscribe(v5),
        1 => puback(v5),
        1 => Just(Packet::PingReq(PingReq)),
    ]
}

fn version_and_packet() -> impl Strategy<Value = (Version, Packet)> {
    prop_oneof![
        packet(false).prop_map(|p| (Version::V4, p)),
        packet(true).prop_map(|p| (Version::V5, p)),
    ]
}

fn encode(version: Version, packet: Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    write(version, packet, &mut out).expect("a generated packet encodes");
    out.to_vec()
}

/// One way of breaking a packet; applied to the fixed header byte and the
/// body, with the remaining length recomputed unless the mutation is about it.
#[derive(Debug, Clone)]
enum Mutation {
    /// Cut the encoded packet short at this fraction of its length.
    Truncate(f64),
    /// Replace the fixed header's flag nibble.
    Flags(u8),
    /// Replace the packet type nibble.
    Kind(u8),
    /// Encode this remaining length instead of the true one, in this many
    /// varint bytes (non-minimal encodings and a fifth byte included).
    Length(u32, u8),
    /// Overwrite two bytes at a position (string, property and id lengths).
    U16At(f64, u16),
    /// Set one byte at a position to a value picked for its edge-ness.
    ByteAt(f64, u8),
    /// Insert bytes (invalid UTF-8, property ids and values) at a position.
    Insert(f64, Vec<u8>),
    /// Remove a span of bytes.
    Remove(f64, f64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = 0.0..1.0f64;
    let edge = select(vec![
        0x00u8, 0x01, 0x7f, 0x80, 0xc0, 0xed, 0xfe, 0xff, 0x26, 0x0b,
    ]);
    let insert = prop_oneof![
        // Overlong, surrogate, stray continuation and truncated sequences.
        select(vec![
            vec![0xc0, 0x80],
            vec![0xed, 0xa0, 0x80],
            vec![0x80],
            vec![0xf4, 0x90, 0x80, 0x80],
            vec![0xe2, 0x82],
            vec![0xff],
        ]),
        // A property: id (known or not) and some value bytes.
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..6)).prop_map(|(id, mut v)| {
            v.insert(0, id);
            v
        }),
        prop::collection::vec(any::<u8>(), 1..8),
    ];
    prop_oneof![
        at.clone().prop_map(Mutation::Truncate),
        (0..16u8).prop_map(Mutation::Flags),
        (0..16u8).prop_map(Mutation::Kind),
        (any::<u32>(), 1..6u8).prop_map(|(l, n)| Mutation::Length(l % (1 << 28), n)),
        (at.clone(), any::<u16>()).prop_map(|(a, v)| Mutation::U16At(a, v)),
        (at.clone(), edge).prop_map(|(a, v)| Mutation::ByteAt(a, v)),
        (at.clone(), insert).prop_map(|(a, v)| Mutation::Insert(a, v)),
        (at.clone(), at).prop_map(|(a, b)| Mutation::Remove(a, b)),
    ]
}

/// Splits an encoded packet into its first byte and body.
fn split(bytes: &[u8]) -> (u8, Vec<u8>) {
    let header = v4::check(bytes.iter(), MAX).expect("a generated packet frames");
    (bytes[0], bytes[header.fixed_header_len..].to_vec())
}

fn varint_bytes(mut len: u32, width: u8) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..width {
        let mut b = (len & 0x7f) as u8;
        len >>= 7;
        if i + 1 < width {
            b |= 0x80;
        }
        out.push(b);
    }
    out
}

fn pos(at: f64, len: usize) -> usize {
    ((at * len as f64) as usize).min(len)
}

/// Applies the mutations and serializes the result.
fn mutate(encoded: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let (mut byte1, mut body) = split(encoded);
    let mut length: Option<Vec<u8>> = None;
    let mut cut: Option<f64> = None;
    for m in mutations {
        match m {
            Mutation::Truncate(at) => cut = Some(*at),
            Mutation::Flags(f) => byte1 = (byte1 & 0xf0) | f,
            Mutation::Kind(k) => byte1 = (k << 4) | (byte1 & 0x0f),
            Mutation::Length(l, n) => length = Some(varint_bytes(*l, *n)),
            Mutation::U16At(at, v) if body.len() >= 2 => {
                let i = pos(*at, body.len() - 2);
                body[i..i + 2].copy_from_slice(&v.to_be_bytes());
            }
            Mutation::ByteAt(at, v) if !body.is_empty() => {
                let i = pos(*at, body.len() - 1);
                body[i] = *v;
            }
            Mutation::Insert(at, v) => {
                let i = pos(*at, body.len());
                body.splice(i..i, v.iter().copied());
            }
            Mutation::Remove(a, b) => {
                let (i, j) = (pos(*a, body.len()), pos(*b, body.len()));
                body.drain(i.min(j)..i.max(j));
            }
            _ => {}
        }
    }
    let mut out = vec![byte1];
    match length {
        Some(l) => out.extend(l),
        None => out.extend(varint_bytes(
            body.len() as u32,
            match body.len() {
                0..=127 => 1,
                128..=16_383 => 2,
                _ => 3,
            },
        )),
    }
    out.extend(body);
    if let Some(at) = cut {
        out.truncate(pos(at, out.len()));
    }
    out
}

/// Decodes `bytes` as a stream until it runs dry or errs, checking that every
/// decode consumes exactly its frame and a pending one consumes nothing.
/// Returns how many packets decoded.
fn decode_stream(version: Version, bytes: &[u8], max: usize) -> usize {
    let mut buf = BytesMut::from(bytes);
    let mut decoded = 0;
    loop {
        let before = buf.len();
        let framed = v4::check(buf.iter(), max).map(|h| h.frame_length());
        match read(version, &mut buf, max) {
            Ok(Some(_)) => {
                decoded += 1;
                let used = before - buf.len();
                assert_eq!(Ok(used), framed.map_err(|_| ()), "consumed its frame");
                assert!(used >= 2, "a decode always makes progress");
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "a pending frame consumes nothing");
                return decoded;
            }
            Err(_) => return decoded,
        }
    }
}

proptest! {
    #![proptest_config(config(2_000))]

    /// What a well-behaved client sends decodes to the same packet.
    #[test]
    fn valid_packets_of_either_version_round_trip((version, packet) in version_and_packet()) {
        let bytes = encode(version, packet.clone());
        let mut buf = BytesMut::from(&bytes[..]);
        let frame = read(version, &mut buf, MAX)
            .expect("a valid packet decodes")
            .expect("and is complete");
        prop_assert!(buf.is_empty());
        match (&packet, &frame.packet) {
            // A v5 PUBACK without properties may be written in its short form.
            (Packet::PubAck(sent, _), Packet::PubAck(got, _)) => prop_assert_eq!(sent, got),
            (Packet::Publish(p, _), Packet::Publish(..)) => {
                // QoS and packet id are private: read them from the serialized form.
                let raw = p.serialize();
                let qos = (raw[0] >> 1) & 0b11;
                let pkid = if qos == 0 { 0 } else { u16::from_be_bytes([raw[1], raw[2]]) };
                prop_assert_eq!((frame.qos, frame.pkid), (qos, pkid));
                prop_assert_eq!(encode(version, frame.packet), bytes);
            }
            // Empty properties decode as none: the bytes are what must match.
            _ => prop_assert_eq!(encode(version, frame.packet), bytes),
        }
    }

    /// Valid packets mutated: errors, pending frames or some packet — never a
    /// panic, and never a decode that consumes more or less than its frame.
    #[test]
    fn mutated_packets_never_panic_the_decoders(
        (version, packet) in version_and_packet(),
        mutations in prop::collection::vec(mutation(), 1..4),
        max in select(vec![16usize, 128, MAX]),
    ) {
        let bytes = mutate(&encode(version, packet), &mutations);
        decode_stream(version, &bytes, max);
        // The other version's decoder sees the same bytes (a CONNECT's level lies).
        let other = if version == Version::V4 { Version::V5 } else { Version::V4 };
        decode_stream(other, &bytes, max);
        let _ = peek_version(&bytes, max);
    }

    /// A stream of several packets, some broken, decodes in order up to the
    /// first broken one.
    #[test]
    fn a_stream_decodes_in_order_up_to_the_first_broken_packet(
        v5 in any::<bool>(),
        packets in prop::collection::vec((packet(false), packet(true)), 1..6),
        broken in prop::collection::vec(prop::option::weighted(0.3, mutation()), 6),
    ) {
        let version = if v5 { Version::V5 } else { Version::V4 };
        let mut stream = Vec::new();
        let mut intact = 0;
        let mut counting = true;
        for ((p4, p5), m) in packets.into_iter().zip(broken) {
            let bytes = encode(version, if v5 { p5 } else { p4 });
            match m {
                Some(m) => {
                    counting = false;
                    stream.extend(mutate(&bytes, &[m]));
                }
                None => {
                    intact += usize::from(counting);
                    stream.extend(bytes);
                }
            }
        }
        prop_assert!(decode_stream(version, &stream, MAX) >= intact);
    }

    /// Bytes with no structure at all, behind each client packet type.
    #[test]
    fn random_frames_never_panic_the_decoders(
        kind in select(vec![1u8, 3, 4, 5, 6, 7, 8, 10, 12, 14]),
        flags in 0..16u8,
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = vec![(kind << 4) | flags, body.len() as u8];
        bytes.extend(body);
        decode_stream(Version::V4, &bytes, 1024);
        decode_stream(Version::V5, &bytes, 1024);
        let _ = peek_version(&bytes, 1024);
    }
}
