//! The first-run wizard's answers, and what they make of the config. Pure: the HTTP setup
//! API and the desktop shell's commands both call it, so the UI never repeats a rule.
//!
//! The wizard asks: what kind of server (LAN only, my own domain, a dynamic-DNS name),
//! its name, how other servers reach it (directly, or delegated from a website the user
//! already has), the ports, the certificate, and who may join. [`SetupAnswers::apply`]
//! turns that into a [`Config`]; [`SetupAnswers::check`] reports every problem at once,
//! per answer, with the DNS records and well-known files to publish.

use serde::{Deserialize, Serialize};

use super::delegation::{DelegationInput, DelegationPlan, plan};
use crate::config::{Config, Problem, RegistrationMode, TlsMode};

/// What kind of server the user sets up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum ServerKind {
    /// Only for this home network: no federation listener.
    Lan,
    /// A domain the user owns (`example.org`).
    Domain,
    /// A name from a dynamic-DNS provider (`myhome.duckdns.org`).
    DynamicDns,
}

/// How other servers reach this one (spec: server-server-api.md, "Resolving server names").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Reachability {
    /// At the server name's own host, on the federation port.
    Direct,
    /// The website at the server name serves `/.well-known/matrix/server`, which points at
    /// this machine's host name.
    WellKnown,
}

/// The wizard's answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SetupAnswers {
    /// LAN only, own domain or dynamic DNS.
    pub kind: ServerKind,
    /// The name in user IDs (`@alice:NAME`). It can never change once accounts exist.
    pub server_name: String,
    /// Direct, or delegated through a well-known file (own domain only).
    pub reachability: Reachability,
    /// With well-known delegation: the host name of this machine that other servers
    /// connect to (`matrix.example.org`).
    pub delegated_host: String,
    /// The Client-Server API listener (`IP:PORT`).
    pub client_listen: String,
    /// The federation port on this machine (8448 by default; 443 lets Kith answer
    /// certificate challenges itself).
    pub federation_port: u16,
    /// Where the federation certificate comes from.
    pub tls_mode: TlsMode,
    /// With own files: the PEM certificate chain.
    pub certificate_file: String,
    /// With own files: the PEM private key.
    pub private_key_file: String,
    /// With an automatic certificate: an email for expiry notices (optional).
    pub acme_contact: String,
    /// Who may create an account.
    pub registration: RegistrationMode,
    /// This network's public IPv4 address, for the DNS records to publish; empty when not
    /// known (the router's port mapping reports it). It is not part of the config.
    #[serde(default)]
    pub public_ipv4: String,
}

/// What Kith says about one answer: a problem, or a warning the user may accept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AnswerProblem {
    /// The answer's field name in [`SetupAnswers`]; empty for the whole.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// What the wizard shows after checking the answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SetupCheck {
    /// Problems that stop the setup; empty when the answers can be applied.
    pub problems: Vec<AnswerProblem>,
    /// Things the user should know but may accept, each about the answer it concerns (the
    /// wizard shows it beside that answer).
    pub warnings: Vec<AnswerProblem>,
    /// What to publish in DNS and on the web (not for LAN-only servers).
    pub delegation: Option<DelegationPlan>,
}

/// The federation port other servers use when nothing says otherwise.
const DEFAULT_FEDERATION_PORT: u16 = 8448;

impl SetupAnswers {
    /// The answers that `config` stands for: the wizard starts from them.
    pub fn from_config(config: &Config) -> Self {
        let federation_port = config
            .listen
            .federation
            .parse::<std::net::SocketAddr>()
            .map(|addr| addr.port())
            .unwrap_or(DEFAULT_FEDERATION_PORT);
        let delegated_host = config
            .well_known
            .server
            .rsplit_once(':')
            .map_or(config.well_known.server.as_str(), |(host, _)| host)
            .to_owned();
        Self {
            kind: if config.listen.federation.is_empty() {
                ServerKind::Lan
            } else {
                ServerKind::Domain
            },
            server_name: config.server_name.clone(),
            reachability: if delegated_host.is_empty() {
                Reachability::Direct
            } else {
                Reachability::WellKnown
            },
            delegated_host,
            client_listen: config.listen.client.clone(),
            federation_port,
            tls_mode: config.tls.mode,
            certificate_file: config.tls.certificate.clone(),
            private_key_file: config.tls.private_key.clone(),
            acme_contact: config.tls.acme_contact.clone(),
            registration: config.registration.mode,
            public_ipv4: String::new(),
        }
    }

