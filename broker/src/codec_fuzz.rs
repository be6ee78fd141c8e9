//! Mutation fuzzing of the decoders: malformed input must yield errors, never panics.

use super::*;

/// Random frames must produce errors, never panics (a panic would skip a
/// session's cleanup).
#[test]
fn random_frames_never_panic_the_decoders() {
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..200_000 {
        let kind = [1u8, 3, 4, 5, 6, 7, 8, 10, 12, 14][(next() % 10) as usize];
        let flags = (next() % 16) as u8;
        let len = (next() % 40) as usize;
        let mut bytes = vec![(kind << 4) | flags, len as u8];
        bytes.extend((0..len).map(|_| next() as u8));
        for version in [Version::V4, Version::V5] {
            let mut buf = BytesMut::from(&bytes[..]);
            let _ = read(version, &mut buf, 1024);
        }
        let _ = peek_version(&bytes, 1024);
    }
}

fn valid_v5_packets() -> Vec<Vec<u8>> {
    use rumqttd::protocol::*;
    let props = PublishProperties {
        response_topic: Some("r/t".into()),
        correlation_data: Some(Bytes::from_static(b"cd")),
        user_properties: vec![("k".into(), "v".into())],
        content_type: Some("json".into()),
        message_expiry_interval: Some(5),
        ..Default::default()
    };
    let will = LastWill {
        topic: "w/t".into(),
        message: "bye".into(),
        qos: QoS::AtLeastOnce,
        retain: true,
    };
    let will_props = LastWillProperties {
        delay_interval: Some(1),
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(2),
        content_type: Some("c".into()),
        response_topic: Some("r".into()),
        correlation_data: Some(Bytes::from_static(b"x")),
        user_properties: vec![("a".into(), "b".into())],
    };
    let connect_props = ConnectProperties {
        session_expiry_interval: Some(10),
        receive_maximum: Some(5),
        max_packet_size: Some(1000),
        topic_alias_max: Some(3),
        request_response_info: Some(1),
        request_problem_info: Some(1),
        user_properties: vec![("u".into(), "p".into())],
        authentication_method: None,
        authentication_data: None,
    };
    let filter = Filter {
        path: "a/+/b".into(),
        qos: QoS::AtLeastOnce,
        nolocal: true,
        preserve_retain: true,
        retain_forward_rule: RetainForwardRule::OnNewSubscribe,
    };
    let packets = vec![
        Packet::Connect(
            Connect {
                keep_alive: 30,
                client_id: "c".into(),
                clean_session: true,
            },
            Some(connect_props),
            Some(will),
            Some(will_props),
            Some(Login {
                username: "u".into(),
                password: "p".into(),
            }),
        ),
        Packet::Publish(
            publish("a/b".into(), "x".into(), QoS::AtLeastOnce, 3, true, false),
            Some(props),
        ),
        Packet::Subscribe(
            Subscribe {
                pkid: 4,
                filters: vec![filter],
            },
            Some(SubscribeProperties {
                id: Some(2),
                user_properties: vec![("k".into(), "v".into())],
            }),
        ),
        Packet::Unsubscribe(
            Unsubscribe {
                pkid: 5,
                filters: vec!["a/b".into()],
            },
            Some(UnsubscribeProperties {
                user_properties: vec![("k".into(), "v".into())],
            }),
        ),
        Packet::PubAck(
            PubAck {
                pkid: 6,
                reason: PubAckReason::NotAuthorized,
            },
            Some(PubAckProperties {
                reason_string: Some("r".into()),
                user_properties: vec![],
            }),
        ),
    ];
    packets
        .into_iter()
        .map(|p| {
            let mut b = BytesMut::new();
            rumqttd::protocol::v5::V5.write(p, &mut b).expect("encode");
            b.to_vec()
        })
        .collect()
}

#[test]
fn mutated_valid_packets_never_panic_the_decoders() {
    let seeds = valid_v5_packets();
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut decoded = 0;
    for _ in 0..200_000 {
        let mut bytes = seeds[(next() % seeds.len() as u64) as usize].clone();
        for _ in 0..1 + next() % 3 {
            let i = 1 + (next() as usize) % (bytes.len() - 1);
            bytes[i] = next() as u8;
        }
        if next() % 4 == 0 {
            let cut = 2 + (next() as usize) % (bytes.len() - 1);
            bytes.truncate(cut);
        }
        for version in [Version::V4, Version::V5] {
            let mut buf = BytesMut::from(&bytes[..]);
            if matches!(read(version, &mut buf, 1 << 16), Ok(Some(_))) {
                decoded += 1;
            }
        }
    }
    // The mutations must reach the decoders' inner paths, not just the framing.
    assert!(decoded > 10_000, "only {decoded} mutated packets decoded");
}
