//! Which watched accounts see each device: the members of the device's home
//! (migration 0013) among the accounts the hub routes events for.
//!
//! Owns only the in-memory map and the "followed up to" mark of the
//! ownership log; the [`router`](super::router) fills it. Does no I/O.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

/// Device → the watched accounts that see it, plus how far the router has
/// applied `device_ownership_log`.
#[derive(Debug)]
pub struct Viewers {
    map: RwLock<HashMap<String, Vec<Arc<str>>>>,
    followed: watch::Sender<i64>,
}

impl Default for Viewers {
    fn default() -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
            followed: watch::channel(0).0,
        }
    }
}

fn is_in(sorted: &[String], account: &str) -> bool {
    sorted.binary_search_by(|a| a.as_str().cmp(account)).is_ok()
}

impl Viewers {
    /// The watched accounts that see `device`.
    pub fn of(&self, device: &str) -> Vec<Arc<str>> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.get(device).cloned().unwrap_or_default()
    }

    /// Records that `account` sees `devices`.
    pub fn add(&self, account: &str, devices: impl IntoIterator<Item = String>) {
        let account: Arc<str> = Arc::from(account);
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        for device in devices {
            let seen = map.entry(device).or_default();
            if !seen.contains(&account) {
                seen.push(account.clone());
            }
        }
    }

    /// Sets who sees each changed device (its viewers now, all accounts) to
    /// those among `interested` (sorted).
    pub fn update(&self, interested: &[String], changes: &[(String, Vec<String>)]) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        for (device, accounts) in changes {
            let seen: Vec<Arc<str>> = accounts
                .iter()
                .filter(|a| is_in(interested, a))
                .map(|a| Arc::from(a.as_str()))
                .collect();
            if seen.is_empty() {
                map.remove(device);
            } else {
                map.insert(device.clone(), seen);
            }
        }
    }

    /// Replaces what is known about the accounts in `loaded` with `fresh`
    /// (device → those of them that see it); entries of accounts no longer in
    /// `interested` are dropped, others kept.
    pub fn replace(
        &self,
        interested: &[String],
        loaded: &[String],
        fresh: HashMap<String, Vec<Arc<str>>>,
    ) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, seen| {
            seen.retain(|a| is_in(interested, a) && !loaded.iter().any(|l| **l == **a));
            !seen.is_empty()
        });
        for (device, accounts) in fresh {
            let seen = map.entry(device).or_default();
            for a in accounts {
                if !seen.contains(&a) {
                    seen.push(a);
                }
            }
        }
    }

    /// Marks the ownership log applied up to `seq`.
    pub fn followed_to(&self, seq: i64) {
        self.followed.send_if_modified(|at| {
            let newer = seq > *at;
            if newer {
                *at = seq;
            }
            newer
        });
    }

    /// Waits until the log is applied up to `seq`.
    pub async fn wait_followed(&self, seq: i64) {
        let mut rx = self.followed.subscribe();
        // The sender lives as long as `self`, so this cannot fail while borrowed.
        let _ = rx.wait_for(|at| *at >= seq).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: Vec<Arc<str>>) -> Vec<String> {
        v.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn a_device_is_routed_to_every_watched_member_and_no_one_else() {
        let v = Viewers::default();
        let interested = vec!["alice".to_string(), "bob".to_string()];
        v.update(
            &interested,
            &[(
                "d".into(),
                vec!["alice".into(), "bob".into(), "carol".into()],
            )],
        );
        assert_eq!(names(v.of("d")), ["alice", "bob"]);
        v.update(&interested, &[("d".into(), vec!["alice".into()])]);
        assert_eq!(names(v.of("d")), ["alice"], "bob was removed");
        v.update(&interested, &[("d".into(), vec![])]);
        assert!(v.of("d").is_empty());
    }

    #[test]
    fn a_reload_replaces_only_the_accounts_it_loaded() {
        let v = Viewers::default();
        v.add("alice", ["d".to_string()]);
        v.add("bob", ["d".to_string(), "e".to_string()]);
        let interested = vec!["alice".to_string(), "bob".to_string()];
        v.replace(&interested, &["bob".to_string()], HashMap::new());
        assert_eq!(names(v.of("d")), ["alice"]);
        assert!(v.of("e").is_empty());
    }
}
