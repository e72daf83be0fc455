//! Kith's admin API on the client listener, under `/_kith/admin/v1/`: for server admins
//! only (`M_FORBIDDEN` otherwise). The federation checker and the federation health.

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
        .route("/_kith/admin/v1/federation/check", get(check))
        .route(
            "/_kith/admin/v1/federation/health",
            get(health).post(check_health_now),
        )
}

fn require_admin(session: &Session) -> Result<()> {
    if session.admin {
        Ok(())
    } else {
        Err(Error::forbidden(
            "Only server admins may use the admin API.",
        ))
    }
}

fn to_json(value: &impl serde::Serialize) -> Result<Json<Value>> {
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
    let named = query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("server_name=").map(percent_decoded));
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
    if !services.health.enabled() {
        return Err(Error::not_found(
            "This server has no federation listener, so it does not check its federation.",
        ));
    }
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
    if !services.health.enabled() {
        return Err(Error::not_found(
            "This server has no federation listener, so it does not check its federation.",
        ));
    }
    to_json(&services.health.check_now().await?)
}
