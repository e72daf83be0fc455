//! The `.well-known` documents.

use axum::{Json, extract::State};
use serde_json::{Value, json};

use crate::{
    error::{Error, Result},
    service::Services,
};

/// `GET /.well-known/matrix/client`
pub(crate) async fn well_known_client(State(services): State<Services>) -> Result<Json<Value>> {
    let base_url = &services.config.well_known.client_base_url;
    if base_url.is_empty() {
        return Err(Error::not_found(
            "No client discovery information is configured.",
        ));
    }
    Ok(Json(json!({ "m.homeserver": { "base_url": base_url } })))
}

/// `GET /.well-known/matrix/server`
pub(crate) async fn well_known_server(State(services): State<Services>) -> Result<Json<Value>> {
    let server = &services.config.well_known.server;
    if server.is_empty() {
        return Err(Error::not_found("No server delegation is configured."));
    }
    Ok(Json(json!({ "m.server": server })))
}
