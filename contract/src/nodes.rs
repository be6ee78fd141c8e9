//! Node epochs: how a broker node tells the bridge it (re)started.
//!
//! When a node starts it publishes, retained, `kumo/nodes/{node_id}/epoch` with
//! `{"node": "<node_id>", "started": "<RFC 3339>"}`. A node that crashed never
//! said goodbye for its devices; its next epoch tells the bridge that every
//! device whose last presence from that node is older than `started` is no
//! longer connected to it. Both times come from the node's own clock.
//!
//! Only nodes publish here (devices and integrations may neither publish nor
//! subscribe under `kumo/`). Topic building and parsing only; no I/O.

/// Root of node announcements.
pub const ROOT: &str = "kumo/nodes";

/// The filter the bridge subscribes to.
pub const EPOCH_FILTER: &str = "kumo/nodes/+/epoch";

/// The epoch topic of `node_id` (a single topic level).
pub fn epoch_topic(node_id: &str) -> String {
    format!("{ROOT}/{node_id}/epoch")
}

/// The node id of an epoch topic.
pub fn parse_epoch_topic(topic: &str) -> Option<&str> {
    let node = topic.strip_prefix("kumo/nodes/")?.strip_suffix("/epoch")?;
    (!node.is_empty() && !node.contains(['/', '+', '#'])).then_some(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_topics_round_trip_and_reject_the_rest() {
        assert_eq!(epoch_topic("node-1"), "kumo/nodes/node-1/epoch");
        assert_eq!(parse_epoch_topic("kumo/nodes/node-1/epoch"), Some("node-1"));
        for bad in [
            "kumo/nodes//epoch",
            "kumo/nodes/a/b/epoch",
            "kumo/nodes/node-1/other",
            "kumo/nodes/+/epoch",
            "devices/remo-1/presence",
        ] {
            assert_eq!(parse_epoch_topic(bad), None, "{bad}");
        }
    }
}
