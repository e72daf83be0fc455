//! Typing, receipts, read markers, account data, tags, push rules and the user directory.

use std::time::Duration;

use axum::{Json, extract::State};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    api::{
        extract::{AuthedUser, JsonBody, PathParams, QueryParams},
        parse_room_id, parse_user_id,
    },
    error::{Error, Result},
    service::{Services, account::PushRuleBody, presence::PresenceState},
};

fn ensure_self(user_id: &str, session: &crate::service::users::Session) -> Result<()> {
    if parse_user_id(user_id)? == session.user_id {
        Ok(())
    } else {
        Err(Error::forbidden("You can only change your own data."))
    }
}

#[derive(Deserialize)]
pub(crate) struct TypingBody {
    typing: bool,
    timeout: Option<u64>,
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}`
///
/// Sets or clears the sender's typing notice in a room they have joined.
pub(crate) async fn create_typing_event(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams((room_id, user_id)): PathParams<(String, String)>,
    JsonBody(body): JsonBody<TypingBody>,
) -> Result<Json<Value>> {
    ensure_self(&user_id, &session)?;
    let room_id = parse_room_id(&room_id)?;
    services
        .rooms
        .ensure_joined(&session.user_id, &room_id)
        .await?;
    let timeout = body
        .typing
        .then(|| Duration::from_millis(body.timeout.unwrap_or(30_000)));
    services
        .typing
        .set(room_id.as_str(), session.user_id.as_str(), timeout);
    // spec: server-server-api.md, "Typing Notifications".
    services
        .rooms
        .share_typing(&room_id, session.user_id.as_str(), body.typing)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub(crate) struct PresenceBody {
    presence: String,
    status_msg: Option<String>,
}

/// `PUT /_matrix/client/v3/presence/{userId}/status` (spec: modules/presence.md): sets
/// the sender's own presence and status message.
pub(crate) async fn set_presence(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(user_id): PathParams<String>,
    JsonBody(body): JsonBody<PresenceBody>,
) -> Result<Json<Value>> {
    ensure_self(&user_id, &session)?;
    let state = PresenceState::parse(&body.presence)
        .ok_or_else(|| Error::invalid_param("presence must be online, unavailable or offline."))?;
    services
        .presence
        .set(&session.user_id, state, body.status_msg)
        .await?;
    Ok(Json(json!({})))
}

/// `GET /_matrix/client/v3/presence/{userId}/status`: a user's presence, for themselves
/// and for those who share a room with them.
pub(crate) async fn get_presence(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(user_id): PathParams<String>,
) -> Result<Json<Value>> {
    let user_id = parse_user_id(&user_id)?;
    Ok(Json(
        services.presence.get(&session.user_id, &user_id).await?,
    ))
}

#[derive(Deserialize, Default)]
pub(crate) struct ReceiptBody {
    thread_id: Option<String>,
}

/// `POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}`
pub(crate) async fn create_receipt(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams((room_id, receipt_type, event_id)): PathParams<(String, String, String)>,
    JsonBody(body): JsonBody<ReceiptBody>,
) -> Result<Json<Value>> {
    let room_id = parse_room_id(&room_id)?;
    services
        .rooms
        .ensure_joined(&session.user_id, &room_id)
        .await?;
    services
        .account
        .receipt(
            &session.user_id,
            &room_id,
            &receipt_type,
            &event_id,
            body.thread_id.as_deref(),
        )
        .await?;
    if receipt_type == "m.read" {
        share_receipt(
            &services,
            &session.user_id,
            &room_id,
            &event_id,
            body.thread_id.as_deref(),
        )
        .await?;
    }
    Ok(Json(json!({})))
}

/// Sends a public read receipt to the room's other servers (spec: server-server-api.md,
/// "Receipts"). Private receipts and read markers stay here.
async fn share_receipt(
    services: &Services,
    user_id: &ruma::UserId,
    room_id: &ruma::RoomId,
    event_id: &str,
    thread_id: Option<&str>,
) -> Result<()> {
    let mut data = json!({ "ts": ruma::MilliSecondsSinceUnixEpoch::now() });
    if let Some(thread_id) = thread_id {
        data["thread_id"] = json!(thread_id);
    }
    services
        .rooms
        .share_edu(
            room_id,
            "m.receipt",
            json!({ room_id.as_str(): { "m.read": { user_id.as_str(): {
                "event_ids": [event_id], "data": data,
            } } } }),
        )
        .await
}

#[derive(Deserialize)]
pub(crate) struct ReadMarkersBody {
    #[serde(rename = "m.fully_read")]
    fully_read: Option<String>,
    #[serde(rename = "m.read")]
    read: Option<String>,
    #[serde(rename = "m.read.private")]
    read_private: Option<String>,
}

/// `POST /_matrix/client/v3/rooms/{roomId}/read_markers`
pub(crate) async fn set_read_marker(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(room_id): PathParams<String>,
    JsonBody(body): JsonBody<ReadMarkersBody>,
) -> Result<Json<Value>> {
    let room_id = parse_room_id(&room_id)?;
    services
        .rooms
        .ensure_joined(&session.user_id, &room_id)
        .await?;
    for (kind, event_id) in [
        ("m.fully_read", body.fully_read),
        ("m.read", body.read),
        ("m.read.private", body.read_private),
    ] {
        if let Some(event_id) = event_id {
            services
                .account
                .receipt(&session.user_id, &room_id, kind, &event_id, None)
                .await?;
            if kind == "m.read" {
                share_receipt(&services, &session.user_id, &room_id, &event_id, None).await?;
            }
        }
    }
    Ok(Json(json!({})))
}

/// `GET /_matrix/client/v3/user/{userId}/account_data/{type}`
pub(crate) async fn get_global_account_data(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams((user_id, data_type)): PathParams<(String, String)>,
) -> Result<Json<Value>> {
    ensure_self(&user_id, &session)?;
    Ok(Json(
        services
            .account
            .get(&session.user_id, None, &data_type)
            .await?,
    ))
}

/// `PUT /_matrix/client/v3/user/{userId}/account_data/{type}`
pub(crate) async fn set_global_account_data(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams((user_id, data_type)): PathParams<(String, String)>,
    JsonBody(content): JsonBody<Value>,
) -> Result<Json<Value>> {
    ensure_self(&user_id, &session)?;
    services
        .account
        .set(&session.user_id, None, &data_type, content)
        .await?;
    Ok(Json(json!({})))
}

/// `GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`
pub(crate) async fn get_room_account_data(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams((user_id, room_id, data_type)): PathParams<(String, String, String)>,
) -> Result<Json<Value>> {
    ensure_self(&user_id, &session)?;
    let room_id = parse_room_id(&room_id)?;
    Ok(Json(
        services
            .account
            .get(&session.user_id, Some(&room_id), &data_type)
            .await?,
    ))
}

/// `PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`
pub(crate) async fn set_room_account_data(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams((user_id, room_id, data_type)): PathParams<(String, String, String)>,
    JsonBody(content): JsonBody<Value>,
) -> Result<Json<Value>> {
    ensure_self(&user_id, &session)?;
    let room_id = parse_room_id(&room_id)?;
    services
        .account
        .set(&session.user_id, Some(&room_id), &data_type, content)
        .await?;
    Ok(Json(json!({})))
}

/// `GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags`
pub(crate) async fn get_tags(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams((user_id, room_id)): PathParams<(String, String)>,
) -> Result<Json<Value>> {
    ensure_self(&user_id, &session)?;
    let room_id = parse_room_id(&room_id)?;
    Ok(Json(
        json!({ "tags": services.account.tags(&session.user_id, &room_id).await? }),
    ))
}

/// `PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}`
pub(crate) async fn create_tag(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams((user_id, room_id, tag)): PathParams<(String, String, String)>,
    JsonBody(info): JsonBody<Value>,
) -> Result<Json<Value>> {
    ensure_self(&user_id, &session)?;
    let room_id = parse_room_id(&room_id)?;
    services
        .account
        .set_tag(&session.user_id, &room_id, &tag, info)
        .await?;
    Ok(Json(json!({})))
}

/// `DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}`
pub(crate) async fn delete_tag(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams((user_id, room_id, tag)): PathParams<(String, String, String)>,
) -> Result<Json<Value>> {
    ensure_self(&user_id, &session)?;
    let room_id = parse_room_id(&room_id)?;
    services
        .account
        .delete_tag(&session.user_id, &room_id, &tag)
        .await?;
    Ok(Json(json!({})))
}

/// `GET /_matrix/client/v3/pushrules/`
pub(crate) async fn get_pushrules_all(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
) -> Result<Json<Value>> {
    Ok(Json(
        json!({ "global": services.account.push_rules(&session.user_id).await? }),
    ))
}

/// `GET /_matrix/client/v3/pushrules/global/`
pub(crate) async fn get_pushrules_global_scope(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
) -> Result<Json<Value>> {
    Ok(Json(serde_json::to_value(
        services.account.push_rules(&session.user_id).await?,
    )?))
}

#[derive(Deserialize)]
pub(crate) struct PushRulePath {
    kind: String,
    rule_id: String,
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
pub(crate) async fn get_pushrule(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(path): PathParams<PushRulePath>,
) -> Result<Json<Value>> {
    Ok(Json(
        services
            .account
            .push_rule(&session.user_id, &path.kind, &path.rule_id)
            .await?,
    ))
}

#[derive(Deserialize)]
pub(crate) struct PushRulePlacement {
    before: Option<String>,
    after: Option<String>,
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
pub(crate) async fn set_pushrule(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(path): PathParams<PushRulePath>,
    QueryParams(placement): QueryParams<PushRulePlacement>,
    JsonBody(body): JsonBody<PushRuleBody>,
) -> Result<Json<Value>> {
    services
        .account
        .set_push_rule(
            &session.user_id,
            &path.kind,
            &path.rule_id,
            body,
            placement.before.as_deref(),
            placement.after.as_deref(),
        )
        .await?;
    Ok(Json(json!({})))
}

/// `DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
pub(crate) async fn delete_pushrule(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(path): PathParams<PushRulePath>,
) -> Result<Json<Value>> {
    services
        .account
        .delete_push_rule(&session.user_id, &path.kind, &path.rule_id)
        .await?;
    Ok(Json(json!({})))
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled`
pub(crate) async fn get_pushrule_enabled(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(path): PathParams<PushRulePath>,
) -> Result<Json<Value>> {
    let enabled = services
        .account
        .push_rule_enabled(&session.user_id, &path.kind, &path.rule_id)
        .await?;
    Ok(Json(json!({ "enabled": enabled })))
}

#[derive(Deserialize)]
pub(crate) struct EnabledBody {
    enabled: bool,
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled`
pub(crate) async fn set_pushrule_enabled(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(path): PathParams<PushRulePath>,
    JsonBody(body): JsonBody<EnabledBody>,
) -> Result<Json<Value>> {
    services
        .account
        .set_push_rule_enabled(&session.user_id, &path.kind, &path.rule_id, body.enabled)
        .await?;
    Ok(Json(json!({})))
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions`
pub(crate) async fn get_pushrule_actions(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(path): PathParams<PushRulePath>,
) -> Result<Json<Value>> {
    let actions = services
        .account
        .push_rule_actions(&session.user_id, &path.kind, &path.rule_id)
        .await?;
    Ok(Json(json!({ "actions": actions })))
}

#[derive(Deserialize)]
pub(crate) struct ActionsBody {
    actions: Vec<ruma::push::Action>,
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions`
pub(crate) async fn set_pushrule_actions(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(path): PathParams<PushRulePath>,
    JsonBody(body): JsonBody<ActionsBody>,
) -> Result<Json<Value>> {
    services
        .account
        .set_push_rule_actions(&session.user_id, &path.kind, &path.rule_id, body.actions)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub(crate) struct SearchBody {
    search_term: String,
    limit: Option<u32>,
}

/// `POST /_matrix/client/v3/user_directory/search`
///
/// Searches local users by ID and display name.
pub(crate) async fn search_users(
    State(services): State<Services>,
    AuthedUser(_session): AuthedUser,
    JsonBody(body): JsonBody<SearchBody>,
) -> Result<Json<Value>> {
    let limit = body.limit.unwrap_or(10).clamp(1, 100);
    let mut users = services.users.search(&body.search_term, limit + 1).await?;
    let limited = users.len() > limit as usize;
    users.truncate(limit as usize);
    let results: Vec<Value> = users
        .into_iter()
        .map(|u| json!({ "user_id": u.user_id, "display_name": u.displayname, "avatar_url": u.avatar_url }))
        .collect();
    Ok(Json(json!({ "results": results, "limited": limited })))
}
