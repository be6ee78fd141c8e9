//! What a session does with each packet: inbound PUBLISH/SUBSCRIBE/… from the
//! client and outbound messages from the router or the command demultiplexer.

use std::sync::atomic::Ordering::Relaxed;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use kumo_contract::payload::from_device;
use kumo_contract::Identity;
use rumqttd::protocol::{
    Filter, Packet, PingResp, PubAck, PubAckReason, PubComp, PubCompReason, PubRec, PubRecReason,
    PubRel, PubRelReason, Publish, PublishProperties, QoS, RetainForwardRule, SubAck, Subscribe,
    SubscribeProperties, SubscribeReasonCode, UnsubAck, UnsubAckReason, Unsubscribe,
};
use rumqttd::Notification;

use super::held::Held;
use super::subscriptions::Sub;
use super::{Inflight, Session};
use crate::acl;
use crate::codec::{self, CodecError, Version};
use crate::fabric;
use crate::message::{min_qos, Message};
use crate::pressure::Class;
use crate::registry::{CloseReason, Decided, Outbound};

impl Session {
    /// Decodes and handles every complete packet in `inbuf`.
    pub(super) async fn process_input(&mut self, inbuf: &mut BytesMut) -> Result<(), CloseReason> {
        let max = self.node.settings.max_packet_size;
        loop {
            let frame = match codec::read(self.version, inbuf, max) {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(()),
                Err(CodecError::TooLarge(n)) => {
                    tracing::warn!(client_id = %self.client_id, size = n, "packet too large");
                    return Err(CloseReason::PacketTooLarge);
                }
                Err(e) => {
                    tracing::warn!(client_id = %self.client_id, error = %e, "malformed packet");
                    return Err(CloseReason::ProtocolError);
                }
            };
            self.handle_packet(frame.packet, frame.qos, frame.pkid)
                .await?;
        }
    }

    async fn handle_packet(
        &mut self,
        packet: Packet,
        qos: u8,
        pkid: u16,
    ) -> Result<(), CloseReason> {
        match packet {
            Packet::Publish(p, props) => self.on_publish(p, props, qos, pkid).await,
            Packet::PubAck(ack, _) => {
                if let Some(Inflight::Sent(_, confirm)) = self.inflight.get(&ack.pkid) {
                    if let Some(token) = *confirm {
                        // Whatever its reason code: the service has answered.
                        self.node.confirms.confirm(token);
                    }
                    self.inflight.remove(&ack.pkid);
                    self.drain_backlog();
                }
                Ok(())
            }
            Packet::PubRec(rec, _) => {
                self.on_pubrec(rec);
                Ok(())
            }
            Packet::PubComp(comp, _) => {
                if matches!(self.inflight.get(&comp.pkid), Some(Inflight::Released)) {
                    self.inflight.remove(&comp.pkid);
                    self.drain_backlog();
                }
                Ok(())
            }
            Packet::PubRel(rel, _) => {
                let reason = if self.qos2_in.remove(&rel.pkid) {
                    PubCompReason::Success
                } else {
                    PubCompReason::PacketIdentifierNotFound
                };
                self.send(Packet::PubComp(
                    PubComp {
                        pkid: rel.pkid,
                        reason,
                    },
                    None,
                ));
                Ok(())
            }
            Packet::Subscribe(s, props) => self.on_subscribe(s, props).await,
            Packet::Unsubscribe(u, _) => self.on_unsubscribe(u).await,
            Packet::PingReq(_) => {
                self.send(Packet::PingResp(PingResp));
                Ok(())
            }
            Packet::Disconnect(d, props) => {
                if let Some(expiry) = props.and_then(|p| p.session_expiry_interval) {
                    // MQTT 5 §3.14.2.2.2: a session that was to end with the
                    // connection cannot be extended on the way out.
                    if self.asked_expiry == 0 && expiry != 0 {
                        return Err(CloseReason::ProtocolError);
                    }
                    self.session_expiry =
                        super::connect::grant_session_expiry(&self.identity, expiry, &self.node);
                }
                if d.reason_code
                    == rumqttd::protocol::DisconnectReasonCode::DisconnectWithWillMessage
                {
                    Err(CloseReason::ConnectionLost)
                } else {
                    self.will = None;
                    Err(CloseReason::Clean)
                }
            }
            Packet::Connect(..) => {
                tracing::warn!(client_id = %self.client_id, "second CONNECT");
                Err(CloseReason::ProtocolError)
            }
            _ => Err(CloseReason::ProtocolError),
        }
    }

