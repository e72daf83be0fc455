//! What a certificate says: names, issuer, end date, fingerprint; and whether it covers a
//! name (RFC 6125: an exact DNS name, or a wildcard for exactly one left-most label; an IP
//! address only by an IP address entry).

use std::net::IpAddr;

use base64::Engine;
use sha2::{Digest, Sha256};
use x509_parser::{extensions::GeneralName, parse_x509_certificate};

use super::report::CertificateSummary;

/// The summary of a DER certificate (an empty one if it does not parse).
pub fn summarise(der: &[u8]) -> CertificateSummary {
    let fingerprint = base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(der));
    let Ok((_, cert)) = parse_x509_certificate(der) else {
        return CertificateSummary {
            sha256_fingerprint: fingerprint,
            ..CertificateSummary::default()
        };
    };
    let common_name = |name: &x509_parser::x509::X509Name<'_>| {
        name.iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        ip_addresses.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    CertificateSummary {
        subject_common_name: common_name(cert.subject()),
        issuer_common_name: common_name(cert.issuer()),
        sha256_fingerprint: fingerprint,
        dns_names,
        ip_addresses,
        not_after: cert.validity().not_after.timestamp(),
    }
}

/// Whether the certificate covers `name` (a DNS name or an IP address).
pub fn covers(cert: &CertificateSummary, name: &str) -> bool {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return cert
            .ip_addresses
            .iter()
            .any(|a| a.parse::<IpAddr>().ok() == Some(ip));
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    cert.dns_names.iter().any(|pattern| {
        let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
        match pattern.strip_prefix("*.") {
            Some(rest) => name
                .split_once('.')
                .is_some_and(|(label, parent)| !label.is_empty() && parent == rest),
            None => pattern == name,
        }
    })
}

/// Whether the certificate names itself as its issuer (a self-signed certificate).
pub fn self_signed(cert: &CertificateSummary) -> bool {
    !cert.subject_common_name.is_empty() && cert.subject_common_name == cert.issuer_common_name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(names: &[&str]) -> CertificateSummary {
        CertificateSummary {
            dns_names: names.iter().map(|n| (*n).to_owned()).collect(),
            ip_addresses: vec!["192.0.2.1".to_owned()],
            ..CertificateSummary::default()
        }
    }

    #[test]
    fn names_and_wildcards_cover_as_rfc_6125_says() {
        let c = cert(&["example.org", "*.example.org"]);
        assert!(covers(&c, "example.org"));
        assert!(covers(&c, "Matrix.Example.org"));
        assert!(covers(&c, "matrix.example.org."));
        assert!(!covers(&c, "a.b.example.org"), "one label only");
        assert!(!covers(&c, "example.com"));
        assert!(!covers(&c, "notexample.org"));
        assert!(covers(&c, "192.0.2.1"));
        assert!(!covers(&c, "192.0.2.2"));
        assert!(
            !covers(&cert(&["192.0.2.2"]), "192.0.2.2"),
            "IPs need an IP entry"
        );
    }

    #[test]
    fn a_generated_certificate_is_summarised() {
        let key = rcgen::KeyPair::generate().expect("a key");
        let mut params =
            rcgen::CertificateParams::new(vec!["matrix.example.org".to_owned()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "matrix.example.org");
        let made = params.self_signed(&key).expect("a certificate");
        let summary = summarise(made.der());
        assert_eq!(summary.subject_common_name, "matrix.example.org");
        assert_eq!(summary.dns_names, ["matrix.example.org"]);
        assert!(summary.not_after > 0);
        assert!(self_signed(&summary));
        assert!(covers(&summary, "matrix.example.org"));
    }
}
