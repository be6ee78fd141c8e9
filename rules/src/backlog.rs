//! The bounded replay buffer behind `GET /v1/events` and `Last-Event-ID`.
//!
//! Owns event ids (monotonic per account, never reused within a process) and the
//! answer to "what did this client miss". It must not own connections or
//! fan-out: the bridge pushes every event here and to its live subscribers, and
//! asks [`Backlog::since`] once when a client reconnects.

use std::collections::{HashMap, VecDeque};

use kumo_contract::AccountId;

/// An event with its SSE id.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamped<T> {
    pub id: u64,
    pub event: T,
}

/// What a resuming client gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Since<T> {
    /// Every event after the client's last one, oldest first (possibly none).
    Events(Vec<Stamped<T>>),
    /// The client's last id is older than the backlog (or unknown): events were
    /// lost. `events` is everything still held; the client should refetch state.
    Gap(Vec<Stamped<T>>),
}

/// A ring of the latest `capacity` events of one account.
#[derive(Debug, Clone)]
pub struct Backlog<T> {
    capacity: usize,
    next_id: u64,
    ring: VecDeque<Stamped<T>>,
}

impl<T: Clone> Backlog<T> {
    /// An empty backlog whose first id is 1.
    pub fn new(capacity: usize) -> Self {
        Self::starting_at(capacity, 1)
    }

    /// An empty backlog whose first id is `first_id`. Seeding with something that
    /// grows across restarts (e.g. start time in milliseconds × 1000) keeps ids
    /// monotonic for clients that reconnect to a restarted bridge.
    pub fn starting_at(capacity: usize, first_id: u64) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            next_id: first_id,
            ring: VecDeque::with_capacity(capacity),
        }
    }

    /// Appends an event, evicting the oldest when full; returns its id.
    pub fn push(&mut self, event: T) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        if self.ring.len() == self.capacity {
            self.ring.pop_front();
        }
        self.ring.push_back(Stamped { id, event });
        id
    }

    /// The id of the newest event, if any was pushed.
    pub fn last_id(&self) -> Option<u64> {
        self.ring.back().map(|s| s.id)
    }

    /// Events after `last_event_id`, or a gap when it is no longer (or never
    /// was) covered by the backlog.
    pub fn since(&self, last_event_id: u64) -> Since<T> {
        let newest = self.next_id - 1;
        let oldest = self.ring.front().map_or(self.next_id, |s| s.id);
        // Ids beyond the newest come from another process generation or a
        // confused client; ids before the oldest were evicted.
        if last_event_id > newest || last_event_id.saturating_add(1) < oldest {
            return Since::Gap(self.ring.iter().cloned().collect());
        }
        Since::Events(
            self.ring
                .iter()
                .filter(|s| s.id > last_event_id)
                .cloned()
                .collect(),
        )
    }

    /// Number of events held.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }
}

/// One [`Backlog`] per account, created on first use.
#[derive(Debug, Clone)]
pub struct AccountBacklogs<T> {
    capacity: usize,
    first_id: u64,
    accounts: HashMap<AccountId, Backlog<T>>,
}

impl<T: Clone> AccountBacklogs<T> {
    /// Backlogs of `capacity` events each, with ids starting at `first_id`.
    pub fn new(capacity: usize, first_id: u64) -> Self {
        Self {
            capacity,
            first_id,
            accounts: HashMap::new(),
        }
    }

    /// Appends an event to the account's backlog; returns its id.
    pub fn push(&mut self, account: &AccountId, event: T) -> u64 {
        let (capacity, first) = (self.capacity, self.first_id);
        self.accounts
            .entry(account.clone())
            .or_insert_with(|| Backlog::starting_at(capacity, first))
            .push(event)
    }

    /// What the account's client missed since `last_event_id`.
    pub fn since(&self, account: &AccountId, last_event_id: u64) -> Since<T> {
        match self.accounts.get(account) {
            Some(b) => b.since(last_event_id),
            None if last_event_id + 1 == self.first_id => Since::Events(Vec::new()),
            None => Since::Gap(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids<T>(events: &[Stamped<T>]) -> Vec<u64> {
        events.iter().map(|s| s.id).collect()
    }

    fn filled(capacity: usize, n: u32) -> Backlog<u32> {
        let mut b = Backlog::new(capacity);
        for i in 0..n {
            b.push(i);
        }
        b
    }

    #[test]
    fn ids_increase_by_one_from_the_first_id() {
        let mut b = Backlog::starting_at(3, 100);
        assert_eq!([b.push('a'), b.push('b'), b.push('c')], [100, 101, 102]);
        assert_eq!(b.last_id(), Some(102));
    }

    #[test]
    fn since_returns_the_events_after_the_given_id_in_order() {
        let b = filled(10, 5);
        match b.since(2) {
            Since::Events(ev) => {
                assert_eq!(ids(&ev), [3, 4, 5]);
                assert_eq!(ev[0].event, 2);
            }
            gap => panic!("expected events, got {gap:?}"),
        }
    }

    #[test]
    fn since_the_newest_id_returns_nothing() {
        assert_eq!(filled(10, 5).since(5), Since::Events(vec![]));
    }

    #[test]
    fn the_ring_keeps_only_the_newest_events() {
        let b = filled(3, 10);
        assert_eq!(b.len(), 3);
        match b.since(7) {
            Since::Events(ev) => assert_eq!(ids(&ev), [8, 9, 10]),
            gap => panic!("expected events, got {gap:?}"),
        }
    }

    #[test]
    fn an_id_that_fell_out_of_the_backlog_is_a_gap() {
        let b = filled(3, 10);
        match b.since(5) {
            Since::Gap(ev) => assert_eq!(ids(&ev), [8, 9, 10]),
            events => panic!("expected a gap, got {events:?}"),
        }
    }

    #[test]
    fn an_id_from_the_future_is_a_gap() {
        assert!(matches!(filled(3, 2).since(50), Since::Gap(_)));
    }

    #[test]
    fn an_empty_backlog_resumes_cleanly_only_from_just_before_its_first_id() {
        let b: Backlog<u8> = Backlog::starting_at(4, 10);
        assert_eq!(b.since(9), Since::Events(vec![]));
        assert!(matches!(b.since(3), Since::Gap(_)));
    }

    #[test]
    fn accounts_have_independent_id_sequences() {
        let a = AccountId::parse("acct-a").expect("valid");
        let b = AccountId::parse("acct-b").expect("valid");
        let mut backlogs = AccountBacklogs::new(8, 1);
        assert_eq!(backlogs.push(&a, "x"), 1);
        assert_eq!(backlogs.push(&a, "y"), 2);
        assert_eq!(backlogs.push(&b, "z"), 1);
        match backlogs.since(&a, 1) {
            Since::Events(ev) => assert_eq!(ev, vec![Stamped { id: 2, event: "y" }]),
            gap => panic!("expected events, got {gap:?}"),
        }
        let c = AccountId::parse("acct-c").expect("valid");
        assert_eq!(backlogs.since(&c, 0), Since::Events(vec![]));
    }
}