    async fn on_publish(
        &mut self,
        p: Publish,
        props: Option<PublishProperties>,
        qos: u8,
        pkid: u16,
    ) -> Result<(), CloseReason> {
        self.node.metrics.messages_in.fetch_add(1, Relaxed);
        let mut props = props;
        if let Some(p) = &props {
            // Topic aliases are not offered (CONNACK's Topic Alias Maximum is 0,
            // §3.2.2.3.8); subscription ids are server-to-client only.
            if p.topic_alias.is_some() {
                return Err(CloseReason::TopicAliasInvalid);
            }
            if !p.subscription_identifiers.is_empty() {
                return Err(CloseReason::ProtocolError);
            }
        }
        crate::message::sanitize(&mut props);
        if qos > 0 && self.version == Version::V5 && self.unanswered_in() >= self.receive_max_in {
            return Err(CloseReason::ReceiveMaximumExceeded);
        }
        let class = Class::of(&p.topic);
        let (forward, reply) = self.admit(p, props, qos, pkid)?;
        if !matches!(self.identity, Identity::Device { .. }) {
            return self.emit(forward, reply).await;
        }
        // Devices wait while the cloud is behind on their publish's class (see
        // `pressure`), and behind earlier publishes of that class still
        // waiting (one topic's messages stay in order).
        let held = self.held.as_deref();
        let waits = held.is_some_and(|h| h.iter().any(|h| h.waits_as(class)));
        if waits || self.node.pressure.throttled(class) {
            self.node.metrics.publishes_held.fetch_add(1, Relaxed);
            let h = Held {
                class,
                forward,
                reply,
                confirm: None,
            };
            self.held.get_or_insert_with(Default::default).push_back(h);
            return Ok(());
        }
        // Its class flows: it goes now. Its PUBACK waits for the service's
        // acknowledgement (see `confirm`), and follows the earlier held
        // publishes' (MQTT 3.1.1 §4.6: in the order received).
        let answers_wait = held.is_some_and(|h| h.iter().any(|h| h.reply.is_some()));
        let confirm = self.route(forward).await?;
        if reply.is_some() && (answers_wait || confirm.is_some()) {
            let h = Held {
                class,
                forward: None,
                reply,
                confirm,
            };
            self.held.get_or_insert_with(Default::default).push_back(h);
            return Ok(());
        }
        if let Some(reply) = reply {
            self.send(reply);
        }
        Ok(())
    }

    /// What becomes of a publish the session may take: the message to forward
    /// (none if refused, or a QoS 2 repeat) and the answer to the client,
    /// after the ACL, the device protocol and the retained quota.
    fn admit(
        &mut self,
        p: Publish,
        props: Option<PublishProperties>,
        qos: u8,
        pkid: u16,
    ) -> Result<(Option<Message>, Option<Packet>), CloseReason> {
        let Ok(topic) = std::str::from_utf8(&p.topic) else {
            return Err(CloseReason::ProtocolError);
        };
        let decided = match acl::may_publish(&self.identity, topic, self.node.accounts.as_ref()) {
            Ok(()) => match self.node.judge(&self.identity, topic, &p.payload) {
                Err(refusal) => self.refuse_by_protocol(topic, &refusal, qos, pkid)?,
                Ok(()) if !self.may_retain(topic, &p) => {
                    self.node.metrics.acl_denied("publish", "retained_quota");
                    tracing::warn!(client_id = %self.client_id, topic,
                        quota = self.node.settings.retained_per_device,
                        "retained message refused: the device's retained topics are at their quota");
                    if self.version == Version::V4 || qos == 0 {
                        return Err(CloseReason::QuotaExceeded);
                    }
                    (None, quota_exceeded_reply(qos, pkid))
                }
                Ok(()) => {
                    let fresh = qos != 2 || self.qos2_in.insert(pkid);
                    let message = Message {
                        topic: p.topic,
                        payload: p.payload,
                        qos: match qos {
                            0 => QoS::AtMostOnce,
                            1 => QoS::AtLeastOnce,
                            _ => QoS::ExactlyOnce,
                        },
                        retain: p.retain,
                        properties: props,
                        imported: false,
                        confirm: None,
                    };
                    (fresh.then_some(message), publish_reply(qos, pkid, true))
                }
            },
            Err(d) => {
                self.node.metrics.acl_denied("publish", d.as_str());
                tracing::warn!(client_id = %self.client_id, topic, reason = d.as_str(), "publish refused");
                if self.version == Version::V4 {
                    return Err(CloseReason::NotAuthorized);
                }
                (None, publish_reply(qos, pkid, false))
            }
        };
        Ok(decided)
    }

