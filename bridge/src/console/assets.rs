//! The console's files, embedded in the binary: their bytes, content types,
//! a gzip copy of each and one version hash over all of them.
//!
//! Owns what is served, not how (headers and routes are `console/mod.rs`).
//! Compression runs once, at first use, and never on a request's path again.

use std::sync::LazyLock;

use sha2::{Digest, Sha256};

/// Placeholder in `index.html` for the versioned asset directory.
const BASE_MARK: &str = "{{BASE}}";

/// One file of the console.
pub struct Asset {
    /// Path under the asset directory, e.g. `views/devices.js`.
    pub path: &'static str,
    /// `Content-Type` header value.
    pub content_type: &'static str,
    /// The file as shipped.
    pub body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";

macro_rules! asset {
    ($path:literal, $ty:expr) => {
        Asset {
            path: $path,
            content_type: $ty,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/console/", $path)),
        }
    };
}

/// Every file under `bridge/console/` but `index.html`.
pub static FILES: &[Asset] = &[
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("stream.js", JS),
    asset!("chart.js", JS),
    asset!("energy.js", JS),
    asset!("format.js", JS),
    asset!("views/signin.js", JS),
    asset!("views/devices.js", JS),
    asset!("views/device.js", JS),
    asset!("views/control.js", JS),
    asset!("views/rules.js", JS),
    asset!("views/webhooks.js", JS),
    asset!("views/tokens.js", JS),
    asset!("views/claims.js", JS),
];

const INDEX_TEMPLATE: &str = include_str!("../../console/index.html");

/// A body ready to send: as is and gzipped.
pub struct Encoded {
    pub plain: Vec<u8>,
    pub gzip: Vec<u8>,
}

impl Encoded {
    fn new(plain: Vec<u8>) -> Self {
        let gzip = gzip(&plain);
        Self { plain, gzip }
    }
}

/// The console as served by this build.
pub struct Console {
    /// Hex prefix of the SHA-256 over every asset: a new build gets new URLs,
    /// so assets can be cached for good.
    pub version: String,
    /// `index.html` with asset URLs filled in.
    pub index: Encoded,
    /// `FILES`, in order, encoded.
    pub files: Vec<Encoded>,
}

impl Console {
    fn build() -> Self {
        let mut hash = Sha256::new();
        for f in FILES {
            hash.update(f.path.as_bytes());
            hash.update([0]);
            hash.update(f.body);
        }
        hash.update(INDEX_TEMPLATE.as_bytes());
        let version = hex::encode(&hash.finalize()[..8]);
        let index = INDEX_TEMPLATE.replace(BASE_MARK, &format!("{}/{version}", super::ASSET_ROOT));
        Self {
            index: Encoded::new(index.into_bytes()),
            files: FILES
                .iter()
                .map(|f| Encoded::new(f.body.to_vec()))
                .collect(),
            version,
        }
    }

    /// The asset at `path` and its encodings.
    pub fn file(&self, path: &str) -> Option<(&'static Asset, &Encoded)> {
        let i = FILES.iter().position(|f| f.path == path)?;
        Some((&FILES[i], &self.files[i]))
    }
}

/// Built on first use.
pub static CONSOLE: LazyLock<Console> = LazyLock::new(Console::build);

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail; should it ever, the plain body is served.
    enc.write_all(data)
        .and_then(|()| enc.finish())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_listed_once_and_compresses() {
        let c = &*CONSOLE;
        for (i, f) in FILES.iter().enumerate() {
            assert_eq!(
                FILES.iter().position(|g| g.path == f.path),
                Some(i),
                "{} twice",
                f.path
            );
            assert!(!c.files[i].gzip.is_empty(), "{} gzipped", f.path);
        }
        assert!(!c.index.gzip.is_empty());
    }

    #[test]
    fn the_index_points_at_the_versioned_asset_directory() {
        let index = String::from_utf8(CONSOLE.index.plain.clone()).unwrap_or_default();
        assert!(!index.contains(BASE_MARK));
        assert!(index.contains(&format!("/console/a/{}/app.js", CONSOLE.version)));
    }
}