    /// `base` changed as the answers say; everything they do not touch stays.
    pub fn apply(&self, base: &Config) -> Config {
        let mut config = base.clone();
        config.server_name = self.server_name.trim().to_owned();
        config.listen.client = self.client_listen.trim().to_owned();
        config.registration.mode = self.registration;
        match self.kind {
            ServerKind::Lan => {
                config.listen.federation.clear();
                config.well_known.server.clear();
                config.tls.mode = TlsMode::SelfSigned;
            }
            ServerKind::Domain | ServerKind::DynamicDns => {
                config.listen.federation = format!("0.0.0.0:{}", self.federation_port);
                config.well_known.server = match (self.kind, self.reachability) {
                    (ServerKind::Domain, Reachability::WellKnown) => {
                        format!("{}:{}", self.delegated_host.trim(), self.federation_port)
                    }
                    _ => String::new(),
                };
                config.tls.mode = self.tls_mode;
                config.tls.certificate = self.certificate_file.trim().to_owned();
                config.tls.private_key = self.private_key_file.trim().to_owned();
                config.tls.acme_contact = self.acme_contact.trim().to_owned();
            }
        }
        config
    }

    /// Every problem with the answers (as applied to `base`), the warnings, and for a
    /// federating server what to publish.
    pub fn check(&self, base: &Config) -> SetupCheck {
        let config = self.apply(base);
        let mut problems: Vec<AnswerProblem> = config
            .validate()
            .into_iter()
            .map(|problem| self.answer_problem(problem))
            .collect();
        let mut warnings = vec![answer(
            "server_name",
            format!(
                "The server name `{}` can never change once accounts exist: user IDs will be \
                 @name:{}.",
                config.server_name, config.server_name
            ),
        )];
        let federating = self.kind != ServerKind::Lan;
        if federating {
            let host = config.server_name.rsplit_once(':').map_or(
                config.server_name.as_str(),
                |(host, port)| {
                    if port.parse::<u16>().is_ok() {
                        host
                    } else {
                        config.server_name.as_str()
                    }
                },
            );
            if host.parse::<std::net::IpAddr>().is_ok()
                || host == "localhost"
                || !host.contains('.')
            {
                problems.push(answer("server_name", format!(
                    "`{}` is not a public DNS name. Other servers find this one by its name: use a domain such as example.org, or choose \"LAN only\".",
                    config.server_name
                )));
            }
            if self.federation_port == 0 {
                problems.push(answer(
                    "federation_port",
                    "Choose a port for federation, such as 8448.",
                ));
            }
            match self.tls_mode {
                TlsMode::SelfSigned => warnings.push(answer(
                    "tls_mode",
                    "With a self-signed certificate, servers on the internet (matrix.org, Synapse) will refuse to federate: choose an automatic certificate or your own files.",
                )),
                TlsMode::Files => {
                    for (field, path) in [
                        ("certificate_file", &self.certificate_file),
                        ("private_key_file", &self.private_key_file),
                    ] {
                        if !path.trim().is_empty() && !std::path::Path::new(path.trim()).is_file() {
                            problems.push(answer(field, format!("There is no file at {}.", path.trim())));
                        }
                    }
                }
                TlsMode::Acme => {
                    if self.federation_port != 443 {
                        warnings.push(answer("federation_port", format!(
                            "The automatic certificate is proven on port 443: forward port 443 of your router to port {} of this machine.",
                            self.federation_port
                        )));
                    }
                }
                TlsMode::Proxy => {}
            }
            let public_ipv4 = self.public_ipv4.trim();
            if !public_ipv4.is_empty() && public_ipv4.parse::<std::net::Ipv4Addr>().is_err() {
                problems.push(answer(
                    "public_ipv4",
                    format!("`{public_ipv4}` is not an IPv4 address such as 203.0.113.7; leave it empty if you do not know it."),
                ));
            }
            if self.kind == ServerKind::Domain
                && self.reachability == Reachability::WellKnown
                && self.delegated_host.trim().is_empty()
            {
                problems.push(answer(
                    "delegated_host",
                    "Give the host name of this machine that other servers connect to, such as matrix.example.org.",
                ));
            }
        } else {
            warnings.push(answer(
                "kind",
                "LAN only: people on other servers cannot join your rooms, and you cannot join theirs.",
            ));
        }
        if self.registration == RegistrationMode::Open {
            warnings.push(answer(
                "registration",
                "Open registration lets anyone who reaches this server create an account; spammers look for such servers.",
            ));
        }
        let delegation = if federating && problems.is_empty() {
            let public_host = match self.reachability {
                Reachability::WellKnown if self.kind == ServerKind::Domain => {
                    self.delegated_host.trim().to_owned()
                }
                _ => config.server_name.clone(),
            };
            plan(&DelegationInput {
                server_name: config.server_name.clone(),
                kith_answers_on_server_name_443: self.federation_port == 443
                    && public_host == config.server_name,
                public_host,
                public_port: self.federation_port,
                ipv4: self
                    .public_ipv4
                    .trim()
                    .parse::<std::net::Ipv4Addr>()
                    .ok()
                    .map(std::net::IpAddr::V4),
                ipv6: None,
                client_base_url: None,
            })
            .map_err(|e| problems.push(answer("server_name", e)))
            .ok()
        } else {
            None
        };
        SetupCheck {
            problems,
            warnings,
            delegation,
        }
    }

