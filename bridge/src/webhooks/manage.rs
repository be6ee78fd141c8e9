//! The account-facing operations behind `/v1/webhooks`: create (secret shown
//! once), list, get, delete, re-enable, delivery history, test ping, and
//! rotation of the account's rule-action secret.

use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::worker::{self, AttemptReport};
use super::{store, target, Delivery, NewWebhook, Webhook, WebhookError, Webhooks};
use crate::json::rfc3339;

/// Webhooks one account may have.
pub const MAX_WEBHOOKS_PER_ACCOUNT: i64 = 20;
/// Event kinds one webhook may filter on.
pub const MAX_EVENT_KINDS: usize = 32;

/// Splits and checks an `events` filter: space- or comma-separated kinds of
/// `[a-z0-9_.]`, starting with a letter.
pub fn parse_events(raw: &str) -> Result<Vec<String>, WebhookError> {
    let mut kinds: Vec<String> = Vec::new();
    for kind in raw.split([' ', ',']).filter(|k| !k.is_empty()) {
        let valid = kind.len() <= 64
            && kind.starts_with(|c: char| c.is_ascii_lowercase())
            && kind
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
        if !valid {
            return Err(WebhookError::Invalid(format!(
                "event kind {kind:?} is not valid (lowercase letters, digits, '_' and '.')"
            )));
        }
        if !kinds.iter().any(|k| k == kind) {
            kinds.push(kind.to_string());
        }
    }
    if kinds.len() > MAX_EVENT_KINDS {
        return Err(WebhookError::Invalid(format!(
            "at most {MAX_EVENT_KINDS} event kinds"
        )));
    }
    Ok(kinds)
}

impl Webhooks {
    async fn filters_changed(&self) {
        if let Err(e) = self.fanout.reload().await {
            tracing::warn!(error = %e, "reloading webhook filters failed; the periodic reload will catch up");
        }
        self.inner.hub.notify_interest();
    }

    /// Creates a webhook; returns it and its secret (shown only now).
    pub async fn create(
        &self,
        account: &str,
        url: &str,
        events: Vec<String>,
    ) -> Result<(Webhook, String), WebhookError> {
        let url = target::parse(url.trim(), self.allow_private())?;
        let client = self.inner.pool.get().await?;
        let count: i64 = client
            .query_one(
                "SELECT count(*) FROM webhooks WHERE user_id = $1",
                &[&account],
            )
            .await?
            .get(0);
        if count >= MAX_WEBHOOKS_PER_ACCOUNT {
            return Err(WebhookError::Limit(MAX_WEBHOOKS_PER_ACCOUNT));
        }
        let secret = super::new_secret();
        let new = NewWebhook {
            url: url.to_string(),
            events,
        };
        let webhook = store::create(&client, account, &new, &secret).await?;
        drop(client);
        self.filters_changed().await;
        Ok((webhook, secret))
    }

    /// The account's webhooks.
    pub async fn list(&self, account: &str) -> Result<Vec<Webhook>, WebhookError> {
        let client = self.inner.pool.get().await?;
        Ok(store::list(&client, account).await?)
    }

    /// One of the account's webhooks.
    pub async fn get(&self, account: &str, id: Uuid) -> Result<Webhook, WebhookError> {
        let client = self.inner.pool.get().await?;
        store::get(&client, account, id)
            .await?
            .ok_or(WebhookError::NotFound(id))
    }

    /// Deletes one of the account's webhooks and its delivery log.
    pub async fn delete(&self, account: &str, id: Uuid) -> Result<(), WebhookError> {
        let client = self.inner.pool.get().await?;
        if !store::delete(&client, account, id).await? {
            return Err(WebhookError::NotFound(id));
        }
        drop(client);
        self.filters_changed().await;
        Ok(())
    }

    /// Re-enables a (disabled) webhook and clears its failure streak.
    pub async fn enable(&self, account: &str, id: Uuid) -> Result<Webhook, WebhookError> {
        let client = self.inner.pool.get().await?;
        let webhook = store::enable(&client, account, id)
            .await?
            .ok_or(WebhookError::NotFound(id))?;
        drop(client);
        self.filters_changed().await;
        Ok(webhook)
    }

    /// The webhook's newest `limit` deliveries with their attempts.
    pub async fn deliveries(
        &self,
        account: &str,
        id: Uuid,
        limit: i64,
    ) -> Result<Vec<Delivery>, WebhookError> {
        let client = self.inner.pool.get().await?;
        if store::get(&client, account, id).await?.is_none() {
            return Err(WebhookError::NotFound(id));
        }
        Ok(store::deliveries(&client, account, id, limit).await?)
    }

    /// Sends a `ping` delivery to the webhook now and reports the attempt.
    /// A failed ping is retried like any delivery.
    pub async fn test(&self, account: &str, id: Uuid) -> Result<AttemptReport, WebhookError> {
        let client = self.inner.pool.get().await?;
        let webhook = store::get(&client, account, id)
            .await?
            .ok_or(WebhookError::NotFound(id))?;
        let delivery = Uuid::new_v4();
        let body = json!({
            "id": delivery,
            "kind": "ping",
            "created_at": rfc3339(OffsetDateTime::now_utc()),
            "data": {"webhook_id": id},
        });
        store::enqueue(
            &client,
            &store::NewDelivery {
                id: delivery,
                webhook_id: Some(id),
                user_id: account,
                rule_id: None,
                url: &webhook.url,
                kind: "ping",
                body: &body,
                held: true,
            },
        )
        .await?;
        drop(client);
        worker::attempt_now(&self.inner, delivery)
            .await?
            .ok_or(WebhookError::NotFound(delivery))
    }

    /// Replaces the account's rule-action signing secret; returns it (shown
    /// only now).
    pub async fn rotate_account_secret(&self, account: &str) -> Result<String, WebhookError> {
        let client = self.inner.pool.get().await?;
        Ok(store::rotate_account_secret(&client, account).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_filters_are_split_deduplicated_and_checked() {
        let kinds = parse_events("command, presence command rule.fired").unwrap_or_default();
        assert_eq!(kinds, ["command", "presence", "rule.fired"]);
        assert!(parse_events("").is_ok_and(|k| k.is_empty()));
        assert!(parse_events("Reading").is_err());
        assert!(parse_events("a/b").is_err());
    }
}
