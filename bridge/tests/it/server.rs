//! The server itself: probes, unknown paths, headers, bind errors, shutdown.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use kumo_bridge::DeviceKind;

/// Why a second bridge with `settings`, beside `h`'s, does not start.
async fn start_error(h: &Harness, settings: kumo_bridge::Settings) -> String {
    kumo_bridge::start(settings, h.pool.clone(), h.shutdown.clone())
        .await
        .unwrap_err()
        .to_string()
}

#[tokio::test]
async fn health_and_readiness_answer_with_the_standard_headers() {
    let h = start().await;
    let r = h.send(h.http.get(format!("{}/healthz", h.base))).await;
    assert_eq!(r.ok()["status"], "ok");
    let r = h.send(h.http.get(format!("{}/readyz", h.base))).await;
    assert_eq!(r.ok()["database"], "ok");
    h.stop().await;
}

/// `GET /1/users/me` without a token from a thread of its own, the runtime
/// that started the bridge blocked until it is answered (or 3 s pass): the
/// response's status line.
async fn status_while_the_starting_runtime_is_blocked(
    api_threads: usize,
) -> std::io::Result<String> {
    use std::io::{BufRead, Write};
    let mut settings = test_settings();
    settings.api_threads = api_threads;
    let h = start_with(settings).await;
    let addr = h.bridge.as_ref().unwrap().http_addr();
    let client = std::thread::spawn(move || {
        let mut tcp = std::net::TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(3)))?;
        tcp.write_all(b"GET /1/users/me HTTP/1.1\r\nHost: kumo\r\nConnection: close\r\n\r\n")?;
        let mut line = String::new();
        std::io::BufReader::new(tcp).read_line(&mut line)?;
        Ok(line)
    });
    // Blocks this (current-thread) runtime, the one the bridge was started on.
    let status = client.join().unwrap();
    h.stop().await;
    status
}

#[tokio::test]
async fn the_rest_api_answers_while_the_runtime_that_started_the_bridge_is_busy() {
    let status = status_while_the_starting_runtime_is_blocked(1)
        .await
        .unwrap();
    assert!(status.starts_with("HTTP/1.1 401"), "{status:?}");
    // What the API's own runtime changes: sharing the blocked one, no answer.
    assert!(status_while_the_starting_runtime_is_blocked(0)
        .await
        .is_err());
}

/// A bridge whose own pool has one connection, taken by the test, and
/// whose REST API has `api` connections of its own (0: none, it shares).
async fn with_the_bridges_pool_taken(api: usize) -> (Harness, deadpool_postgres::Object) {
    let one_second = std::time::Duration::from_secs(1);
    let mut main = None;
    let h = start_with_pools(test_settings(), |_, url| {
        let pool = kumo_schema::connect_pool(url, 1, one_second).unwrap();
        main = Some(pool.clone());
        let api = (api > 0).then(|| kumo_schema::connect_pool(url, api, one_second).unwrap());
        kumo_bridge::Pools::new(pool, api)
    })
    .await;
    let taken = main.unwrap().get().await.unwrap();
    h.add_device("remo-1", DeviceKind::Remo).await;
    (h, taken)
}

#[tokio::test]
async fn the_rest_api_has_database_connections_of_its_own() {
    let (h, taken) = with_the_bridges_pool_taken(2).await;
    let light = h
        .add_appliance("remo-1", "kumo-light-generic", "LIGHT")
        .await;
    // Authentication, reads, and a command written: none waits for the
    // bridge's pool (its only connection is taken).
    assert_eq!(h.get("/1/users/me").await.ok()["id"], h.user_id.as_str());
    let r = h
        .post(&format!("/1/appliances/{light}/light"), &[("button", "on")])
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(h.command_count().await, 1);
    drop(taken);
    let text = h.metrics_text().await;
    assert_eq!(gauge(&text, "kumo_bridge_api_db_pool_max"), 2.0, "{text}");
    assert_eq!(gauge(&text, "kumo_bridge_db_pool_max"), 1.0, "{text}");
    let opened = gauge(&text, "kumo_bridge_api_db_pool_connections{state=\"idle\"}")
        + gauge(
            &text,
            "kumo_bridge_api_db_pool_connections{state=\"in_use\"}",
        );
    assert!(opened >= 1.0, "{text}");
    assert_eq!(gauge(&text, "kumo_bridge_api_db_pool_waiting"), 0.0);
    h.stop().await;
}

