//! Kumo's PKI: the CA, the certificates of devices, broker nodes, services and
//! integrations, device CSR signing, and revocation (CRL).
//!
//! The core ([`Ca`], [`identity_from_der`], the CRL functions) is synchronous and
//! does no I/O; [`files`] keeps a PKI in a directory for the CLI and `kumo up`.
//! This crate must not depend on any service crate.
//!
//! # Role encoding
//!
//! A client certificate proves one [`Identity`]. It is written into the
//! certificate by the CA, and only by the CA, in two places that must agree:
//!
//! | role        | subject                                   | URI subject alternative name            |
//! |-------------|-------------------------------------------|-----------------------------------------|
//! | device      | `O=Kumo, OU=device, CN=<device id>`       | `urn:kumo:device:<device id>`           |
//! | service     | `O=Kumo, OU=service, CN=<name>`           | `urn:kumo:service:<name>`               |
//! | integration | `O=Kumo, OU=integration, CN=<name>`       | `urn:kumo:integration:<account>:<name>` |
//! | node        | `O=Kumo, OU=node, CN=<node id>`           | none (DNS/IP SANs only)                 |
//!
//! Client certificates carry the clientAuth EKU and `CA:FALSE`; node certificates
//! carry only serverAuth and never parse as a client identity. Device ids, account
//! ids and names all follow [`DeviceId`]'s syntax (`[A-Za-z0-9_-]`, no `:`), so the
//! URN splits unambiguously.
//!
//! Why a device cannot fake another role: a device never chooses anything in its
//! certificate but its key. [`Ca::sign_device_csr`] takes only the public key
//! from a CSR (after checking its self-signature) and writes the subject, SAN and
//! EKU itself; the CSR's subject and requested extensions are ignored. So every
//! certificate chaining to the CA says exactly what the CA meant. On the reading
//! side, [`identity_from_der`] requires the OU, CN and URN to match and the
//! clientAuth EKU to be present; a certificate with none of the encoding, with a
//! contradictory one, or with two URNs is an error, never a guess. The CN is still
//! the device id, so peers that only read the CN (mosquitto's
//! `use_identity_as_username`) see the same identity.
//!
//! # Serials and fingerprints
//!
//! Serials are random 126-bit positive integers (16 DER bytes), written as
//! lowercase hex without separators or leading zero bytes everywhere in this
//! crate ([`Issued::serial`], [`serial_of_der`], [`revoked_serials_from_crl_pem`]).
//! Fingerprints are SHA-256 of the DER, lowercase hex.

mod ca;
mod crl;
mod csr;
mod error;
pub mod files;
mod inspect;
mod key;
mod role;

pub use kumo_contract::{AccountId, DeviceId, Identity};
/// Re-exported so users of [`IssueOptions`] and [`Revoked`] need no direct dependency.
pub use time;

pub use ca::{
    Ca, IssueOptions, Issued, BACKDATE, CA_VALIDITY, DEVICE_VALIDITY, SERVER_AND_SERVICE_VALIDITY,
};
pub use crl::{crl_der_from_pem, revoked_serials_from_crl_pem, verify_crl_pem, Revoked};
pub use csr::MAX_CSR_BYTES;
pub use error::CertError;
pub use inspect::{
    fingerprint_of_der, normalize_serial, pem_to_der, serial_of_der, validity_of_der,
};
pub use key::KeyAlgorithm;
pub use role::{identity_from_der, node_id_from_der};
