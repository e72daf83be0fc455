//! The checker's report: the field names of matrix-federation-tester's JSON report
//! (`WellKnownResult`, `DNSResult`, `ConnectionReports`, `ConnectionErrors`, `Version`,
//! `FederationOK`), so that tools that read its reports read ours, plus Kith's additions:
//! the discovery steps in order, and each problem and warning with the sentence that says
//! how to fix it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An error as matrix-federation-tester writes one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ReportError {
    /// What went wrong.
    #[serde(rename = "Message")]
    pub message: String,
}

impl ReportError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// The whole report for one server name.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Report {
    /// An error that stopped the check before any connection (a malformed server name).
    #[serde(rename = "Error", default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What `/.well-known/matrix/server` said.
    #[serde(rename = "WellKnownResult")]
    pub well_known: WellKnownResult,
    /// SRV and address lookups.
    #[serde(rename = "DNSResult")]
    pub dns: DnsResult,
    /// Each address that a TLS connection was made to, by `ip:port`.
    #[serde(rename = "ConnectionReports")]
    pub connection_reports: BTreeMap<String, ConnectionReport>,
    /// Each address no TLS connection could be made to, by `ip:port`.
    #[serde(rename = "ConnectionErrors")]
    pub connection_errors: BTreeMap<String, ReportError>,
    /// `GET /_matrix/federation/v1/version` of the first address that answered.
    #[serde(rename = "Version")]
    pub version: VersionReport,
    /// Whether nothing was found that stops federation.
    #[serde(rename = "FederationOK")]
    pub federation_ok: bool,

    /// Kith: the server name checked.
    #[serde(rename = "ServerName")]
    pub server_name: String,
    /// Kith: when, in milliseconds since the Unix epoch.
    #[serde(rename = "CheckedAt")]
    #[cfg_attr(test, ts(type = "number"))]
    pub checked_at: i64,
    /// Kith: `ok`, `degraded` (federation works, but something needs attention soon) or
    /// `failing`.
    #[serde(rename = "Verdict")]
    pub verdict: Verdict,
    /// Kith: the spec's discovery steps in the order they ran, then one step per address.
    #[serde(rename = "Steps")]
    pub steps: Vec<Step>,
    /// Kith: what stops federation, each with its fix.
    #[serde(rename = "Problems")]
    pub problems: Vec<Finding>,
    /// Kith: what does not stop federation today but should be fixed.
    #[serde(rename = "Warnings")]
    pub warnings: Vec<Finding>,
    /// Kith: how far the result can be trusted from where the check ran.
    #[serde(rename = "Notes")]
    pub notes: Vec<String>,
    /// Kith: what an external federation tester said, when one was asked.
    #[serde(rename = "External", default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalResult>,
}

/// An external federation tester's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ExternalResult {
    /// The tester's base URL.
    #[serde(rename = "URL")]
    pub url: String,
    /// Its `FederationOK`, when it answered.
    #[serde(rename = "FederationOK")]
    pub federation_ok: Option<bool>,
    /// Why it did not answer.
    #[serde(rename = "Error", default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The overall health.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Federation works.
    Ok,
    /// Federation works, with warnings.
    Degraded,
    /// Federation does not work.
    #[default]
    Failing,
}

/// The state of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    /// Passed.
    Ok,
    /// Passed, with a warning.
    Warning,
    /// Failed.
    Failed,
    /// Not run: an earlier step decided.
    Skipped,
}

/// One discovery step or one address's checks, for the wizard's list of steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Step {
    /// What was checked ("server name", "well-known", "SRV _matrix-fed._tcp.example.org", ...).
    #[serde(rename = "Name")]
    pub name: String,
    /// How it went.
    #[serde(rename = "Status")]
    pub status: StepStatus,
    /// What was found, in one sentence.
    #[serde(rename = "Detail")]
    pub detail: String,
}

/// A problem or warning and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Finding {
    /// The step it belongs to (a [`Step::name`]).
    #[serde(rename = "Step")]
    pub step: String,
    /// What is wrong.
    #[serde(rename = "Message")]
    pub message: String,
    /// How to fix it.
    #[serde(rename = "Fix")]
    pub fix: String,
}

