//! The federation connectivity checker: it looks up a server name the way another server
//! would (spec: server-server-api.md, "Resolving server names"), step by step, then connects
//! to every address found and checks what other servers check there: TLS, the certificate
//! for the right name, `/_matrix/federation/v1/version` and the signed server keys. Every
//! failure comes with the sentence that says how to fix it. `kith check`, the admin API and
//! the server's self-check use it.

pub(crate) mod certificate;
mod keys;
mod probe;
pub mod report;

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use serde_json::Value;

use self::{
    probe::{CertificateIssue, ConnectError, Connector, Dns},
    report::{ConnectionReport, HostResult, Report, ReportError, StepStatus, WellKnownFetch},
};
use crate::service::federation::discovery::{DEFAULT_PORT, cache_max_age, split_host_port};

/// The well-known answer's default and longest cache lifetime (spec: 24 and 48 hours).
const WELL_KNOWN_DEFAULT_SECS: u64 = 24 * 3600;
const WELL_KNOWN_MAX_SECS: u64 = 48 * 3600;
/// Redirects followed for the well-known file.
const MAX_REDIRECTS: usize = 5;
/// A certificate this close to its end is a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 14;

/// How the checker looks things up.
#[derive(Debug, Clone, Default)]
pub struct CheckerOptions {
    /// The DNS server to ask (`ip:port`); the system's when `None`.
    pub dns_server: Option<SocketAddr>,
    /// PEM certificates trusted besides the system's roots (a private or test CA).
    pub extra_roots_pem: Option<Vec<u8>>,
    /// How long each connection, handshake or request may take (10 s when zero).
    pub timeout: Duration,
}

/// Checks server names. Cheap to clone.
#[derive(Clone)]
pub struct Checker {
    inner: Arc<Inner>,
}

struct Inner {
    dns: Dns,
    connector: Connector,
}

/// Where discovery ended: the addresses to check and what to expect there.
struct Target {
    addrs: Vec<SocketAddr>,
    /// The name the certificate must be valid for.
    tls_name: String,
    /// The `Host` header of requests.
    host_header: String,
    /// Why that name, for the fix of a wrong-name certificate.
    why_name: String,
    /// Whether SRV records decide (steps 3.3 to 3.5 and 4 to 6), so one could move the port.
    srv_applies: bool,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn is_ip(host: &str) -> bool {
    host.parse::<IpAddr>().is_ok()
}

impl Checker {
    /// A checker with these options.
    pub fn new(options: &CheckerOptions) -> Result<Self, String> {
        let timeout = if options.timeout.is_zero() {
            Duration::from_secs(10)
        } else {
            options.timeout
        };
        Ok(Self {
            inner: Arc::new(Inner {
                dns: Dns::new(options.dns_server, timeout)?,
                connector: Connector::new(options.extra_roots_pem.as_deref(), timeout)?,
            }),
        })
    }

    /// Checks `server_name` and reports every step.
    pub async fn check(&self, server_name: &str) -> Report {
        let mut report = Report {
            server_name: server_name.to_owned(),
            checked_at: now_ms(),
            ..Report::default()
        };
        if let Some(target) = self.discover(&mut report, server_name).await {
            self.connect_all(&mut report, server_name, target).await;
        }
        add_notes(&mut report);
        report.conclude();
        report
    }

