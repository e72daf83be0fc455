//! Configuration: the `kith.toml` file, its defaults, and validation.
//!
//! A leaf module: it reads and checks settings and knows nothing of the layers that use them.
//! Validation reports every problem at once, so a user fixes a file in one pass
//! (`kith config validate`); the desktop wizard uses the same [`Config::validate`].

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// Who may create an account through the Client-Server API.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationMode {
    /// Nobody: accounts are made by an admin (`kith user add`, the dashboard).
    #[default]
    Closed,
    /// Anyone holding a registration token (`m.login.registration_token`).
    Token,
    /// Anyone at all (`m.login.dummy`). Needs an explicit opt-in.
    Open,
}

impl std::str::FromStr for RegistrationMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "closed" => Ok(Self::Closed),
            "token" => Ok(Self::Token),
            "open" => Ok(Self::Open),
            other => Err(format!(
                "unknown registration mode `{other}` (closed, token or open)"
            )),
        }
    }
}

/// The whole configuration, as in `kith.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The name in user IDs (`@alice:NAME`) and room aliases. Never changes once users exist.
    pub server_name: String,
    /// Where the database, keys and media live. Empty means the directory holding the config file.
    pub data_dir: Option<PathBuf>,
    /// Listening addresses.
    pub listen: ListenConfig,
    /// Account creation.
    pub registration: RegistrationConfig,
    /// What `/.well-known/matrix/*` answers.
    pub well_known: WellKnownConfig,
    /// Room defaults.
    pub rooms: RoomsConfig,
    /// Request limits.
    pub limits: LimitsConfig,
    /// The media repository: uploads, downloads, thumbnails, URL previews.
    pub media: MediaConfig,
    /// Talking to other servers.
    pub federation: FederationConfig,
    /// The federation listener's certificate.
    pub tls: TlsConfig,
    /// The federation connectivity checker and the server's self-check.
    pub checker: CheckerConfig,
    /// The home network: port forwarding on the router.
    pub network: NetworkConfig,
}

/// The home network.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Where the UPnP search for the router goes (`IP:PORT`). Empty: the standard SSDP
    /// multicast group, 239.255.255.250:1900.
    pub upnp_search_address: String,
}

/// Where the federation listener's certificate comes from.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum TlsMode {
    /// Made by Kith for the server name; other servers on the internet will not trust it
    /// (for a LAN, tests and private federations).
    #[default]
    #[serde(rename = "self-signed")]
    SelfSigned,
    /// PEM files of the user's own (chain and key), reloaded when they change.
    #[serde(rename = "files")]
    Files,
    /// Obtained and renewed from an ACME authority (Let's Encrypt by default).
    #[serde(rename = "acme")]
    Acme,
    /// None: a reverse proxy in front terminates TLS, and the federation listener speaks
    /// plain HTTP to it.
    #[serde(rename = "proxy")]
    Proxy,
}

/// How the ACME authority checks that this server answers for its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum AcmeChallenge {
    /// A special certificate on the federation listener, which must be reachable on port
    /// 443 from the internet (RFC 8737).
    #[default]
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
    /// A file served over plain HTTP on port 80 (RFC 8555, section 8.3).
    #[serde(rename = "http-01")]
    Http01,
}

impl AcmeChallenge {
    /// The name in `kith.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TlsAlpn01 => "tls-alpn-01",
            Self::Http01 => "http-01",
        }
    }
}

