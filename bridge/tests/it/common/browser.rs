//! A headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`): just the commands the console's journeys use, spoken
//! as JSON over HTTP with reqwest. Every wait is bounded; chromedriver and the
//! browsers it starts run in their own process group, killed on drop, so a
//! failing test leaves no browser behind.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long `wait_*` helpers poll by default.
pub const WAIT: Duration = Duration::from_secs(30);

/// One browser session and the chromedriver serving it.
pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
    base: String,
}

/// An element of the page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver on a free port and opens a headless session.
    pub async fn start() -> Browser {
        let port = kumo_testkit::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver is required (apt-get install chromium chromium-driver; bash scripts/install-test-deps does)");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        for _ in 0..200 {
            if http.get(format!("{base}/status")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut options = json!({"args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--window-size=1280,1000", "--disable-crash-reporter", "--no-first-run",
            "--lang=en-GB",
        ]});
        // Debian's /usr/bin/chromium is a shell wrapper; the binary is here.
        if std::path::Path::new("/usr/lib/chromium/chromium").exists() {
            options["binary"] = json!("/usr/lib/chromium/chromium");
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": options,
            "goog:loggingPrefs": {"browser": "ALL"},
            "timeouts": {"script": 30_000, "pageLoad": 60_000},
        }}});
        let mut browser = Browser {
            driver,
            http,
            session: String::new(),
            base,
        };
        let v = browser.command("POST", "/session", caps).await;
        browser.session = v["sessionId"].as_str().unwrap().to_string();
        browser
    }

    async fn command(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "WebDriver {method} {path}: {v}");
        v["value"].clone()
    }

    async fn try_command(&self, method: &str, path: &str, body: Value) -> Result<Value, Value> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url).json(&body),
        };
        let resp = req.send().await.map_err(|e| json!(e.to_string()))?;
        let ok = resp.status().is_success();
        let v: Value = resp.json().await.map_err(|e| json!(e.to_string()))?;
        if ok {
            Ok(v["value"].clone())
        } else {
            Err(v["value"].clone())
        }
    }

    async fn session(&self, method: &str, path: &str, body: Value) -> Value {
        self.try_command(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    pub async fn goto(&self, url: &str) {
        self.session("POST", "/url", json!({ "url": url })).await;
    }

    pub async fn url(&self) -> String {
        self.session("GET", "/url", Value::Null)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.session(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    async fn find_now(&self, css: &str) -> Option<Element> {
        let found = self
            .try_command(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await
            .ok()?;
        Some(Element(found[ELEMENT].as_str()?.to_string()))
    }

    /// The first element matching `css`, waiting for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(e) = self.find_now(css).await {
                return e;
            }
            if tokio::time::Instant::now() > deadline {
                self.screenshot("failed-find").await;
                panic!("no element {css} within {WAIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.session("POST", &format!("/element/{}/click", e.0), json!({}))
            .await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.session("POST", &format!("/element/{}/clear", e.0), json!({}))
            .await;
        self.session(
            "POST",
            &format!("/element/{}/value", e.0),
            json!({ "text": text }),
        )
        .await;
    }

    /// Picks the `<option>` with `value` in the `<select>` at `css` (and
    /// fires `change`, as a user's pick does).
    pub async fn choose(&self, css: &str, value: &str) {
        self.find(css).await;
        let done = self
            .eval(
                "const s = document.querySelector(arguments[0]);
                 if (![...s.options].some(o => o.value === arguments[1])) return false;
                 s.value = arguments[1];
                 s.dispatchEvent(new Event('change', {bubbles: true}));
                 return true;",
                json!([css, value]),
            )
            .await;
        assert_eq!(done, json!(true), "{css} has no option {value}");
    }

    /// The text of the first element matching `css` ("" when there is none).
    pub async fn text(&self, css: &str) -> String {
        self.eval(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : '';",
            json!([css]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Waits until the text at `css` satisfies `ok`; returns it.
    pub async fn wait_text(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        self.wait_text_for(css, what, WAIT, ok).await
    }

    pub async fn wait_text_for(
        &self,
        css: &str,
        what: &str,
        limit: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let t = self.text(css).await;
            if ok(&t) {
                return t;
            }
            if tokio::time::Instant::now() > deadline {
                self.screenshot("failed-wait").await;
                panic!("{css}: expected {what}, still {t:?} after {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a PNG of the whole page (the window grows to its height, up to
    /// 4000 px) as `target/console-screenshots/{name}.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let height = self
            .eval("return document.body.scrollHeight", json!([]))
            .await
            .as_u64()
            .unwrap_or(1000)
            .clamp(1000, 4000);
        let _ = self
            .try_command(
                "POST",
                "/window/rect",
                json!({"width": 1280, "height": height + 100}),
            )
            .await;
        let data = self.session("GET", "/screenshot", Value::Null).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap())
            .unwrap();
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// The page's console messages at warning level or worse (a CSP
    /// violation or a script error shows here).
    pub async fn console_errors(&self) -> Vec<String> {
        let logs = self
            .session("POST", "/se/log", json!({"type": "browser"}))
            .await;
        logs.as_array()
            .map(|a| {
                a.iter()
                    .filter(|l| l["level"] == "SEVERE" || l["level"] == "WARNING")
                    .map(|l| l["message"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Ends the session (the browser exits) and stops chromedriver.
    pub async fn quit(mut self) {
        let path = format!("/session/{}", self.session);
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            self.command("DELETE", &path, Value::Null),
        )
        .await;
        self.kill_group();
        let _ = self.driver.wait().await;
    }

    fn kill_group(&self) {
        if let Some(pid) = self.driver.id() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill_group();
    }
}

/// `target/console-screenshots/`, next to the test binary's profile directory.
pub fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/it-… → target
    exe.ancestors()
        .nth(3)
        .map(|t| t.join("console-screenshots"))
        .unwrap_or_else(|| std::env::temp_dir().join("console-screenshots"))
}
