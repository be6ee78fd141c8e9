//! TLS session tickets that every node of a deployment can open, so a device
//! that reconnects to another node (its own died, the load balancer chose
//! another) resumes its session instead of paying for a full handshake: the
//! certificate signatures are a node's largest cost per connection, and a
//! killed node's devices all reconnect at once.
//!
//! The nodes share a 32-byte secret (`broker.session_ticket_key_file`). Ticket
//! keys are derived from it per epoch of [`ROTATE_SECS`] with HKDF-SHA256,
//! salted with the digest of the trusted CA bundle: replacing the trust (a CA
//! rollover) makes every older ticket unreadable, as a new configuration does
//! without a shared key. A ticket opens in the epoch it was made in and the
//! ones either side of it (clocks of different hosts differ a little), so it
//! lives at most three epochs. Revocation is not in the ticket: the listener
//! checks every session's certificate against the live CRL set after the
//! handshake, resumed or not (see `listener`).
//!
//! This module must not log or expose the secret or derived keys.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hkdf::{Prk, Salt, HKDF_SHA256};
use ring::rand::{SecureRandom, SystemRandom};

use crate::BrokerError;

/// Length of an epoch, s: keys roll over this often.
pub const ROTATE_SECS: u64 = 6 * 3600;

/// Format byte of the tickets this module makes.
const VERSION: u8 = 1;
/// version, epoch (u64 BE), nonce, then ciphertext and tag.
const HEADER: usize = 1 + 8 + NONCE_LEN;

/// The shared secret, as read from (or first written to) its file.
#[derive(Clone)]
pub struct TicketSecret([u8; 32]);

impl std::fmt::Debug for TicketSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketSecret(..)")
    }
}

impl TicketSecret {
    /// The secret in `path` (64 hex digits); the file is created with a new
    /// random secret (mode 0600) when it does not exist. Nodes starting at
    /// once agree: the file appears whole, and only the first creation wins.
    pub fn load_or_create(path: &Path) -> Result<Self, BrokerError> {
        let err = |reason: String| BrokerError::Pem {
            path: path.to_path_buf(),
            reason,
        };
        if !path.exists() {
            let mut bytes = [0u8; 32];
            SystemRandom::new()
                .fill(&mut bytes)
                .map_err(|_| err("no randomness for a new session ticket secret".into()))?;
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            let write = || -> std::io::Result<()> {
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)?;
                writeln!(f, "{}", hex(&bytes))?;
                f.sync_all()?;
                // A hard link fails if another node created the file first.
                let linked = std::fs::hard_link(&tmp, path);
                std::fs::remove_file(&tmp)?;
                match linked {
                    Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
                    _ => Ok(()),
                }
            };
            write().map_err(|e| err(format!("cannot create the session ticket secret: {e}")))?;
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(format!("cannot read the session ticket secret: {e}")))?;
        let text = text.trim();
        let mut secret = [0u8; 32];
        if text.len() != 64 || !text.is_ascii() {
            return Err(err("a session ticket secret is 64 hex digits".into()));
        }
        for (i, byte) in secret.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|_| err("a session ticket secret is 64 hex digits".into()))?;
        }
        Ok(Self(secret))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A `rustls` ticket producer with keys derived from a [`TicketSecret`].
pub struct SharedTicketer {
    /// HKDF's pseudo-random key from the secret and the trust's digest.
    prk: Prk,
    rng: SystemRandom,
    /// Derived keys of the epochs seen lately (at most four).
    keys: Mutex<Vec<(u64, std::sync::Arc<LessSafeKey>)>>,
}

impl std::fmt::Debug for SharedTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedTicketer")
    }
}

