//! End-to-end encryption endpoints (spec: client-server-api/modules/end_to_end_encryption.md,
//! send_to_device.md): keys, cross-signing, to-device messages and key backup.

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::{FromRequestParts, RawPathParams, State, rejection::RawPathParamsRejection},
    http::request::Parts,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{
    api::extract::{AuthedUser, JsonBody, PathParams, QueryParams},
    error::{Error, Result},
    service::{
        Services,
        e2ee::{CrossSigningUpload, KeysUpload, RoomKeyUpload},
        sync::SyncToken,
        uiaa::PASSWORD,
    },
};

#[derive(Deserialize)]
pub(crate) struct UploadBody {
    device_keys: Option<Value>,
    #[serde(default)]
    one_time_keys: Map<String, Value>,
    #[serde(default)]
    fallback_keys: Map<String, Value>,
}

/// `POST /_matrix/client/v3/keys/upload`
pub(crate) async fn upload_keys(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    JsonBody(body): JsonBody<UploadBody>,
) -> Result<Json<Value>> {
    let counts = services
        .e2ee
        .upload_keys(
            &session.user_id,
            session.device_id.as_str(),
            KeysUpload {
                device_keys: body.device_keys,
                one_time_keys: body.one_time_keys,
                fallback_keys: body.fallback_keys,
            },
        )
        .await?;
    Ok(Json(json!({ "one_time_key_counts": counts })))
}

/// How long keys/query and keys/claim wait for other servers when the client does not say
/// (spec: `timeout`, "10 seconds is the recommended default").
const DEFAULT_REMOTE_TIMEOUT_MS: u64 = 10_000;

fn remote_timeout(timeout_ms: Option<u64>) -> std::time::Duration {
    std::time::Duration::from_millis(timeout_ms.unwrap_or(DEFAULT_REMOTE_TIMEOUT_MS).min(60_000))
}

#[derive(Deserialize)]
pub(crate) struct QueryBody {
    device_keys: BTreeMap<String, Vec<String>>,
    timeout: Option<u64>,
}

/// `POST /_matrix/client/v3/keys/query`
pub(crate) async fn query_keys(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    JsonBody(body): JsonBody<QueryBody>,
) -> Result<Json<Value>> {
    Ok(Json(
        services
            .e2ee
            .query_keys(
                &session.user_id,
                body.device_keys,
                remote_timeout(body.timeout),
            )
            .await?,
    ))
}

#[derive(Deserialize)]
pub(crate) struct ClaimBody {
    one_time_keys: BTreeMap<String, BTreeMap<String, String>>,
    timeout: Option<u64>,
}

/// `POST /_matrix/client/v3/keys/claim`
pub(crate) async fn claim_keys(
    State(services): State<Services>,
    AuthedUser(_session): AuthedUser,
    JsonBody(body): JsonBody<ClaimBody>,
) -> Result<Json<Value>> {
    Ok(Json(
        services
            .e2ee
            .claim_keys(body.one_time_keys, remote_timeout(body.timeout))
            .await?,
    ))
}

#[derive(Deserialize)]
pub(crate) struct ChangesQuery {
    from: String,
    to: String,
}

/// `GET /_matrix/client/v3/keys/changes`
pub(crate) async fn get_key_changes(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    QueryParams(query): QueryParams<ChangesQuery>,
) -> Result<Json<Value>> {
    let from = SyncToken::parse(&query.from)?;
    let to = SyncToken::parse(&query.to)?;
    let updates = services
        .e2ee
        .device_list_updates(&session.user_id, from.pos, to.pos.max(from.pos))
        .await?;
    Ok(Json(
        json!({ "changed": updates.changed, "left": updates.left }),
    ))
}

#[derive(Deserialize)]
pub(crate) struct CrossSigningBody {
    master_key: Option<Value>,
    self_signing_key: Option<Value>,
    user_signing_key: Option<Value>,
    auth: Option<Value>,
}

/// `POST /_matrix/client/v3/keys/device_signing/upload`
///
/// UIA (the password) unless this is the first master key or a repeat of the stored keys.
pub(crate) async fn upload_cross_signing_keys(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    JsonBody(body): JsonBody<CrossSigningBody>,
) -> Result<Json<Value>> {
    let upload = CrossSigningUpload {
        master_key: body.master_key,
        self_signing_key: body.self_signing_key,
        user_signing_key: body.user_signing_key,
    };
    let needs_auth = services
        .e2ee
        .cross_signing_upload_needs_auth(&session.user_id, &upload)
        .await?;
    if needs_auth {
        services
            .uiaa
            .check(
                body.auth.as_ref(),
                &[vec![PASSWORD]],
                Some(&session.user_id),
            )
            .await?;
    }
    services
        .e2ee
        .upload_cross_signing_keys(&session.user_id, upload, needs_auth)
        .await?;
    Ok(Json(json!({})))
}

/// `POST /_matrix/client/v3/keys/signatures/upload`
pub(crate) async fn upload_signatures(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    JsonBody(body): JsonBody<BTreeMap<String, BTreeMap<String, Value>>>,
) -> Result<Json<Value>> {
    Ok(Json(
        services
            .e2ee
            .upload_signatures(&session.user_id, body)
            .await?,
    ))
}

#[derive(Deserialize)]
pub(crate) struct ToDeviceBody {
    messages: BTreeMap<String, BTreeMap<String, Value>>,
}