    /// Answers a device's message the device protocol refuses (see
    /// `broker.check_payloads`); nothing of it is forwarded. MQTT 3.1.1 has no
    /// way to say so: a payload that will never be right is acknowledged and
    /// dropped, a topic that does not exist closes the connection.
    fn refuse_by_protocol(
        &mut self,
        topic: &str,
        refusal: &from_device::Refusal,
        qos: u8,
        pkid: u16,
    ) -> Result<(Option<Message>, Option<Packet>), CloseReason> {
        let (ack, rec) = match refusal {
            from_device::Refusal::Topic => (
                PubAckReason::TopicNameInvalid,
                PubRecReason::TopicNameInvalid,
            ),
            from_device::Refusal::Payload(_) => (
                PubAckReason::ImplementationSpecificError,
                PubRecReason::ImplementationSpecificError,
            ),
        };
        self.node.metrics.acl_denied("publish", refusal.as_str());
        tracing::warn!(client_id = %self.client_id, topic, error = %refusal,
            "publish refused by the device protocol");
        match (self.version, refusal) {
            (Version::V5, _) => Ok((None, refusal_reply(qos, pkid, ack, rec))),
            (Version::V4, from_device::Refusal::Topic) => Err(CloseReason::NotAuthorized),
            (Version::V4, from_device::Refusal::Payload(_)) => {
                // A QoS 2 flow goes on to PUBREL/PUBCOMP as usual.
                if qos == 2 {
                    self.qos2_in.insert(pkid);
                }
                Ok((None, publish_reply(qos, pkid, true)))
            }
        }
    }

    /// Whether this publish may set a retained message: only a device's new
    /// retained topics count against `broker.retained_per_device` (clearing
    /// one, with an empty payload, is always allowed).
    fn may_retain(&self, topic: &str, p: &Publish) -> bool {
        !p.retain || p.payload.is_empty() || self.node.admits_retained(&self.identity, topic)
    }

    /// QoS 1 and 2 publishes from the client not answered yet: held QoS 1
    /// ones and QoS 2 ones waiting for PUBREL.
    fn unanswered_in(&self) -> usize {
        let held = self.held.as_ref().map_or(0, |h| {
            h.iter()
                .filter(|h| matches!(h.reply, Some(Packet::PubAck(..))))
                .count()
        });
        held + self.qos2_in.len()
    }

    /// Forwards a publish to the router, then answers the client.
    async fn emit(
        &mut self,
        forward: Option<Message>,
        reply: Option<Packet>,
    ) -> Result<(), CloseReason> {
        self.route(forward).await?;
        if let Some(reply) = reply {
            self.send(reply);
        }
        Ok(())
    }

    /// Tells the node's ingress pressure what a service session subscribes to.
    pub(super) fn report_filters(&mut self) {
        if let Some(g) = self.gauge.as_mut() {
            g.set_subscriptions(self.filters.granted());
        }
    }