/// The well-known result, as matrix-federation-tester writes it, and per address.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct WellKnownResult {
    /// The delegated server (`m.server`), empty when there is none.
    #[serde(rename = "m.server")]
    pub server: String,
    /// Why there is none, when there is none.
    #[serde(rename = "result", default, skip_serializing_if = "String::is_empty")]
    pub result: String,
    /// Until when other servers may cache the answer, in seconds since the Unix epoch (0:
    /// no answer).
    #[serde(rename = "CacheExpiresAt")]
    #[cfg_attr(test, ts(type = "number"))]
    pub cache_expires_at: i64,
    /// Kith: what each address of the host answered, by IP address.
    #[serde(rename = "Addresses", default)]
    pub addresses: BTreeMap<String, WellKnownFetch>,
}

/// What one address of the server name's host answered for the well-known file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct WellKnownFetch {
    /// The `m.server` it named.
    #[serde(rename = "m.server", default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Why it named none.
    #[serde(rename = "Error", default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether a file was there (HTTP 200), valid or not.
    #[serde(rename = "Found")]
    pub found: bool,
    /// Its `Content-Type`.
    #[serde(
        rename = "ContentType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub content_type: Option<String>,
    /// The redirects followed, in order.
    #[serde(rename = "Redirects", default, skip_serializing_if = "Vec::is_empty")]
    pub redirects: Vec<String>,
    /// How long the answer may be cached, in seconds.
    #[serde(
        rename = "CacheSeconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(test, ts(type = "number | null"))]
    pub cache_seconds: Option<u64>,
    /// This machine has no route to the address, so its answer is unknown.
    #[serde(rename = "Untested", default)]
    pub untested: bool,
}

/// An SRV record, as Go's `net.SRV` serialises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SrvRecord {
    /// The target host.
    #[serde(rename = "Target")]
    pub target: String,
    /// The port.
    #[serde(rename = "Port")]
    pub port: u16,
    /// Lower is tried first.
    #[serde(rename = "Priority")]
    pub priority: u16,
    /// Higher is tried more among equal priorities.
    #[serde(rename = "Weight")]
    pub weight: u16,
}

/// SRV and address lookups.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct DnsResult {
    /// Whether SRV was not looked up (an IP literal or an explicit port decided).
    #[serde(rename = "SRVSkipped")]
    pub srv_skipped: bool,
    /// The canonical name of the SRV record's name, if it is an alias.
    #[serde(rename = "SRVCName")]
    pub srv_cname: String,
    /// The SRV records used (`_matrix-fed._tcp`, or the legacy `_matrix._tcp`).
    #[serde(rename = "SRVRecords")]
    pub srv_records: Vec<SrvRecord>,
    /// An SRV lookup failure other than "no such record".
    #[serde(rename = "SRVError")]
    pub srv_error: Option<ReportError>,
    /// The address lookup of each host connected to.
    #[serde(rename = "Hosts")]
    pub hosts: BTreeMap<String, HostResult>,
    /// Every `ip:port` checked.
    #[serde(rename = "Addrs")]
    pub addrs: Vec<String>,
    /// Kith: which SRV name the records came from.
    #[serde(rename = "SRVName", default, skip_serializing_if = "String::is_empty")]
    pub srv_name: String,
}

/// The address lookup of one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct HostResult {
    /// Its canonical name, if it is an alias.
    #[serde(rename = "CName")]
    pub cname: String,
    /// Its addresses.
    #[serde(rename = "Addrs")]
    pub addrs: Vec<String>,
    /// Why it has none.
    #[serde(rename = "Error")]
    pub error: Option<ReportError>,
}

/// The version a server reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct VersionReport {
    /// Server software.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Its version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Why there is none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// One certificate the server sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct CertificateSummary {
    /// The subject's common name.
    #[serde(rename = "SubjectCommonName")]
    pub subject_common_name: String,
    /// The issuer's common name.
    #[serde(rename = "IssuerCommonName")]
    pub issuer_common_name: String,
    /// SHA-256 of the DER bytes, unpadded base64.
    #[serde(rename = "SHA256Fingerprint")]
    pub sha256_fingerprint: String,
    /// The DNS names it is valid for.
    #[serde(rename = "DNSNames")]
    pub dns_names: Vec<String>,
    /// Kith: the IP addresses it is valid for.
    #[serde(rename = "IPAddresses", default, skip_serializing_if = "Vec::is_empty")]
    pub ip_addresses: Vec<String>,
    /// Kith: the end of its validity, in seconds since the Unix epoch.
    #[serde(rename = "NotAfter")]
    #[cfg_attr(test, ts(type = "number"))]
    pub not_after: i64,
}

