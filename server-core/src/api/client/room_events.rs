//! Sending and reading room events and state (spec: client-server-api/_index.md,
//! "Sending events to a room", "Getting events for a room", "Redactions").

use axum::{Json, extract::State};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    api::{
        extract::{AuthedUser, JsonBody, PathParams, QueryParams},
        parse_room_id,
    },
    error::{Error, Result},
    pdu::client_event,
    service::{
        Services,
        rooms::{Direction, EventDraft, EventFilter},
    },
};

/// `PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}`
///
/// Sends a message event; a repeated transaction id returns the first event's ID.
pub(crate) async fn send_message_event(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams((room_id, event_type, txn_id)): PathParams<(String, String, String)>,
    JsonBody(content): JsonBody<Value>,
) -> Result<Json<Value>> {
    let room_id = parse_room_id(&room_id)?;
    let scope = format!("send/{room_id}/{event_type}");
    let txn = Some((session.device_id.to_string(), scope, txn_id));
    let event_id = services
        .rooms
        .send(
            &room_id,
            &session.user_id,
            EventDraft::message(&event_type, content),
            txn,
        )
        .await?;
    // Sending counts as activity (spec: modules/presence.md, "Last active ago"), noted
    // once the event is stored; at most one write a minute, and a failure costs only the
    // presence update.
    if let Err(e) = services.presence.active(&session.user_id).await {
        tracing::warn!(error = %e, "presence activity not recorded");
    }
    Ok(Json(json!({ "event_id": event_id })))
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}`
pub(crate) async fn send_state_event(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams((room_id, event_type, state_key)): PathParams<(String, String, String)>,
    JsonBody(content): JsonBody<Value>,
) -> Result<Json<Value>> {
    let room_id = parse_room_id(&room_id)?;
    let event_id = services
        .rooms
        .send(
            &room_id,
            &session.user_id,
            EventDraft::state(&event_type, &state_key, content),
            None,
        )
        .await?;
    Ok(Json(json!({ "event_id": event_id })))
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}` (empty state key)
pub(crate) async fn send_state_event_empty_key(
    state: State<Services>,
    user: AuthedUser,
    PathParams((room_id, event_type)): PathParams<(String, String)>,
    body: JsonBody<Value>,
) -> Result<Json<Value>> {
    send_state_event(
        state,
        user,
        PathParams((room_id, event_type, String::new())),
        body,
    )
    .await
}

#[derive(Deserialize)]
pub(crate) struct FormatQuery {
    format: Option<String>,
}

