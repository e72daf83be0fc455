//! The first-run setup API, under `/_kith/setup/v1/`: what the wizard calls. It opens with
//! the setup token printed at the first start (the one-time setup link), until an admin
//! exists; an admin's access token opens it too. The rules are server-core's own
//! ([`SetupAnswers::check`]); the UI repeats none of them.

use std::sync::Arc;

use axum::{
    Extension, Json, Router,
    extract::{FromRequestParts, RawQuery, State},
    http::request::Parts,
    routing::{get, post},
};
use serde::Deserialize;

use super::{query_value, to_json};
use crate::{
    api::extract::JsonBody,
    error::{Error, ErrorKind, Result},
    service::{
        Services,
        dashboard::Runtime,
        setup::{self, Applied, SetupAnswers, SetupCheck, SetupState, UiLogin},
        users::LoginRequest,
    },
};

/// The setup routes.
pub(super) fn routes() -> Router<Services> {
    Router::new()
        .route("/_kith/setup/v1/state", get(state))
        .route("/_kith/setup/v1/answers", get(answers))
        .route("/_kith/setup/v1/check", post(check))
        .route("/_kith/setup/v1/check_admin", post(check_admin))
        .route("/_kith/setup/v1/port_mapping", post(port_mapping))
        .route("/_kith/setup/v1/federation_check", get(federation_check))
        .route("/_kith/setup/v1/apply", post(apply))
        .route("/_kith/setup/v1/admin", post(create_admin))
}

/// The caller may use the setup API: the setup token while no admin exists, or an admin.
pub(super) struct SetupCaller {
    /// Whether it is the setup token (not an admin's login).
    pub by_setup_token: bool,
}

impl FromRequestParts<Services> for SetupCaller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, services: &Services) -> Result<Self> {
        let token = crate::api::extract::access_token(parts).ok_or_else(|| {
            Error::new(
                ErrorKind::MissingToken,
                "Open the setup link printed when Kith first started, or log in as an admin.",
            )
        })?;
        let runtime = runtime(parts)?;
        if runtime.setup_allowed(services, &token).await? {
            return Ok(Self {
                by_setup_token: true,
            });
        }
        if runtime.setup_token.as_deref() == Some(token.as_str()) {
            return Err(Error::forbidden(
                "Setup is finished: an admin exists. Log in as the admin.",
            ));
        }
        let session = services.users.authenticate(&token).await?;
        super::require_admin(&session)?;
        Ok(Self {
            by_setup_token: false,
        })
    }
}

fn runtime(parts: &Parts) -> Result<Arc<Runtime>> {
    parts
        .extensions
        .get::<Arc<Runtime>>()
        .cloned()
        .ok_or_else(|| Error::internal("no runtime in the request"))
}

/// `GET /_kith/setup/v1/state`: whether the wizard must run. No authentication: it tells
/// only what the UI's first screen needs.
async fn state(
    State(services): State<Services>,
    Extension(runtime): Extension<Arc<Runtime>>,
) -> Result<Json<serde_json::Value>> {
    let needs_setup = runtime.setup_token.is_some() && !services.dashboard.has_admin().await?;
    to_json(&SetupState {
        needs_setup,
        server_name: services.identity.server_name.to_string(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    })
}

/// `GET /_kith/setup/v1/answers`: the answers the running config stands for, where the
/// wizard starts.
async fn answers(
    State(services): State<Services>,
    _caller: SetupCaller,
) -> Result<Json<serde_json::Value>> {
    to_json(&SetupAnswers::from_config(&services.config))
}

/// `POST /_kith/setup/v1/check`: every problem with the answers, the warnings, and what to
/// publish in DNS.
async fn check(
    State(services): State<Services>,
    _caller: SetupCaller,
    JsonBody(answers): JsonBody<SetupAnswers>,
) -> Result<Json<serde_json::Value>> {
    let check: SetupCheck = answers.check(&services.config);
    to_json(&check)
}

#[derive(Deserialize)]
struct AdminAnswers {
    #[serde(default)]
    username: String,
    password: String,
    /// The server name the account will be on (the wizard's answer; default: the
    /// server's name now).
    #[serde(default)]
    server_name: Option<String>,
}

/// `POST /_kith/setup/v1/check_admin`: whether the first admin's name and password will
/// do, and how strong the password is, for the meter. Pure, so no authentication.
async fn check_admin(
    State(services): State<Services>,
    JsonBody(body): JsonBody<AdminAnswers>,
) -> Result<Json<serde_json::Value>> {
    let server_name = body
        .server_name
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| services.identity.server_name.to_string());
    to_json(&setup::check_admin(
        &body.username,
        &body.password,
        server_name.trim(),
    ))
}