    /// PUBREC for an outgoing QoS 2 message: release it (PUBREL) and wait for
    /// PUBCOMP; a failure reason (MQTT 5) ends the exchange (§4.3.3).
    fn on_pubrec(&mut self, rec: PubRec) {
        match self.inflight.get(&rec.pkid) {
            Some(Inflight::Sent(..))
                if rec.reason != PubRecReason::Success
                    && rec.reason != PubRecReason::NoMatchingSubscribers =>
            {
                self.inflight.remove(&rec.pkid);
                self.drain_backlog();
            }
            Some(Inflight::Sent(..) | Inflight::Released) => {
                self.inflight.insert(rec.pkid, Inflight::Released);
                self.send_pubrel(rec.pkid, true);
            }
            None => self.send_pubrel(rec.pkid, false),
        }
    }

    /// PUBREL for `pkid`; `known` false answers a PUBREC for an id not in flight.
    pub(super) fn send_pubrel(&mut self, pkid: u16, known: bool) {
        let reason = if known {
            PubRelReason::Success
        } else {
            PubRelReason::PacketIdentifierNotFound
        };
        self.send(Packet::PubRel(PubRel { pkid, reason }, None));
    }

    async fn on_subscribe(
        &mut self,
        s: Subscribe,
        props: Option<SubscribeProperties>,
    ) -> Result<(), CloseReason> {
        if props.as_ref().is_some_and(|p| p.id.is_some()) {
            // CONNACK said subscription identifiers are unavailable (§3.2.2.3.12).
            return Err(CloseReason::SubscriptionIdsUnsupported);
        }
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut routed = Vec::new();
        let mut retained = Vec::new();
        for f in s.filters {
            let shared = f.path.starts_with("$share/");
            if shared && f.nolocal {
                // MQTT 5 §3.8.3.1: No Local on a shared subscription is a Protocol Error.
                return Err(CloseReason::ProtocolError);
            }
            match acl::may_subscribe(&self.identity, &f.path, self.node.accounts.as_ref()) {
                Ok(()) => {
                    let qos = f.qos;
                    codes.push(SubscribeReasonCode::Success(qos));
                    let v5 = self.version == Version::V5;
                    let filter = unshared(&f.path).to_string();
                    let existed = self.filters.insert(Sub {
                        filter: filter.clone(),
                        qos,
                        no_local: v5 && f.nolocal,
                        retain_as_published: v5 && f.preserve_retain,
                    });
                    // MQTT-3.8.4-3 (3.1.1) and Retain Handling (MQTT 5
                    // §3.8.3.1); never for a shared subscription (§4.8.2).
                    let send_retained = !shared
                        && match (self.version, &f.retain_forward_rule) {
                            (Version::V4, _) | (_, RetainForwardRule::OnEverySubscribe) => true,
                            (_, RetainForwardRule::OnNewSubscribe) => !existed,
                            (_, RetainForwardRule::Never) => false,
                        };
                    if send_retained {
                        retained.push((filter, qos));
                    }
                    routed.push(Filter {
                        qos: QoS::AtMostOnce,
                        nolocal: false,
                        preserve_retain: false,
                        // The router never holds retained messages (see `retained`).
                        retain_forward_rule: RetainForwardRule::Never,
                        path: f.path,
                    });
                }
                Err(d) => {
                    self.node.metrics.acl_denied("subscribe", d.as_str());
                    tracing::warn!(client_id = %self.client_id, filter = %f.path, reason = d.as_str(), "subscribe refused");
                    codes.push(match (self.version, d) {
                        (Version::V4, _) => SubscribeReasonCode::Failure,
                        (Version::V5, acl::Denial::Invalid) => {
                            SubscribeReasonCode::TopicFilterInvalid
                        }
                        (Version::V5, _) => SubscribeReasonCode::NotAuthorized,
                    });
                }
            }
        }
        self.report_filters();
        // Devices get their messages from the command demultiplexer, never from a router filter.
        let link = match (&self.link, matches!(self.identity, Identity::Device { .. })) {
            (Some(link), false) if !routed.is_empty() => link.clone(),
            _ => {
                self.suback(s.pkid, codes, retained);
                return Ok(());
            }
        };
        // Answer once the router confirms, so nothing published after SUBACK is missed.
        self.pending_subacks.insert(s.pkid, (codes, retained));
        let sub = Subscribe {
            pkid: s.pkid,
            filters: routed,
        };
        fabric::send_on_link(link, Packet::Subscribe(sub, None)).await;
        Ok(())
    }