    /// The config to write for these answers, or why not: the first problem, or a new
    /// server name while accounts exist (user IDs carry it, so it can never change).
    pub fn config_to_apply(
        &self,
        base: &Config,
        current_name: &str,
        accounts_exist: bool,
    ) -> crate::error::Result<Config> {
        use crate::error::Error;
        let check = self.check(base);
        if let Some(problem) = check.problems.first() {
            return Err(Error::invalid_param(if problem.field.is_empty() {
                problem.message.clone()
            } else {
                format!("{}: {}", problem.field, problem.message)
            }));
        }
        let config = self.apply(base);
        if accounts_exist && config.server_name != current_name {
            return Err(Error::forbidden(format!(
                "The server name cannot change: accounts of {current_name} exist."
            )));
        }
        Ok(config)
    }

    /// A config problem, named by the answer it comes from.
    fn answer_problem(&self, problem: Problem) -> AnswerProblem {
        let field = match problem.field.as_str() {
            "server_name" => "server_name",
            "listen.client" => "client_listen",
            "listen.federation" => "federation_port",
            "well_known.server" => "delegated_host",
            "tls.certificate" => "certificate_file",
            "tls.private_key" => "private_key_file",
            "tls.acme_contact" => "acme_contact",
            "tls.mode" => "tls_mode",
            "registration.mode" => "registration",
            _ => "",
        };
        AnswerProblem {
            field: field.to_owned(),
            message: problem.message,
        }
    }
}

/// Whether the wizard must run, for the UI's first screen.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SetupState {
    /// True until an admin exists: the UI shows the wizard (with the setup link's token)
    /// instead of the admin login.
    pub needs_setup: bool,
    /// The server name now.
    pub server_name: String,
    /// Kith's version.
    pub version: String,
}

/// What `apply` did.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Applied {
    /// The config file written.
    pub config_file: String,
    /// Whether the server is restarting to take it (it answers again in a moment).
    pub restarting: bool,
}

/// A login made for the UI.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct UiLogin {
    /// The admin's user ID.
    pub user_id: String,
    /// The access token the UI uses from now on.
    pub access_token: String,
    /// The device the login made.
    pub device_id: String,
}