    /// The spec's discovery steps, reported one by one.
    async fn discover(&self, report: &mut Report, server_name: &str) -> Option<Target> {
        const STEP: &str = "server name";
        let Some((host, port)) = split_host_port(server_name) else {
            let message = format!("`{server_name}` is not a valid server name");
            report.error = Some(message.clone());
            report.step(STEP, StepStatus::Failed, &message);
            report.problem(
                STEP,
                message,
                "a server name is a DNS name or an IP address, with an optional port: \
                 example.org, matrix.example.org:8448 or [2001:db8::1]:8448",
            );
            return None;
        };
        // Step 1: an IP literal.
        if is_ip(&host) {
            let port = port.unwrap_or(DEFAULT_PORT);
            report.step(
                STEP,
                StepStatus::Ok,
                format!("an IP address: other servers connect to it on port {port}, with no lookups (step 1)"),
            );
            report.step(
                "well-known",
                StepStatus::Skipped,
                "not used for an IP address",
            );
            report.dns.srv_skipped = true;
            let ip: IpAddr = host.parse().ok()?;
            report.notes.push(
                "a server name that is an IP address can never move to another address, and \
                 few certificate authorities issue certificates for IP addresses"
                    .to_owned(),
            );
            return Some(Target {
                addrs: vec![SocketAddr::new(ip, port)],
                tls_name: host.clone(),
                host_header: server_name.to_owned(),
                why_name: format!("the server name is the IP address {host}"),
                srv_applies: false,
            });
        }
        // Step 2: a hostname with a port.
        if let Some(port) = port {
            report.step(
                STEP,
                StepStatus::Ok,
                format!(
                    "a host name with port {port}: other servers connect there directly (step 2)"
                ),
            );
            report.step(
                "well-known",
                StepStatus::Skipped,
                "not used when the server name has a port",
            );
            report.dns.srv_skipped = true;
            let addrs = self.resolve(report, &host, port).await;
            return Some(Target {
                addrs,
                tls_name: host.clone(),
                host_header: server_name.to_owned(),
                why_name: format!("the server name's host is {host}"),
                srv_applies: false,
            });
        }
        report.step(
            STEP,
            StepStatus::Ok,
            "a host name without a port: other servers look for delegation first",
        );
        // Step 3: the well-known file.
        let Some(delegated) = self.well_known(report, &host).await else {
            // Steps 4 to 6.
            let addrs = self.by_srv(report, &host).await;
            return Some(Target {
                addrs,
                tls_name: host.clone(),
                host_header: host.clone(),
                why_name: format!(
                    "without delegation, the certificate must be for the server name {host} \
                     (an SRV target's name does not count)"
                ),
                srv_applies: true,
            });
        };
        const DELEGATION: &str = "delegated server";
        let Some((dhost, dport)) = split_host_port(&delegated) else {
            report.step(
                DELEGATION,
                StepStatus::Failed,
                format!("`{delegated}` is not a server name"),
            );
            report.problem(
                DELEGATION,
                format!("the well-known file names `{delegated}`, which is not a server name"),
                "write `m.server` as a host name with an optional port, like \
                 {\"m.server\": \"matrix.example.org:443\"}",
            );
            return None;
        };
        let why_name = format!(
            "the well-known file delegates to {dhost}, so the certificate must be for {dhost}"
        );
        // Steps 3.1 to 3.5.
        if is_ip(&dhost) {
            let ip: IpAddr = dhost.parse().ok()?;
            let port = dport.unwrap_or(DEFAULT_PORT);
            report.step(
                DELEGATION,
                StepStatus::Ok,
                format!("an IP address, port {port} (step 3.1)"),
            );
            report.dns.srv_skipped = true;
            return Some(Target {
                addrs: vec![SocketAddr::new(ip, port)],
                tls_name: dhost,
                host_header: delegated,
                why_name,
                srv_applies: false,
            });
        }
        if let Some(port) = dport {
            report.step(
                DELEGATION,
                StepStatus::Ok,
                format!("{dhost} with port {port} (step 3.2)"),
            );
            report.dns.srv_skipped = true;
            let addrs = self.resolve(report, &dhost, port).await;
            return Some(Target {
                addrs,
                tls_name: dhost,
                host_header: delegated,
                why_name,
                srv_applies: false,
            });
        }
        report.step(
            DELEGATION,
            StepStatus::Ok,
            format!("{dhost} without a port: SRV records of {dhost} decide (steps 3.3 to 3.5)"),
        );
        let addrs = self.by_srv(report, &dhost).await;
        Some(Target {
            addrs,
            tls_name: dhost.clone(),
            host_header: dhost,
            why_name,
            srv_applies: true,
        })
    }

    /// The addresses of `host`, reported, each with `port`.
    async fn resolve(&self, report: &mut Report, host: &str, port: u16) -> Vec<SocketAddr> {
        let step = format!("addresses of {host}");
        let answer = self.inner.dns.host(host).await;
        report.dns.hosts.insert(
            host.to_owned(),
            HostResult {
                cname: answer.cname.clone().unwrap_or_default(),
                addrs: answer.addrs.iter().map(ToString::to_string).collect(),
                error: answer.error.clone().map(ReportError::new),
            },
        );
        if answer.addrs.is_empty() {
            let why = answer
                .error
                .map_or_else(|| "no A or AAAA record".to_owned(), |e| e.to_string());
            report.step(&step, StepStatus::Failed, &why);
            report.problem(
                &step,
                format!("{host} has no address: {why}"),
                format!(
                    "add an A record for {host} with the public IPv4 address of the machine \
                     running the homeserver (and an AAAA record if it has IPv6)"
                ),
            );
            return Vec::new();
        }
        let list: Vec<String> = answer.addrs.iter().map(ToString::to_string).collect();
        let alias = answer
            .cname
            .map(|c| format!(" (an alias of {c})"))
            .unwrap_or_default();
        report.step(
            &step,
            StepStatus::Ok,
            format!("{}{alias}, port {port}", list.join(", ")),
        );
        let addrs: Vec<SocketAddr> = answer
            .addrs
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect();
        addrs
    }

