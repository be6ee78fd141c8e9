//! Authentication, scopes, tokens over `/v1`, and the rate limiter.
#![allow(clippy::unwrap_used)]

use crate::common::*;

#[tokio::test]
async fn missing_unknown_revoked_and_expired_tokens_get_the_same_401() {
    let h = start().await;
    let no_header = h.send(h.http.get(format!("{}/1/users/me", h.base))).await;
    no_header.assert_error(401001);
    let unknown = h.get_as("kumo_0123456789", "/1/users/me").await;
    unknown.assert_error(401001);

    let revoked = h.token_with(&["basic.read", "basic.write"]).await;
    // Accepted once (and kept: see the cache's tests below).
    h.get_as(&revoked, "/1/users/me").await.ok();
    let tokens = h.get("/v1/tokens").await.ok();
    let revoked_id = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "scoped")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    h.post(&format!("/v1/tokens/{revoked_id}/revoke"), &[])
        .await
        .ok();
    let after_revoke = h.get_as(&revoked, "/1/users/me").await;
    after_revoke.assert_error(401001);

    let expired = h.token_with(&["basic.read"]).await;
    h.client()
        .await
        .execute(
            "UPDATE access_tokens SET expires_at = now() - interval '1 second'
             WHERE name = 'scoped' AND revoked_at IS NULL",
            &[],
        )
        .await
        .unwrap();
    let after_expiry = h.get_as(&expired, "/1/users/me").await;
    after_expiry.assert_error(401001);

    for r in [&no_header, &unknown, &after_revoke, &after_expiry] {
        assert_eq!(r.body, unknown.body, "every 401 is identical");
    }
    h.stop().await;
}

#[tokio::test]
async fn a_basic_scheme_or_garbage_header_is_unauthorized() {
    let h = start().await;
    let r = h
        .send(
            h.http
                .get(format!("{}/1/devices", h.base))
                .header("authorization", format!("Basic {}", h.token)),
        )
        .await;
    r.assert_error(401001);
    h.stop().await;
}

#[tokio::test]
async fn each_endpoint_enforces_its_scope_with_a_nature_shaped_403() {
    let h = start().await;
    h.add_device("remo-1", kumo_bridge::DeviceKind::Remo).await;
    let ac = h.add_appliance("remo-1", "kumo-ac-generic", "AC").await;
    let read_only = h.token_with(&["basic.read"]).await;
    let write_only = h.token_with(&["basic.write"]).await;

    h.get_as(&read_only, "/1/devices").await.ok();
    h.get_as(&write_only, "/1/devices")
        .await
        .assert_error(403001);
    h.post_as(&read_only, "/1/devices/remo-1", &[("name", "x")])
        .await
        .assert_error(403001);
    h.post_as(&write_only, "/1/devices/remo-1", &[("name", "x")])
        .await
        .ok();
    let path = format!("/1/appliances/{ac}/aircon_settings");
    h.post_as(&write_only, &path, &[("button", "")])
        .await
        .assert_error(403001);
    h.post_as(&read_only, "/1/detectappliance", &[("Message", "{}")])
        .await
        .assert_error(403001);
    let combined = h.token_with(&["basic"]).await;
    h.get_as(&combined, "/1/users/me").await.ok();
    h.post_as(&combined, "/1/users/me", &[("nickname", "Al")])
        .await
        .ok();
    h.stop().await;
}

