//! Kith's own API on the client listener: the admin API under `/_kith/admin/v1/` (server
//! admins only, `M_FORBIDDEN` otherwise), the first-run setup API under `/_kith/setup/v1/`
//! (`setup.rs`), and the web UI at `/_kith/` (`ui.rs`). Here: the federation checker,
//! health, delegation and port mapping; the dashboard's lists and actions are in
//! `dashboard.rs`.

pub(crate) mod dashboard;
pub mod setup;
mod ui;

use axum::{
    Json, Router,
    extract::{RawQuery, State},
    routing::get,
};
use serde_json::Value;

use super::{extract::AuthedUser, percent_decoded};
use crate::{
    error::{Error, Result},
    service::{Services, users::Session},
};

/// The admin routes.
pub(crate) fn routes() -> Router<Services> {
    Router::new()
        .merge(dashboard::routes())
        .merge(setup::routes())
        .merge(ui::routes())
        .route("/_kith/admin/v1/federation/check", get(check))
        .route(
            "/_kith/admin/v1/federation/health",
            get(health).post(check_health_now),
        )
        .route("/_kith/admin/v1/federation/delegation", get(delegation))
        .route(
            "/_kith/admin/v1/network/port_mapping",
            axum::routing::post(port_mapping),
        )
}

#[derive(serde::Deserialize, Default)]
struct PortMappingBody {
    /// `[external, internal]` TCP ports; default: the federation listener's port, and port
    /// 80 to the ACME challenge listener with HTTP-01.
    #[serde(default)]
    ports: Option<Vec<(u16, u16)>>,
}

/// `POST /_kith/admin/v1/network/port_mapping`: asks the home router (UPnP) to forward the
/// ports, and answers with what it did and the public address it has. Only on request:
/// opening ports is the user's decision.
async fn port_mapping(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    super::extract::JsonBody(body): super::extract::JsonBody<PortMappingBody>,
) -> Result<Json<Value>> {
    require_admin(&session)?;
    let config = &services.config;
    let ports = match body.ports {
        Some(ports) => ports,
        None => {
            let mut ports = Vec::new();
            if let Ok(addr) = config.listen.federation.parse::<std::net::SocketAddr>()
                && addr.port() != 0
            {
                ports.push((addr.port(), addr.port()));
                // TLS-ALPN-01 is always checked on port 443 (RFC 8737, section 3).
                if config.tls.mode == crate::config::TlsMode::Acme
                    && config.tls.acme_challenge == crate::config::AcmeChallenge::TlsAlpn01
                    && addr.port() != 443
                {
                    ports.push((443, addr.port()));
                }
            }
            if config.tls.mode == crate::config::TlsMode::Acme
                && config.tls.acme_challenge == crate::config::AcmeChallenge::Http01
                && let Ok(addr) = config.tls.acme_http_listen.parse::<std::net::SocketAddr>()
            {
                ports.push((80, addr.port()));
            }
            ports
        }
    };
    map_ports(&services, ports).await
}

/// Asks the router to forward `ports` (`[external, internal]`) and answers with its report.
pub(super) async fn map_ports(services: &Services, ports: Vec<(u16, u16)>) -> Result<Json<Value>> {
    if ports.is_empty() {
        return Err(Error::invalid_param(
            "There is no port to open: this server has no federation listener on a fixed port.",
        ));
    }
    let search = services.config.network.upnp_search_address.parse().ok();
    let report =
        crate::service::portmap::map_ports(&ports, search, std::time::Duration::from_secs(5))
            .await
            .map_err(|e| Error::new(crate::error::ErrorKind::BadGateway, e))?;
    to_json(&report)
}

/// The value of `name` in a query string, decoded.
pub(super) fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    query.unwrap_or_default().split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| percent_decoded(value))
    })
}

/// `GET /_kith/admin/v1/federation/delegation?public_host=&public_port=&ipv4=&ipv6=`:
/// what to publish in DNS and on the web so that other servers find this one. The host
/// and port default to the configured delegation (`well_known.server`) or the server name
/// and the federation listener's port.
async fn delegation(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>> {
    use crate::service::{
        delegation::{DelegationInput, plan},
        federation::discovery::{DEFAULT_PORT, split_host_port},
    };
    require_admin(&session)?;
    let query = query.as_deref();
    let config = &services.config;
    let listen_port = config
        .listen
        .federation
        .parse::<std::net::SocketAddr>()
        .map(|a| a.port())
        .unwrap_or(DEFAULT_PORT);
    let delegated = split_host_port(&config.well_known.server);
    let (name_host, _) = split_host_port(&config.server_name).unwrap_or_default();
    let public_host = query_value(query, "public_host")
        .or_else(|| delegated.as_ref().map(|(host, _)| host.clone()))
        .unwrap_or_else(|| name_host.clone());
    let public_port = match query_value(query, "public_port") {
        Some(port) => port
            .parse::<u16>()
            .map_err(|_| Error::invalid_param(format!("public_port `{port}` is not a port")))?,
        None => delegated.and_then(|(_, port)| port).unwrap_or(listen_port),
    };
    let address = |name: &str| -> Result<Option<std::net::IpAddr>> {
        query_value(query, name)
            .map(|ip| {
                ip.parse()
                    .map_err(|_| Error::invalid_param(format!("{name} `{ip}` is not an address")))
            })
            .transpose()
    };
    let input = DelegationInput {
        server_name: config.server_name.clone(),
        public_host: public_host.clone(),
        public_port,
        ipv4: address("ipv4")?,
        ipv6: address("ipv6")?,
        kith_answers_on_server_name_443: listen_port == 443
            && public_host.eq_ignore_ascii_case(&name_host),
        client_base_url: (!config.well_known.client_base_url.is_empty())
            .then(|| config.well_known.client_base_url.clone()),
    };
    to_json(&plan(&input).map_err(Error::invalid_param)?)
}

pub(super) fn require_admin(session: &Session) -> Result<()> {
    if session.admin {
        Ok(())
    } else {
        Err(Error::forbidden(
            "Only server admins may use the admin API.",
        ))
    }
}

/// Self-checks need a federation listener.
fn require_federation(services: &Services) -> Result<()> {
    if services.health.enabled() {
        Ok(())
    } else {
        Err(Error::not_found(
            "This server has no federation listener, so it does not check its federation.",
        ))
    }
}

pub(super) fn to_json(value: &impl serde::Serialize) -> Result<Json<Value>> {
    serde_json::to_value(value)
        .map(Json)
        .map_err(Error::internal)
}

/// `GET /_kith/admin/v1/federation/check?server_name=NAME`: the connectivity checker's
/// report on NAME (this server's own name when absent), in matrix-federation-tester's
/// JSON with Kith's additions.
async fn check(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>> {
    require_admin(&session)?;
    let named = query_value(query.as_deref(), "server_name");
    let server_name = named.unwrap_or_else(|| services.identity.server_name.to_string());
    let report = services.health.check(&server_name).await?;
    to_json(&report)
}

/// `GET /_kith/admin/v1/federation/health`: the latest self-check and the destinations that
/// do not accept what is sent to them.
async fn health(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
) -> Result<Json<Value>> {
    require_admin(&session)?;
    require_federation(&services)?;
    match services.health.last() {
        Some(health) => to_json(&health),
        None => Err(Error::not_found("No self-check has finished yet.")),
    }
}

/// `POST /_kith/admin/v1/federation/health`: runs the self-check now and answers with it.
async fn check_health_now(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
) -> Result<Json<Value>> {
    require_admin(&session)?;
    require_federation(&services)?;
    to_json(&services.health.check_now().await?)
}
