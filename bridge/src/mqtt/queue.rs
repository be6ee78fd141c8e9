//! A report shard's queue: device acks (and meter reports, which hold back a
//! data lane's acknowledgements) first, every device's order kept.
//!
//! When a broker node is killed, its devices reconnect elsewhere within
//! seconds, and each brings a presence and a state report: tens of thousands
//! of reports that take the shards half a minute to store. In a plain FIFO, a
//! command's ack from a device that never left its node waits behind all of
//! them (fleet run 25: commands to every device took p50 ~11 s for ~30 s
//! after the kill). Here an ack goes to an **urgent** queue if nothing of its
//! device is waiting before it; everything else (and an ack whose device has
//! a report waiting) keeps arrival order in the **bulk** queue. Batches are
//! taken urgent and bulk in turn, so an ack waits for at most one bulk batch,
//! and a device sending acks in bulk cannot starve the others' reports.
//!
//! Order per device: a job goes urgent only when none of its device's jobs is
//! in the bulk queue, so every earlier job of its device is urgent too or
//! already taken; a bulk batch ends before a job whose device still has an
//! urgent job waiting (a later report must not pass its ack); batches are
//! applied one after another, in the order they were taken. So each device's
//! jobs are applied in arrival order.

use std::collections::{HashMap, VecDeque};

/// What the queue needs to know of a job.
pub(crate) trait Queued {
    /// The device whose order the job belongs to.
    fn key(&self) -> &str;
    /// Whether the job may jump ahead of other devices' jobs.
    fn urgent(&self) -> bool;
}

/// Jobs waiting for a shard.
#[derive(Debug)]
pub(crate) struct ShardQueue<J> {
    urgent: VecDeque<J>,
    bulk: VecDeque<J>,
    /// Jobs per device in `urgent` and in `bulk`.
    in_urgent: HashMap<String, usize>,
    in_bulk: HashMap<String, usize>,
    /// Whether the last batch taken was urgent (the next prefers bulk).
    last_urgent: bool,
}

impl<J> Default for ShardQueue<J> {
    fn default() -> Self {
        Self {
            urgent: VecDeque::new(),
            bulk: VecDeque::new(),
            in_urgent: HashMap::new(),
            in_bulk: HashMap::new(),
            last_urgent: false,
        }
    }
}