    /// Sends SUBACK, then the retained messages of the filters that asked for
    /// them (MQTT-3.3.1-8: with RETAIN=1; at the lower of their QoS and the grant).
    fn suback(&mut self, pkid: u16, codes: Vec<SubscribeReasonCode>, retained: Vec<(String, QoS)>) {
        self.send(Packet::SubAck(
            SubAck {
                pkid,
                return_codes: codes,
            },
            None,
        ));
        let service = matches!(self.identity, Identity::Service { .. });
        for (filter, granted) in retained {
            for r in self.node.fabric.retained().matching(&filter) {
                if r.imported && service {
                    continue;
                }
                self.deliver(Box::new(Outbound {
                    publish: Publish::new(r.topic.clone(), r.payload.clone(), true),
                    properties: r.properties.clone(),
                    at: r.at,
                    redelivery: None,
                    decided: Some(Decided {
                        qos: min_qos(r.qos, granted),
                        retain: true,
                    }),
                }));
            }
        }
    }

    async fn on_unsubscribe(&mut self, u: Unsubscribe) -> Result<(), CloseReason> {
        let mut reasons = Vec::with_capacity(u.filters.len());
        for f in &u.filters {
            reasons.push(if self.filters.remove(unshared(f)) {
                UnsubAckReason::Success
            } else {
                UnsubAckReason::NoSubscriptionExisted
            });
        }
        self.report_filters();
        if let Some(link) = self.link.clone() {
            let unsub = Unsubscribe {
                pkid: u.pkid,
                filters: u.filters,
            };
            fabric::send_on_link(link, Packet::Unsubscribe(unsub, None)).await;
        }
        self.send(Packet::UnsubAck(
            UnsubAck {
                pkid: u.pkid,
                reasons,
            },
            None,
        ));
        Ok(())
    }

    /// A notification on this session's router link (service and integration only).
    pub(super) async fn on_router(&mut self, n: Notification, rx: Option<&rumqttd::local::LinkRx>) {
        match n {
            Notification::Forward(f) => {
                if self.gauge.is_some() {
                    self.node.pressure.routed_out(&f.publish.topic);
                }
                self.deliver(Box::new(Outbound {
                    publish: f.publish,
                    properties: f.properties,
                    at: std::time::Instant::now(),
                    redelivery: None,
                    decided: None,
                }));
            }
            // rumqttd does not export its `Ack` type; its conversion to `Packet` is public.
            Notification::DeviceAck(ack) => {
                if let Packet::SubAck(ack, _) = Packet::from(ack) {
                    if let Some((codes, retained)) = self.pending_subacks.remove(&ack.pkid) {
                        self.suback(ack.pkid, codes, retained);
                    }
                }
            }
            Notification::Unschedule => {
                if let Some(rx) = rx {
                    let _ = rx.wake().await;
                }
            }
            _ => {}
        }
    }

    /// Handles `first` and whatever else the link already holds, up to
    /// [`super::ROUTER_BATCH`], without waiting.
    pub(super) async fn on_router_batch(
        &mut self,
        first: Notification,
        link: &mut Option<rumqttd::local::LinkRx>,
    ) {
        self.on_router(first, link.as_ref()).await;
        for _ in 1..super::ROUTER_BATCH {
            let Some(rx) = link.as_mut() else {
                return;
            };
            // `next` is ready at once while the link's local cache holds
            // notifications; a pending receive is dropped without losing any.
            match rx.next().now_or_never() {
                Some(Ok(Some(n))) => self.on_router(n, Some(rx)).await,
                _ => return,
            }
        }
    }

