//! The web console: how its files are served (policy, caching, gzip, size),
//! and user journeys in a real headless Chromium against a real bridge,
//! broker node and simulated device. Screenshots of each step land in
//! `target/console-screenshots/`.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use reqwest::header::{ACCEPT_ENCODING, IF_NONE_MATCH, LOCATION};
use reqwest::StatusCode;
use serde_json::json;

use crate::common::browser::Browser;
use crate::common::start;
use crate::stack::Stack;

/// Everything a first visit downloads, compressed, must stay under this.
const FIRST_LOAD_BUDGET: usize = 200 * 1024;
/// A journey that takes longer than this is a failure, not a hang.
const JOURNEY: Duration = Duration::from_secs(240);

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_root_redirects_to_the_console_which_is_served_under_a_strict_policy() {
    let h = start().await;
    let http = no_redirects();
    let root = http.get(format!("{}/", h.base)).send().await.unwrap();
    assert!(root.status().is_redirection());
    assert_eq!(root.headers()[LOCATION], "/console/");

    let page = http
        .get(format!("{}/console/", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(
        headers["content-security-policy"],
        kumo_bridge::console::CSP
    );
    let csp = kumo_bridge::console::CSP;
    for rule in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(rule), "{rule}");
    }
    assert!(!csp.contains("unsafe"), "no unsafe-inline or unsafe-eval");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-cache");
    let html = page.text().await.unwrap();
    assert!(!html.contains("<script>"), "no inline script");
    let version = kumo_bridge::console::version();
    assert!(html.contains(&format!("/console/a/{version}/app.js")));

    // The page revalidates cheaply.
    let again = http
        .get(format!("{}/console/", h.base))
        .header(IF_NONE_MATCH, headers["etag"].clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    // Versioned assets are cached for good, with the right types.
    let js = http
        .get(format!("{}/console/a/{version}/views/devices.js", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), StatusCode::OK);
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(js.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    let css = http
        .get(format!("{}/console/a/{version}/style.css", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    let missing = http
        .get(format!("{}/console/a/{version}/nope.js", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    h.shutdown.cancel();
}

#[tokio::test]
async fn the_first_load_of_the_console_is_under_200_kb_compressed() {
    let h = start().await;
    let http = no_redirects();
    let version = kumo_bridge::console::version();
    let mut urls = vec![format!("{}/console/", h.base)];
    urls.extend(
        kumo_bridge::console::FILES
            .iter()
            .map(|f| format!("{}/console/a/{version}/{}", h.base, f.path)),
    );
    let (mut total, mut plain) = (0, 0);
    for url in &urls {
        let r = http
            .get(url)
            .header(ACCEPT_ENCODING, "gzip, deflate, br")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{url}");
        assert_eq!(r.headers()["content-encoding"], "gzip", "{url}");
        assert_eq!(r.headers()["vary"], "accept-encoding");
        total += r.bytes().await.unwrap().len();
        plain += http
            .get(url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .len();
    }
    println!(
        "console first load: {} files, {total} bytes gzipped ({plain} bytes plain)",
        urls.len()
    );
    assert_eq!(total, kumo_bridge::console::first_load_gzip_bytes());
    assert!(
        total <= FIRST_LOAD_BUDGET,
        "{total} bytes > {FIRST_LOAD_BUDGET}"
    );
    h.shutdown.cancel();
}

#[tokio::test]
async fn v1_devices_shows_presence_of_the_callers_devices_only() {
    let h = start().await;
    h.add_device("remo-1", kumo_bridge::DeviceKind::Remo).await;
    let (bob, bob_token) = h.other_user().await;
    h.give_device("remo-bob", &bob).await;
    let mine = h.get("/v1/devices").await.ok();
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine[0]["id"], "remo-1");
    assert_eq!(mine[0]["online"], false);
    assert_eq!(mine[0]["kind"], "remo");
    assert!(mine[0]["last_seen_at"].is_null());
    let theirs = h.get_as(&bob_token, "/v1/devices").await.ok();
    assert_eq!(theirs[0]["id"], "remo-bob");
    h.get_as("nope", "/v1/devices").await.assert_error(401001);
    h.shutdown.cancel();
}

/// Signs in through the form; returns once the device list shows.
pub(crate) async fn sign_in(b: &Browser, base: &str, token: &str) {
    b.goto(&format!("{base}/")).await;
    b.type_into("#token", token).await;
    b.click("#signin").await;
    b.wait_text("main h1", "the device list", |t| t == "Devices")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_refused_and_a_good_one_signs_in_without_leaving_the_page() {
    let h = start().await;
    let b = Browser::start().await;
    tokio::time::timeout(JOURNEY, async {
        b.goto(&format!("{}/", h.base)).await;
        assert!(b.url().await.ends_with("/console/"), "redirected");
        b.type_into("#token", "not-a-real-token").await;
        b.click("#signin").await;
        let refused = b
            .wait_text(".message [role=alert]", "a refusal", |t| !t.is_empty())
            .await;
        assert!(refused.contains("refused"), "{refused}");
        b.screenshot("01-signin-refused").await;
        b.find("#token").await; // still on the sign-in form

        b.type_into("#token", &h.token).await;
        b.click("#signin").await;
        b.wait_text("main h1", "the device list", |t| t == "Devices")
            .await;
        assert!(b.text("main").await.contains("No devices yet"));
        b.screenshot("02-signed-in-no-devices").await;
        let url = b.url().await;
        assert!(
            !url.contains(&h.token),
            "the token is not in the URL: {url}"
        );
        let stored = b
            .eval(
                "return [sessionStorage.getItem('kumo.console.token'), localStorage.length]",
                json!([]),
            )
            .await;
        assert_eq!(stored, json!([h.token, 0]), "kept for this tab only");
        b.wait_text("#live", "the live stream", |t| t == "Live")
            .await;

        // Signing out forgets it.
        b.click("#signout").await;
        b.find("#token").await;
        let left = b.eval("return sessionStorage.length", json!([])).await;
        assert_eq!(left, json!(0));
        let errors = b.console_errors().await;
        assert!(
            errors.iter().all(|e| e.contains("401")),
            "only the refused sign-in is logged: {errors:?}"
        );
    })
    .await
    .expect("the journey finished in time");
    b.quit().await;
    h.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_watches_a_device_come_online_live_commands_its_aircon_and_creates_a_rule() {
    let stack = Stack::start(|_| {}).await;
    let h = &stack.h;
    h.add_device("sim-000000", kumo_bridge::DeviceKind::Remo)
        .await;
    let ac = h.add_appliance("sim-000000", "kumo-ac-generic", "AC").await;
    // Every scope, claim codes' `provision` included, so every page has content.
    let token = h
        .token_with(&["basic", "sendir", "detectappliance", "provision"])
        .await;
    let b = Browser::start().await;
    let mut sim = None;
    tokio::time::timeout(JOURNEY, async {
        sign_in(&b, &h.base, &token).await;
        let status = "td.status[data-device=sim-000000]";
        let te = "td.reading[data-device=sim-000000][data-sensor=te]";
        b.wait_text(status, "offline", |t| t == "Offline").await;
        b.wait_text("#live", "the live stream", |t| t == "Live")
            .await;
        b.screenshot("03-device-offline").await;
        // The page must not reload from here on: this mark would go.
        b.eval("window.kumoSamePage = true", json!([])).await;

        // The device connects: presence and readings arrive over the stream.
        sim = Some(stack.simulate(|_| {}));
        b.wait_text(status, "online", |t| t == "Online").await;
        let first = b
            .wait_text(te, "a temperature", |t| t.ends_with("°C"))
            .await;
        let at = "return document.querySelector(arguments[0]).dataset.at";
        let first_at = b.eval(at, json!([te])).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while b.eval(at, json!([te])).await == first_at {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no newer reading shown"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!("temperature on screen: {first}, then {}", b.text(te).await);
        assert_eq!(
            b.eval("return window.kumoSamePage === true", json!([]))
                .await,
            json!(true),
            "updated without a reload"
        );
        b.screenshot("04-device-online-live").await;

        // Its page: history charts and the aircon; a command goes to acked.
        b.click("a.name").await;
        b.find(&format!("article[data-appliance='{ac}']")).await;
        b.find("svg.chart[data-sensor=te]").await;
        b.choose(
            &format!("article[data-appliance='{ac}'] select[name=operation_mode]"),
            "cool",
        )
        .await;
        b.choose(
            &format!("article[data-appliance='{ac}'] select[name=temperature]"),
            "26",
        )
        .await;
        b.click(&format!(
            "article[data-appliance='{ac}'] button[data-action=send-aircon]"
        ))
        .await;
        let done = b
            .wait_text("ol.commands li .pill", "acked", |t| {
                t == "acked" || t == "failed" || t == "refused" || t == "expired"
            })
            .await;
        assert_eq!(done, "acked", "{}", b.text("ol.commands li").await);
        let line = b.text("ol.commands li").await;
        assert!(line.contains("on, cool 26°"), "{line}");
        // The state line follows the device's report.
        b.wait_text(
            &format!("article[data-appliance='{ac}'] .state"),
            "cool 26",
            |t| t.contains("mode cool") && t.contains("temp 26"),
        )
        .await;
        let points = b
            .eval(
                "return Number(document.querySelector('svg.chart[data-sensor=te]').dataset.points)",
                json!([]),
            )
            .await;
        assert!(points.as_u64().unwrap() >= 1, "the chart shows readings");
        b.screenshot("05-device-aircon-acked").await;

        // A rule, from the form's defaults (te above 28 on this device).
        b.click("nav a[data-nav=rules]").await;
        b.wait_text("main h1", "the rules page", |t| t == "Rules")
            .await;
        b.type_into("#new-rule input[name=name]", "Too hot in the lab")
            .await;
        b.click("#new-rule button[type=submit]").await;
        b.wait_text("table.rules tbody", "the new rule", |t| {
            t.contains("Too hot in the lab")
        })
        .await;
        b.screenshot("06-rule-created").await;
        let rules = h.get("/v1/rules").await.ok();
        assert_eq!(rules[0]["name"], "Too hot in the lab");
        assert_eq!(rules[0]["trigger"]["threshold"]["device"], "sim-000000");

        // The remaining pages render (looked at in their screenshots).
        for (nav, title, shot) in [
            ("webhooks", "Webhooks", "07-webhooks"),
            ("tokens", "Tokens", "08-tokens"),
            ("claim-codes", "Claim codes", "09-claim-codes"),
        ] {
            b.click(&format!("nav a[data-nav={nav}]")).await;
            b.wait_text("main h1", title, |t| t == title).await;
            b.screenshot(shot).await;
        }
        let errors = b.console_errors().await;
        assert!(
            errors.is_empty(),
            "no script errors or CSP violations: {errors:?}"
        );
    })
    .await
    .expect("the journey finished in time");
    b.quit().await;
    drop(sim);
    stack.stop().await;
}

/// Presses `button` (a CSS selector) and waits for the newest command line
/// to reach a final status; returns that line.
async fn press_and_wait_final(b: &Browser, button: &str) -> String {
    let before = b
        .eval(
            "return document.querySelectorAll('ol.commands li').length",
            json!([]),
        )
        .await;
    b.click(button).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while b
        .eval(
            "return document.querySelectorAll('ol.commands li').length",
            json!([]),
        )
        .await
        == before
    {
        assert!(tokio::time::Instant::now() < deadline, "no command line");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.wait_text("ol.commands li:first-child .pill", "a final status", |t| {
        ["acked", "failed", "refused", "expired"].contains(&t)
    })
    .await;
    b.text("ol.commands li:first-child").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_switches_a_light_presses_a_tv_button_and_sends_a_learned_signal_each_acked() {
    let stack = Stack::start(|_| {}).await;
    let h = &stack.h;
    h.add_device("sim-000000", kumo_bridge::DeviceKind::Remo)
        .await;
    let light = h
        .add_appliance("sim-000000", "kumo-light-generic", "LIGHT")
        .await;
    let tv = h.add_appliance("sim-000000", "kumo-tv-generic", "TV").await;
    let fan = h
        .post(
            "/1/appliances",
            &[("device", "sim-000000"), ("nickname", "Fan")],
        )
        .await
        .ok()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let signal = h
        .post(
            &format!("/1/appliances/{fan}/signals"),
            &[
                ("name", "Fan on"),
                (
                    "message",
                    r#"{"format":"us","freq":38,"data":[9000,4500,560,560,560,1690]}"#,
                ),
            ],
        )
        .await
        .ok()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let token = h.token_with(&["basic", "sendir"]).await;
    let b = Browser::start().await;
    let sim = stack.simulate(|_| {});
    tokio::time::timeout(JOURNEY, async {
        sign_in(&b, &h.base, &token).await;
        b.wait_text("td.status[data-device=sim-000000]", "online", |t| {
            t == "Online"
        })
        .await;
        b.click("a.name").await;
        let card = |id: &str| format!("article[data-appliance='{id}']");
        b.find(&card(&light)).await;
        b.wait_text("#live", "the live stream", |t| t == "Live")
            .await;

        // The light: on, and its state line follows the device's report.
        let line =
            press_and_wait_final(&b, &format!("{} button[data-button=on]", card(&light))).await;
        assert!(
            line.contains("thing: On") && line.contains("acked"),
            "{line}"
        );
        b.wait_text(&format!("{} .state", card(&light)), "power on", |t| {
            t.contains("power on")
        })
        .await;

        // The TV: power, then channel up; each acked, the state follows.
        let line =
            press_and_wait_final(&b, &format!("{} button[data-button=power]", card(&tv))).await;
        assert!(
            line.contains("thing: Power") && line.contains("acked"),
            "{line}"
        );
        b.wait_text(&format!("{} .state", card(&tv)), "power on", |t| {
            t.contains("power on")
        })
        .await;
        let line =
            press_and_wait_final(&b, &format!("{} button[data-button=ch-up]", card(&tv))).await;
        assert!(line.contains("acked"), "{line}");
        b.wait_text(&format!("{} .state", card(&tv)), "channel 2", |t| {
            t.contains("channel 2")
        })
        .await;

        // A learned signal of an IR appliance.
        let line = press_and_wait_final(
            &b,
            &format!("{} button[data-signal='{signal}']", card(&fan)),
        )
        .await;
        assert!(
            line.contains("Fan: Fan on") && line.contains("acked"),
            "{line}"
        );
        b.screenshot("10-light-tv-signal-acked").await;
        let errors = b.console_errors().await;
        assert!(errors.is_empty(), "no script errors: {errors:?}");
    })
    .await
    .expect("the journey finished in time");
    b.quit().await;
    drop(sim);
    stack.stop().await;
}
