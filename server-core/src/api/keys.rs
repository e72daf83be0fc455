//! `GET /_matrix/key/v2/server` and the `.well-known` documents.

use axum::{Json, extract::State};
use base64::Engine;
use ruma::{CanonicalJsonValue, MilliSecondsSinceUnixEpoch, signatures::sign_json};
use serde_json::{Value, json};

use crate::{
    error::{Error, Result},
    service::Services,
};

/// How long other servers may cache our key response.
const VALIDITY_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// `GET /_matrix/key/v2/server`
///
/// Our signing key, signed by itself (spec: server-server-api.md, "Publishing Keys").
pub(crate) async fn get_server_keys(State(services): State<Services>) -> Result<Json<Value>> {
    let identity = &services.identity;
    let key_id = format!("ed25519:{}", identity.signing_key.version());
    let public =
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(identity.signing_key.public_key());
    let valid_until = u64::from(MilliSecondsSinceUnixEpoch::now().get()) + VALIDITY_MS;
    let body = json!({
        "server_name": identity.server_name,
        "verify_keys": { key_id: { "key": public } },
        "old_verify_keys": {},
        "valid_until_ts": valid_until,
    });
    let mut object = match CanonicalJsonValue::try_from(body) {
        Ok(CanonicalJsonValue::Object(object)) => object,
        _ => return Err(Error::internal("key response is not an object")),
    };
    sign_json(
        identity.server_name.as_str(),
        &identity.signing_key,
        &mut object,
    )
    .map_err(Error::internal)?;
    Ok(Json(serde_json::to_value(object)?))
}

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