    /// Steps 4 to 6 (or 3.3 to 3.5 for a delegated name): `_matrix-fed._tcp` SRV, then the
    /// deprecated `_matrix._tcp`, then the host's own addresses on 8448.
    async fn by_srv(&self, report: &mut Report, host: &str) -> Vec<SocketAddr> {
        for (prefix, legacy) in [("_matrix-fed._tcp", false), ("_matrix._tcp", true)] {
            let name = format!("{prefix}.{host}");
            let step = format!("SRV {name}");
            let records = match self.inner.dns.srv(&name).await {
                Ok((records, cname)) => {
                    if let Some(cname) = cname {
                        report.dns.srv_cname = cname;
                    }
                    records
                }
                Err(e) => {
                    report.step(&step, StepStatus::Failed, &e);
                    report.problem(
                        &step,
                        e.clone(),
                        format!(
                            "the DNS servers of {host} did not answer properly; check the \
                             zone at your DNS provider"
                        ),
                    );
                    report.dns.srv_error = Some(ReportError::new(e));
                    Vec::new()
                }
            };
            if records.is_empty() {
                if report.dns.srv_error.is_none() {
                    report.step(&step, StepStatus::Skipped, "no record");
                }
                continue;
            }
            let listed: Vec<String> = records
                .iter()
                .map(|r| format!("{}:{}", r.target, r.port))
                .collect();
            if legacy {
                report.step(
                    &step,
                    StepStatus::Warning,
                    format!("points at {} (deprecated record)", listed.join(", ")),
                );
                report.warning(
                    &step,
                    format!("only the deprecated {name} record exists"),
                    format!(
                        "publish the same record as _matrix-fed._tcp.{host}: servers will stop \
                         reading _matrix._tcp"
                    ),
                );
            } else {
                report.step(
                    &step,
                    StepStatus::Ok,
                    format!("points at {}", listed.join(", ")),
                );
            }
            report.dns.srv_name = name.clone();
            report.dns.srv_records = records.clone();
            let mut addrs = Vec::new();
            for record in records {
                // RFC 2782: the target must be a name with address records, not an alias.
                if let Some(canonical) = self.inner.dns.is_alias(&record.target).await {
                    let alias_step = format!("SRV target {}", record.target);
                    report.step(
                        &alias_step,
                        StepStatus::Failed,
                        format!("an alias (CNAME) of {canonical}"),
                    );
                    report.problem(
                        &alias_step,
                        format!(
                            "the SRV record {name} points at {}, which is an alias (CNAME) of \
                             {canonical}; SRV targets must not be aliases (RFC 2782) and some \
                             servers will not follow it",
                            record.target
                        ),
                        format!("point the SRV record at {canonical} instead"),
                    );
                }
                addrs.extend(self.resolve(report, &record.target, record.port).await);
            }
            return addrs;
        }
        // Step 6: the host itself, on 8448.
        self.resolve(report, host, DEFAULT_PORT).await
    }

