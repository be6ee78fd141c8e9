//! Splits a batch of per-device work into rounds in which each device
//! appears at most once, in arrival order: a device's first item goes to the
//! first round, its second to the second, and so on. One statement per round
//! can then write many devices' rows (a statement cannot write one row
//! twice), and applying the rounds in order keeps each device's order.

use std::collections::HashMap;

/// Items keyed by device, grouped into rounds.
#[derive(Debug)]
pub(crate) struct Rounds<'k, T> {
    rounds: Vec<Vec<T>>,
    seen: HashMap<&'k str, usize>,
}

impl<T> Default for Rounds<'_, T> {
    fn default() -> Self {
        Self {
            rounds: Vec::new(),
            seen: HashMap::new(),
        }
    }
}

impl<'k, T> Rounds<'k, T> {
    /// Adds `item` for `device` to the first round that has none of its items.
    pub(crate) fn push(&mut self, device: &'k str, item: T) {
        let n = self.seen.entry(device).or_insert(0);
        if self.rounds.len() <= *n {
            self.rounds.push(Vec::new());
        }
        self.rounds[*n].push(item);
        *n += 1;
    }

    /// Whether `device` has an item waiting.
    pub(crate) fn holds(&self, device: &str) -> bool {
        self.seen.contains_key(device)
    }

    /// Takes the rounds, first first, and starts empty again.
    pub(crate) fn take(&mut self) -> Vec<Vec<T>> {
        self.seen.clear();
        std::mem::take(&mut self.rounds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_appears_once_per_round_and_keeps_its_order() {
        let mut r = Rounds::default();
        for (d, v) in [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("a", 5), ("b", 6)] {
            r.push(d, v);
        }
        assert!(r.holds("c") && !r.holds("z"));
        assert_eq!(r.take(), vec![vec![1, 2, 4], vec![3, 6], vec![5]]);
        assert!(!r.holds("a"));
        assert!(r.take().is_empty());
    }
}