/// The config file as the settings page edits it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ConfigText {
    /// Where it is.
    pub path: String,
    /// Its text, comments and all.
    pub text: String,
}

/// The answer of a call that restarts the server.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Restarting {
    /// Always true: the server answers again in a moment.
    pub restarting: bool,
}

/// The first admin's name and password, checked before anything is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AdminCheck {
    /// Problems with `username` or `password`; empty when the account can be made.
    pub problems: Vec<AnswerProblem>,
    /// How strong the password is, for the meter.
    pub strength: crate::crypto::PasswordStrength,
    /// The user ID the account will have.
    pub user_id: String,
}

/// Checks the first admin's user name (the spec's grammar) and password (strong enough)
/// for a server called `server_name`.
pub fn check_admin(username: &str, password: &str, server_name: &str) -> AdminCheck {
    let localpart = username.trim().to_lowercase();
    let mut problems = Vec::new();
    if let Err(e) = super::users::validate_localpart(&localpart, server_name) {
        problems.push(answer("username", e.to_string()));
    }
    let strength = crate::crypto::password_strength(password, &[&localpart, server_name]);
    if !strength.acceptable {
        problems.push(answer(
            "password",
            format!(
                "This password is {}: the admin account needs a strong one.",
                strength.label
            ),
        ));
    }
    AdminCheck {
        problems,
        strength,
        user_id: format!("@{localpart}:{server_name}"),
    }
}

/// The problems of a whole config file's text, as the settings page edits it: syntax,
/// unknown keys, every invalid value, and a new server name while accounts exist.
pub fn check_config_text(
    text: &str,
    current_name: &str,
    accounts_exist: bool,
) -> Vec<AnswerProblem> {
    let config = match Config::from_toml(text) {
        Ok(config) => config,
        Err(problems) => return problems.into_iter().map(config_problem).collect(),
    };
    let mut problems: Vec<AnswerProblem> =
        config.validate().into_iter().map(config_problem).collect();
    if accounts_exist && config.server_name != current_name {
        problems.push(answer(
            "server_name",
            format!("The server name cannot change: accounts of {current_name} exist."),
        ));
    }
    problems
}

fn config_problem(problem: Problem) -> AnswerProblem {
    AnswerProblem {
        field: problem.field,
        message: problem.message,
    }
}