    /// Step 3: `https://<host>/.well-known/matrix/server`, fetched from every address of the
    /// host, since another server reaches only one of them. The delegated name, if any.
    async fn well_known(&self, report: &mut Report, host: &str) -> Option<String> {
        const STEP: &str = "well-known";
        let url = format!("https://{host}/.well-known/matrix/server");
        let answer = self.inner.dns.host(host).await;
        if answer.addrs.is_empty() {
            report.well_known.result = format!("{host} has no address");
            report.step(
                STEP,
                StepStatus::Skipped,
                format!("{host} has no address, so there is no {url}"),
            );
            return None;
        }
        let mut fetches = tokio::task::JoinSet::new();
        let mut tasks = std::collections::HashMap::new();
        for ip in answer.addrs {
            let checker = self.clone();
            let host = host.to_owned();
            let task =
                fetches.spawn(async move { (ip, checker.fetch_well_known(ip, &host).await) });
            tasks.insert(task.id(), ip);
        }
        let mut results = Vec::new();
        while let Some(joined) = fetches.join_next_with_id().await {
            match joined {
                Ok((_, result)) => results.push(result),
                Err(e) => {
                    let Some(ip) = tasks.get(&e.id()).copied() else {
                        continue;
                    };
                    let fetch = WellKnownFetch {
                        error: Some(format!("the check of this address failed: {e}")),
                        ..WellKnownFetch::default()
                    };
                    results.push((ip, fetch));
                }
            }
        }
        for (ip, fetch) in &results {
            if fetch.untested {
                report.notes.push(format!(
                    "the well-known file could not be fetched from {ip}: this machine has no \
                     route to it (no IPv6 here?), so that address was not tested"
                ));
            }
        }
        // Only addresses that could be tested take part in the comparison below.
        results.retain(|(_, fetch)| !fetch.untested);
        results.sort_by_key(|(ip, _)| (ip.is_ipv6(), *ip));
        for (ip, fetch) in &results {
            report
                .well_known
                .addresses
                .insert(ip.to_string(), fetch.clone());
        }
        let Some((first_ip, first)) = results.first().cloned() else {
            report.well_known.result = format!("no address of {host} could be tested");
            report.step(
                STEP,
                StepStatus::Skipped,
                format!("no address of {host} could be tested from here"),
            );
            return None;
        };
        let delegations: Vec<(IpAddr, &String)> = results
            .iter()
            .filter_map(|(ip, f)| f.server.as_ref().map(|s| (*ip, s)))
            .collect();
        let Some((first_ip, chosen)) = delegations.first().cloned() else {
            // No delegation: fine, unless a file is there and broken.
            let ip = first_ip;
            let why = first.error.clone().unwrap_or_default();
            report.well_known.result = why.clone();
            if let Some((_, broken)) = results.iter().find(|(_, f)| f.found) {
                let error = broken.error.clone().unwrap_or_default();
                report.step(
                    STEP,
                    StepStatus::Warning,
                    format!("{url} is there but unusable: {error}"),
                );
                report.warning(
                    STEP,
                    format!("{url} exists, but other servers ignore it: {error}"),
                    "make it a JSON object like {\"m.server\": \"matrix.example.org:443\"}, \
                     served as application/json, or delete it if you do not delegate",
                );
            } else if let Some((_, bad_tls)) = results.iter().find(|(_, f)| {
                f.error
                    .as_deref()
                    .is_some_and(|e| e.contains("certificate"))
            }) {
                let error = bad_tls.error.clone().unwrap_or_default();
                report.step(STEP, StepStatus::Warning, &error);
                report.warning(
                    STEP,
                    format!("other servers cannot read {url}: {error}"),
                    format!(
                        "if you delegate with a well-known file, serve https://{host}/ with a \
                         certificate from a public authority for {host}"
                    ),
                );
            } else {
                report.step(
                    STEP,
                    StepStatus::Skipped,
                    format!("no delegation ({ip}: {why}); SRV records decide"),
                );
            }
            return None;
        };
        // Every address must give the same answer: another server reaches only one.
        let differing: Vec<String> = results
            .iter()
            .filter(|(_, f)| f.server.as_ref() != Some(chosen))
            .map(|(ip, f)| match (&f.server, &f.error) {
                (Some(other), _) => format!("{ip} names {other}"),
                (None, Some(error)) => format!("{ip} gives none ({error})"),
                (None, None) => format!("{ip} gives none"),
            })
            .collect();
        report.well_known.server = chosen.clone();
        let fetch = &results
            .iter()
            .find(|(ip, _)| *ip == first_ip)
            .map(|(_, f)| f.clone())
            .unwrap_or_default();
        let lifetime = fetch
            .cache_seconds
            .unwrap_or(WELL_KNOWN_DEFAULT_SECS)
            .min(WELL_KNOWN_MAX_SECS);
        report.well_known.cache_expires_at =
            report.checked_at / 1000 + i64::try_from(lifetime).unwrap_or(0);
        if differing.is_empty() {
            report.step(
                STEP,
                StepStatus::Ok,
                format!(
                    "{url} delegates to {chosen} (kept by other servers for {} h)",
                    lifetime / 3600
                ),
            );
        } else {
            let detail = format!("{first_ip} names {chosen}, but {}", differing.join("; "));
            report.step(STEP, StepStatus::Failed, format!("split answers: {detail}"));
            report.problem(
                STEP,
                format!(
                    "{url} differs between the addresses of {host}: {detail}; other servers \
                     reach one address or the other, so some of them go the wrong way"
                ),
                format!(
                    "serve the same /.well-known/matrix/server from every address of {host} \
                     (check the IPv6 site too), or remove the address that differs from DNS"
                ),
            );
        }
        if !fetch
            .content_type
            .as_deref()
            .is_some_and(|c| c.to_ascii_lowercase().starts_with("application/json"))
        {
            report.warning(
                STEP,
                format!(
                    "{url} is served as {}, not application/json",
                    fetch.content_type.as_deref().unwrap_or("(no Content-Type)")
                ),
                "configure the web server to send `Content-Type: application/json` for it; \
                 stricter servers may ignore the file otherwise",
            );
        }
        Some(chosen.clone())
    }

