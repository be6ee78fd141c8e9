//! Which URLs a webhook may target: `http`/`https` only, and — unless
//! `webhooks.allow_private_targets` is set — never an address on the bridge's
//! own side of the network (loopback, private, link-local such as the cloud
//! metadata endpoint 169.254.169.254, multicast, unspecified, reserved).
//!
//! Checked twice: at creation (syntax, IP literals, `localhost`) and at every
//! delivery after DNS resolution, where the checked addresses are the ones the
//! request connects to (no second lookup an attacker could rebind).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;

/// Longest accepted URL.
pub const MAX_URL_LEN: usize = 2048;

/// Why a URL is not an acceptable target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("url is not a valid absolute URL")]
    Malformed,
    #[error("url must be at most {MAX_URL_LEN} characters")]
    TooLong,
    #[error("url must use http or https")]
    Scheme,
    #[error("url must name a host")]
    NoHost,
    #[error("url targets a loopback, private, link-local or otherwise non-public address")]
    NotPublic,
    #[error("url host could not be resolved: {0}")]
    Unresolvable(String),
}

/// Checks a URL at creation time (no DNS).
pub fn parse(url: &str, allow_private: bool) -> Result<Url, TargetError> {
    if url.len() > MAX_URL_LEN {
        return Err(TargetError::TooLong);
    }
    let parsed = Url::parse(url).map_err(|_| TargetError::Malformed)?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(TargetError::Scheme);
    }
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or(TargetError::NoHost)?;
    if allow_private {
        return Ok(parsed);
    }
    // IPv6 literals come bracketed.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let public = match bare.parse::<IpAddr>() {
        Ok(ip) => is_public(ip),
        Err(_) => {
            let name = bare.trim_end_matches('.').to_ascii_lowercase();
            name != "localhost" && !name.ends_with(".localhost")
        }
    };
    if public {
        Ok(parsed)
    } else {
        Err(TargetError::NotPublic)
    }
}

/// Resolves the URL's host and checks every address; returns the addresses
/// to connect to.
pub async fn resolve(url: &Url, allow_private: bool) -> Result<Vec<SocketAddr>, TargetError> {
    let host = url.host_str().ok_or(TargetError::NoHost)?;
    let port = url.port_or_known_default().ok_or(TargetError::Malformed)?;
    // IPv6 literals come bracketed from `host_str`.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| TargetError::Unresolvable(e.kind().to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(TargetError::Unresolvable("no addresses".into()));
    }
    if !allow_private && addrs.iter().any(|a| !is_public(a.ip())) {
        return Err(TargetError::NotPublic);
    }
    Ok(addrs)
}

/// Whether `ip` is a globally routable unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0                                  // "this network"
        || (a == 100 && (64..128).contains(&b))    // carrier-grade NAT
        || (a == 192 && b == 0 && c == 0)          // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19))      // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00      // unique local
        || (first & 0xffc0) == 0xfe80      // link-local
        || (first & 0xffc0) == 0xfec0      // site-local (deprecated)
        || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
        || ip.segments()[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_and_https_are_accepted() {
        assert!(parse("https://example.com/hook", false).is_ok());
        assert!(parse("http://example.com:8080/hook", false).is_ok());
        assert_eq!(parse("ftp://example.com/", false), Err(TargetError::Scheme));
        assert_eq!(parse("example.com", false), Err(TargetError::Malformed));
    }

    #[test]
    fn internal_targets_are_refused_unless_allowed() {
        for bad in [
            "http://127.0.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://10.1.2.3/",
            "http://192.168.0.1/",
            "http://[::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0/",
            "http://localhost:8080/",
            "http://224.0.0.1/",
        ] {
            assert_eq!(parse(bad, false), Err(TargetError::NotPublic), "{bad}");
            assert!(
                parse(bad, true).is_ok(),
                "{bad} with private targets allowed"
            );
        }
        assert!(parse("http://93.184.216.34/", false).is_ok());
    }

    #[tokio::test]
    async fn resolution_checks_every_address() {
        let url = Url::parse("http://localhost:9/").unwrap_or_else(|_| unreachable!());
        assert_eq!(resolve(&url, false).await, Err(TargetError::NotPublic));
        assert!(resolve(&url, true).await.is_ok());
    }
}