fn answer(field: &str, message: impl Into<String>) -> AnswerProblem {
    AnswerProblem {
        field: field.to_owned(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> SetupAnswers {
        SetupAnswers {
            kind: ServerKind::Domain,
            server_name: "example.org".to_owned(),
            reachability: Reachability::Direct,
            delegated_host: String::new(),
            client_listen: "127.0.0.1:8008".to_owned(),
            federation_port: 8448,
            tls_mode: TlsMode::Acme,
            certificate_file: String::new(),
            private_key_file: String::new(),
            acme_contact: String::new(),
            registration: RegistrationMode::Token,
            public_ipv4: String::new(),
        }
    }

    #[test]
    fn a_domain_served_directly_federates_on_its_port_and_gets_a_plan() {
        let answers = domain();
        let config = answers.apply(&Config::default());
        assert_eq!(config.listen.federation, "0.0.0.0:8448");
        assert_eq!(config.well_known.server, "");
        assert_eq!(config.tls.mode, TlsMode::Acme);
        let check = answers.check(&Config::default());
        assert!(check.problems.is_empty(), "{:?}", check.problems);
        let plan = check.delegation.expect("a plan");
        assert_eq!(plan.certificate_name, "example.org");
        assert_eq!(
            SetupAnswers::from_config(&config).server_name,
            "example.org"
        );
    }

    #[test]
    fn well_known_delegation_needs_the_host_and_points_at_it() {
        let mut answers = domain();
        answers.reachability = Reachability::WellKnown;
        let check = answers.check(&Config::default());
        assert_eq!(check.problems.len(), 1);
        assert_eq!(check.problems[0].field, "delegated_host");
        answers.delegated_host = "matrix.example.org".to_owned();
        let config = answers.apply(&Config::default());
        assert_eq!(config.well_known.server, "matrix.example.org:8448");
        let plan = answers
            .check(&Config::default())
            .delegation
            .expect("a plan");
        assert!(plan.well_known_server.is_some());
        assert_eq!(plan.certificate_name, "matrix.example.org");
        let back = SetupAnswers::from_config(&config);
        assert_eq!(back.reachability, Reachability::WellKnown);
        assert_eq!(back.delegated_host, "matrix.example.org");
    }

    #[test]
    fn each_bad_answer_is_reported_against_its_field() {
        let mut answers = domain();
        answers.server_name = "localhost".to_owned();
        answers.client_listen = "nowhere".to_owned();
        answers.tls_mode = TlsMode::Files;
        answers.certificate_file = "/nonexistent/cert.pem".to_owned();
        let fields: Vec<String> = answers
            .check(&Config::default())
            .problems
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert!(fields.contains(&"server_name".to_owned()), "{fields:?}");
        assert!(fields.contains(&"client_listen".to_owned()), "{fields:?}");
        assert!(
            fields.contains(&"certificate_file".to_owned()),
            "{fields:?}"
        );
    }

    #[test]
    fn the_address_record_carries_the_public_address_when_it_is_known() {
        let mut answers = domain();
        let a_record = |answers: &SetupAnswers| {
            let plan = answers
                .check(&Config::default())
                .delegation
                .expect("a plan");
            let record = plan
                .records
                .into_iter()
                .find(|r| r.kind == "A")
                .expect("an A record");
            record.value
        };
        assert!(
            a_record(&answers).starts_with('<'),
            "a placeholder while unknown"
        );
        answers.public_ipv4 = " 203.0.113.7 ".to_owned();
        assert_eq!(a_record(&answers), "203.0.113.7");
        answers.public_ipv4 = "2001:db8::1".to_owned();
        let check = answers.check(&Config::default());
        assert_eq!(check.problems.len(), 1, "{:?}", check.problems);
        assert_eq!(check.problems[0].field, "public_ipv4");
    }

    #[test]
    fn each_warning_names_the_answer_it_is_about() {
        let mut answers = domain();
        answers.tls_mode = TlsMode::SelfSigned;
        answers.registration = RegistrationMode::Open;
        let fields: Vec<String> = answers
            .check(&Config::default())
            .warnings
            .into_iter()
            .map(|w| w.field)
            .collect();
        assert_eq!(fields, ["server_name", "tls_mode", "registration"]);
    }

    #[test]
    fn the_admin_needs_a_valid_name_and_a_fair_password() {
        let check = check_admin("Alice", "correct horse battery staple", "example.org");
        assert!(check.problems.is_empty(), "{:?}", check.problems);
        assert_eq!(check.user_id, "@alice:example.org");
        let check = check_admin("al ice", "password1", "example.org");
        let fields: Vec<&str> = check.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["username", "password"]);
        assert!(!check.strength.acceptable);
    }

    #[test]
    fn the_settings_page_gets_every_problem_of_the_text() {
        let problems = check_config_text("server_name = \"a.test\"\nbogus = 1\n", "a.test", true);
        assert_eq!(problems.len(), 1, "{problems:?}");
        let text = Config::default()
            .to_commented_toml()
            .replace("\"localhost\"", "\"b.test\"");
        let problems = check_config_text(&text, "localhost", true);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].field, "server_name");
        assert!(check_config_text(&text, "localhost", false).is_empty());
    }

    #[test]
    fn a_lan_server_has_no_federation_listener_and_any_valid_name() {
        let mut answers = domain();
        answers.kind = ServerKind::Lan;
        answers.server_name = "home.lan".to_owned();
        let config = answers.apply(&Config::default());
        assert_eq!(config.listen.federation, "");
        let check = answers.check(&Config::default());
        assert!(check.problems.is_empty(), "{:?}", check.problems);
        assert!(check.delegation.is_none());
        assert!(
            check
                .warnings
                .iter()
                .any(|w| w.field == "kind" && w.message.contains("LAN only"))
        );
    }
}