impl TlsMode {
    /// The name in `kith.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SelfSigned => "self-signed",
            Self::Files => "files",
            Self::Acme => "acme",
            Self::Proxy => "proxy",
        }
    }
}

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// The federation listener's certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// "self-signed", "files" or "acme".
    pub mode: TlsMode,
    /// With "files": the PEM certificate chain, the server's certificate first.
    pub certificate: String,
    /// With "files": the PEM private key.
    pub private_key: String,
    /// With "acme": the authority's directory URL.
    pub acme_directory: String,
    /// With "acme": a contact email for the authority's expiry notices (optional).
    pub acme_contact: String,
    /// With "acme": "tls-alpn-01" or "http-01".
    pub acme_challenge: AcmeChallenge,
    /// With "acme" and "http-01": where the challenge files are served (port 80 as seen
    /// from the internet).
    pub acme_http_listen: String,
    /// With "acme": a PEM file with the root that the authority's own HTTPS certificate
    /// chains to, for a private or test authority. Empty: the system's roots.
    pub acme_ca_file: String,
    /// The reverse proxies whose `X-Forwarded-For` is believed (IP addresses); requests
    /// from anyone else are taken to come from where they come from.
    pub trusted_proxies: Vec<String>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            mode: TlsMode::default(),
            certificate: String::new(),
            private_key: String::new(),
            acme_directory: LETS_ENCRYPT.to_owned(),
            acme_contact: String::new(),
            acme_challenge: AcmeChallenge::default(),
            acme_http_listen: "0.0.0.0:80".to_owned(),
            acme_ca_file: String::new(),
            trusted_proxies: vec!["127.0.0.1".to_owned(), "::1".to_owned()],
        }
    }
}

impl Config {
    /// The host name the federation certificate must cover: the delegated host when
    /// `well_known.server` delegates, else the server name's host (spec:
    /// server-server-api.md, "Resolving server names").
    pub fn certificate_host(&self) -> String {
        let name = if self.well_known.server.is_empty() {
            &self.server_name
        } else {
            &self.well_known.server
        };
        let host = match name.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or_default(),
            None => name
                .rsplit_once(':')
                .map_or(name.as_str(), |(host, _)| host),
        };
        host.to_owned()
    }
}

/// The federation connectivity checker, and how often the server checks itself with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckerConfig {
    /// Hours between self-checks while the federation listener is on; one also runs at
    /// start. 0: only at start.
    pub self_check_hours: u32,
    /// The DNS server checks ask (`IP` or `IP:PORT`). Empty: the system's.
    pub dns_server: String,
    /// A PEM file of certificate authorities that checks trust besides the system's (a
    /// private CA). Empty: none.
    pub ca_file: String,
    /// A matrix-federation-tester API (its `/api/report`) that the self-check also asks,
    /// for the view from outside the home network. Empty: off.
    pub external_tester_url: String,
}

impl Default for CheckerConfig {
    fn default() -> Self {
        Self {
            self_check_hours: 6,
            dns_server: String::new(),
            ca_file: String::new(),
            external_tester_url: String::new(),
        }
    }
}

impl CheckerConfig {
    /// The DNS server as an address (port 53 when none is given).
    pub fn dns_server_addr(&self) -> Option<SocketAddr> {
        let text = self.dns_server.trim();
        text.parse::<SocketAddr>().ok().or_else(|| {
            text.parse::<std::net::IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 53))
        })
    }
}

/// Talking to other servers (spec: server-server-api.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationConfig {
    /// Check other servers' TLS certificates. Off only for tests and private federations:
    /// without it anyone on the path can pretend to be any server.
    pub verify_certificates: bool,
    /// Let federation reach loopback, private and link-local addresses. Only for tests and
    /// private federations: otherwise a remote server name could point the server at your LAN.
    pub allow_private_addresses: bool,
    /// Send local users' presence (online, away, last active) to the other servers in
    /// their rooms. Off by default: it tells others when you are at your computer.
    /// Presence from other servers is always taken in.
    pub send_presence: bool,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            verify_certificates: true,
            allow_private_addresses: false,
            send_presence: false,
        }
    }
}

impl FederationConfig {
    /// Whether any of the safety checks is off (the server says so at start-up).
    pub fn is_insecure(&self) -> bool {
        !self.verify_certificates || self.allow_private_addresses
    }
}

/// Listening addresses.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// The Client-Server API listener (plain HTTP, meant for this machine).
    pub client: String,
    /// The federation listener; empty to not listen for federation.
    pub federation: String,
}

/// Account creation.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    /// `closed`, `token` or `open`.
    pub mode: RegistrationMode,
}

