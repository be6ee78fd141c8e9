//! Plain HTTP/1.1 against a running bridge (no client library in between),
//! and waiting for something to become true.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A response: status, lower-cased header block, JSON body (`Null` if none).
pub struct Reply {
    pub status: u16,
    pub headers: String,
    pub body: Value,
}

impl Reply {
    /// The value of header `name` (lower case), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{name}:");
        self.headers
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.trim().to_string())
    }
}

/// Sends `method path` with a form body (values already URL-encoded) and the
/// bearer `token`; `extra` is more header lines, each ending in CRLF.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    form: &[(&str, &str)],
    extra: &str,
) -> Reply {
    let body: String = form
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let content_type = "application/x-www-form-urlencoded";
    request(addr, method, path, token, content_type, &body, extra)
}

/// Sends `method path` with a JSON body and the bearer `token`.
pub fn http_json(addr: &str, method: &str, path: &str, token: &str, body: &Value) -> Reply {
    let body = body.to_string();
    request(addr, method, path, token, "application/json", &body, "")
}

fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    content_type: &str,
    body: &str,
    extra: &str,
) -> Reply {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the bridge");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n{extra}\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read response");
    let (head, rest) = raw.split_once("\r\n\r\n").expect("a header block");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let text = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Reply {
        status,
        headers: head.to_ascii_lowercase(),
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

pub fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// Polls `check` every 200 ms until it holds; panics after `secs`.
pub fn eventually(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Percent-encodes a form value (everything but unreserved characters).
pub fn enc(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
