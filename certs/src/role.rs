//! How an [`Identity`] is written into a certificate and read back.
//!
//! Owns the role encoding documented at the crate root: subject
//! `O=Kumo, OU=<role>, CN=<name>` plus exactly one `urn:kumo:…` URI SAN, and the
//! clientAuth EKU. Reading requires all of them to agree; anything else is an
//! error, never a guess. It must not decide what an identity may do (the broker does).

use kumo_contract::{AccountId, DeviceId, Identity};
use rcgen::{DistinguishedName, DnType, SanType};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::inspect::{parse_cert, subject_string};
use crate::CertError;

/// Subject organization of every Kumo certificate.
pub(crate) const ORGANIZATION: &str = "Kumo";
/// Prefix of the identity URI SAN.
pub(crate) const URN_PREFIX: &str = "urn:kumo:";
/// Subject OU of broker node (server) certificates; never a client identity.
pub(crate) const NODE_OU: &str = "node";

/// Checks a service, integration or node name: the same syntax as device ids
/// (1–64 of `[A-Za-z0-9_-]`, starting with a letter or digit), so it is safe in
/// file names, URNs and MQTT client ids.
pub(crate) fn validate_name(kind: &'static str, name: &str) -> Result<(), CertError> {
    // The syntax is owned by kumo-contract; reuse its validator instead of a copy.
    DeviceId::parse(name)
        .map(|_| ())
        .map_err(|e| CertError::InvalidName {
            kind,
            name: name.to_string(),
            reason: e.to_string().replacen("device id", "name", 1),
        })
}

/// The identity's URI SAN.
pub(crate) fn urn(identity: &Identity) -> String {
    match identity {
        Identity::Device { id } => format!("{URN_PREFIX}device:{id}"),
        Identity::Service { name } => format!("{URN_PREFIX}service:{name}"),
        Identity::Integration { name, account } => {
            format!("{URN_PREFIX}integration:{account}:{name}")
        }
    }
}

/// `O=Kumo, OU=<ou>, CN=<cn>`.
pub(crate) fn subject(ou: &str, cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::OrganizationalUnitName, ou);
    dn.push(DnType::CommonName, cn);
    dn
}

/// Subject and SAN for a client identity. Names must already be validated.
pub(crate) fn encode(identity: &Identity) -> Result<(DistinguishedName, SanType), CertError> {
    let san =
        rcgen::string::Ia5String::try_from(urn(identity)).map_err(|e| CertError::InvalidName {
            kind: identity.role(),
            name: identity.client_id().to_string(),
            reason: e.to_string(),
        })?;
    Ok((
        subject(identity.role(), identity.client_id()),
        SanType::URI(san),
    ))
}

/// Turns an already chain-verified client certificate (DER) into an identity.
///
/// Does not verify the signature chain, validity or revocation: that is the TLS
/// verifier's job. Fails unless the certificate is a non-CA clientAuth certificate
/// whose subject OU and CN agree with its single `urn:kumo:` SAN.
pub fn identity_from_der(der: &[u8]) -> Result<Identity, CertError> {
    let cert = parse_cert(der)?;
    identity_from_cert(&cert)
}

/// The node id of a broker node's server certificate (`O=Kumo, OU=node,
/// CN=<node id>`), already verified by the caller; `None` for any other
/// certificate (e.g. a node certificate from another PKI).
pub fn node_id_from_der(der: &[u8]) -> Option<String> {
    let cert = parse_cert(der).ok()?;
    let subject = cert.subject();
    let org = single_attr(subject.iter_organization(), "O").ok()??;
    let ou = single_attr(subject.iter_organizational_unit(), "OU").ok()??;
    let cn = single_attr(subject.iter_common_name(), "CN").ok()??;
    (org == ORGANIZATION && ou == NODE_OU && !cn.is_empty()).then_some(cn)
}