#[derive(Deserialize)]
struct PortsBody {
    /// `[external, internal]` TCP ports.
    ports: Vec<(u16, u16)>,
}

/// `POST /_kith/setup/v1/port_mapping`: asks the home router (UPnP) to forward the ports
/// the wizard's answers need, and answers with what it did.
async fn port_mapping(
    State(services): State<Services>,
    _caller: SetupCaller,
    JsonBody(body): JsonBody<PortsBody>,
) -> Result<Json<serde_json::Value>> {
    super::map_ports(&services, body.ports).await
}

/// `GET /_kith/setup/v1/federation_check?server_name=`: the connectivity checker's report,
/// for the wizard's "Check now".
async fn federation_check(
    State(services): State<Services>,
    _caller: SetupCaller,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>> {
    let server_name = query_value(query.as_deref(), "server_name")
        .ok_or_else(|| Error::invalid_param("Which server name? Add ?server_name=."))?;
    to_json(&services.health.check(&server_name).await?)
}

/// `POST /_kith/setup/v1/apply`: checks the answers, writes them into the config file, and
/// restarts the server to take them. The server name cannot change once accounts exist.
async fn apply(
    State(services): State<Services>,
    Extension(runtime): Extension<Arc<Runtime>>,
    _caller: SetupCaller,
    JsonBody(answers): JsonBody<SetupAnswers>,
) -> Result<Json<serde_json::Value>> {
    let accounts_exist = services.users.count().await? > 0;
    let config = answers.config_to_apply(
        &services.config,
        services.identity.server_name.as_str(),
        accounts_exist,
    )?;
    let path = runtime.config_file.clone().ok_or_else(|| {
        Error::forbidden("This server was started without a config file, so it cannot write one.")
    })?;
    let written = path.clone();
    tokio::task::spawn_blocking(move || config.write_to(&written))
        .await
        .map_err(Error::internal)??;
    tracing::info!(config_file = %path.display(), "the setup wrote a new config; restarting");
    runtime.restart.notify_one();
    to_json(&Applied {
        config_file: path.display().to_string(),
        restarting: true,
    })
}

#[derive(Deserialize)]
struct AdminBody {
    username: String,
    password: String,
}

/// `POST /_kith/setup/v1/admin`: makes the first admin (with the setup token only) and
/// logs the UI in as that admin. The setup token stops working.
async fn create_admin(
    State(services): State<Services>,
    Extension(runtime): Extension<Arc<Runtime>>,
    caller: SetupCaller,
    JsonBody(body): JsonBody<AdminBody>,
) -> Result<Json<serde_json::Value>> {
    if !caller.by_setup_token {
        return Err(Error::forbidden(
            "An admin exists: create accounts from the dashboard's Users page.",
        ));
    }
    let user = services
        .dashboard
        .create_user(&body.username, &body.password, true)
        .await?;
    let user_id = ruma::UserId::parse(user.user_id.as_str()).map_err(Error::internal)?;
    let tokens = services
        .users
        .start_session(
            &user_id,
            LoginRequest {
                initial_device_display_name: Some("Kith dashboard".to_owned()),
                ..LoginRequest::default()
            },
        )
        .await?;
    runtime.forget_setup_token();
    to_json(&UiLogin {
        user_id: tokens.user_id.to_string(),
        access_token: tokens.access_token,
        device_id: tokens.device_id.to_string(),
    })
}