    /// Whether `topic` is a command for a device connected to this node. It
    /// is delivered here; every peer would only decode and drop its copy (15
    /// nodes made each REST command cost 15 nodes' work). A command that
    /// meets the device just as it moves away is resent by the bridge's
    /// sweep to the node its presence names.
    fn commands_device_here(&self, topic: &str) -> bool {
        matches!(
            kumo_contract::topic::parse_device_topic(topic),
            Some((device, kumo_contract::topic::Leaf::Commands))
                if self.node.registry.contains(device.as_str())
        )
    }

    /// Sends a message if the session may receive it and (unless already
    /// decided) one of its subscriptions takes it.
    pub(super) fn deliver(&mut self, mut msg: Box<Outbound>) {
        let origin = crate::message::take_origin(&mut msg.properties);
        // Only a service's acknowledgement confirms a device publish; the
        // token never reaches a client.
        let confirm = crate::confirm::take(&mut msg.properties)
            .filter(|_| matches!(self.identity, Identity::Service { .. }));
        let Ok(topic) = std::str::from_utf8(msg.topic()) else {
            return;
        };
        // An integration's wildcards match the fleet; ownership narrows them here,
        // for live, retained, held and resumed messages alike.
        if !acl::may_receive(&self.identity, topic, self.node.accounts.as_ref()) {
            self.node.metrics.integration_filtered.fetch_add(1, Relaxed);
            return;
        }
        if self.peer_link && self.commands_device_here(topic) {
            self.node.metrics.peer_export_skipped.fetch_add(1, Relaxed);
            return;
        }
        let decided = match msg.decided {
            Some(d) => d,
            None => {
                let stamp = crate::message::stamp(&msg.publish);
                if stamp.imported && matches!(self.identity, Identity::Service { .. }) {
                    return;
                }
                match self
                    .filters
                    .decide(topic, stamp, origin.as_deref(), &self.client_id)
                {
                    Some(d) => d,
                    None => return,
                }
            }
        };
        // MQTT 5 §3.3.2.3.3: the interval goes out minus the time the message
        // waited here; one whose time passed before it was first sent is dropped.
        let mut expiry = None;
        if let Some(secs) = msg
            .properties
            .as_ref()
            .and_then(|p| p.message_expiry_interval)
        {
            let waited = msg.at.elapsed().as_secs();
            if waited >= u64::from(secs) && msg.redelivery.is_none() {
                self.node.metrics.expired.fetch_add(1, Relaxed);
                return;
            }
            expiry = Some(secs.saturating_sub(waited as u32).max(1));
        }
        let persistent = self.link.is_some() && self.session_expiry > 0;
        let pkid = if decided.qos != QoS::AtMostOnce {
            if self.inflight.len() >= self.receive_max {
                msg.decided = Some(decided);
                if let Some(token) = confirm {
                    crate::confirm::put(&mut msg.properties, token);
                }
                self.hold(msg);
                return;
            }
            let copy = persistent.then(|| {
                let mut properties = msg.properties.clone();
                if let Some(token) = confirm {
                    // Sent again on resume, and confirmed then.
                    crate::confirm::put(&mut properties, token);
                }
                Box::new(Outbound {
                    publish: msg.publish.clone(),
                    properties,
                    at: msg.at,
                    redelivery: None,
                    decided: Some(decided),
                })
            });
            match msg.redelivery {
                Some(id) if !self.inflight.contains_key(&id) => {
                    self.inflight.insert(id, Inflight::Sent(copy, confirm));
                    id
                }
                _ => self.alloc_pkid(copy, confirm),
            }
        } else {
            0
        };
        let publish = codec::publish(
            Bytes::copy_from_slice(topic.as_bytes()),
            msg.publish.payload,
            decided.qos,
            pkid,
            decided.retain,
            msg.redelivery.is_some(),
        );
        let props = msg.properties.map(|mut p| {
            p.topic_alias = None;
            p.subscription_identifiers.clear();
            p.message_expiry_interval = expiry;
            p
        });
        let mut encoded = BytesMut::new();
        if codec::write(self.version, Packet::Publish(publish, props), &mut encoded).is_err()
            || encoded.len() > self.client_max_packet
        {
            // MQTT 5 §3.1.2.11.4: discard what the client said it cannot take.
            self.inflight.remove(&pkid);
            self.node.metrics.dropped_outbound.fetch_add(1, Relaxed);
            return;
        }
        // At QoS 0 nothing acknowledges the copy, so it confirms nothing
        // (`Pressure::routed_in` gives such a publish no token to wait for).
        self.out.extend_from_slice(&encoded);
        self.node.metrics.messages_out.fetch_add(1, Relaxed);
        self.node.metrics.delivery_latency(msg.at.elapsed());
    }