impl SharedTicketer {
    /// Tickets under `secret` for the trust in `ca_bundle` (the CA file's bytes).
    pub fn new(secret: TicketSecret, ca_bundle: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, ca_bundle);
        Self {
            prk: Salt::new(HKDF_SHA256, digest.as_ref()).extract(&secret.0),
            rng: SystemRandom::new(),
            keys: Mutex::new(Vec::new()),
        }
    }

    fn key(&self, epoch: u64) -> Option<std::sync::Arc<LessSafeKey>> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, k)) = keys.iter().find(|(e, _)| *e == epoch) {
            return Some(k.clone());
        }
        let info = epoch.to_be_bytes();
        let parts: [&[u8]; 2] = [b"kumo session ticket", &info];
        let okm = self.prk.expand(&parts, &AES_256_GCM).ok()?;
        let key = std::sync::Arc::new(LessSafeKey::new(UnboundKey::from(okm)));
        if keys.len() >= 4 {
            keys.remove(0);
        }
        keys.push((epoch, key.clone()));
        Some(key)
    }

    fn encrypt_at(&self, plain: &[u8], epoch: u64) -> Option<Vec<u8>> {
        let key = self.key(epoch)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(HEADER + plain.len() + AES_256_GCM.tag_len());
        out.push(VERSION);
        out.extend_from_slice(&epoch.to_be_bytes());
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&out[..9]),
            &mut body,
        )
        .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    fn decrypt_at(&self, ticket: &[u8], now_epoch: u64) -> Option<Vec<u8>> {
        if ticket.len() < HEADER + AES_256_GCM.tag_len() || ticket[0] != VERSION {
            return None;
        }
        let epoch = u64::from_be_bytes(ticket[1..9].try_into().ok()?);
        if epoch.abs_diff(now_epoch) > 1 {
            return None;
        }
        let key = self.key(epoch)?;
        let nonce = Nonce::try_assume_unique_for_key(&ticket[9..HEADER]).ok()?;
        let mut body = ticket[HEADER..].to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(&ticket[..9]), &mut body)
            .ok()?;
        Some(plain.to_vec())
    }
}

fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / ROTATE_SECS)
}

impl rustls::server::ProducesTickets for SharedTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        u32::try_from(ROTATE_SECS).unwrap_or(u32::MAX)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.encrypt_at(plain, epoch_now())
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.decrypt_at(cipher, epoch_now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::server::ProducesTickets as _;

    fn secret(byte: u8) -> TicketSecret {
        TicketSecret([byte; 32])
    }

    #[test]
    fn a_ticket_made_by_one_node_opens_on_another_with_the_same_secret_and_trust() {
        let a = SharedTicketer::new(secret(7), b"ca bundle");
        let b = SharedTicketer::new(secret(7), b"ca bundle");
        let ticket = a.encrypt(b"session state").expect("sealed");
        assert_eq!(b.decrypt(&ticket).as_deref(), Some(&b"session state"[..]));
        assert!(!ticket.windows(13).any(|w| w == b"session state"));
    }

    #[test]
    fn another_secret_or_another_trust_cannot_open_a_ticket() {
        let a = SharedTicketer::new(secret(7), b"ca bundle");
        let ticket = a.encrypt(b"state").expect("sealed");
        assert_eq!(
            SharedTicketer::new(secret(8), b"ca bundle").decrypt(&ticket),
            None
        );
        assert_eq!(
            SharedTicketer::new(secret(7), b"new ca").decrypt(&ticket),
            None
        );
    }

    #[test]
    fn a_ticket_opens_only_near_its_epoch_and_not_when_altered() {
        let t = SharedTicketer::new(secret(1), b"ca");
        let ticket = t.encrypt_at(b"state", 100).expect("sealed");
        for now in [99, 100, 101] {
            assert!(t.decrypt_at(&ticket, now).is_some(), "epoch {now}");
        }
        for now in [98, 102, 1_000] {
            assert!(t.decrypt_at(&ticket, now).is_none(), "epoch {now}");
        }
        for i in 0..ticket.len() {
            let mut bad = ticket.clone();
            bad[i] ^= 0x01;
            assert!(t.decrypt_at(&bad, 100).is_none(), "byte {i} flipped");
        }
        for len in 0..ticket.len() {
            assert!(t.decrypt_at(&ticket[..len], 100).is_none(), "cut to {len}");
        }
    }

    #[test]
    fn the_secret_file_is_created_once_private_and_read_back_by_every_node() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("session-ticket.key");
        let first = TicketSecret::load_or_create(&path).expect("created");
        let mode = std::fs::metadata(&path).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = TicketSecret::load_or_create(&path).expect("read");
        assert_eq!(first.0, again.0);
        let leftovers = std::fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(leftovers, 1, "no temporary file stays behind");

        std::fs::write(&path, "not hex").expect("write");
        let e = TicketSecret::load_or_create(&path).expect_err("refused");
        assert!(e.to_string().contains("64 hex digits"), "{e}");
    }
}
