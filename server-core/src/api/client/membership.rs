//! Room creation and membership (spec: client-server-api/_index.md, "Rooms", "Room membership").

use axum::{
    Json,
    extract::{RawQuery, State},
};
use ruma::{OwnedRoomId, OwnedServerName, ServerName};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{
    api::{
        extract::{AuthedUser, JsonBody, PathParams},
        parse_alias, parse_room_id, parse_user_id,
    },
    error::{Error, Result},
    service::{Services, rooms::CreateRoom},
};

#[derive(Deserialize)]
pub(crate) struct CreateRoomBody {
    visibility: Option<String>,
    room_alias_name: Option<String>,
    name: Option<String>,
    topic: Option<String>,
    #[serde(default)]
    invite: Vec<String>,
    room_version: Option<String>,
    creation_content: Option<Map<String, Value>>,
    #[serde(default)]
    initial_state: Vec<InitialState>,
    preset: Option<String>,
    #[serde(default)]
    is_direct: bool,
    power_level_content_override: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct InitialState {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    state_key: String,
    content: Value,
}

/// `POST /_matrix/client/v3/createRoom`
pub(crate) async fn create_room(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    JsonBody(body): JsonBody<CreateRoomBody>,
) -> Result<Json<Value>> {
    let invite = body
        .invite
        .iter()
        .map(|u| parse_user_id(u))
        .collect::<Result<Vec<_>>>()?;
    let request = CreateRoom {
        preset: body.preset,
        public: body.visibility.as_deref() == Some("public"),
        room_version: body.room_version,
        creation_content: body.creation_content,
        initial_state: body
            .initial_state
            .into_iter()
            .map(|s| (s.kind, s.state_key, s.content))
            .collect(),
        power_level_content_override: body.power_level_content_override,
        invite,
        name: body.name,
        topic: body.topic,
        room_alias_name: body.room_alias_name,
        is_direct: body.is_direct,
    };
    let room_id = services.rooms.create(&session.user_id, request).await?;
    Ok(Json(json!({ "room_id": room_id })))
}

#[derive(Deserialize, Default)]
pub(crate) struct ReasonBody {
    reason: Option<String>,
}

/// `POST /_matrix/client/v3/rooms/{roomId}/join`
pub(crate) async fn join_room_by_id(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(room_id): PathParams<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<Value>> {
    let room_id = parse_room_id(&room_id)?;
    services
        .rooms
        .join(&session.user_id, &room_id, body.reason.as_deref(), &[])
        .await?;
    Ok(Json(json!({ "room_id": room_id })))
}

/// The servers a client names to join through: `via`, and the deprecated `server_name`
/// (spec: client-server-api, `POST /join/{roomIdOrAlias}`), each repeatable.
fn via_servers(query: Option<&str>) -> Vec<OwnedServerName> {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| {
            pair.strip_prefix("via=")
                .or_else(|| pair.strip_prefix("server_name="))
        })
        .filter_map(|s| ServerName::parse(crate::api::percent_decoded(s)).ok())
        .collect()
}

/// The room a `roomIdOrAlias` names and the servers to reach it through: `via` (and
/// `server_name`) from the query, and for another server's alias, the servers that
/// server names when asked (spec: "GET /directory/room/{roomAlias}").
async fn room_and_servers(
    services: &Services,
    room: &str,
    query: Option<&str>,
) -> Result<(OwnedRoomId, Vec<OwnedServerName>)> {
    let mut via = via_servers(query);
    let room_id = if room.starts_with('#') {
        let alias = parse_alias(room)?;
        let (room_id, servers) = if alias.server_name() == &*services.identity.server_name {
            services.rooms.resolve_alias(&alias).await?
        } else {
            services.federation.query_directory(&alias).await?
        };
        via.extend(servers);
        room_id
    } else {
        parse_room_id(room)?
    };
    Ok((room_id, via))
}

/// `POST /_matrix/client/v3/join/{roomIdOrAlias}`
pub(crate) async fn join_room_by_id_or_alias(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(room): PathParams<String>,
    RawQuery(query): RawQuery,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<Value>> {
    let (room_id, via) = room_and_servers(&services, &room, query.as_deref()).await?;
    services
        .rooms
        .join(&session.user_id, &room_id, body.reason.as_deref(), &via)
        .await?;
    Ok(Json(json!({ "room_id": room_id })))
}

/// `POST /_matrix/client/v3/knock/{roomIdOrAlias}`
pub(crate) async fn knock_room(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(room): PathParams<String>,
    RawQuery(query): RawQuery,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<Value>> {
    let (room_id, via) = room_and_servers(&services, &room, query.as_deref()).await?;
    services
        .rooms
        .knock(&session.user_id, &room_id, body.reason.as_deref(), &via)
        .await?;
    Ok(Json(json!({ "room_id": room_id })))
}

#[derive(Deserialize)]
pub(crate) struct TargetBody {
    user_id: String,
    reason: Option<String>,
}

/// `POST /_matrix/client/v3/rooms/{roomId}/invite`
pub(crate) async fn invite_user(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(room_id): PathParams<String>,
    JsonBody(body): JsonBody<TargetBody>,
) -> Result<Json<Value>> {
    let (room_id, target) = (parse_room_id(&room_id)?, parse_user_id(&body.user_id)?);
    services
        .rooms
        .ensure_joined(&session.user_id, &room_id)
        .await?;
    services
        .rooms
        .invite(&session.user_id, &room_id, &target, body.reason.as_deref())
        .await?;
    Ok(Json(json!({})))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/leave`
pub(crate) async fn leave_room(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(room_id): PathParams<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<Value>> {
    services
        .rooms
        .leave(
            &session.user_id,
            &parse_room_id(&room_id)?,
            body.reason.as_deref(),
        )
        .await?;
    Ok(Json(json!({})))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/forget`
pub(crate) async fn forget_room(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(room_id): PathParams<String>,
) -> Result<Json<Value>> {
    services
        .rooms
        .forget(&session.user_id, &parse_room_id(&room_id)?)
        .await?;
    Ok(Json(json!({})))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/kick`
pub(crate) async fn kick_user(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(room_id): PathParams<String>,
    JsonBody(body): JsonBody<TargetBody>,
) -> Result<Json<Value>> {
    let (room_id, target) = (parse_room_id(&room_id)?, parse_user_id(&body.user_id)?);
    services
        .rooms
        .kick(&session.user_id, &room_id, &target, body.reason.as_deref())
        .await?;
    Ok(Json(json!({})))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/ban`
pub(crate) async fn ban_user(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(room_id): PathParams<String>,
    JsonBody(body): JsonBody<TargetBody>,
) -> Result<Json<Value>> {
    let (room_id, target) = (parse_room_id(&room_id)?, parse_user_id(&body.user_id)?);
    services
        .rooms
        .ban(&session.user_id, &room_id, &target, body.reason.as_deref())
        .await?;
    Ok(Json(json!({})))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/unban`
pub(crate) async fn unban_user(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(room_id): PathParams<String>,
    JsonBody(body): JsonBody<TargetBody>,
) -> Result<Json<Value>> {
    let (room_id, target) = (parse_room_id(&room_id)?, parse_user_id(&body.user_id)?);
    services
        .rooms
        .unban(&session.user_id, &room_id, &target, body.reason.as_deref())
        .await?;
    Ok(Json(json!({})))
}

/// `GET /_matrix/client/v3/joined_rooms`
pub(crate) async fn joined_rooms(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
) -> Result<Json<Value>> {
    Ok(Json(
        json!({ "joined_rooms": services.rooms.joined_rooms(&session.user_id).await? }),
    ))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/members`
///
/// The member events of the room as the user may see it.
pub(crate) async fn get_member_events(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(room_id): PathParams<String>,
) -> Result<Json<Value>> {
    let room_id = parse_room_id(&room_id)?;
    let chunk: Vec<Value> = services
        .rooms
        .state_for(&session.user_id, &room_id)
        .await?
        .iter()
        .filter(|p| p.kind.to_string() == "m.room.member")
        .map(|p| crate::pdu::client_event(p, json!({}), true))
        .collect();
    Ok(Json(json!({ "chunk": chunk })))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/joined_members`
pub(crate) async fn joined_members(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(room_id): PathParams<String>,
) -> Result<Json<Value>> {
    let room_id = parse_room_id(&room_id)?;
    services
        .rooms
        .ensure_joined(&session.user_id, &room_id)
        .await?;
    let mut joined = Map::new();
    for pdu in services.rooms.current_state(&room_id).await? {
        let content = pdu.content_value();
        if pdu.kind.to_string() == "m.room.member"
            && content.get("membership").and_then(Value::as_str) == Some("join")
        {
            let key = pdu
                .state_key
                .clone()
                .ok_or_else(|| Error::internal("member event without state key"))?;
            joined.insert(key, json!({ "display_name": content.get("displayname"), "avatar_url": content.get("avatar_url") }));
        }
    }
    Ok(Json(json!({ "joined": joined })))
}