#[tokio::test]
async fn tokens_are_created_listed_and_revoked_over_v1_without_escalation() {
    let h = start().await;
    let created = h
        .post(
            "/v1/tokens",
            &[
                ("name", "phone"),
                ("scopes", "basic.read sendir"),
                ("expires_in", "3600"),
            ],
        )
        .await
        .ok();
    let token = created["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("kumo_"));
    assert_eq!(
        created["scopes"],
        serde_json::json!(["basic.read", "sendir"])
    );
    assert!(created["expires_at"].is_string());
    let me = h.get_as(&token, "/1/users/me").await.ok();
    assert_eq!(me["id"], h.user_id.as_str());

    let list = h.get("/v1/tokens").await.ok();
    let listed = list.to_string();
    assert!(!listed.contains(&token), "secrets are never listed");
    assert!(!listed.contains(&h.token));
    assert_eq!(list.as_array().unwrap().len(), 2);

    let weak = h.token_with(&["basic.read", "basic.write"]).await;
    h.post_as(&weak, "/v1/tokens", &[("scopes", "sendir")])
        .await
        .assert_error(403001);
    h.post("/v1/tokens", &[("scopes", "root")])
        .await
        .assert_error(400001);
    h.post(
        "/v1/tokens",
        &[("scopes", "basic.read"), ("expires_in", "soon")],
    )
    .await
    .assert_error(400001);

    let (_, bob) = h.other_user().await;
    let alice_token_id = list[0]["id"].as_str().unwrap().to_string();
    h.post_as(&bob, &format!("/v1/tokens/{alice_token_id}/revoke"), &[])
        .await
        .assert_error(404001);
    h.post("/v1/tokens/not-a-uuid/revoke", &[])
        .await
        .assert_error(404001);
    h.stop().await;
}

#[tokio::test]
async fn the_rate_limit_answers_429001_and_counts_per_token() {
    let mut settings = test_settings();
    settings.rate_limit.requests = 3;
    settings.rate_limit.window_secs = 300;
    let h = start_with(settings).await;
    for remaining in (0..3).rev() {
        let r = h.get("/1/users/me").await;
        assert_eq!(r.headers["x-rate-limit-limit"], "3");
        assert_eq!(
            r.headers["x-rate-limit-remaining"],
            remaining.to_string().as_str()
        );
        r.ok();
    }
    let limited = h.get("/1/users/me").await;
    limited.assert_error(429001);
    assert_eq!(limited.headers["x-rate-limit-remaining"], "0");
    let reset: u64 = limited.headers["x-rate-limit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(reset > now && reset <= now + 300, "reset {reset} now {now}");

    let other = h.token_with(&["basic.read"]).await;
    h.get_as(&other, "/1/users/me").await.ok();
    h.stop().await;
}

/// The id of the test user's token named `scoped` (made by `token_with`).
async fn scoped_token_id(h: &Harness) -> String {
    let tokens = h.get("/v1/tokens").await.ok();
    tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "scoped" && t["revoked_at"].is_null())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Expires the `scoped` tokens behind the bridge's back (no revocation is
/// announced): whether a request still passes shows whether its token was
/// looked up again.
async fn expire_behind_the_bridges_back(h: &Harness) {
    h.client()
        .await
        .execute(
            "UPDATE access_tokens SET expires_at = now() - interval '1 second'
             WHERE name = 'scoped'",
            &[],
        )
        .await
        .unwrap();
}

/// A new `scoped` token, accepted once, then expired behind the bridge's back.
async fn used_then_expired(h: &Harness) -> String {
    let token = h.token_with(&["basic.read"]).await;
    h.get_as(&token, "/1/users/me").await.ok();
    expire_behind_the_bridges_back(h).await;
    token
}

/// Sends `GET /1/users/me` with `token` until it is refused (every 20 ms, at
/// most `within`); how long that took.
async fn refused_within(h: &Harness, token: &str, within: std::time::Duration) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < within {
        if h.get_as(token, "/1/users/me").await.status == 401 {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn an_accepted_token_is_kept_for_auth_cache_secs_and_not_with_0() {
    let h = start().await;
    let token = used_then_expired(&h).await;
    // Kept: not looked up again (for up to 10 s by default).
    h.get_as(&token, "/1/users/me").await.ok();
    h.stop().await;

    let mut settings = test_settings();
    settings.auth_cache_secs = 0;
    let h = start_with(settings).await;
    let token = used_then_expired(&h).await;
    h.get_as(&token, "/1/users/me").await.assert_error(401001);
    h.stop().await;
}

#[tokio::test]
async fn a_token_revoked_elsewhere_is_refused_the_moment_the_bridge_hears_it() {
    let h = start().await;
    let token = h.token_with(&["basic.read"]).await;
    h.get_as(&token, "/1/users/me").await.ok();
    let id = scoped_token_id(&h).await;
    // As `kumo tokens revoke` (or another bridge) does it: not through
    // this bridge, which hears it from PostgreSQL.
    let owner = kumo_bridge::accounts::revoke_any_token(&h.pool, &id)
        .await
        .unwrap();
    assert_eq!(owner.as_deref(), Some(h.user_id.as_str()));
    assert!(refused_within(&h, &token, std::time::Duration::from_secs(2)).await);
    // The account's other tokens are untouched.
    h.get("/1/users/me").await.ok();
    h.stop().await;
}

#[tokio::test]
async fn without_its_listening_connection_the_bridge_keeps_no_token() {
    let h = start().await;
    let token = used_then_expired(&h).await;
    h.get_as(&token, "/1/users/me").await.ok();
    // The connection that hears revocations is lost (as in a database
    // restart) and cannot come back — no new connection is let in — so the
    // bridge could miss a revocation now: it trusts nothing it kept.
    let mut server: tokio_postgres::Config = h.db_url.parse().unwrap();
    let db = server.get_dbname().unwrap().to_string();
    // (A database cannot shut its doors from inside: from another one.)
    let (admin, connection) = server
        .dbname("postgres")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let allow = |yes: bool| format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS {yes}");
    admin.batch_execute(&allow(false)).await.unwrap();
    let ended: i64 = admin
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND query LIKE 'LISTEN kumo_token_revoked%') t",
            &[&db],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ended, 1, "one listening connection");
    assert!(refused_within(&h, &token, std::time::Duration::from_secs(2)).await);
    admin.batch_execute(&allow(true)).await.unwrap();
    // Listening again (it reconnects within a second): tokens are kept again.
    let kept_again = async {
        loop {
            let fresh = used_then_expired(&h).await;
            if h.get_as(&fresh, "/1/users/me").await.status == 200 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), kept_again)
        .await
        .expect("tokens kept again within 5 s");
    h.stop().await;
}