impl<J: Queued> ShardQueue<J> {
    /// Jobs waiting.
    pub(crate) fn len(&self) -> usize {
        self.urgent.len() + self.bulk.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues `job` behind everything of its device.
    pub(crate) fn push(&mut self, job: J) {
        if job.urgent() && !self.in_bulk.contains_key(job.key()) {
            *self.in_urgent.entry(job.key().to_string()).or_insert(0) += 1;
            self.urgent.push_back(job);
            return;
        }
        *self.in_bulk.entry(job.key().to_string()).or_insert(0) += 1;
        self.bulk.push_back(job);
    }

    /// Moves up to `max` (at least 1) jobs into `batch` (empty), all urgent
    /// or all bulk: urgent ones unless the last batch was urgent and bulk ones
    /// wait. A bulk job never passes an urgent job of its device: a bulk
    /// batch ends before it, and if it is first, the batch is urgent.
    pub(crate) fn take(&mut self, batch: &mut Vec<J>, max: usize) {
        debug_assert!(batch.is_empty());
        let urgent = !self.urgent.is_empty() && (!self.last_urgent || !self.bulk_front_ready());
        self.last_urgent = urgent;
        while batch.len() < max {
            let (job, counts) = if urgent {
                (self.urgent.pop_front(), &mut self.in_urgent)
            } else if self.bulk_front_ready() {
                (self.bulk.pop_front(), &mut self.in_bulk)
            } else {
                break;
            };
            let Some(job) = job else { break };
            uncount(counts, job.key());
            batch.push(job);
        }
    }

    /// Whether the first bulk job may be taken: no urgent job of its device waits.
    fn bulk_front_ready(&self) -> bool {
        self.bulk
            .front()
            .is_some_and(|j| !self.in_urgent.contains_key(j.key()))
    }
}

/// Counts one job of `key` out of `counts` (absent when none are left).
fn uncount(counts: &mut HashMap<String, usize>, key: &str) {
    if let Some(n) = counts.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    /// (device, urgent, arrival number)
    #[derive(Debug, Clone)]
    struct J(String, bool, usize);

    impl Queued for J {
        fn key(&self) -> &str {
            &self.0
        }
        fn urgent(&self) -> bool {
            self.1
        }
    }

    fn job(device: &str, urgent: bool, n: usize) -> J {
        J(device.to_string(), urgent, n)
    }

    fn numbers(batch: &[J]) -> Vec<usize> {
        batch.iter().map(|j| j.2).collect()
    }

    #[test]
    fn an_ack_of_a_device_with_nothing_waiting_goes_before_other_devices_reports() {
        let mut q = ShardQueue::default();
        for n in 0..1000 {
            q.push(job(&format!("storm-{n}"), false, n));
        }
        q.push(job("quiet", true, 1000));
        let mut batch = Vec::new();
        q.take(&mut batch, 256);
        assert_eq!(numbers(&batch), vec![1000]);
        assert_eq!(q.len(), 1000);
    }

    #[test]
    fn an_ack_waits_behind_its_own_devices_reports() {
        let mut q = ShardQueue::default();
        q.push(job("a", false, 0)); // a's state report
        q.push(job("b", false, 1));
        q.push(job("a", true, 2)); // a's ack: after its state
        q.push(job("c", true, 3)); // c's ack: first
        let mut batch = Vec::new();
        q.take(&mut batch, 256);
        assert_eq!(numbers(&batch), vec![3]);
        batch.clear();
        q.take(&mut batch, 256);
        assert_eq!(numbers(&batch), vec![0, 1, 2]);
        assert!(q.is_empty());
        assert!(q.in_bulk.is_empty());
    }

    #[test]
    fn urgent_and_bulk_batches_take_turns() {
        let mut q = ShardQueue::default();
        for n in 0..4 {
            q.push(job(&format!("r{n}"), false, n));
        }
        for n in 4..8 {
            q.push(job(&format!("k{n}"), true, n));
        }
        let mut order = Vec::new();
        let mut batch = Vec::new();
        while !q.is_empty() {
            q.take(&mut batch, 2);
            order.push(numbers(&batch));
            batch.clear();
        }
        assert_eq!(order, vec![vec![4, 5], vec![0, 1], vec![6, 7], vec![2, 3]]);
    }

    /// One step of a run: a job arrives, or the shard takes a batch.
    #[derive(Debug, Clone)]
    enum Step {
        Push { device: u8, urgent: bool },
        Take { max: usize },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0u8..6, any::<bool>()).prop_map(|(device, urgent)| Step::Push { device, urgent }),
            1 => (1usize..5).prop_map(|max| Step::Take { max }),
        ]
    }

    proptest! {
        /// Whatever arrives and however batches are taken, each device's
        /// jobs come out in arrival order, none is lost or duplicated, and
        /// an ack with nothing of its device waiting comes out within two
        /// batches.
        #[test]
        fn each_device_keeps_its_order_and_acks_are_not_held_back(
            steps in proptest::collection::vec(step(), 0..200)
        ) {
            let mut q = ShardQueue::default();
            let mut out: Vec<J> = Vec::new();
            let mut pushed = 0usize;
            // An ack that went urgent: its arrival number -> (urgent jobs
            // ahead of it then, batches taken since).
            let mut waiting_urgent: HashMap<usize, (usize, usize)> = HashMap::new();
            let mut batch = Vec::new();
            for s in steps {
                match s {
                    Step::Push { device, urgent } => {
                        let d = format!("d{device}");
                        if urgent && !q.in_bulk.contains_key(&d) {
                            waiting_urgent.insert(pushed, (q.urgent.len(), 0));
                        }
                        q.push(J(d, urgent, pushed));
                        pushed += 1;
                    }
                    Step::Take { max } => {
                        q.take(&mut batch, max);
                        prop_assert!(batch.len() <= max);
                        for j in &batch {
                            waiting_urgent.remove(&j.2);
                        }
                        // Every other batch at least is urgent while acks
                        // wait, and each takes at least one of them.
                        for (n, (ahead, taken)) in waiting_urgent.iter_mut() {
                            *taken += 1;
                            prop_assert!(*taken < 2 * (*ahead + 1),
                                "ack {} held back for {} batches behind {}", n, taken, ahead);
                        }
                        out.append(&mut batch);
                    }
                }
            }
            while !q.is_empty() {
                q.take(&mut batch, 4);
                out.append(&mut batch);
            }
            prop_assert!(q.in_bulk.is_empty() && q.in_urgent.is_empty());
            prop_assert_eq!(out.len(), pushed);
            let mut last: HashMap<String, usize> = HashMap::new();
            for j in &out {
                if let Some(prev) = last.insert(j.0.clone(), j.2) {
                    prop_assert!(prev < j.2, "{} out of order: {} after {}", j.0, j.2, prev);
                }
            }
        }
    }
}