    /// One address's answer for the well-known file, following redirects.
    async fn fetch_well_known(&self, ip: IpAddr, host: &str) -> WellKnownFetch {
        let mut fetch = WellKnownFetch::default();
        let mut addr = SocketAddr::new(ip, 443);
        let mut name = host.to_owned();
        let mut path = "/.well-known/matrix/server".to_owned();
        for _ in 0..=MAX_REDIRECTS {
            let url = format!("https://{name}{path}");
            let mut connection = match self.inner.connector.connect(addr, &name).await {
                Ok(connection) => connection,
                Err(e) => {
                    fetch.untested = e == ConnectError::Unreachable;
                    fetch.error = Some(format!("GET {url} on {addr}: {e}"));
                    return fetch;
                }
            };
            if let Some(issue) = &connection.facts.issue {
                fetch.error = Some(format!(
                    "GET {url} on {addr}: the certificate is refused ({})",
                    describe_issue(issue)
                ));
                return fetch;
            }
            let response = match connection.get(&path, &name).await {
                Ok(response) => response,
                Err(e) => {
                    fetch.error = Some(format!("GET {url} on {addr}: {e}"));
                    return fetch;
                }
            };
            if matches!(response.status, 301 | 302 | 303 | 307 | 308) {
                let Some(next) = response
                    .location
                    .as_deref()
                    .and_then(|l| redirect_target(l, &name, addr.port()))
                else {
                    fetch.error = Some(format!("GET {url}: a redirect without a usable Location"));
                    return fetch;
                };
                let (next_host, next_port, next_path) = next;
                fetch
                    .redirects
                    .push(format!("https://{next_host}{next_path}"));
                if next_host != name {
                    let answer = self.inner.dns.host(&next_host).await;
                    let Some(next_ip) = answer.addrs.first() else {
                        fetch.error = Some(format!(
                            "the redirect goes to {next_host}, which has no address"
                        ));
                        return fetch;
                    };
                    addr = SocketAddr::new(*next_ip, next_port);
                } else {
                    addr.set_port(next_port);
                }
                name = next_host;
                path = next_path;
                continue;
            }
            if response.status != 200 {
                fetch.error = Some(format!("GET {url}: HTTP {}", response.status));
                return fetch;
            }
            fetch.found = true;
            fetch.content_type = response.content_type.clone();
            fetch.cache_seconds =
                cache_max_age(response.cache_control.as_deref()).map(|d| d.as_secs());
            let parsed: Result<Value, _> = serde_json::from_slice(&response.body);
            match parsed
                .ok()
                .as_ref()
                .and_then(|v| v.get("m.server"))
                .and_then(Value::as_str)
            {
                Some(server) => fetch.server = Some(server.to_owned()),
                None => {
                    fetch.error =
                        Some("the file is not a JSON object with an `m.server` string".to_owned());
                }
            }
            return fetch;
        }
        fetch.error = Some(format!("more than {MAX_REDIRECTS} redirects"));
        fetch
    }