/// What the server says at `/.well-known/matrix/client` and `/.well-known/matrix/server`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct WellKnownConfig {
    /// The client base URL (`m.homeserver.base_url`); empty to answer 404.
    pub client_base_url: String,
    /// The delegated federation server (`m.server`, `host[:port]`); empty to answer 404.
    pub server: String,
}

/// Room defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomsConfig {
    /// The version of rooms created without an explicit `room_version`: 10, 11 or 12.
    pub default_version: String,
}

/// Request limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// The largest JSON request body accepted, in bytes.
    pub max_request_bytes: usize,
    /// Failed logins allowed per account per minute before `M_LIMIT_EXCEEDED`.
    pub failed_logins_per_minute: u32,
    /// Lifetime of access tokens issued together with a refresh token, in seconds.
    pub refreshable_token_lifetime_secs: u64,
}

/// The media repository (spec: client-server-api/modules/content_repo.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// The largest upload accepted, in bytes (`m.upload.size`); larger ones get 413 `M_TOO_LARGE`.
    pub max_upload_bytes: u64,
    /// The most one user may upload in total, in bytes; 0 for no quota.
    pub max_bytes_per_user: u64,
    /// Media uploaded before this moment (ms since the Unix epoch) can still be downloaded
    /// without an access token through the deprecated `/_matrix/media/v3/download` and
    /// `/thumbnail` endpoints; newer media only through the authenticated ones (the spec's
    /// "freeze"). 0, the default, freezes from the start, as a new server should.
    pub unauthenticated_frozen_since_ms: i64,
    /// Whether `/preview_url` fetches web pages for link previews. Off by default: the
    /// server then fetches URLs that users post, which tells those sites it is there.
    pub url_preview_enabled: bool,
    /// Lets URL previews reach private, loopback and link-local addresses. Only for tests
    /// and closed private networks: otherwise any user could probe your LAN through the server.
    pub url_preview_allow_private: bool,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: 50 * 1024 * 1024,
            max_bytes_per_user: 0,
            unauthenticated_frozen_since_ms: 0,
            url_preview_enabled: false,
            url_preview_allow_private: false,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server_name: "localhost".to_owned(),
            data_dir: None,
            listen: ListenConfig::default(),
            registration: RegistrationConfig::default(),
            well_known: WellKnownConfig::default(),
            rooms: RoomsConfig::default(),
            limits: LimitsConfig::default(),
            media: MediaConfig::default(),
            federation: FederationConfig::default(),
            tls: TlsConfig::default(),
            checker: CheckerConfig::default(),
            network: NetworkConfig::default(),
        }
    }
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            client: "127.0.0.1:8008".to_owned(),
            federation: String::new(),
        }
    }
}

impl Default for RoomsConfig {
    fn default() -> Self {
        Self {
            default_version: "12".to_owned(),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_request_bytes: 1024 * 1024,
            failed_logins_per_minute: 5,
            refreshable_token_lifetime_secs: 300,
        }
    }
}

/// Writes config text to `path` (0600): to a new file beside it, then renamed over it, so
/// a crash never leaves half a config.
pub fn write_file(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let partial = path.with_extension("toml.new");
    crate::crypto::write_private_file(&partial, text.as_bytes())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    std::fs::rename(&partial, path)
}

/// Room versions Kith creates and joins (DESIGN.md: 12 by default, 10 and 11 also).
pub const SUPPORTED_ROOM_VERSIONS: [&str; 3] = ["10", "11", "12"];

/// A problem found while loading or validating a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The dotted key, e.g. `listen.client`; empty for file-level problems.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

fn problem(field: &str, message: impl Into<String>) -> Problem {
    Problem {
        field: field.to_owned(),
        message: message.into(),
    }
}

impl Config {
    /// Parses a config from TOML text. Syntax errors and unknown keys are problems too.
    pub fn from_toml(text: &str) -> Result<Self, Vec<Problem>> {
        toml::from_str(text).map_err(|e| vec![problem("", e.to_string().trim().to_owned())])
    }

