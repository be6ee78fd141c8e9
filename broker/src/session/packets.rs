//! What a session does with each packet: inbound PUBLISH/SUBSCRIBE/… from the
//! client and outbound messages from the router or the command demultiplexer.

use std::sync::atomic::Ordering::Relaxed;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use kumo_contract::Identity;
use rumqttd::protocol::{
    Filter, Packet, PingResp, PubAck, PubAckReason, PubComp, PubCompReason, PubRec, PubRecReason,
    Publish, PublishProperties, QoS, RetainForwardRule, SubAck, Subscribe, SubscribeProperties,
    SubscribeReasonCode, UnsubAck, UnsubAckReason, Unsubscribe,
};
use rumqttd::Notification;

use super::{Held, Session, HELD_MAX};
use crate::acl;
use crate::codec::{self, CodecError, Version};
use crate::fabric;
use crate::registry::{CloseReason, Outbound};

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
                self.inflight.remove(&ack.pkid);
                self.drain_backlog();
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
            // This node never sends QoS 2, so PUBREC/PUBCOMP from a client are stray.
            Packet::PubRec(..) | Packet::PubComp(..) => Ok(()),
            Packet::Subscribe(s, props) => self.on_subscribe(s, props).await,
            Packet::Unsubscribe(u, _) => self.on_unsubscribe(u).await,
            Packet::PingReq(_) => {
                self.send(Packet::PingResp(PingResp));
                Ok(())
            }
            Packet::Disconnect(d, _) => {
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
        let Ok(topic) = std::str::from_utf8(&p.topic) else {
            return Err(CloseReason::ProtocolError);
        };
        if let Some(props) = &props {
            // Topic aliases are not offered (CONNACK has none); subscription ids are
            // server-to-client only. rumqttd would drop the whole ingress link on either.
            if props.topic_alias.is_some() || !props.subscription_identifiers.is_empty() {
                return Err(CloseReason::ProtocolError);
            }
        }
        let (forward, reply) = match acl::may_publish(
            &self.identity,
            topic,
            self.node.accounts.as_ref(),
        ) {
            Ok(()) => {
                let fresh = qos != 2 || self.qos2_in.insert(pkid);
                let publish = Publish::new(p.topic, p.payload, p.retain);
                let forward = fresh.then(|| Packet::Publish(publish, props));
                (forward, publish_reply(qos, pkid, true))
            }
            Err(d) => {
                self.node.metrics.acl_denied("publish", d.as_str());
                tracing::warn!(client_id = %self.client_id, topic, reason = d.as_str(), "publish refused");
                if self.version == Version::V4 {
                    return Err(CloseReason::NotAuthorized);
                }
                (None, publish_reply(qos, pkid, false))
            }
        };
        // Devices wait while the cloud is behind (see `pressure`); once one
        // publish waits, later ones queue behind it so acknowledgements stay in order.
        let device = matches!(self.identity, Identity::Device { .. });
        if device && (self.held.is_some() || self.node.pressure.throttled()) {
            self.node.metrics.publishes_held.fetch_add(1, Relaxed);
            self.held
                .get_or_insert_with(Default::default)
                .push_back(Held { forward, reply });
            return Ok(());
        }
        self.emit(forward, reply).await
    }

    /// Forwards a publish to the router, then answers the client.
    async fn emit(
        &mut self,
        forward: Option<Packet>,
        reply: Option<Packet>,
    ) -> Result<(), CloseReason> {
        if let Some(packet) = forward {
            if let (Identity::Device { .. }, Packet::Publish(p, _)) = (&self.identity, &packet) {
                self.node.pressure.routed_in(&p.topic);
            }
            if !self.node.fabric.publish(&self.client_id, packet).await {
                return Err(CloseReason::Shutdown);
            }
        }
        if let Some(reply) = reply {
            self.send(reply);
        }
        Ok(())
    }

    /// Tells the node's ingress pressure what a service session subscribes to.
    pub(super) fn report_filters(&self) {
        if let Some(g) = &self.gauge {
            g.set_filters(self.filters.iter().map(|(f, _)| f.as_str()));
        }
    }

    /// Whether the session has stopped reading because too many publishes wait.
    pub(super) fn reads_paused(&self) -> bool {
        self.held.as_ref().is_some_and(|h| h.len() >= HELD_MAX)
    }

    /// Whether publishes are waiting for the cloud to catch up.
    pub(super) fn has_held(&self) -> bool {
        self.held.is_some()
    }

    /// Forwards and acknowledges held publishes in order while the node allows.
    pub(super) async fn release_held(&mut self) -> Result<(), CloseReason> {
        while !self.node.pressure.throttled() {
            let Some(held) = self.held.as_mut() else {
                return Ok(());
            };
            let Some(h) = held.pop_front() else {
                self.held = None;
                return Ok(());
            };
            self.emit(h.forward, h.reply).await?;
        }
        Ok(())
    }

    async fn on_subscribe(
        &mut self,
        s: Subscribe,
        props: Option<SubscribeProperties>,
    ) -> Result<(), CloseReason> {
        if props.as_ref().is_some_and(|p| p.id.is_some()) {
            // CONNACK said subscription identifiers are unavailable.
            return Err(CloseReason::ProtocolError);
        }
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut routed = Vec::new();
        for f in s.filters {
            match acl::may_subscribe(&self.identity, &f.path, self.node.accounts.as_ref()) {
                Ok(()) => {
                    let qos = if f.qos == QoS::AtMostOnce {
                        QoS::AtMostOnce
                    } else {
                        QoS::AtLeastOnce
                    };
                    codes.push(SubscribeReasonCode::Success(qos));
                    self.filters.retain(|(p, _)| p != unshared(&f.path));
                    self.filters.push((unshared(&f.path).to_string(), qos));
                    routed.push(Filter {
                        qos: QoS::AtMostOnce,
                        retain_forward_rule: match self.version {
                            Version::V4 => RetainForwardRule::OnEverySubscribe,
                            Version::V5 => f.retain_forward_rule.clone(),
                        },
                        ..f
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
                self.send(Packet::SubAck(
                    SubAck {
                        pkid: s.pkid,
                        return_codes: codes,
                    },
                    None,
                ));
                return Ok(());
            }
        };
        // Answer once the router confirms, so nothing published after SUBACK is missed.
        self.pending_subacks.insert(s.pkid, codes);
        let sub = Subscribe {
            pkid: s.pkid,
            filters: routed,
        };
        fabric::send_on_link(link, Packet::Subscribe(sub, None)).await;
        Ok(())
    }

    async fn on_unsubscribe(&mut self, u: Unsubscribe) -> Result<(), CloseReason> {
        let mut reasons = Vec::with_capacity(u.filters.len());
        for f in &u.filters {
            let before = self.filters.len();
            self.filters.retain(|(p, _)| p != unshared(f));
            reasons.push(if self.filters.len() < before {
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
                }));
            }
            // rumqttd does not export its `Ack` type; its conversion to `Packet` is public.
            Notification::DeviceAck(ack) => {
                if let Packet::SubAck(ack, _) = Packet::from(ack) {
                    if let Some(codes) = self.pending_subacks.remove(&ack.pkid) {
                        self.send(Packet::SubAck(
                            SubAck {
                                pkid: ack.pkid,
                                return_codes: codes,
                            },
                            None,
                        ));
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

    /// Sends a routed message if one of the session's filters matches it.
    pub(super) fn deliver(&mut self, msg: Box<Outbound>) {
        let Ok(topic) = std::str::from_utf8(msg.topic()) else {
            return;
        };
        // An integration's wildcards match the fleet; ownership narrows them here,
        // for live, retained, held and resumed messages alike.
        if !acl::may_receive(&self.identity, topic, self.node.accounts.as_ref()) {
            self.node.metrics.integration_filtered.fetch_add(1, Relaxed);
            return;
        }
        let Some(qos) = self
            .filters
            .iter()
            .filter(|(f, _)| rumqttd::protocol::matches(topic, f))
            .map(|(_, q)| *q)
            .reduce(|a, b| if b == QoS::AtLeastOnce { b } else { a })
        else {
            return;
        };
        let persistent = self.link.is_some() && !self.clean_session;
        let pkid = if qos == QoS::AtLeastOnce {
            if self.inflight.len() >= self.receive_max {
                self.hold(msg);
                return;
            }
            let copy = persistent.then(|| {
                Box::new(Outbound {
                    publish: msg.publish.clone(),
                    properties: msg.properties.clone(),
                    at: msg.at,
                    redelivery: None,
                })
            });
            match msg.redelivery {
                Some(id) if !self.inflight.contains_key(&id) => {
                    self.inflight.insert(id, copy);
                    id
                }
                _ => self.alloc_pkid(copy),
            }
        } else {
            0
        };
        let publish = codec::publish(
            Bytes::copy_from_slice(topic.as_bytes()),
            msg.publish.payload,
            qos,
            pkid,
            msg.publish.retain,
            msg.redelivery.is_some(),
        );
        let props = msg.properties.map(|mut p| {
            p.topic_alias = None;
            p.subscription_identifiers.clear();
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

    fn alloc_pkid(&mut self, copy: Option<Box<Outbound>>) -> u16 {
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

    fn send(&mut self, packet: Packet) {
        if let Err(e) = codec::write(self.version, packet, &mut self.out) {
            tracing::error!(client_id = %self.client_id, error = %e, "cannot encode a packet");
        }
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
