//! Server discovery: where to connect for a server name, which certificate name to expect
//! and which `Host` header to send (spec: server-server-api.md, "Resolving server names").
//!
//! [`plan`] is the spec's six steps over a [`Lookups`] source (DNS and the well-known file),
//! so the steps are tested without a network. [`Resolver`] is the real source with caches:
//! results live as long as the well-known response allows (24 hours by default, 48 at most);
//! a failed well-known fetch is remembered for an hour at most, backing off from a minute.
//! hickory's own cache keeps DNS answers, negative ones included, for their TTLs.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hickory_resolver::{TokioResolver, proto::rr::RData};

/// The port used when nothing names one.
pub const DEFAULT_PORT: u16 = 8448;

/// Default lifetime of a well-known answer without cache headers (spec: 24 hours).
const WELL_KNOWN_DEFAULT: Duration = Duration::from_secs(24 * 3600);
/// Longest lifetime of a well-known answer (spec: 48 hours recommended).
const WELL_KNOWN_MAX: Duration = Duration::from_secs(48 * 3600);
/// First and longest time a well-known failure is remembered (spec: up to an hour, with
/// exponential backoff).
const FAILURE_MIN: Duration = Duration::from_secs(60);
const FAILURE_MAX: Duration = Duration::from_secs(3600);

/// How to reach a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The host to resolve and connect to (an SRV target, or the same as `tls_name`), or an
    /// IP literal (without brackets).
    pub connect_host: String,
    /// The port to connect to.
    pub port: u16,
    /// The name the certificate must be valid for, also sent as SNI (unless an IP).
    pub tls_name: String,
    /// The `Host` header of each request.
    pub host_header: String,
    /// Which discovery step decided, for logs and the connectivity checker.
    pub step: Step,
}

/// The discovery step that produced a [`Destination`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// 1: the server name is an IP literal.
    IpLiteral,
    /// 2: the server name has an explicit port.
    ExplicitPort,
    /// 3.1–3.5: `.well-known/matrix/server` delegated; the inner step says how it resolved.
    WellKnown(Delegated),
    /// 4: `_matrix-fed._tcp` SRV of the server name.
    Srv,
    /// 5: the deprecated `_matrix._tcp` SRV of the server name.
    LegacySrv,
    /// 6: A/AAAA of the server name on 8448.
    Default,
}

/// How a delegated name resolved (steps 3.1–3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delegated {
    /// 3.1: an IP literal.
    IpLiteral,
    /// 3.2: a hostname with a port.
    ExplicitPort,
    /// 3.3: `_matrix-fed._tcp` SRV.
    Srv,
    /// 3.4: the deprecated `_matrix._tcp` SRV.
    LegacySrv,
    /// 3.5: A/AAAA on 8448.
    Default,
}

/// What a well-known fetch gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WellKnown {
    /// A valid `m.server`, and how long it may be cached.
    Delegated {
        /// `<delegated_hostname>[:<delegated_port>]`.
        server: String,
        /// Cache lifetime from the response's headers (capped later).
        max_age: Option<Duration>,
    },
    /// No usable answer (an error, not 200, bad JSON, no `m.server`): go on with SRV.
    Invalid(String),
}

/// What discovery needs from the network.
pub trait Lookups {
    /// `GET https://<host>/.well-known/matrix/server`.
    fn well_known(&self, host: &str) -> impl Future<Output = WellKnown> + Send;
    /// The best SRV record for `name` (lowest priority, then highest weight): target and port.
    fn srv(&self, name: &str) -> impl Future<Output = Option<(String, u16)>> + Send;
}

