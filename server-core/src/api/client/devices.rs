//! Devices (spec: client-server-api/_index.md, "Device management").

use axum::{Json, extract::State};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    api::extract::{AuthedUser, JsonBody, PathParams},
    error::Result,
    service::{Services, uiaa::PASSWORD},
    storage::Device,
};

fn device_json(device: &Device) -> Value {
    json!({
        "device_id": device.device_id,
        "display_name": device.display_name,
        "last_seen_ts": device.last_seen_ts,
        "last_seen_ip": device.last_seen_ip,
    })
}

/// `GET /_matrix/client/v3/devices`
pub(crate) async fn get_devices(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
) -> Result<Json<Value>> {
    let devices = services.users.devices(&session.user_id).await?;
    Ok(Json(
        json!({ "devices": devices.iter().map(device_json).collect::<Vec<_>>() }),
    ))
}

/// `GET /_matrix/client/v3/devices/{deviceId}`
pub(crate) async fn get_device(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(device_id): PathParams<String>,
) -> Result<Json<Value>> {
    Ok(Json(device_json(
        &services.users.device(&session.user_id, &device_id).await?,
    )))
}

#[derive(Deserialize)]
pub(crate) struct UpdateBody {
    display_name: Option<String>,
}

/// `PUT /_matrix/client/v3/devices/{deviceId}`
pub(crate) async fn update_device(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(device_id): PathParams<String>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> Result<Json<Value>> {
    services
        .users
        .rename_device(&session.user_id, &device_id, body.display_name)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub(crate) struct DeleteBody {
    auth: Option<Value>,
}

/// `DELETE /_matrix/client/v3/devices/{deviceId}`
///
/// Needs the password through UIA.
pub(crate) async fn delete_device(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(device_id): PathParams<String>,
    JsonBody(body): JsonBody<DeleteBody>,
) -> Result<Json<Value>> {
    services.users.device(&session.user_id, &device_id).await?;
    services
        .uiaa
        .check(
            body.auth.as_ref(),
            &[vec![PASSWORD]],
            Some(&session.user_id),
        )
        .await?;
    let removed = services
        .users
        .delete_devices(&session.user_id, &[device_id])
        .await?;
    announce_removed(&services, &session.user_id, &removed).await;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub(crate) struct DeleteManyBody {
    devices: Vec<String>,
    auth: Option<Value>,
}

/// `POST /_matrix/client/v3/delete_devices`
pub(crate) async fn delete_devices(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    JsonBody(body): JsonBody<DeleteManyBody>,
) -> Result<Json<Value>> {
    services
        .uiaa
        .check(
            body.auth.as_ref(),
            &[vec![PASSWORD]],
            Some(&session.user_id),
        )
        .await?;
    let removed = services
        .users
        .delete_devices(&session.user_id, &body.devices)
        .await?;
    announce_removed(&services, &session.user_id, &removed).await;
    Ok(Json(json!({})))
}

/// Tells the other servers in the user's rooms that these devices are gone. Best effort:
/// the deletion is stored, and a failure to queue the news is only logged.
pub(super) async fn announce_removed(
    services: &Services,
    user_id: &ruma::UserId,
    removed: &crate::service::users::RemovedDevices,
) {
    if let Err(e) = services.e2ee.announce_removed(user_id, removed).await {
        tracing::warn!(%user_id, error = %e, "deleted devices not announced to other servers");
    }
}