pub(crate) fn identity_from_cert(cert: &X509Certificate<'_>) -> Result<Identity, CertError> {
    let subject = subject_string(cert);
    let invalid = |reason: String| CertError::InvalidIdentity {
        subject: subject.clone(),
        reason,
    };
    let urns = kumo_urns(cert).map_err(&invalid)?;
    let ou = single_attr(cert.subject().iter_organizational_unit(), "OU").map_err(&invalid)?;
    if urns.is_empty() {
        let reason = if ou.as_deref() == Some(NODE_OU) {
            "it is a broker node (server) certificate".to_string()
        } else {
            "no urn:kumo: subject alternative name".to_string()
        };
        return Err(CertError::NoIdentity { subject, reason });
    }
    let [urn] = urns.as_slice() else {
        return Err(invalid(format!(
            "{} urn:kumo: names; expected one",
            urns.len()
        )));
    };
    let identity = parse_urn(urn).map_err(&invalid)?;

    if cert.is_ca() {
        return Err(invalid("it is a CA certificate".into()));
    }
    let client_auth = cert
        .extended_key_usage()
        .map_err(|e| invalid(format!("bad extended key usage: {e}")))?
        .is_some_and(|eku| eku.value.client_auth);
    if !client_auth {
        return Err(invalid("no clientAuth extended key usage".into()));
    }
    let org = single_attr(cert.subject().iter_organization(), "O").map_err(&invalid)?;
    let cn = single_attr(cert.subject().iter_common_name(), "CN").map_err(&invalid)?;
    if org.as_deref() != Some(ORGANIZATION)
        || ou.as_deref() != Some(identity.role())
        || cn.as_deref() != Some(identity.client_id())
    {
        return Err(invalid(format!(
            "subject does not match {urn} (expected O={ORGANIZATION}, OU={}, CN={})",
            identity.role(),
            identity.client_id()
        )));
    }
    Ok(identity)
}

/// All URI SANs with the Kumo prefix.
fn kumo_urns<'a>(cert: &X509Certificate<'a>) -> Result<Vec<&'a str>, String> {
    let Some(san) = cert
        .subject_alternative_name()
        .map_err(|e| format!("bad subject alternative names: {e}"))?
    else {
        return Ok(Vec::new());
    };
    Ok(san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) if uri.starts_with(URN_PREFIX) => Some(*uri),
            _ => None,
        })
        .collect())
}

fn single_attr<'a, 'b: 'a>(
    mut attrs: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'b>>,
    name: &str,
) -> Result<Option<String>, String> {
    let Some(first) = attrs.next() else {
        return Ok(None);
    };
    if attrs.next().is_some() {
        return Err(format!("more than one {name} in the subject"));
    }
    first
        .as_str()
        .map(|s| Some(s.to_string()))
        .map_err(|e| format!("{name} is not a string: {e}"))
}

fn parse_urn(urn: &str) -> Result<Identity, String> {
    let rest = &urn[URN_PREFIX.len()..];
    let parts: Vec<&str> = rest.split(':').collect();
    let name = |s: &str| -> Result<String, String> {
        validate_name("client", s)
            .map(|()| s.to_string())
            .map_err(|e| e.to_string())
    };
    match parts.as_slice() {
        ["device", id] => Ok(Identity::Device {
            id: DeviceId::parse(*id).map_err(|e| e.to_string())?,
        }),
        ["service", n] => Ok(Identity::Service { name: name(n)? }),
        ["integration", account, n] => Ok(Identity::Integration {
            name: name(n)?,
            account: AccountId::parse(*account).map_err(|e| e.to_string())?,
        }),
        _ => Err(format!("unrecognised identity URN {urn:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urns_round_trip_for_every_role() {
        let identities = [
            Identity::Device {
                id: DeviceId::parse("remo-1").expect("valid"),
            },
            Identity::Service {
                name: "bridge".into(),
            },
            Identity::Integration {
                name: "alexa".into(),
                account: AccountId::parse("acct_9").expect("valid"),
            },
        ];
        for identity in identities {
            assert_eq!(parse_urn(&urn(&identity)), Ok(identity));
        }
    }

    #[test]
    fn malformed_urns_are_rejected() {
        for bad in [
            "urn:kumo:device:",
            "urn:kumo:device:a/b",
            "urn:kumo:device:a:b",
            "urn:kumo:node:n1",
            "urn:kumo:integration:acct",
            "urn:kumo:service:+",
        ] {
            assert!(parse_urn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_follow_the_device_id_syntax() {
        assert!(validate_name("service", "bridge").is_ok());
        let err = validate_name("service", "a b").expect_err("space");
        assert!(err.to_string().contains("name contains"), "{err}");
    }
}
