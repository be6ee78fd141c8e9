//! Migrations against a real PostgreSQL: fresh, re-run, concurrent, edited, failing.

use kumo_schema::migrate::{migrate_with, Migration};
use kumo_schema::{migrate, MigrateError, MIGRATIONS};
use kumo_testkit::{empty_db, migrated_db};

async fn tables(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
            &[],
        )
        .await
        .expect("list tables")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_a_rerun_is_a_no_op() {
    let db = empty_db().await;
    let mut client = db.client().await;
    let first = migrate(&mut client).await.expect("first run");
    let all: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(first.applied, all);
    let t = tables(&client).await;
    for expected in [
        "access_tokens",
        "certificates",
        "devices",
        "schema_migrations",
        "users",
    ] {
        assert!(
            t.contains(&expected.to_string()),
            "{expected} missing from {t:?}"
        );
    }
    let second = migrate(&mut client).await.expect("second run");
    assert!(second.applied.is_empty());
    assert_eq!(second.already, all);
}

#[tokio::test]
async fn two_concurrent_migrators_apply_each_migration_exactly_once() {
    let db = empty_db().await;
    let (mut a, mut b) = (db.client().await, db.client().await);
    let (ra, rb) = tokio::join!(migrate(&mut a), migrate(&mut b));
    let (ra, rb) = (ra.expect("migrator a"), rb.expect("migrator b"));
    let mut applied = [ra.applied, rb.applied].concat();
    applied.sort();
    let all: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(
        applied, all,
        "each migration applied by exactly one migrator"
    );
    let count: i64 = a
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, all.len() as i64);
}

#[tokio::test]
async fn an_edited_migration_is_refused() {
    let db = migrated_db().await;
    let mut client = db.client().await;
    let mut edited: Vec<Migration> = MIGRATIONS.to_vec();
    edited[0].sql = "CREATE TABLE sneaky (id int);";
    let err = migrate_with(&mut client, &edited)
        .await
        .expect_err("must refuse");
    assert!(
        matches!(err, MigrateError::Changed { version: 1, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_failing_migration_leaves_nothing_behind() {
    let db = migrated_db().await;
    let mut client = db.client().await;
    let mut list: Vec<Migration> = MIGRATIONS.to_vec();
    list.push(Migration {
        // After the newest, whether or not the list has a gap (0015 is
        // another branch's while 0016 is here).
        version: MIGRATIONS.last().map_or(1, |m| m.version + 1),
        name: "broken",
        sql: "CREATE TABLE half_done (id int); SELECT no_such_function();",
    });
    let err = migrate_with(&mut client, &list)
        .await
        .expect_err("must fail");
    assert!(
        matches!(err, MigrateError::Failed { name: "broken", .. }),
        "{err}"
    );
    assert!(!tables(&client).await.contains(&"half_done".to_string()));
    // The lock was released: a normal run still works.
    migrate(&mut client).await.expect("clean run after failure");
}

#[tokio::test]
async fn a_database_from_a_newer_build_is_refused() {
    let db = migrated_db().await;
    let mut client = db.client().await;
    client
        .execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, 'future', '')",
            &[],
        )
        .await
        .expect("insert");
    let err = migrate(&mut client).await.expect_err("must refuse");
    assert!(
        matches!(err, MigrateError::Unknown { version: 9999 }),
        "{err}"
    );
}

#[tokio::test]
async fn the_homes_migration_gives_every_existing_user_a_home_holding_their_devices() {
    let db = empty_db().await;
    let mut client = db.client().await;
    let before: Vec<Migration> = MIGRATIONS
        .iter()
        .filter(|m| m.version < 13)
        .cloned()
        .collect();
    migrate_with(&mut client, &before)
        .await
        .expect("up to 0012");
    client
        .batch_execute(
            "INSERT INTO users (id, nickname) VALUES ('alice', 'A'), ('bob', 'B');
             INSERT INTO devices (id, user_id) VALUES ('a1', 'alice'), ('a2', 'alice'),
                                                     ('b1', 'bob'), ('loose', NULL);
             INSERT INTO readings (device_id, sensor, val, at) VALUES ('a1', 'te', 20, now());",
        )
        .await
        .expect("data from before homes");
    migrate(&mut client).await.expect("0013");
    let rows = client
        .query(
            "SELECT d.id, h.owner_id, m.role FROM devices d
             LEFT JOIN homes h ON h.id = d.home_id
             LEFT JOIN home_members m ON m.home_id = h.id AND m.user_id = h.owner_id
             ORDER BY d.id",
            &[],
        )
        .await
        .expect("devices");
    let got: Vec<(String, Option<String>, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let own = |d: &str, u: &str| {
        (
            d.to_string(),
            Some(u.to_string()),
            Some("owner".to_string()),
        )
    };
    assert_eq!(
        got,
        [
            own("a1", "alice"),
            own("a2", "alice"),
            own("b1", "bob"),
            ("loose".to_string(), None, None)
        ]
    );
    let homes: i64 = client
        .query_one("SELECT count(*) FROM homes", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(homes, 2, "one home per user");
    // Newest events and history start at `owner_since`: untouched.
    let fresh: i64 = client
        .query_one(
            "SELECT count(*) FROM devices WHERE owner_since <> '-infinity'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(fresh, 0, "moving devices into their home resets nothing");
    client
        .batch_execute(
            "INSERT INTO users (id, nickname) VALUES ('carol', 'C');
             INSERT INTO devices (id, user_id) VALUES ('c1', 'carol');",
        )
        .await
        .expect("a user and a device after homes");
    let carol: String = client
        .query_one(
            "SELECT h.owner_id FROM devices d JOIN homes h ON h.id = d.home_id WHERE d.id = 'c1'",
            &[],
        )
        .await
        .expect("c1's home")
        .get(0);
    assert_eq!(carol, "carol");
}
