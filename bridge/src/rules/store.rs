//! The `rules` and `rule_executions` tables.
//!
//! Owns the SQL for rules and their execution log. Every query of a user's
//! rule is scoped by `user_id`, so another account's rule reads as absent. It
//! must not validate rules (the API does, before storing) or evaluate them.

use deadpool_postgres::Pool;
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::DbError;
use crate::json::rfc3339;

/// A rule as stored: its document exactly as accepted, plus bookkeeping.
#[derive(Debug, Clone)]
pub struct StoredRule {
    pub id: String,
    pub user_id: String,
    /// The rule document (`kumo_rules::Rule` as JSON).
    pub definition: Value,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl StoredRule {
    fn from_row(r: &tokio_postgres::Row) -> Self {
        Self {
            id: r.get(0),
            user_id: r.get(1),
            definition: r.get(2),
            created_at: r.get(3),
            updated_at: r.get(4),
        }
    }

    /// The rule as `/v1/rules` shows it: the document plus id and timestamps.
    pub fn to_json(&self) -> Value {
        let mut v = self.definition.clone();
        if let Some(o) = v.as_object_mut() {
            o.insert("id".into(), Value::String(self.id.clone()));
            o.insert("created_at".into(), rfc3339(self.created_at).into());
            o.insert("updated_at".into(), rfc3339(self.updated_at).into());
        }
        v
    }
}

const COLUMNS: &str = "id, user_id, definition, created_at, updated_at";

fn name_and_enabled(definition: &Value) -> (String, bool) {
    let name = definition["name"].as_str().unwrap_or_default().to_string();
    let enabled = definition["enabled"].as_bool().unwrap_or(true);
    (name, enabled)
}

/// Most rules an account may have.
pub const MAX_RULES_PER_ACCOUNT: i64 = 200;

/// Stores a new rule of `user_id`; `None` if the account already has
/// [`MAX_RULES_PER_ACCOUNT`] (concurrent creations of one account are
/// serialized on its `users` row, so the limit is exact).
pub async fn insert(
    pool: &Pool,
    user_id: &str,
    definition: &Value,
) -> Result<Option<StoredRule>, DbError> {
    let (name, enabled) = name_and_enabled(definition);
    let id = Uuid::new_v4().to_string();
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", &[&user_id])
        .await?;
    let row = tx
        .query_opt(
            &format!(
                "INSERT INTO rules (id, user_id, name, enabled, definition)
                 SELECT $1, $2, $3, $4, $5
                 WHERE (SELECT count(*) FROM rules WHERE user_id = $2) < $6
                 RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &user_id,
                &name,
                &enabled,
                definition,
                &MAX_RULES_PER_ACCOUNT,
            ],
        )
        .await?;
    tx.commit().await?;
    Ok(row.as_ref().map(StoredRule::from_row))
}

/// Rule `id` of `user_id`.
pub async fn get(pool: &Pool, user_id: &str, id: &str) -> Result<Option<StoredRule>, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM rules WHERE id = $1 AND user_id = $2"),
            &[&id, &user_id],
        )
        .await?;
    Ok(row.as_ref().map(StoredRule::from_row))
}

/// Every rule of `user_id`, oldest first.
pub async fn list(pool: &Pool, user_id: &str) -> Result<Vec<StoredRule>, DbError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            &format!("SELECT {COLUMNS} FROM rules WHERE user_id = $1 ORDER BY created_at, id"),
            &[&user_id],
        )
        .await?;
    Ok(rows.iter().map(StoredRule::from_row).collect())
}

/// Every enabled rule of every account, for the worker's start.
pub async fn load_enabled(pool: &Pool) -> Result<Vec<(StoredRule, Option<Value>)>, DbError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT r.id, r.user_id, r.definition, r.created_at, r.updated_at, s.state
             FROM rules r
             LEFT JOIN rule_trigger_state s
                 ON s.rule_id = r.id AND s.rule_version = r.updated_at
             WHERE r.enabled ORDER BY r.id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (StoredRule::from_row(r), r.get(5)))
        .collect())
}

/// A rule's trigger state to keep, for the rule version it belongs to.
#[derive(Debug, Clone)]
pub struct SavedTriggerState {
    pub rule_id: String,
    pub version: OffsetDateTime,
    pub state: Value,
}

