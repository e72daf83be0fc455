//! What a user must publish so that other servers find this one (spec:
//! server-server-api.md, "Resolving server names"): address records, and, when the server
//! does not answer on the server name's host at port 8448, a delegation (the
//! `/.well-known/matrix/server` file, or a `_matrix-fed._tcp` SRV record). Each piece comes
//! with why it is needed, in plain words, and as lines for a zone file. Pure: the wizard,
//! the admin API and the tests call it with what they know.

use std::net::IpAddr;

use serde::Serialize;

use super::federation::discovery::{DEFAULT_PORT, split_host_port};

/// What the plan starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegationInput {
    /// The server name (the part after the colon in user IDs).
    pub server_name: String,
    /// The host name other servers should connect to (often the server name itself, or
    /// `matrix.` in front of it).
    pub public_host: String,
    /// The port other servers should connect to, as seen from the internet (after the
    /// router's port forwarding).
    pub public_port: u16,
    /// The public IPv4 address, if known.
    pub ipv4: Option<IpAddr>,
    /// The public IPv6 address, if any.
    pub ipv6: Option<IpAddr>,
    /// Whether Kith itself answers HTTPS on port 443 of the server name's host (its
    /// federation listener is there), so it can serve the well-known file.
    pub kith_answers_on_server_name_443: bool,
    /// The client base URL to publish at `/.well-known/matrix/client`, if any.
    pub client_base_url: Option<String>,
}

/// A DNS record to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct DnsRecord {
    /// Its name, fully qualified with the final dot.
    pub name: String,
    /// "A", "AAAA" or "SRV".
    pub kind: String,
    /// Its data as a zone file writes it.
    pub value: String,
    /// The whole line for a zone file.
    pub zone_line: String,
    /// Why it is needed.
    pub why: String,
}

/// A file to serve over HTTPS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct WellKnownFile {
    /// Where it must be served.
    pub url: String,
    /// Its content (`application/json`).
    pub body: String,
    /// Whether Kith serves it itself (from `well_known.server`/`client_base_url`).
    pub served_by_kith: bool,
    /// Why it is needed.
    pub why: String,
}

/// What to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct DelegationPlan {
    /// The whole plan in a few plain sentences.
    pub summary: String,
    /// The DNS records to create.
    pub records: Vec<DnsRecord>,
    /// The `/.well-known/matrix/server` file, when delegation uses one.
    pub well_known_server: Option<WellKnownFile>,
    /// The `/.well-known/matrix/client` file, when a client base URL is known.
    pub well_known_client: Option<WellKnownFile>,
    /// The name the federation certificate must be valid for.
    pub certificate_name: String,
    /// Another way to delegate, and what it changes.
    pub alternative: Option<String>,
    /// Every record as zone-file lines, ready to paste.
    pub zone_file: String,
}

const TTL: u32 = 3600;

fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

fn address_records(host: &str, input: &DelegationInput, why: &str) -> Vec<DnsRecord> {
    let mut records = Vec::new();
    let v4 = input.ipv4.map_or_else(
        || "<your public IPv4 address>".to_owned(),
        |ip| ip.to_string(),
    );
    records.push(record(host, "A", &v4, why));
    if let Some(v6) = input.ipv6 {
        records.push(record(host, "AAAA", &v6.to_string(), why));
    }
    records
}

fn record(name: &str, kind: &str, value: &str, why: &str) -> DnsRecord {
    let name = fqdn(name);
    DnsRecord {
        zone_line: format!("{name} {TTL} IN {kind} {value}"),
        name,
        kind: kind.to_owned(),
        value: value.to_owned(),
        why: why.to_owned(),
    }
}