    /// Writes the config, commented, to `path` (0600): to a new file beside it, then
    /// renamed over it, so a crash never leaves half a config.
    pub fn write_to(&self, path: &Path) -> std::io::Result<()> {
        write_file(path, &self.to_commented_toml())
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Self, Vec<Problem>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![problem("", format!("cannot read {}: {e}", path.display()))])?;
        Self::from_toml(&text)
    }

    /// Checks every field and returns all problems found (empty when the config is good).
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Err(e) = ruma::ServerName::parse(&self.server_name) {
            problems.push(problem(
                "server_name",
                format!(
                    "`{}` is not a valid server name ({e}); use a DNS name such as example.org",
                    self.server_name
                ),
            ));
        }
        if self.listen.client.parse::<SocketAddr>().is_err() {
            problems.push(problem(
                "listen.client",
                format!(
                    "`{}` is not an IP address and port, such as 127.0.0.1:8008",
                    self.listen.client
                ),
            ));
        }
        if !self.listen.federation.is_empty()
            && self.listen.federation.parse::<SocketAddr>().is_err()
        {
            problems.push(problem(
                "listen.federation",
                format!(
                    "`{}` is not an IP address and port, such as 0.0.0.0:8448",
                    self.listen.federation
                ),
            ));
        }
        if self.tls.mode == TlsMode::Files {
            for (field, path) in [
                ("tls.certificate", &self.tls.certificate),
                ("tls.private_key", &self.tls.private_key),
            ] {
                if path.is_empty() {
                    problems.push(problem(field, "is required when tls.mode is \"files\""));
                } else if !Path::new(path).is_file() {
                    problems.push(problem(field, format!("`{path}` is not a readable file")));
                }
            }
        }
        if self.tls.mode == TlsMode::Acme {
            if !self.tls.acme_directory.starts_with("https://") {
                problems.push(problem(
                    "tls.acme_directory",
                    format!("`{}` is not an https URL", self.tls.acme_directory),
                ));
            }
            if self.certificate_host().parse::<std::net::IpAddr>().is_ok() {
                problems.push(problem(
                    "tls.mode",
                    "ACME certificates are for DNS names; this server's name is an IP address",
                ));
            }
            if self.tls.acme_challenge == AcmeChallenge::Http01
                && self.tls.acme_http_listen.parse::<SocketAddr>().is_err()
            {
                problems.push(problem(
                    "tls.acme_http_listen",
                    format!(
                        "`{}` is not an IP address and port, such as 0.0.0.0:80",
                        self.tls.acme_http_listen
                    ),
                ));
            }
            if !self.tls.acme_ca_file.is_empty() && !Path::new(&self.tls.acme_ca_file).is_file() {
                problems.push(problem(
                    "tls.acme_ca_file",
                    format!("`{}` is not a readable file", self.tls.acme_ca_file),
                ));
            }
        }
        for proxy in &self.tls.trusted_proxies {
            if proxy.parse::<std::net::IpAddr>().is_err() {
                problems.push(problem(
                    "tls.trusted_proxies",
                    format!("`{proxy}` is not an IP address"),
                ));
            }
        }
        if !self.network.upnp_search_address.is_empty()
            && self
                .network
                .upnp_search_address
                .parse::<SocketAddr>()
                .is_err()
        {
            problems.push(problem(
                "network.upnp_search_address",
                format!(
                    "`{}` is not an IP address and port, such as 239.255.255.250:1900",
                    self.network.upnp_search_address
                ),
            ));
        }
        if !self.checker.dns_server.is_empty() && self.checker.dns_server_addr().is_none() {
            problems.push(problem(
                "checker.dns_server",
                format!(
                    "`{}` is not an IP address, or IP address and port, such as 192.0.2.53",
                    self.checker.dns_server
                ),
            ));
        }
        if !self.checker.ca_file.is_empty() && !Path::new(&self.checker.ca_file).is_file() {
            problems.push(problem(
                "checker.ca_file",
                format!("`{}` is not a readable file", self.checker.ca_file),
            ));
        }
        let tester = &self.checker.external_tester_url;
        let is_url = tester.starts_with("https://") || tester.starts_with("http://");
        if !tester.is_empty() && !is_url {
            problems.push(problem(
                "checker.external_tester_url",
                format!("`{tester}` is not an http(s) URL"),
            ));
        }
        let base_url = &self.well_known.client_base_url;
        let is_http = base_url.starts_with("https://") || base_url.starts_with("http://");
        if !base_url.is_empty() && !is_http {
            problems.push(problem(
                "well_known.client_base_url",
                "must start with https:// (or http://)",
            ));
        }
        if !self.well_known.server.is_empty() && self.well_known.server.contains('/') {
            problems.push(problem(
                "well_known.server",
                "must be host or host:port, without a scheme or path",
            ));
        }
        if !SUPPORTED_ROOM_VERSIONS.contains(&self.rooms.default_version.as_str()) {
            problems.push(problem(
                "rooms.default_version",
                format!(
                    "room version `{}` is not supported (use 10, 11 or 12)",
                    self.rooms.default_version
                ),
            ));
        }
        if self.limits.max_request_bytes < 1024 {
            problems.push(problem(
                "limits.max_request_bytes",
                "must be at least 1024 bytes",
            ));
        }
        if self.limits.refreshable_token_lifetime_secs < 5 {
            problems.push(problem(
                "limits.refreshable_token_lifetime_secs",
                "must be at least 5 seconds",
            ));
        }
        if self.limits.failed_logins_per_minute == 0 {
            problems.push(problem(
                "limits.failed_logins_per_minute",
                "must be at least 1",
            ));
        }
        if self.media.max_upload_bytes < 1024 {
            problems.push(problem(
                "media.max_upload_bytes",
                "must be at least 1024 bytes",
            ));
        }
        if self.media.unauthenticated_frozen_since_ms < 0 {
            problems.push(problem(
                "media.unauthenticated_frozen_since_ms",
                "must be a time in milliseconds since 1970, or 0",
            ));
        }
        problems
    }

    /// The data dir: `data_dir` if set, else the directory holding `config_path`.
    pub fn resolved_data_dir(&self, config_path: &Path) -> PathBuf {
        match &self.data_dir {
            Some(dir) if !dir.as_os_str().is_empty() => dir.clone(),
            _ => config_path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
        }
    }

    /// Renders this config as a `kith.toml` with every field commented.
    pub fn to_commented_toml(&self) -> String {
        let data_dir = match &self.data_dir {
            Some(dir) => format!("data_dir = {}\n", toml_string(&dir.display().to_string())),
            None => "# data_dir = \"/path/to/data\"\n".to_owned(),
        };
        let mode = match self.registration.mode {
            RegistrationMode::Closed => "closed",
            RegistrationMode::Token => "token",
            RegistrationMode::Open => "open",
        };
        format!(
            "# Kith homeserver configuration.\n\
             # Check it with `kith config validate`; every problem is reported at once.\n\
             \n\
             # The name in your user IDs (@alice:NAME). It cannot change once accounts exist.\n\
             server_name = {server_name}\n\
             \n\
             # Where the database, signing key and media are kept.\n\
             # Unset means the folder that holds this file.\n\
             {data_dir}\n\
             [listen]\n\
             # The Client-Server API, plain HTTP. Keep it on 127.0.0.1 unless a TLS proxy is in front.\n\
             client = {client}\n\
             # The federation listener (for example \"0.0.0.0:8448\"). Empty: no federation listener.\n\
             federation = {federation}\n\
             \n\
             [registration]\n\
             # Who may sign up: \"closed\" (admins create accounts), \"token\" (with a registration\n\
             # token) or \"open\" (anyone who can reach the server; only for trusted networks).\n\
             mode = \"{mode}\"\n\
             \n\
             [well_known]\n\
             # Served at /.well-known/matrix/client as m.homeserver.base_url. Empty: 404.\n\
             client_base_url = {client_base_url}\n\
             # Served at /.well-known/matrix/server as m.server (host:port). Empty: 404.\n\
             server = {wk_server}\n\
             \n\
             [rooms]\n\
             # The version of new rooms when a client does not choose: \"10\", \"11\" or \"12\".\n\
             default_version = {room_version}\n\
             \n\
             [limits]\n\
             # The largest JSON request body, in bytes.\n\
             max_request_bytes = {max_request_bytes}\n\
             # Failed logins per account per minute before clients are told to wait.\n\
             failed_logins_per_minute = {failed_logins}\n\
             # Lifetime of access tokens that come with a refresh token, in seconds.\n\
             refreshable_token_lifetime_secs = {token_lifetime}\n\
             \n\
             [media]\n\
             # The largest file a user may upload, in bytes (default 50 MiB).\n\
             max_upload_bytes = {max_upload_bytes}\n\
             # The most one user may upload in total, in bytes. 0: no quota.\n\
             max_bytes_per_user = {max_bytes_per_user}\n\
             # Media uploaded before this time (milliseconds since 1970) stays downloadable by old\n\
             # clients without logging in. 0: all media needs a logged-in client (recommended).\n\
             unauthenticated_frozen_since_ms = {frozen_since}\n\
             # Link previews: the server fetches pages that users link to. Off by default.\n\
             url_preview_enabled = {url_preview_enabled}\n\
             # Let link previews reach private and loopback addresses. Only for tests and closed\n\
             # networks: it lets any user probe your home network through the server.\n\
             url_preview_allow_private = {url_preview_allow_private}\n\
             \n\
             [federation]\n\
             # Check other servers' TLS certificates. Turn off only for tests and private\n\
             # federations (`kith init --insecure-federation`).\n\
             verify_certificates = {verify_certificates}\n\
             # Let federation reach loopback and private addresses. Only for tests and private\n\
             # federations: otherwise a remote server name could point Kith at your home network.\n\
             allow_private_addresses = {allow_private_addresses}\n\
             # Send your users' presence (online, away, last active) to the other servers in\n\
             # their rooms. Off by default: it tells others when you are at your computer.\n\
             send_presence = {send_presence}\n\
             \n\
             [tls]\n\
             # Where the federation listener's certificate comes from: \"self-signed\" (made by\n\
             # Kith; servers on the internet will not trust it, so only for a LAN, tests and\n\
             # private federations), \"files\" (your own PEM files, reloaded when they change),\n\
             # \"acme\" (obtained and renewed automatically, from Let's Encrypt by default), or\n\
             # \"proxy\" (a reverse proxy in front handles TLS; the listener speaks plain HTTP).\n\
             mode = \"{tls_mode}\"\n\
             # With \"files\": the certificate chain (your certificate first, then the\n\
             # intermediates; a \"fullchain\" file) and its private key.\n\
             certificate = {tls_certificate}\n\
             private_key = {tls_private_key}\n\
             # With \"acme\": the authority (Let's Encrypt unless you name another), a contact\n\
             # email for its notices (optional), and how it checks that you own the name:\n\
             # \"tls-alpn-01\" (the federation listener must be reachable on port 443) or\n\
             # \"http-01\" (a file on port 80, served on acme_http_listen).\n\
             acme_directory = {acme_directory}\n\
             acme_contact = {acme_contact}\n\
             acme_challenge = \"{acme_challenge}\"\n\
             acme_http_listen = {acme_http_listen}\n\
             # A PEM root for a private or test authority's own HTTPS. Empty: the system's.\n\
             acme_ca_file = {acme_ca_file}\n\
             # The reverse proxies whose X-Forwarded-For header is believed, on both listeners.\n\
             trusted_proxies = {trusted_proxies}\n\
             \n\
             [checker]\n\
             # Hours between the server's checks of its own federation (one also runs at start).\n\
             # 0: only at start.\n\
             self_check_hours = {self_check_hours}\n\
             # The DNS server that checks ask (\"IP\" or \"IP:PORT\"). Empty: the system's.\n\
             dns_server = {dns_server}\n\
             # A PEM file of extra certificate authorities that checks trust (a private CA).\n\
             ca_file = {ca_file}\n\
             # A federation tester on the internet that the self-check also asks, for the view\n\
             # from outside your network (matrix-federation-tester's API). Empty: off.\n\
             external_tester_url = {external_tester_url}\n\
             \n\
             [network]\n\
             # Where the UPnP search for your router goes, when you ask Kith to open ports on it.\n\
             # Empty: the standard SSDP group (239.255.255.250:1900).\n\
             upnp_search_address = {upnp_search_address}\n",
            server_name = toml_string(&self.server_name),
            client = toml_string(&self.listen.client),
            federation = toml_string(&self.listen.federation),
            client_base_url = toml_string(&self.well_known.client_base_url),
            wk_server = toml_string(&self.well_known.server),
            room_version = toml_string(&self.rooms.default_version),
            max_request_bytes = self.limits.max_request_bytes,
            failed_logins = self.limits.failed_logins_per_minute,
            token_lifetime = self.limits.refreshable_token_lifetime_secs,
            max_upload_bytes = self.media.max_upload_bytes,
            max_bytes_per_user = self.media.max_bytes_per_user,
            frozen_since = self.media.unauthenticated_frozen_since_ms,
            url_preview_enabled = self.media.url_preview_enabled,
            url_preview_allow_private = self.media.url_preview_allow_private,
            verify_certificates = self.federation.verify_certificates,
            allow_private_addresses = self.federation.allow_private_addresses,
            send_presence = self.federation.send_presence,
            tls_mode = self.tls.mode.as_str(),
            tls_certificate = toml_string(&self.tls.certificate),
            tls_private_key = toml_string(&self.tls.private_key),
            acme_directory = toml_string(&self.tls.acme_directory),
            acme_contact = toml_string(&self.tls.acme_contact),
            acme_challenge = self.tls.acme_challenge.as_str(),
            acme_http_listen = toml_string(&self.tls.acme_http_listen),
            acme_ca_file = toml_string(&self.tls.acme_ca_file),
            trusted_proxies = toml::Value::Array(
                self.tls
                    .trusted_proxies
                    .iter()
                    .map(|p| toml::Value::String(p.clone()))
                    .collect()
            ),
            self_check_hours = self.checker.self_check_hours,
            dns_server = toml_string(&self.checker.dns_server),
            ca_file = toml_string(&self.checker.ca_file),
            external_tester_url = toml_string(&self.checker.external_tester_url),
            upnp_search_address = toml_string(&self.network.upnp_search_address),
        )
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The per-user default location of `kith.toml` (in the OS data dir).
pub fn default_config_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("org", "Kith", "kith")
        .map(|dirs| dirs.data_dir().join("kith.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_round_trips_through_the_commented_file() {
        let config = Config::default();
        assert!(config.validate().is_empty());
        let text = config.to_commented_toml();
        let parsed = Config::from_toml(&text).expect("the template parses");
        assert_eq!(parsed.server_name, "localhost");
        assert_eq!(parsed.listen.client, "127.0.0.1:8008");
        assert_eq!(parsed.registration.mode, RegistrationMode::Closed);
        assert_eq!(parsed.media.max_upload_bytes, 50 * 1024 * 1024);
        assert!(!parsed.media.url_preview_enabled);
        assert!(parsed.federation.verify_certificates);
        assert!(!parsed.federation.allow_private_addresses);
    }

    #[test]
    fn validation_reports_every_problem_at_once() {
        let config = Config::from_toml(
            "server_name = \"bad name!\"\n[listen]\nclient = \"nowhere\"\n[rooms]\ndefault_version = \"3\"\n\
             [checker]\ndns_server = \"dns.example\"\nca_file = \"/no/such/ca.pem\"\n\
             external_tester_url = \"ftp://tester\"\n",
        )
        .expect("syntax is fine");
        let fields: Vec<_> = config.validate().into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [
                "server_name",
                "listen.client",
                "checker.dns_server",
                "checker.ca_file",
                "checker.external_tester_url",
                "rooms.default_version"
            ]
        );
    }

    #[test]
    fn unknown_keys_are_reported() {
        let problems = Config::from_toml("server_nam = \"x\"\n").expect_err("typo is caught");
        assert!(problems[0].message.contains("server_nam"), "{:?}", problems);
    }
}
