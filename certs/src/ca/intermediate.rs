//! Intermediate CAs: an optional second tier, so the root key can stay offline
//! while an intermediate signs day to day.

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyUsagePurpose};

use super::{random_serial, Ca, CA_VALIDITY};
use crate::role::ORGANIZATION;
use crate::{CertError, IssueOptions, KeyAlgorithm};

impl Ca {
    /// Issues an intermediate CA (`O=Kumo, CN=<common_name>`, pathLen 0: it
    /// issues leaves and CRLs only) with a fresh key. Its validity defaults to
    /// [`CA_VALIDITY`] capped at this CA's expiry; `opts.algorithm` is ignored in
    /// favour of `algorithm`.
    pub fn issue_intermediate(
        &self,
        common_name: &str,
        algorithm: KeyAlgorithm,
        opts: &IssueOptions,
    ) -> Result<Ca, CertError> {
        if !self.can_issue_ca {
            return Err(CertError::InvalidCaCertificate {
                reason: "its path length constraint forbids issuing intermediate CAs".into(),
            });
        }
        let what = format!("intermediate CA {common_name:?}");
        let (not_before, not_after) = self.validity_window(&what, opts, CA_VALIDITY)?;
        let key = algorithm.generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, ORGANIZATION);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(random_serial()?);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(CertError::signing(what))?;
        let mut chain = vec![self.cert_pem.clone()];
        chain.extend(self.chain.iter().cloned());
        Ca::assemble(
            Issuer::new(params, key),
            cert.der().to_vec(),
            cert.pem(),
            chain,
        )
    }
}