/// The TLS version and cipher suite of a connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct CipherSummary {
    /// "TLS 1.2" or "TLS 1.3".
    #[serde(rename = "Version")]
    pub version: String,
    /// The suite's IANA name.
    #[serde(rename = "CipherSuite")]
    pub cipher_suite: String,
}

/// The checks of one key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Ed25519Checks {
    /// The key is 32 bytes of base64.
    #[serde(rename = "ValidEd25519")]
    pub valid_ed25519: bool,
    /// The response carries a good signature by this key.
    #[serde(rename = "MatchingSignature")]
    pub matching_signature: bool,
}

/// The checks of one connection (gomatrixserverlib's `KeyChecks` and the certificate).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ConnectionChecks {
    /// Every check passed.
    #[serde(rename = "AllChecksOK")]
    pub all_checks_ok: bool,
    /// The key response names the server name checked.
    #[serde(rename = "MatchingServerName")]
    pub matching_server_name: bool,
    /// `valid_until_ts` is in the future.
    #[serde(rename = "FutureValidUntilTS")]
    pub future_valid_until_ts: bool,
    /// At least one ed25519 key is listed.
    #[serde(rename = "HasEd25519Key")]
    pub has_ed25519_key: bool,
    /// Every ed25519 key passed, or none when there was none.
    #[serde(rename = "AllEd25519ChecksOK")]
    pub all_ed25519_checks_ok: Option<bool>,
    /// Each key's checks.
    #[serde(rename = "Ed25519Checks")]
    pub ed25519_checks: BTreeMap<String, Ed25519Checks>,
    /// The certificate chains to a trusted root, is in date, and is valid for the name.
    #[serde(rename = "ValidCertificates")]
    pub valid_certificates: bool,
    /// Kith: `valid_until_ts` is at most 7 days away (the spec's limit for how long
    /// others keep the keys).
    #[serde(rename = "ValidUntilWithin7Days")]
    pub valid_until_within_7_days: bool,
    /// Kith: the key response's `Content-Type` is `application/json`.
    #[serde(rename = "JSONContentType")]
    pub json_content_type: bool,
}

/// What one TLS connection showed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ConnectionReport {
    /// The certificates sent, leaf first.
    #[serde(rename = "Certificates")]
    pub certificates: Vec<CertificateSummary>,
    /// TLS version and suite.
    #[serde(rename = "Cipher")]
    pub cipher: CipherSummary,
    /// The checks.
    #[serde(rename = "Checks")]
    pub checks: ConnectionChecks,
    /// What went wrong.
    #[serde(rename = "Errors")]
    pub errors: Vec<ReportError>,
    /// The keys that passed, by key ID.
    #[serde(rename = "Ed25519VerifyKeys")]
    pub ed25519_verify_keys: BTreeMap<String, String>,
    /// Informational checks (none yet, as in matrix-federation-tester).
    #[serde(rename = "Info")]
    pub info: BTreeMap<String, Value>,
    /// The key response as served.
    #[serde(rename = "Keys")]
    pub keys: Option<Value>,
    /// Kith: the name the certificate must be valid for, and why.
    #[serde(rename = "ExpectedCertificateName")]
    pub expected_certificate_name: String,
    /// Kith: days until the leaf certificate expires (negative: expired).
    #[serde(rename = "CertificateDaysLeft")]
    #[cfg_attr(test, ts(type = "number | null"))]
    pub certificate_days_left: Option<i64>,
    /// Kith: the server software and version on this address.
    #[serde(rename = "ServerVersion")]
    pub server_version: VersionReport,
}

impl Report {
    /// Records a step.
    pub fn step(&mut self, name: impl Into<String>, status: StepStatus, detail: impl Into<String>) {
        self.steps.push(Step {
            name: name.into(),
            status,
            detail: detail.into(),
        });
    }

    /// Records a problem that stops federation.
    pub fn problem(&mut self, step: &str, message: impl Into<String>, fix: impl Into<String>) {
        self.problems.push(Finding {
            step: step.to_owned(),
            message: message.into(),
            fix: fix.into(),
        });
    }

    /// Records a warning.
    pub fn warning(&mut self, step: &str, message: impl Into<String>, fix: impl Into<String>) {
        self.warnings.push(Finding {
            step: step.to_owned(),
            message: message.into(),
            fix: fix.into(),
        });
    }