    /// Connects to every address found, side by side, and records what each showed.
    async fn connect_all(&self, report: &mut Report, server_name: &str, target: Target) {
        report.dns.addrs = target.addrs.iter().map(ToString::to_string).collect();
        let target = Arc::new(target);
        let mut checks = tokio::task::JoinSet::new();
        let mut tasks = std::collections::HashMap::new();
        for addr in target.addrs.clone() {
            let checker = self.clone();
            let target = target.clone();
            let server_name = server_name.to_owned();
            let task = checks.spawn(async move {
                (
                    addr,
                    checker.check_address(addr, &server_name, &target).await,
                )
            });
            tasks.insert(task.id(), addr);
        }
        let mut outcomes = Vec::new();
        while let Some(joined) = checks.join_next_with_id().await {
            match joined {
                Ok((_, outcome)) => outcomes.push(outcome),
                Err(e) => {
                    // A check that failed is not a pass.
                    let Some(addr) = tasks.get(&e.id()).copied() else {
                        continue;
                    };
                    let mut outcome = Outcome::new(&addr.to_string());
                    let why = format!("the check of this address failed: {e}");
                    outcome.step.detail = why.clone();
                    outcome.problem(
                        why.clone(),
                        "run the check again; if it keeps failing, report it",
                    );
                    outcome.result = Err(why);
                    outcomes.push((addr, outcome));
                }
            }
        }
        outcomes.sort_by_key(|(addr, _)| (addr.is_ipv6(), *addr));
        for (addr, outcome) in outcomes {
            let key = addr.to_string();
            if outcome.untested {
                report.steps.push(outcome.step);
                report.notes.push(format!(
                    "{addr} was not tested: this machine has no route to it (no IPv6 here?)"
                ));
                continue;
            }
            report.steps.push(outcome.step);
            report.problems.extend(outcome.problems);
            report.warnings.extend(outcome.warnings);
            match outcome.result {
                Ok(connection) => {
                    if report.version.name.is_empty() && report.version.error.is_empty() {
                        report.version = connection.server_version.clone();
                    }
                    report.connection_reports.insert(key, connection);
                }
                Err(e) => {
                    report.connection_errors.insert(key, ReportError::new(e));
                }
            }
        }
    }