/// A server name split into host and port, without trusting it to be well formed.
pub fn split_host_port(name: &str) -> Option<(String, Option<u16>)> {
    let (host, rest) = if let Some(stripped) = name.strip_prefix('[') {
        let end = stripped.find(']')?;
        (stripped[..end].to_owned(), &stripped[end + 1..])
    } else {
        match name.rfind(':') {
            Some(i) => (name[..i].to_owned(), &name[i..]),
            None => (name.to_owned(), ""),
        }
    };
    // Server names, appendix "Server Name": a bracketed IPv6 literal, or 1 to 255 of
    // letters, digits, `-` and `.` (an IPv4 literal or a DNS name).
    let valid = if name.starts_with('[') {
        host.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        (1..=255).contains(&host.len())
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    if !valid {
        return None;
    }
    let port = match rest {
        "" => None,
        p => Some(p.strip_prefix(':')?.parse::<u16>().ok()?),
    };
    Some((host, port))
}

fn is_ip(host: &str) -> bool {
    host.parse::<IpAddr>().is_ok()
}

/// The spec's steps for `server_name`, and how long the answer may be kept: `None` when the
/// well-known fetch failed, which the caller keeps for a backoff time.
pub async fn plan(
    lookups: &impl Lookups,
    server_name: &str,
) -> Result<(Destination, Option<Duration>), String> {
    let (host, port) = split_host_port(server_name)
        .ok_or_else(|| format!("`{server_name}` is not a server name"))?;
    // Step 1: an IP literal.
    if is_ip(&host) {
        let destination = Destination {
            connect_host: host.clone(),
            port: port.unwrap_or(DEFAULT_PORT),
            tls_name: host,
            host_header: server_name.to_owned(),
            step: Step::IpLiteral,
        };
        return Ok((destination, Some(WELL_KNOWN_MAX)));
    }
    // Step 2: a hostname with an explicit port.
    if let Some(port) = port {
        let destination = Destination {
            connect_host: host.clone(),
            port,
            tls_name: host,
            host_header: server_name.to_owned(),
            step: Step::ExplicitPort,
        };
        return Ok((destination, Some(WELL_KNOWN_MAX)));
    }
    // Step 3: the well-known file.
    match lookups.well_known(&host).await {
        WellKnown::Delegated { server, max_age } => {
            let lifetime = max_age.unwrap_or(WELL_KNOWN_DEFAULT).min(WELL_KNOWN_MAX);
            let destination = delegated(lookups, &server).await?;
            Ok((destination, Some(lifetime)))
        }
        WellKnown::Invalid(reason) => {
            tracing::debug!(%server_name, %reason, "no usable .well-known/matrix/server");
            // Steps 4 to 6.
            let destination =
                by_srv(lookups, &host, Step::Srv, Step::LegacySrv, Step::Default).await;
            Ok((destination, None))
        }
    }
}

/// Steps 3.1 to 3.5, for the `m.server` a well-known file named.
async fn delegated(lookups: &impl Lookups, server: &str) -> Result<Destination, String> {
    let (host, port) = split_host_port(server)
        .ok_or_else(|| format!("the well-known m.server `{server}` is not a server name"))?;
    if is_ip(&host) {
        return Ok(Destination {
            connect_host: host.clone(),
            port: port.unwrap_or(DEFAULT_PORT),
            tls_name: host,
            host_header: server.to_owned(),
            step: Step::WellKnown(Delegated::IpLiteral),
        });
    }
    if let Some(port) = port {
        return Ok(Destination {
            connect_host: host.clone(),
            port,
            tls_name: host,
            host_header: server.to_owned(),
            step: Step::WellKnown(Delegated::ExplicitPort),
        });
    }
    Ok(by_srv(
        lookups,
        &host,
        Step::WellKnown(Delegated::Srv),
        Step::WellKnown(Delegated::LegacySrv),
        Step::WellKnown(Delegated::Default),
    )
    .await)
}

/// SRV `_matrix-fed._tcp`, then the deprecated `_matrix._tcp`, then A/AAAA on 8448. The
/// certificate and `Host` are always for `host`, never for the SRV target.
async fn by_srv(
    lookups: &impl Lookups,
    host: &str,
    srv: Step,
    legacy: Step,
    default: Step,
) -> Destination {
    let found = match lookups.srv(&format!("_matrix-fed._tcp.{host}")).await {
        Some(found) => Some((found, srv)),
        None => lookups
            .srv(&format!("_matrix._tcp.{host}"))
            .await
            .map(|found| (found, legacy)),
    };
    let ((connect_host, port), step) =
        found.unwrap_or_else(|| ((host.to_owned(), DEFAULT_PORT), default));
    Destination {
        connect_host,
        port,
        tls_name: host.to_owned(),
        host_header: host.to_owned(),
        step,
    }
}

/// Parses `Cache-Control: max-age=N` (and `no-store`/`no-cache` as zero).
pub fn cache_max_age(header: Option<&str>) -> Option<Duration> {
    let header = header?;
    let mut max_age = None;
    for directive in header.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(value) = lower.strip_prefix("max-age=") {
            max_age = value
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    max_age
}

struct Cached {
    destination: Destination,
    expires: Instant,
}

/// DNS through hickory (hosts file, then the system's name servers), with discovery results
/// cached. Cheap to clone.
#[derive(Clone)]
pub struct Resolver {
    /// Made on first use, like the HTTP clients: a server that has not federated yet does
    /// not hold it.
    dns: Arc<std::sync::OnceLock<Result<TokioResolver, String>>>,
    cache: Arc<Mutex<HashMap<String, Cached>>>,
    failures: Arc<Mutex<HashMap<String, (u32, Instant)>>>,
}

impl Resolver {
    /// A resolver with the system's DNS configuration (or, if it cannot be read, one that
    /// knows only the hosts file; the failure is logged).
    pub fn new() -> Result<Self, String> {
        Ok(Self {
            dns: Arc::default(),
            cache: Arc::default(),
            failures: Arc::default(),
        })
    }

    fn dns(&self) -> Result<&TokioResolver, String> {
        self.dns
            .get_or_init(|| {
                let builder = TokioResolver::builder_tokio().unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "cannot read the system DNS configuration; only the hosts file resolves names");
                    TokioResolver::builder_with_config(
                        hickory_resolver::config::ResolverConfig::default(),
                        hickory_resolver::net::runtime::TokioRuntimeProvider::default(),
                    )
                });
                builder
                    .build()
                    .map_err(|e| format!("cannot build the DNS resolver: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The addresses of `host` (A and AAAA, or the hosts file).
    pub async fn lookup_ip(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let found = self
            .dns()?
            .lookup_ip(host)
            .await
            .map_err(|e| format!("{host} has no address: {e}"))?;
        Ok(found.iter().collect())
    }

    /// The best SRV record of `name`, if any.
    pub async fn srv(&self, name: &str) -> Option<(String, u16)> {
        let lookup = self.dns().ok()?.srv_lookup(name).await.ok()?;
        let mut records: Vec<_> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::SRV(srv) => Some(srv.clone()),
                _ => None,
            })
            // RFC 2782: a target of "." means the service is not offered there.
            .filter(|srv| !srv.target.is_root())
            .collect();
        records.sort_by_key(|srv| (srv.priority, std::cmp::Reverse(srv.weight)));
        let best = records.first()?;
        let target = best.target.to_ascii();
        Some((target.trim_end_matches('.').to_owned(), best.port))
    }

    /// A cached destination for `server_name`, if still fresh.
    pub fn cached(&self, server_name: &str) -> Option<Destination> {
        let cache = self.cache.lock().ok()?;
        cache
            .get(server_name)
            .filter(|c| c.expires > Instant::now())
            .map(|c| c.destination.clone())
    }

    /// Remembers a destination for `lifetime`.
    pub fn remember(&self, server_name: &str, destination: Destination, lifetime: Duration) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|_, c| c.expires > Instant::now());
            cache.insert(
                server_name.to_owned(),
                Cached {
                    destination,
                    expires: Instant::now() + lifetime,
                },
            );
        }
    }

    /// How long to remember the n-th failed well-known fetch of a host in a row: a minute,
    /// doubling, at most an hour.
    pub fn failure_lifetime(&self, host: &str) -> Duration {
        let Ok(mut failures) = self.failures.lock() else {
            return FAILURE_MIN;
        };
        let entry = failures
            .entry(host.to_owned())
            .or_insert((0, Instant::now()));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = Instant::now();
        FAILURE_MIN
            .saturating_mul(1u32 << entry.0.saturating_sub(1).min(6))
            .min(FAILURE_MAX)
    }

    /// Forgets the failures of `host` after a success.
    pub fn succeeded(&self, host: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(host);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        well_known: HashMap<&'static str, WellKnown>,
        srv: HashMap<&'static str, (&'static str, u16)>,
    }

    impl Lookups for Fake {
        async fn well_known(&self, host: &str) -> WellKnown {
            self.well_known
                .get(host)
                .cloned()
                .unwrap_or_else(|| WellKnown::Invalid("404".to_owned()))
        }
        async fn srv(&self, name: &str) -> Option<(String, u16)> {
            self.srv.get(name).map(|(t, p)| ((*t).to_owned(), *p))
        }
    }

    fn fake() -> Fake {
        let mut well_known = HashMap::new();
        let mut srv = HashMap::new();
        let delegate = |server: &str| WellKnown::Delegated {
            server: server.to_owned(),
            max_age: Some(Duration::from_secs(600)),
        };
        well_known.insert("wk-ip.example", delegate("192.0.2.1"));
        well_known.insert("wk-port.example", delegate("matrix.example:1234"));
        well_known.insert("wk-srv.example", delegate("deleg.example"));
        well_known.insert("wk-legacy.example", delegate("old.example"));
        well_known.insert("wk-plain.example", delegate("plain.example"));
        well_known.insert("wk-bad.example", delegate("bad name!"));
        srv.insert("_matrix-fed._tcp.deleg.example", ("target.example", 443));
        srv.insert("_matrix._tcp.old.example", ("oldtarget.example", 8000));
        srv.insert("_matrix-fed._tcp.srv.example", ("fedtarget.example", 8443));
        srv.insert(
            "_matrix._tcp.legacy.example",
            ("legacytarget.example", 9000),
        );
        Fake { well_known, srv }
    }

    async fn run(name: &str) -> Destination {
        plan(&fake(), name).await.expect("a destination").0
    }

    fn dest(connect: &str, port: u16, tls: &str, host: &str, step: Step) -> Destination {
        Destination {
            connect_host: connect.to_owned(),
            port,
            tls_name: tls.to_owned(),
            host_header: host.to_owned(),
            step,
        }
    }

    #[tokio::test]
    async fn every_discovery_step_picks_the_address_certificate_name_and_host_header() {
        use Delegated as D;
        let cases = [
            (
                "1.2.3.4",
                dest("1.2.3.4", 8448, "1.2.3.4", "1.2.3.4", Step::IpLiteral),
            ),
            (
                "1.2.3.4:99",
                dest("1.2.3.4", 99, "1.2.3.4", "1.2.3.4:99", Step::IpLiteral),
            ),
            (
                "[::1]:8000",
                dest("::1", 8000, "::1", "[::1]:8000", Step::IpLiteral),
            ),
            (
                "example.org:8000",
                dest(
                    "example.org",
                    8000,
                    "example.org",
                    "example.org:8000",
                    Step::ExplicitPort,
                ),
            ),
            (
                "wk-ip.example",
                dest(
                    "192.0.2.1",
                    8448,
                    "192.0.2.1",
                    "192.0.2.1",
                    Step::WellKnown(D::IpLiteral),
                ),
            ),
            (
                "wk-port.example",
                dest(
                    "matrix.example",
                    1234,
                    "matrix.example",
                    "matrix.example:1234",
                    Step::WellKnown(D::ExplicitPort),
                ),
            ),
            (
                "wk-srv.example",
                dest(
                    "target.example",
                    443,
                    "deleg.example",
                    "deleg.example",
                    Step::WellKnown(D::Srv),
                ),
            ),
            (
                "wk-legacy.example",
                dest(
                    "oldtarget.example",
                    8000,
                    "old.example",
                    "old.example",
                    Step::WellKnown(D::LegacySrv),
                ),
            ),
            (
                "wk-plain.example",
                dest(
                    "plain.example",
                    8448,
                    "plain.example",
                    "plain.example",
                    Step::WellKnown(D::Default),
                ),
            ),
            (
                "srv.example",
                dest(
                    "fedtarget.example",
                    8443,
                    "srv.example",
                    "srv.example",
                    Step::Srv,
                ),
            ),
            (
                "legacy.example",
                dest(
                    "legacytarget.example",
                    9000,
                    "legacy.example",
                    "legacy.example",
                    Step::LegacySrv,
                ),
            ),
            (
                "nothing.example",
                dest(
                    "nothing.example",
                    8448,
                    "nothing.example",
                    "nothing.example",
                    Step::Default,
                ),
            ),
        ];
        for (name, expected) in cases {
            assert_eq!(run(name).await, expected, "{name}");
        }
    }

    #[tokio::test]
    async fn well_known_lifetimes_follow_the_response_and_errors_are_kept_shorter() {
        let (_, lifetime) = plan(&fake(), "wk-srv.example").await.expect("found");
        assert_eq!(lifetime, Some(Duration::from_secs(600)));
        let (_, lifetime) = plan(&fake(), "nothing.example").await.expect("found");
        assert_eq!(lifetime, None);
        let resolver = Resolver::new().expect("a resolver");
        let backoff: Vec<_> = (0..8)
            .map(|_| resolver.failure_lifetime("h").as_secs())
            .collect();
        assert_eq!(backoff, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert!(plan(&fake(), "wk-bad.example").await.is_err());
    }

    #[test]
    fn host_and_port_are_split_without_trusting_the_input() {
        assert_eq!(
            split_host_port("a.b:80"),
            Some(("a.b".to_owned(), Some(80)))
        );
        assert_eq!(split_host_port("a.b"), Some(("a.b".to_owned(), None)));
        assert_eq!(split_host_port("[::1]"), Some(("::1".to_owned(), None)));
        assert_eq!(split_host_port("a.b:99999"), None);
        assert_eq!(split_host_port("a.b:"), None);
        assert_eq!(split_host_port("[::1"), None);
        assert_eq!(split_host_port("bad name!"), None);
        assert_eq!(split_host_port("[not-ip]:80"), None);
        assert_eq!(split_host_port(":80"), None);
    }

    #[test]
    fn cache_control_gives_the_lifetime() {
        assert_eq!(
            cache_max_age(Some("public, max-age=3600")),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(cache_max_age(Some("no-store")), Some(Duration::ZERO));
        assert_eq!(cache_max_age(Some("public")), None);
        assert_eq!(cache_max_age(None), None);
    }
}