#[tokio::test]
async fn sharing_the_bridges_pool_requests_wait_for_its_connections() {
    // The control for the test above: the same, with no pool of the API's.
    let (h, taken) = with_the_bridges_pool_taken(0).await;
    h.get("/1/users/me").await.assert_error(503001);
    drop(taken);
    h.get("/1/users/me").await.ok();
    let text = h.metrics_text().await;
    assert!(!text.contains("kumo_bridge_api_db_pool"), "{text}");
    h.stop().await;
}

#[tokio::test]
async fn unknown_paths_get_a_nature_shaped_404_with_headers() {
    let h = start().await;
    h.get("/1/nope").await.assert_error(404001);
    let r = h.send(h.http.get(format!("{}/nothing/here", h.base))).await;
    r.assert_error(404001);
    h.stop().await;
}

#[tokio::test]
async fn a_wrong_method_gets_a_nature_shaped_405() {
    let h = start().await;
    h.post("/1/devices", &[]).await.assert_error(405001);
    h.stop().await;
}

#[tokio::test]
async fn a_busy_listen_address_is_a_clear_error_naming_the_key() {
    let h = start().await;
    let mut settings = test_settings();
    settings.listen = h.bridge.as_ref().unwrap().http_addr();
    let err = start_error(&h, settings).await;
    let addr = h.bridge.as_ref().unwrap().http_addr();
    assert_eq!(err, format!("bridge.listen {addr} is already in use"));
    h.stop().await;
}

#[tokio::test]
async fn invalid_settings_are_refused_before_binding() {
    let h = start().await;
    let mut settings = test_settings();
    settings.rate_limit.requests = 0;
    let err = start_error(&h, settings).await;
    assert!(err.contains("bridge.rate_limit.requests"), "{err}");
    for (change, limit) in [
        (
            (|s| s.api_threads = 65) as fn(&mut kumo_bridge::Settings),
            "bridge.api_threads must be at most 64",
        ),
        (
            |s| s.api_pool_size = 1025,
            "bridge.api_pool_size must be at most 1024",
        ),
        (
            |s| s.auth_cache_secs = 3601,
            "bridge.auth_cache_secs must be at most 3600",
        ),
    ] {
        let mut settings = test_settings();
        change(&mut settings);
        let err = start_error(&h, settings).await;
        assert_eq!(err, format!("invalid configuration: {limit}"));
    }
    h.stop().await;
}

#[tokio::test]
async fn cancelling_the_token_stops_the_server() {
    let h = start().await;
    let base = h.base.clone();
    h.stop().await;
    assert!(reqwest::get(format!("{base}/healthz")).await.is_err());
}

#[tokio::test]
async fn bad_form_bodies_get_the_nature_error_shape() {
    let h = start().await;
    let r = h
        .send(
            h.http
                .post(format!("{}/1/users/me", h.base))
                .bearer_auth(&h.token)
                .header("content-type", "application/json")
                .body("{\"nickname\":\"x\"}"),
        )
        .await;
    r.assert_error(400001);
    let r = h
        .send(
            h.http
                .post(format!("{}/1/appliances", h.base))
                .bearer_auth(&h.token)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("image=ico"),
        )
        .await;
    r.assert_error(400001);
    assert_eq!(r.body["message"], "nickname is required");
    h.stop().await;
}