    /// Sets `FederationOK` and the verdict from what was found: OK needs at least one
    /// address, every address reachable with all its checks passed, and no problem.
    pub fn conclude(&mut self) {
        self.federation_ok = self.error.is_none()
            && self.problems.is_empty()
            && self.connection_errors.is_empty()
            && !self.connection_reports.is_empty()
            && self
                .connection_reports
                .values()
                .all(|c| c.checks.all_checks_ok);
        self.verdict = if !self.federation_ok {
            Verdict::Failing
        } else if self.warnings.is_empty() {
            Verdict::Ok
        } else {
            Verdict::Degraded
        };
    }

    /// The report as text for a terminal: the steps, then problems and warnings with their
    /// fixes, then the verdict.
    pub fn to_text(&self) -> String {
        let mut out = format!("Federation check of {}\n\n", self.server_name);
        for step in &self.steps {
            let mark = match step.status {
                StepStatus::Ok => "ok  ",
                StepStatus::Warning => "warn",
                StepStatus::Failed => "FAIL",
                StepStatus::Skipped => "skip",
            };
            out.push_str(&format!("  [{mark}] {}: {}\n", step.name, step.detail));
        }
        for (title, findings) in [("Problems", &self.problems), ("Warnings", &self.warnings)] {
            if findings.is_empty() {
                continue;
            }
            out.push_str(&format!("\n{title}:\n"));
            for finding in findings {
                out.push_str(&format!(
                    "  - {}: {}\n    fix: {}\n",
                    finding.step, finding.message, finding.fix
                ));
            }
        }
        if !self.notes.is_empty() {
            out.push_str("\nNotes:\n");
            for note in &self.notes {
                out.push_str(&format!("  - {note}\n"));
            }
        }
        out.push_str(match self.verdict {
            Verdict::Ok => "\nfederation OK\n",
            Verdict::Degraded => "\nfederation OK, with warnings\n",
            Verdict::Failing => "\nfederation FAILING\n",
        });
        out
    }
}

/// A report with one address whose checks all passed, concluded (for tests).
#[cfg(test)]
pub(crate) fn passing_report() -> Report {
    let mut report = Report {
        server_name: "example.org".to_owned(),
        ..Report::default()
    };
    report.connection_reports.insert(
        "192.0.2.1:8448".to_owned(),
        ConnectionReport {
            checks: ConnectionChecks {
                all_checks_ok: true,
                ..ConnectionChecks::default()
            },
            ..ConnectionReport::default()
        },
    );
    report.conclude();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_uses_matrix_federation_testers_field_names() {
        let report = passing_report();
        let json = serde_json::to_value(&report).expect("serialises");
        for field in [
            "WellKnownResult",
            "DNSResult",
            "ConnectionReports",
            "ConnectionErrors",
            "Version",
            "FederationOK",
        ] {
            assert!(json.get(field).is_some(), "{field} missing from {json}");
        }
        assert_eq!(json["FederationOK"], true);
        assert_eq!(json["Verdict"], "ok");
        let checks = &json["ConnectionReports"]["192.0.2.1:8448"]["Checks"];
        assert_eq!(checks["AllChecksOK"], true);
        assert!(json["DNSResult"].get("SRVSkipped").is_some());
        assert!(json["WellKnownResult"].get("m.server").is_some());
    }

    #[test]
    fn any_problem_or_unreachable_address_fails_and_warnings_degrade() {
        let mut report = Report::default();
        report.conclude();
        assert_eq!(report.verdict, Verdict::Failing, "no address at all");

        report.connection_reports.insert(
            "a".to_owned(),
            ConnectionReport {
                checks: ConnectionChecks {
                    all_checks_ok: true,
                    ..ConnectionChecks::default()
                },
                ..ConnectionReport::default()
            },
        );
        report.conclude();
        assert_eq!(report.verdict, Verdict::Ok);

        report.warning("tls", "expires in 5 days", "renew it");
        report.conclude();
        assert!(report.federation_ok);
        assert_eq!(report.verdict, Verdict::Degraded);
        assert!(report.to_text().ends_with("federation OK, with warnings\n"));

        report
            .connection_errors
            .insert("b".to_owned(), ReportError::new("refused"));
        report.conclude();
        assert!(!report.federation_ok);
        assert!(report.to_text().ends_with("federation FAILING\n"));
    }
}