/// `GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}`
///
/// The content, or with `?format=event` the whole event.
pub(crate) async fn get_state_event_for_key(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams((room_id, event_type, state_key)): PathParams<(String, String, String)>,
    QueryParams(query): QueryParams<FormatQuery>,
) -> Result<Json<Value>> {
    let room_id = parse_room_id(&room_id)?;
    let pdu = services
        .rooms
        .state_event_for(&session.user_id, &room_id, &event_type, &state_key)
        .await?;
    if query.format.as_deref() == Some("event") {
        return Ok(Json(client_event(&pdu, json!({}), true)));
    }
    Ok(Json(pdu.content_value()))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}` (empty state key)
pub(crate) async fn get_state_event_empty_key(
    state: State<Services>,
    user: AuthedUser,
    PathParams((room_id, event_type)): PathParams<(String, String)>,
    query: QueryParams<FormatQuery>,
) -> Result<Json<Value>> {
    get_state_event_for_key(
        state,
        user,
        PathParams((room_id, event_type, String::new())),
        query,
    )
    .await
}

/// `GET /_matrix/client/v3/rooms/{roomId}/state`
pub(crate) async fn get_state_events(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(room_id): PathParams<String>,
) -> Result<Json<Value>> {
    let room_id = parse_room_id(&room_id)?;
    let state = services.rooms.state_for(&session.user_id, &room_id).await?;
    Ok(Json(Value::Array(
        state
            .iter()
            .map(|p| client_event(p, json!({}), true))
            .collect(),
    )))
}

#[derive(Deserialize, Default)]
pub(crate) struct RedactBody {
    reason: Option<String>,
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}`
pub(crate) async fn redact_event(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams((room_id, event_id, txn_id)): PathParams<(String, String, String)>,
    JsonBody(body): JsonBody<RedactBody>,
) -> Result<Json<Value>> {
    let room_id = parse_room_id(&room_id)?;
    let target =
        ruma::EventId::parse(&event_id).map_err(|_| Error::invalid_param("Invalid event ID."))?;
    let txn = Some((
        session.device_id.to_string(),
        format!("redact/{room_id}"),
        txn_id,
    ));
    let event_id = services
        .rooms
        .redact(&room_id, &session.user_id, &target, body.reason, txn)
        .await?;
    Ok(Json(json!({ "event_id": event_id })))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}`
pub(crate) async fn get_room_event(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams((room_id, event_id)): PathParams<(String, String)>,
) -> Result<Json<Value>> {
    let room_id = parse_room_id(&room_id)?;
    Ok(Json(
        services
            .rooms
            .event(&session.user_id, &room_id, &event_id)
            .await?,
    ))
}

#[derive(Deserialize)]
pub(crate) struct MessagesQuery {
    from: Option<String>,
    dir: Option<String>,
    limit: Option<u32>,
    filter: Option<String>,
}

/// Parses a `RoomEventFilter` given as JSON text (spec: "Filtering").
pub(super) fn parse_event_filter(value: &Value) -> EventFilter {
    let strings = |key: &str| -> Option<Vec<String>> {
        value.get(key).and_then(Value::as_array).map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
    };
    EventFilter {
        types: strings("types"),
        not_types: strings("not_types").unwrap_or_default(),
        senders: strings("senders"),
        not_senders: strings("not_senders").unwrap_or_default(),
        lazy_load_members: value
            .get("lazy_load_members")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }
}

/// `GET /_matrix/client/v3/rooms/{roomId}/messages`
pub(crate) async fn get_message_events(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(room_id): PathParams<String>,
    QueryParams(query): QueryParams<MessagesQuery>,
) -> Result<Json<Value>> {
    let room_id = parse_room_id(&room_id)?;
    let dir = match query.dir.as_deref() {
        Some("b") | None => Direction::Backward,
        Some("f") => Direction::Forward,
        Some(_) => return Err(Error::invalid_param("dir must be b or f.")),
    };
    let filter = match &query.filter {
        Some(text) => {
            let value: Value = serde_json::from_str(text)
                .map_err(|_| Error::bad_json("The filter is not valid JSON."))?;
            parse_event_filter(&value)
        }
        None => EventFilter::default(),
    };
    let page = services
        .rooms
        .messages(
            &session.user_id,
            session.device_id.as_str(),
            &room_id,
            query.from.as_deref(),
            dir,
            query.limit.unwrap_or(10),
            &filter,
        )
        .await?;
    let mut body = json!({ "chunk": page.chunk, "start": page.start, "state": page.state });
    if let Some(end) = page.end {
        body["end"] = json!(end);
    }
    Ok(Json(body))
}

#[derive(Deserialize)]
pub(crate) struct ContextQuery {
    limit: Option<u32>,
    filter: Option<String>,
}

/// `GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}`
pub(crate) async fn get_context(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams((room_id, event_id)): PathParams<(String, String)>,
    QueryParams(query): QueryParams<ContextQuery>,
) -> Result<Json<Value>> {
    let room_id = parse_room_id(&room_id)?;
    let filter = match &query.filter {
        Some(text) => parse_event_filter(
            &serde_json::from_str(text)
                .map_err(|_| Error::bad_json("The filter is not valid JSON."))?,
        ),
        None => EventFilter::default(),
    };
    let limit = query.limit.unwrap_or(10);
    Ok(Json(
        services
            .rooms
            .context(
                &session.user_id,
                session.device_id.as_str(),
                &room_id,
                &event_id,
                limit,
                &filter,
            )
            .await?,
    ))
}

#[derive(Deserialize)]
pub(crate) struct RelationsQuery {
    from: Option<String>,
    limit: Option<u32>,
}

/// `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]`
pub(crate) async fn get_relating_events(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(params): PathParams<Vec<String>>,
    QueryParams(query): QueryParams<RelationsQuery>,
) -> Result<Json<Value>> {
    let mut params = params.into_iter();
    let (Some(room_id), Some(event_id)) = (params.next(), params.next()) else {
        return Err(Error::invalid_param("Missing room or event ID."));
    };
    let (rel_type, event_type) = (params.next(), params.next());
    let room_id = parse_room_id(&room_id)?;
    let body = services
        .rooms
        .relations(
            &session.user_id,
            &room_id,
            &event_id,
            rel_type,
            event_type,
            query.from.as_deref(),
            query.limit.unwrap_or(50),
        )
        .await?;
    Ok(Json(body))
}
