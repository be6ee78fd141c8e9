//! A session's outbound queue: bounded, many senders, one receiver.
//!
//! It replaces a tokio mpsc channel because an idle device must not pay for
//! one: tokio allocates the channel and its first block of slots up front
//! (~0.8 KiB), while this queue allocates nothing for messages until one
//! arrives. `try_send` drops the message when the queue is full or the
//! receiver is gone, like `mpsc::Sender::try_send`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::registry::Outbound;

/// Queues whose buffer grew past this many slots give it back once drained.
const IDLE_SLOTS: usize = 8;

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Notify,
}

#[derive(Debug)]
struct Queue {
    items: VecDeque<Box<Outbound>>,
    cap: usize,
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Pushes and pops leave the queue consistent under panics: poisoning is ignored.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending half; cheap to clone.
#[derive(Debug, Clone)]
pub struct Sender(Arc<Shared>);

/// The receiving half; the queue closes when it is dropped.
#[derive(Debug)]
pub struct Receiver(Arc<Shared>);

/// Why a message was not queued (it is dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The queue holds `cap` messages.
    Full,
    /// The receiver is gone.
    Closed,
}

/// A queue of at most `cap` messages.
pub fn channel(cap: usize) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            items: VecDeque::new(),
            cap,
            closed: false,
        }),
        ready: Notify::new(),
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl Sender {
    /// Queues `msg` without waiting.
    pub fn try_send(&self, msg: Box<Outbound>) -> Result<(), SendError> {
        let mut q = self.0.lock();
        if q.closed {
            return Err(SendError::Closed);
        }
        if q.items.len() >= q.cap {
            return Err(SendError::Full);
        }
        q.items.push_back(msg);
        drop(q);
        self.0.ready.notify_one();
        Ok(())
    }
}

impl Receiver {
    /// The next message, waiting for one. Cancel-safe: a message is taken
    /// from the queue only when it is returned.
    pub async fn recv(&mut self) -> Box<Outbound> {
        loop {
            {
                let mut q = self.0.lock();
                if let Some(msg) = q.items.pop_front() {
                    if q.items.is_empty() && q.items.capacity() > IDLE_SLOTS {
                        q.items = VecDeque::new();
                    }
                    return msg;
                }
            }
            // A send between the check above and this wait leaves a permit, so
            // no wake-up is lost.
            self.0.ready.notified().await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut q = self.0.lock();
        q.closed = true;
        q.items.clear();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rumqttd::protocol::Publish;

    fn msg(n: u8) -> Box<Outbound> {
        Box::new(Outbound {
            publish: Publish::new(
                bytes::Bytes::from_static(b"t"),
                bytes::Bytes::from(vec![n]),
                false,
            ),
            properties: None,
            at: std::time::Instant::now(),
            redelivery: None,
            decided: None,
        })
    }

    #[tokio::test]
    async fn messages_arrive_in_order_and_a_full_queue_drops_the_newest() {
        let (tx, mut rx) = channel(2);
        tx.try_send(msg(1)).unwrap();
        tx.clone().try_send(msg(2)).unwrap();
        assert_eq!(tx.try_send(msg(3)), Err(SendError::Full));
        assert_eq!(rx.recv().await.publish.payload[0], 1);
        assert_eq!(rx.recv().await.publish.payload[0], 2);
        tx.try_send(msg(4)).unwrap();
        assert_eq!(rx.recv().await.publish.payload[0], 4);
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_when_a_message_is_sent() {
        let (tx, mut rx) = channel(4);
        let waiter = tokio::spawn(async move { rx.recv().await.publish.payload[0] });
        tokio::task::yield_now().await;
        tx.try_send(msg(7)).unwrap();
        assert_eq!(waiter.await.unwrap(), 7);
    }

    #[test]
    fn sending_after_the_receiver_is_gone_fails() {
        let (tx, rx) = channel(4);
        drop(rx);
        assert_eq!(tx.try_send(msg(1)), Err(SendError::Closed));
    }
}