/// `PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}`
pub(crate) async fn send_to_device(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams((event_type, txn_id)): PathParams<(String, String)>,
    JsonBody(body): JsonBody<ToDeviceBody>,
) -> Result<Json<Value>> {
    services
        .e2ee
        .send_to_device(
            &session.user_id,
            session.device_id.as_str(),
            &txn_id,
            &event_type,
            body.messages,
        )
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub(crate) struct BackupVersionBody {
    algorithm: String,
    auth_data: Value,
    version: Option<String>,
}

/// `POST /_matrix/client/v3/room_keys/version`
pub(crate) async fn create_backup_version(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    JsonBody(body): JsonBody<BackupVersionBody>,
) -> Result<Json<Value>> {
    let version = services
        .e2ee
        .create_backup(&session.user_id, &body.algorithm, &body.auth_data)
        .await?;
    Ok(Json(json!({ "version": version })))
}

/// `GET /_matrix/client/v3/room_keys/version`: the current backup.
pub(crate) async fn get_latest_backup_version(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
) -> Result<Json<Value>> {
    Ok(Json(
        services.e2ee.backup_info(&session.user_id, None).await?,
    ))
}

/// `GET /_matrix/client/v3/room_keys/version/{version}`
pub(crate) async fn get_backup_version(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(version): PathParams<String>,
) -> Result<Json<Value>> {
    Ok(Json(
        services
            .e2ee
            .backup_info(&session.user_id, Some(&version))
            .await?,
    ))
}

/// `PUT /_matrix/client/v3/room_keys/version/{version}`
pub(crate) async fn update_backup_version(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(version): PathParams<String>,
    JsonBody(body): JsonBody<BackupVersionBody>,
) -> Result<Json<Value>> {
    services
        .e2ee
        .update_backup(
            &session.user_id,
            &version,
            &body.algorithm,
            &body.auth_data,
            body.version.as_deref(),
        )
        .await?;
    Ok(Json(json!({})))
}

/// `DELETE /_matrix/client/v3/room_keys/version/{version}`
pub(crate) async fn delete_backup_version(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(version): PathParams<String>,
) -> Result<Json<Value>> {
    services
        .e2ee
        .delete_backup(&session.user_id, &version)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub(crate) struct VersionQuery {
    version: String,
}

/// Room and session from the three path shapes of `/room_keys/keys` (none, a room, or a
/// room and a session).
pub(crate) struct KeysPath {
    room_id: Option<String>,
    session_id: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for KeysPath {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        let mut path = KeysPath {
            room_id: None,
            session_id: None,
        };
        match RawPathParams::from_request_parts(parts, state).await {
            Ok(params) => {
                for (name, value) in &params {
                    match name {
                        "room_id" => path.room_id = Some(value.to_owned()),
                        "session_id" => path.session_id = Some(value.to_owned()),
                        _ => {}
                    }
                }
            }
            // A route without parameters has none to give; that is the "all keys" shape.
            Err(RawPathParamsRejection::MissingPathParams(_)) => {}
            // Anything else (a parameter that is not UTF-8) must not widen the request to
            // every key of the backup.
            Err(_) => {
                return Err(Error::invalid_param(
                    "The room or session ID in the path is not valid.",
                ));
            }
        }
        Ok(path)
    }
}

fn sessions_of(room_id: &str, sessions: &Value) -> Vec<RoomKeyUpload> {
    sessions
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(session_id, key)| RoomKeyUpload {
                    room_id: room_id.to_owned(),
                    session_id: session_id.clone(),
                    key: key.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `PUT /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]]?version=`
pub(crate) async fn put_room_keys(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    path: KeysPath,
    QueryParams(query): QueryParams<VersionQuery>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>> {
    let bad = || Error::bad_json("The body does not have the shape of room keys.");
    let keys = match (&path.room_id, &path.session_id) {
        (Some(room), Some(session_id)) => vec![RoomKeyUpload {
            room_id: room.clone(),
            session_id: session_id.clone(),
            key: body,
        }],
        (Some(room), None) => sessions_of(room, body.get("sessions").ok_or_else(bad)?),
        _ => body
            .get("rooms")
            .and_then(Value::as_object)
            .ok_or_else(bad)?
            .iter()
            .flat_map(|(room, content)| {
                sessions_of(room, content.get("sessions").unwrap_or(&Value::Null))
            })
            .collect(),
    };
    Ok(Json(
        services
            .e2ee
            .put_room_keys(&session.user_id, &query.version, keys)
            .await?,
    ))
}

/// `GET /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]]?version=`
pub(crate) async fn get_room_keys(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    path: KeysPath,
    QueryParams(query): QueryParams<VersionQuery>,
) -> Result<Json<Value>> {
    Ok(Json(
        services
            .e2ee
            .get_room_keys(
                &session.user_id,
                &query.version,
                path.room_id.as_deref(),
                path.session_id.as_deref(),
            )
            .await?,
    ))
}

/// `DELETE /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]]?version=`
pub(crate) async fn delete_room_keys(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    path: KeysPath,
    QueryParams(query): QueryParams<VersionQuery>,
) -> Result<Json<Value>> {
    Ok(Json(
        services
            .e2ee
            .delete_room_keys(
                &session.user_id,
                &query.version,
                path.room_id.as_deref(),
                path.session_id.as_deref(),
            )
            .await?,
    ))
}