/// The plan for `input`. An error when the server name or host is not one.
pub fn plan(input: &DelegationInput) -> Result<DelegationPlan, String> {
    let (name_host, name_port) = split_host_port(&input.server_name)
        .ok_or_else(|| format!("`{}` is not a server name", input.server_name))?;
    let (public_host, _) = split_host_port(&input.public_host)
        .ok_or_else(|| format!("`{}` is not a host name", input.public_host))?;
    let port = input.public_port;
    let client = input
        .client_base_url
        .as_ref()
        .map(|base_url| WellKnownFile {
            url: format!("https://{name_host}/.well-known/matrix/client"),
            body: serde_json::json!({ "m.homeserver": { "base_url": base_url } }).to_string(),
            served_by_kith: input.kith_answers_on_server_name_443,
            why: "Matrix apps such as Element read it to find the server when someone signs in \
              with only their user ID."
                .to_owned(),
        });
    let mut plan = DelegationPlan {
        summary: String::new(),
        records: Vec::new(),
        well_known_server: None,
        well_known_client: client,
        certificate_name: name_host.clone(),
        alternative: None,
        zone_file: String::new(),
    };
    if name_host.parse::<IpAddr>().is_ok() || name_port.is_some() {
        // Steps 1 and 2: the name says where to connect; nothing to delegate.
        plan.summary = format!(
            "The server name {} says where other servers connect, so there is nothing to \
             delegate. {}",
            input.server_name,
            if name_host.parse::<IpAddr>().is_ok() {
                "It can never move to another address, and few authorities certify IP \
                 addresses."
                    .to_owned()
            } else {
                format!("Only {name_host} needs an address record.")
            }
        );
        if name_host.parse::<IpAddr>().is_err() {
            plan.records = address_records(
                &name_host,
                input,
                "other servers look up this name to connect",
            );
        }
    } else if public_host.eq_ignore_ascii_case(&name_host) && port == DEFAULT_PORT {
        // Step 6: the default, no delegation.
        plan.summary = format!(
            "Other servers connect to {name_host} on port {DEFAULT_PORT} unless told \
             otherwise, and that is where this server answers: only the address records \
             are needed. Forward port {DEFAULT_PORT} on your router to this machine."
        );
        plan.records = address_records(
            &name_host,
            input,
            "other servers look up the server name to connect",
        );
    } else {
        // Step 3: a well-known file on the server name's host.
        let target = format!("{public_host}:{port}");
        let served = input.kith_answers_on_server_name_443;
        plan.well_known_server = Some(WellKnownFile {
            url: format!("https://{name_host}/.well-known/matrix/server"),
            body: serde_json::json!({ "m.server": target }).to_string(),
            served_by_kith: served,
            why: format!(
                "It tells other servers that {} is served at {target}.",
                input.server_name
            ),
        });
        plan.certificate_name = public_host.clone();
        plan.records = address_records(
            &public_host,
            input,
            "other servers connect to this name, as the well-known file says",
        );
        if !public_host.eq_ignore_ascii_case(&name_host) {
            plan.records.extend(address_records(
                &name_host,
                input,
                "the well-known file is fetched from this name (your website can answer it \
                 instead: then point this record at the website)",
            ));
        }
        let where_served = if served {
            "Kith serves it itself, since it answers on port 443 there".to_owned()
        } else {
            format!("put it on the website at {name_host}, over HTTPS with a valid certificate")
        };
        plan.summary = format!(
            "This server answers at {target}, not at {name_host} port {DEFAULT_PORT}, so \
             {} must be delegated. Publish https://{name_host}/.well-known/matrix/server \
             ({where_served}). The federation certificate must then be valid for \
             {public_host}.",
            input.server_name
        );
        let srv_name = format!("_matrix-fed._tcp.{name_host}");
        let srv = record(
            &srv_name,
            "SRV",
            &format!("10 5 {port} {}", fqdn(&public_host)),
            "",
        );
        plan.alternative = Some(format!(
            "Instead of the well-known file you may publish the SRV record `{}`; but then the \
             federation certificate must be valid for {name_host}, not {public_host}, which \
             is often harder to get.",
            srv.zone_line
        ));
    }
    plan.zone_file = plan
        .records
        .iter()
        .map(|r| r.zone_line.clone())
        .collect::<Vec<_>>()
        .join("\n");
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(server_name: &str, host: &str, port: u16) -> DelegationInput {
        DelegationInput {
            server_name: server_name.to_owned(),
            public_host: host.to_owned(),
            public_port: port,
            ipv4: Some("203.0.113.7".parse().expect("an IP")),
            ipv6: None,
            kith_answers_on_server_name_443: false,
            client_base_url: None,
        }
    }

    #[test]
    fn a_server_on_its_own_name_at_8448_needs_only_an_address() {
        let plan = plan(&input("example.org", "example.org", 8448)).expect("a plan");
        assert!(plan.well_known_server.is_none());
        assert_eq!(plan.zone_file, "example.org. 3600 IN A 203.0.113.7");
        assert_eq!(plan.certificate_name, "example.org");
        assert!(plan.summary.contains("Forward port 8448"));
    }

    #[test]
    fn a_server_elsewhere_is_delegated_by_a_well_known_file_with_the_srv_record_as_the_alternative()
    {
        let mut wanted = input("example.org", "matrix.example.org", 443);
        wanted.ipv6 = Some("2001:db8::7".parse().expect("an IP"));
        let plan = plan(&wanted).expect("a plan");
        let file = plan.well_known_server.expect("a well-known file");
        assert_eq!(file.url, "https://example.org/.well-known/matrix/server");
        assert_eq!(file.body, r#"{"m.server":"matrix.example.org:443"}"#);
        assert!(!file.served_by_kith);
        assert_eq!(plan.certificate_name, "matrix.example.org");
        assert_eq!(
            plan.zone_file,
            "matrix.example.org. 3600 IN A 203.0.113.7\n\
             matrix.example.org. 3600 IN AAAA 2001:db8::7\n\
             example.org. 3600 IN A 203.0.113.7\n\
             example.org. 3600 IN AAAA 2001:db8::7"
        );
        let alternative = plan.alternative.expect("the SRV alternative");
        assert!(
            alternative
                .contains("_matrix-fed._tcp.example.org. 3600 IN SRV 10 5 443 matrix.example.org.")
        );
        assert!(alternative.contains("must be valid for example.org, not matrix.example.org"));
    }

    #[test]
    fn a_name_with_a_port_needs_no_delegation_and_unknown_addresses_are_placeholders() {
        let mut wanted = input("example.org:8000", "example.org", 8000);
        wanted.ipv4 = None;
        let plan = plan(&wanted).expect("a plan");
        assert!(plan.well_known_server.is_none());
        assert_eq!(
            plan.zone_file,
            "example.org. 3600 IN A <your public IPv4 address>"
        );
        assert!(plan.summary.contains("nothing to delegate"));
    }
}