#[tokio::test]
async fn the_v1_openapi_document_is_served_and_names_every_v1_route() {
    let h = start().await;
    let doc = h
        .send(h.http.get(format!("{}/v1/openapi.json", h.base)))
        .await
        .ok();
    assert_eq!(doc["openapi"], "3.0.3");
    for path in [
        "/v1/tokens",
        "/v1/tokens/{id}/revoke",
        "/v1/commands/{id}",
        "/v1/devices/{id}/readings",
    ] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
    h.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_by_route_pattern_on_their_own_listener() {
    let h = start().await;
    h.get("/1/users/me").await.ok();
    h.get("/1/appliances/some-id/signals")
        .await
        .assert_error(404001);
    let metrics_addr = h.bridge.as_ref().unwrap().metrics_addr();
    assert_ne!(metrics_addr, h.bridge.as_ref().unwrap().http_addr());
    let resp = h
        .http
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain; version=0.0.4");
    let text = resp.text().await.unwrap();
    assert!(
        text.contains(
            r#"kumo_bridge_http_requests_total{method="GET",route="/1/users/me",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"route="/1/appliances/{id}/signals",status="404""#),
        "{text}"
    );
    assert!(!text.contains("some-id"), "ids never become label values");
    assert!(text.contains("kumo_bridge_commands_pending{status=\"queued\"} 0"));
    assert!(text.contains("kumo_bridge_devices_online 0"));
    // The pool as the scrape found it: it takes a connection only afterwards.
    let max = gauge(&text, "kumo_bridge_db_pool_max");
    let in_use = gauge(&text, "kumo_bridge_db_pool_connections{state=\"in_use\"}");
    let idle = gauge(&text, "kumo_bridge_db_pool_connections{state=\"idle\"}");
    assert!(max >= 1.0 && in_use + idle <= max, "{text}");
    assert_eq!(gauge(&text, "kumo_bridge_db_pool_waiting"), 0.0);
    h.stop().await;
}

#[tokio::test]
async fn metrics_are_not_served_on_the_public_rest_port() {
    let h = start().await;
    // Neither with nor without a token: the REST port has no `/metrics`.
    h.get("/metrics").await.assert_error(404001);
    let r = h.send(h.http.get(format!("{}/metrics", h.base))).await;
    r.assert_error(404001);
    h.stop().await;
}

#[tokio::test]
async fn a_busy_metrics_listen_address_is_a_clear_error_naming_the_key() {
    let h = start().await;
    let mut settings = test_settings();
    let busy = h.bridge.as_ref().unwrap().metrics_addr();
    settings.metrics_listen = busy;
    let err = start_error(&h, settings).await;
    assert_eq!(
        err,
        format!("bridge.metrics_listen {busy} is already in use")
    );
    h.stop().await;
}

#[tokio::test]
async fn an_oversized_body_is_a_nature_shaped_413() {
    let h = start().await;
    let big = "x".repeat(3 * 1024 * 1024);
    // The answer comes before all of the body is read, and the connection
    // closes: the client must still read it (RFC 9112 §9.6), every time.
    for _ in 0..4 {
        for (path, content_type) in [
            ("/1/users/me", "application/x-www-form-urlencoded"),
            ("/v1/rules", "application/json"),
            ("/v1/webhooks", "application/x-www-form-urlencoded"),
        ] {
            let r = h
                .send(
                    h.http
                        .post(format!("{}{path}", h.base))
                        .bearer_auth(&h.token)
                        .header("content-type", content_type)
                        .body(format!("nickname={big}")),
                )
                .await;
            r.assert_error(413001);
            assert_standard_headers(&r.headers);
        }
    }
    h.stop().await;
}

#[tokio::test]
async fn a_request_refused_before_its_body_is_read_still_gets_its_answer() {
    let h = start().await;
    // Under the limit, but the token is refused before the body is read.
    let body = format!("nickname={}", "x".repeat(1024 * 1024));
    for _ in 0..8 {
        let r = h
            .send(
                h.http
                    .post(format!("{}/1/users/me", h.base))
                    .bearer_auth("not-a-token")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body.clone()),
            )
            .await;
        r.assert_error(401001);
    }
    h.stop().await;
}

#[tokio::test]
async fn a_client_still_sending_when_refused_can_finish_and_sees_a_clean_close() {
    use std::io::{Read, Write};
    let h = start().await;
    let addr = h.bridge.as_ref().unwrap().http_addr();
    let body_len = 1024 * 1024;
    let client = tokio::task::spawn_blocking(move || -> std::io::Result<(String, usize, usize)> {
        let mut tcp = std::net::TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        write!(
            tcp,
            "POST /1/users/me HTTP/1.1\r\nHost: kumo\r\nAuthorization: Bearer not-a-token\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {body_len}\r\n\r\n"
        )?;
        // The 401 comes before any of the body is sent.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tcp.read_exact(&mut byte)?;
            head.push(byte[0]);
        }
        // Then the client sends what it announced, as clients do.
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < body_len {
            sent += tcp.write(&chunk[..chunk.len().min(body_len - sent)])?;
        }
        // The rest of the response, then the server's orderly close.
        let mut rest = Vec::new();
        tcp.read_to_end(&mut rest)?;
        Ok((
            String::from_utf8_lossy(&head).to_lowercase(),
            sent,
            rest.len(),
        ))
    });
    let (head, sent, rest) = client.await.unwrap().unwrap();
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
    assert_eq!(sent, body_len);
    assert!(rest > 0, "the error body");
    h.stop().await;
}