    /// The checks at one address.
    async fn check_address(&self, addr: SocketAddr, server_name: &str, target: &Target) -> Outcome {
        let step = addr.to_string();
        let mut outcome = Outcome::new(&step);
        let mut connection = match self.inner.connector.connect(addr, &target.tls_name).await {
            Ok(connection) => connection,
            Err(ConnectError::Unreachable) => {
                outcome.step.status = StepStatus::Skipped;
                outcome.step.detail = "no route from this machine; not tested".to_owned();
                outcome.untested = true;
                return outcome;
            }
            Err(e) => {
                let (message, fix) = connect_advice(addr, &e, target.srv_applies);
                outcome.step.status = StepStatus::Failed;
                outcome.step.detail = e.to_string();
                outcome.problem(message, fix);
                outcome.result = Err(e.to_string());
                return outcome;
            }
        };
        let mut report = ConnectionReport {
            expected_certificate_name: target.tls_name.clone(),
            ..ConnectionReport::default()
        };
        report.cipher.version = connection.facts.version.clone();
        report.cipher.cipher_suite = connection.facts.suite.clone();
        report.certificates = connection
            .facts
            .chain
            .iter()
            .map(|der| certificate::summarise(der))
            .collect();
        let leaf = report.certificates.first().cloned().unwrap_or_default();
        let now = now_ms() / 1000;
        let days_left = (leaf.not_after - now).div_euclid(86_400);
        report.certificate_days_left = Some(days_left);
        // Whole days since it expired: 3 days and a minute ago is "3 days ago".
        let days_expired = (now - leaf.not_after).div_euclid(86_400);
        let covers = certificate::covers(&leaf, &target.tls_name);
        let names = if leaf.dns_names.is_empty() && leaf.ip_addresses.is_empty() {
            format!("no name (common name `{}`)", leaf.subject_common_name)
        } else {
            leaf.dns_names
                .iter()
                .chain(&leaf.ip_addresses)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        };
        let tls_name = &target.tls_name;
        match &connection.facts.issue {
            None => {}
            Some(CertificateIssue::Expired) => outcome.problem(
                format!("the certificate on {addr} expired {days_expired} days ago"),
                "renew the certificate and install the new one where the server reads it",
            ),
            Some(CertificateIssue::NotValidYet) => outcome.problem(
                format!("the certificate on {addr} is not valid yet"),
                "check the clock of the server and of this machine",
            ),
            Some(CertificateIssue::UntrustedIssuer) => outcome.problem(
                format!(
                    "the certificate on {addr} is not signed by an authority other servers \
                     trust ({})",
                    if certificate::self_signed(&leaf) {
                        "it is self-signed".to_owned()
                    } else {
                        format!("issuer `{}`", leaf.issuer_common_name)
                    }
                ),
                "use a certificate from a public authority such as Let's Encrypt, and serve \
                 the whole chain, intermediates included",
            ),
            Some(CertificateIssue::WrongName) => {}
            Some(CertificateIssue::Other(why)) => outcome.problem(
                format!("the certificate on {addr} is refused: {why}"),
                "replace it with a certificate from a public authority for the right name",
            ),
        }
        if !covers || connection.facts.issue == Some(CertificateIssue::WrongName) {
            outcome.problem(
                format!("the certificate on {addr} is for {names}, not for {tls_name}"),
                format!(
                    "get a certificate that covers {tls_name}: {}",
                    target.why_name
                ),
            );
        }
        let certificate_ok = connection.facts.issue.is_none() && covers;
        if certificate_ok && days_left < EXPIRY_WARNING_DAYS {
            outcome.warning(
                format!("the certificate on {addr} expires in {days_left} days"),
                "renew it now: once it expires, other servers stop talking to this one",
            );
        }

        // The version.
        match connection
            .get("/_matrix/federation/v1/version", &target.host_header)
            .await
        {
            Ok(answer) if answer.status == 200 => {
                let parsed: Option<Value> = serde_json::from_slice(&answer.body).ok();
                let server = parsed.as_ref().and_then(|v| v.get("server"));
                let field = |name: &str| {
                    server
                        .and_then(|s| s.get(name))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                report.server_version.name = field("name");
                report.server_version.version = field("version");
            }
            Ok(answer) => {
                report.server_version.error = format!("HTTP {}", answer.status);
                outcome.problem(
                    format!(
                        "GET /_matrix/federation/v1/version on {addr} answered HTTP {}",
                        answer.status
                    ),
                    "this address does not reach a homeserver's federation API: if a reverse \
                     proxy or web server is in front, forward /_matrix/ to the homeserver",
                );
            }
            Err(e) => {
                report.server_version.error = e.clone();
                outcome.problem(
                    format!("GET /_matrix/federation/v1/version on {addr} failed: {e}"),
                    "make sure this port reaches the homeserver's federation listener",
                );
            }
        }

        // The keys.
        match connection
            .get("/_matrix/key/v2/server", &target.host_header)
            .await
        {
            Ok(answer) if answer.status == 200 => {
                let found = keys::check(
                    server_name,
                    &answer.body,
                    answer.content_type.as_deref(),
                    now_ms(),
                );
                for (message, fix) in found.problems {
                    outcome.problem(message, fix);
                }
                for (message, fix) in found.warnings {
                    outcome.warning(message, fix);
                }
                report.checks = found.checks;
                report.ed25519_verify_keys = found.verified;
                report.keys = found.keys;
            }
            Ok(answer) => outcome.problem(
                format!(
                    "GET /_matrix/key/v2/server on {addr} answered HTTP {}",
                    answer.status
                ),
                "this address does not reach a homeserver's federation API: if a reverse \
                 proxy or web server is in front, forward /_matrix/ to the homeserver",
            ),
            Err(e) => outcome.problem(
                format!("GET /_matrix/key/v2/server on {addr} failed: {e}"),
                "make sure this port reaches the homeserver's federation listener",
            ),
        }
        report.checks.valid_certificates = certificate_ok;
        report.checks.all_checks_ok &= certificate_ok;
        report.errors = outcome
            .problems
            .iter()
            .map(|p| ReportError::new(p.message.clone()))
            .collect();

        let keys: Vec<&String> = report.ed25519_verify_keys.keys().collect();
        let software = match (&report.server_version.name, &report.server_version.version) {
            (name, _) if name.is_empty() => "no version".to_owned(),
            (name, version) => format!("{name} {version}"),
        };
        let validity = if days_left < 0 {
            format!("expired {days_expired} days ago")
        } else {
            format!("{days_left} days left")
        };
        outcome.step.detail = format!(
            "{}, certificate for {names} ({validity}), {software}, {}",
            report.cipher.version,
            if keys.is_empty() {
                "no verified key".to_owned()
            } else {
                format!(
                    "key {} verified",
                    keys.iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        outcome.step.status = if !outcome.problems.is_empty() {
            StepStatus::Failed
        } else if outcome.warnings.is_empty() {
            StepStatus::Ok
        } else {
            StepStatus::Warning
        };
        outcome.result = Ok(report);
        outcome
    }
}

/// What one address showed.
struct Outcome {
    /// This machine has no route to the address.
    untested: bool,
    step: report::Step,
    problems: Vec<report::Finding>,
    warnings: Vec<report::Finding>,
    result: Result<ConnectionReport, String>,
}

impl Outcome {
    fn new(step: &str) -> Self {
        Self {
            untested: false,
            step: report::Step {
                name: step.to_owned(),
                status: StepStatus::Failed,
                detail: String::new(),
            },
            problems: Vec::new(),
            warnings: Vec::new(),
            result: Err(String::new()),
        }
    }

    fn problem(&mut self, message: impl Into<String>, fix: impl Into<String>) {
        self.problems.push(report::Finding {
            step: self.step.name.clone(),
            message: message.into(),
            fix: fix.into(),
        });
    }

    fn warning(&mut self, message: impl Into<String>, fix: impl Into<String>) {
        self.warnings.push(report::Finding {
            step: self.step.name.clone(),
            message: message.into(),
            fix: fix.into(),
        });
    }
}

fn describe_issue(issue: &CertificateIssue) -> String {
    match issue {
        CertificateIssue::Expired => "expired".to_owned(),
        CertificateIssue::NotValidYet => "not valid yet".to_owned(),
        CertificateIssue::UntrustedIssuer => "not signed by a trusted authority".to_owned(),
        CertificateIssue::WrongName => "not valid for this name".to_owned(),
        CertificateIssue::Other(why) => why.clone(),
    }
}

/// The message and fix for an address that cannot be reached.
fn connect_advice(addr: SocketAddr, error: &ConnectError, srv_applies: bool) -> (String, String) {
    let (ip, port) = (addr.ip(), addr.port());
    match error {
        ConnectError::Refused => (
            format!("port {port} is closed on {ip}"),
            if srv_applies {
                format!(
                    "start the homeserver's federation listener on port {port}, forward port \
                     {port} to it on your router, or publish an SRV record pointing at a port \
                     that is open"
                )
            } else {
                format!(
                    "start the homeserver's federation listener on port {port} and forward \
                     port {port} to it on your router, or change the server name's port or \
                     delegation to a port that is open"
                )
            },
        ),
        ConnectError::Unreachable => (
            format!("this machine has no route to {ip}"),
            "check from a machine that can reach it".to_owned(),
        ),
        ConnectError::TimedOut => (
            format!("{ip} did not answer on port {port}"),
            format!(
                "a firewall drops the connection, or {ip} is not this server: open port \
                 {port} in the firewall and forward it on your router"
            ),
        ),
        ConnectError::Network(e) => (
            format!("cannot connect to {addr}: {e}"),
            "check that the address is right and reachable from the internet".to_owned(),
        ),
        ConnectError::Tls(e) => (
            format!("no TLS on {addr}: {e}"),
            format!(
                "port {port} must speak TLS 1.2 or 1.3 (plain HTTP there is a common mistake: \
                 point delegation at the port with TLS, or put TLS on this one)"
            ),
        ),
    }
}

/// A redirect's `Location` as host, port and path (https only; relative ones stay on the
/// same host).
fn redirect_target(location: &str, host: &str, port: u16) -> Option<(String, u16, String)> {
    if location.starts_with('/') {
        return Some((host.to_owned(), port, location.to_owned()));
    }
    let uri: http::Uri = location.parse().ok()?;
    if uri.scheme_str() != Some("https") {
        return None;
    }
    let authority = uri.authority()?;
    let path = uri
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    Some((
        authority.host().trim_matches(['[', ']']).to_owned(),
        authority.port_u16().unwrap_or(443),
        path,
    ))
}

/// What the result means from where it ran.
fn add_notes(report: &mut Report) {
    let private: Vec<String> = report
        .dns
        .addrs
        .iter()
        .filter_map(|a| a.parse::<SocketAddr>().ok())
        .filter(|a| !crate::net::is_public(a.ip()))
        .map(|a| a.ip().to_string())
        .collect();
    if !private.is_empty() {
        let what = if private.len() == 1 {
            "is a private or loopback address"
        } else {
            "are private or loopback addresses"
        };
        report.notes.push(format!(
            "{} {what}: only machines on the same network can reach them, and servers on \
             the internet refuse to connect to such addresses",
            private.join(", "),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_keep_the_host_for_paths_and_only_follow_https() {
        assert_eq!(
            redirect_target("/other", "example.org", 443),
            Some(("example.org".to_owned(), 443, "/other".to_owned()))
        );
        assert_eq!(
            redirect_target("https://www.example.org:8443/x?y=1", "example.org", 443),
            Some(("www.example.org".to_owned(), 8443, "/x?y=1".to_owned()))
        );
        assert_eq!(
            redirect_target("http://example.org/", "example.org", 443),
            None
        );
    }

    #[test]
    fn closed_ports_say_how_to_open_them() {
        let addr: SocketAddr = "203.0.113.7:8448".parse().expect("an address");
        let (message, fix) = connect_advice(addr, &ConnectError::Refused, true);
        assert_eq!(message, "port 8448 is closed on 203.0.113.7");
        assert!(fix.contains("forward port 8448"), "{fix}");
        assert!(
            fix.contains("SRV record pointing at a port that is open"),
            "{fix}"
        );
    }
}
