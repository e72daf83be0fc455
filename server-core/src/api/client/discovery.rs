//! Server discovery: `/versions` and `/capabilities`.

use axum::{Json, extract::State};
use serde_json::{Value, json};

use crate::{
    api::extract::AuthedUser, config::SUPPORTED_ROOM_VERSIONS, error::Result, service::Services,
};

/// `GET /_matrix/client/versions`
///
/// The spec versions whose endpoints clients rely on here. Kith implements the v1.x
/// Client-Server core; areas still missing answer `M_UNRECOGNIZED` rather than pretending.
pub(crate) async fn get_supported_versions() -> Json<Value> {
    Json(json!({
        "versions": ["v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11"],
        "unstable_features": {},
    }))
}

/// `GET /_matrix/client/v3/capabilities`
pub(crate) async fn get_capabilities(
    State(services): State<Services>,
    _user: AuthedUser,
) -> Result<Json<Value>> {
    let available: serde_json::Map<String, Value> = SUPPORTED_ROOM_VERSIONS
        .iter()
        .map(|v| ((*v).to_owned(), json!("stable")))
        .collect();
    Ok(Json(json!({
        "capabilities": {
            "m.room_versions": { "default": services.config.rooms.default_version, "available": available },
            "m.change_password": { "enabled": true },
            "m.set_displayname": { "enabled": true },
            "m.set_avatar_url": { "enabled": true },
            "m.3pid_changes": { "enabled": false },
        }
    })))
}