    /// Queues a message while the client's receive window is full: service
    /// sessions hold up to `session_queue` (dropping the oldest), devices up
    /// to `outbound_queue` (dropping the newest).
    fn hold(&mut self, msg: Box<Outbound>) {
        let settings = &self.node.settings;
        if self.link.is_some() {
            self.backlog.push_back(msg);
            if self.backlog.len() > settings.session_queue {
                self.backlog.pop_front();
                self.node.metrics.dropped_session.fetch_add(1, Relaxed);
            }
        } else if self.backlog.len() < settings.outbound_queue {
            self.backlog.push_back(msg);
        } else {
            self.node.metrics.dropped_outbound.fetch_add(1, Relaxed);
        }
    }

    fn drain_backlog(&mut self) {
        while self.inflight.len() < self.receive_max {
            let Some(msg) = self.backlog.pop_front() else {
                return;
            };
            self.deliver(msg);
        }
    }

    fn alloc_pkid(&mut self, copy: Option<Box<Outbound>>, confirm: Option<u64>) -> u16 {
        let copy = Inflight::Sent(copy, confirm);
        loop {
            self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
            if let std::collections::hash_map::Entry::Vacant(e) =
                self.inflight.entry(self.next_pkid)
            {
                e.insert(copy);
                return self.next_pkid;
            }
        }
    }

    pub(super) fn send(&mut self, packet: Packet) {
        if let Err(e) = codec::write(self.version, packet, &mut self.out) {
            tracing::error!(client_id = %self.client_id, error = %e, "cannot encode a packet");
        }
    }
}

/// A PUBACK or PUBREC refusing a QoS 1/2 publish with reason 0x97, Quota
/// exceeded (MQTT 5).
fn quota_exceeded_reply(qos: u8, pkid: u16) -> Option<Packet> {
    refusal_reply(
        qos,
        pkid,
        PubAckReason::QuotaExceeded,
        PubRecReason::QuotaExceeded,
    )
}

/// A PUBACK (QoS 1) or PUBREC (QoS 2) refusing a publish (MQTT 5); QoS 0 has
/// none.
fn refusal_reply(qos: u8, pkid: u16, ack: PubAckReason, rec: PubRecReason) -> Option<Packet> {
    match qos {
        1 => Some(Packet::PubAck(PubAck { pkid, reason: ack }, None)),
        2 => Some(Packet::PubRec(PubRec { pkid, reason: rec }, None)),
        _ => None,
    }
}

/// The PUBACK (QoS 1) or PUBREC (QoS 2) answering a publish; QoS 0 has none.
fn publish_reply(qos: u8, pkid: u16, accepted: bool) -> Option<Packet> {
    match (qos, accepted) {
        (1, true) => Some(Packet::PubAck(
            PubAck {
                pkid,
                reason: PubAckReason::Success,
            },
            None,
        )),
        (1, false) => Some(Packet::PubAck(
            PubAck {
                pkid,
                reason: PubAckReason::NotAuthorized,
            },
            None,
        )),
        (2, true) => Some(Packet::PubRec(
            PubRec {
                pkid,
                reason: PubRecReason::Success,
            },
            None,
        )),
        (2, false) => Some(Packet::PubRec(
            PubRec {
                pkid,
                reason: PubRecReason::NotAuthorized,
            },
            None,
        )),
        _ => None,
    }
}

/// A filter without its `$share/{group}/` prefix.
fn unshared(filter: &str) -> &str {
    filter
        .strip_prefix("$share/")
        .and_then(|rest| rest.split_once('/'))
        .map_or(filter, |(_, f)| f)
}