/// Stores trigger states (one statement); states of rules deleted meanwhile
/// are skipped.
pub async fn save_trigger_states(pool: &Pool, states: &[SavedTriggerState]) -> Result<(), DbError> {
    let ids: Vec<&str> = states.iter().map(|s| s.rule_id.as_str()).collect();
    let versions: Vec<OffsetDateTime> = states.iter().map(|s| s.version).collect();
    let values: Vec<&Value> = states.iter().map(|s| &s.state).collect();
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO rule_trigger_state (rule_id, rule_version, state)
             SELECT u.id, u.version, u.state
             FROM unnest($1::text[], $2::timestamptz[], $3::jsonb[]) AS u(id, version, state)
             JOIN rules ON rules.id = u.id
             ON CONFLICT (rule_id) DO UPDATE
                 SET rule_version = EXCLUDED.rule_version, state = EXCLUDED.state,
                     saved_at = now()",
            &[&ids, &versions, &values],
        )
        .await?;
    Ok(())
}

/// Replaces the document of rule `id` of `user_id`; `None` if there is none.
pub async fn replace(
    pool: &Pool,
    user_id: &str,
    id: &str,
    definition: &Value,
) -> Result<Option<StoredRule>, DbError> {
    let (name, enabled) = name_and_enabled(definition);
    let client = pool.get().await?;
    let row = client
        .query_opt(
            &format!(
                "UPDATE rules SET name = $3, enabled = $4, definition = $5,
                     updated_at = greatest(now(), updated_at + interval '1 microsecond')
                 WHERE id = $1 AND user_id = $2 RETURNING {COLUMNS}"
            ),
            &[&id, &user_id, &name, &enabled, definition],
        )
        .await?;
    Ok(row.as_ref().map(StoredRule::from_row))
}

/// Deletes rule `id` of `user_id` (and its executions); whether it existed.
pub async fn delete(pool: &Pool, user_id: &str, id: &str) -> Result<bool, DbError> {
    let client = pool.get().await?;
    let n = client
        .execute(
            "DELETE FROM rules WHERE id = $1 AND user_id = $2",
            &[&id, &user_id],
        )
        .await?;
    Ok(n > 0)
}

/// One execution to log.
#[derive(Debug, Clone)]
pub struct NewExecution<'a> {
    pub rule_id: &'a str,
    pub user_id: &'a str,
    pub fired_at: OffsetDateTime,
    pub cause: &'a Value,
    /// `ok`, `failed` or `partial`.
    pub outcome: &'a str,
    pub actions: &'a Value,
}

/// Logs an execution and returns its id. A rule deleted meanwhile is not an
/// error: there is nothing left to log it against, and `None` says so.
pub async fn record_execution(pool: &Pool, e: &NewExecution<'_>) -> Result<Option<i64>, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "INSERT INTO rule_executions (rule_id, user_id, fired_at, cause, outcome, actions)
             SELECT id, $2, $3, $4, $5, $6 FROM rules WHERE id = $1
             RETURNING id",
            &[
                &e.rule_id,
                &e.user_id,
                &e.fired_at,
                e.cause,
                &e.outcome,
                e.actions,
            ],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// The newest `limit` executions of rule `id` of `user_id`, newest first;
/// `None` if the rule is not the user's.
pub async fn executions(
    pool: &Pool,
    user_id: &str,
    id: &str,
    limit: i64,
) -> Result<Option<Vec<Value>>, DbError> {
    if get(pool, user_id, id).await?.is_none() {
        return Ok(None);
    }
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, fired_at, cause, outcome, actions FROM rule_executions
             WHERE rule_id = $1 AND user_id = $2
             ORDER BY fired_at DESC, id DESC LIMIT $3",
            &[&id, &user_id, &limit],
        )
        .await?;
    Ok(Some(
        rows.iter()
            .map(|r| {
                json!({
                    "id": r.get::<_, i64>(0),
                    "fired_at": rfc3339(r.get(1)),
                    "cause": r.get::<_, Value>(2),
                    "outcome": r.get::<_, String>(3),
                    "actions": r.get::<_, Value>(4),
                })
            })
            .collect(),
    ))
}
