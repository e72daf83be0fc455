//! `/sync` and filters (spec: client-server-api/_index.md, "Syncing", "Filtering").

use std::time::Duration;

use axum::{Json, extract::State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::room_events::parse_event_filter;
use crate::{
    api::{
        extract::{AuthedUser, JsonBody, PathParams, QueryParams},
        parse_user_id,
    },
    error::{Error, Result},
    service::{
        Services,
        presence::PresenceState,
        sync::{SyncFilter, SyncRequest},
    },
};

#[derive(Deserialize)]
pub(crate) struct SyncQuery {
    since: Option<String>,
    timeout: Option<u64>,
    #[serde(default)]
    full_state: bool,
    filter: Option<String>,
    set_presence: Option<String>,
}

fn sync_filter(value: &Value) -> SyncFilter {
    let timeline = value
        .pointer("/room/timeline")
        .cloned()
        .unwrap_or(Value::Null);
    let state = value.pointer("/room/state").cloned().unwrap_or(Value::Null);
    let presence = value.get("presence").cloned().unwrap_or(Value::Null);
    SyncFilter {
        timeline_limit: timeline
            .get("limit")
            .and_then(Value::as_u64)
            .map_or(10, |l| l.min(500) as u32),
        timeline: parse_event_filter(&timeline),
        lazy_load_members: state
            .get("lazy_load_members")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        presence: parse_event_filter(&presence),
        presence_limit: presence
            .get("limit")
            .and_then(Value::as_u64)
            .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX)),
    }
}

/// `GET /_matrix/client/v3/sync`
///
/// Long-polls up to `timeout` ms for news; `filter` is a stored filter ID or inline JSON.
pub(crate) async fn sync_events(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    QueryParams(query): QueryParams<SyncQuery>,
) -> Result<Json<Value>> {
    let filter = match query.filter.as_deref() {
        None => SyncFilter::default(),
        Some(text) if text.trim_start().starts_with('{') => sync_filter(
            &serde_json::from_str(text)
                .map_err(|_| Error::bad_json("The filter is not valid JSON."))?,
        ),
        Some(id) => sync_filter(&services.account.filter(&session.user_id, id).await?),
    };
    // spec: "GET /sync", set_presence: online by default; offline leaves presence alone.
    let presence = match query.set_presence.as_deref() {
        None => PresenceState::Online,
        Some(value) => PresenceState::parse(value).ok_or_else(|| {
            Error::invalid_param("set_presence must be online, unavailable or offline.")
        })?,
    };
    services
        .presence
        .syncing(&session.user_id, presence)
        .await?;
    let request = SyncRequest {
        since: query.since,
        timeout: Duration::from_millis(query.timeout.unwrap_or(0)),
        full_state: query.full_state,
        filter,
    };
    services.users.touch(&session, None).await?;
    Ok(Json(
        services
            .sync
            .sync(&session.user_id, session.device_id.as_str(), request)
            .await?,
    ))
}

/// `POST /_matrix/client/v3/user/{userId}/filter`
pub(crate) async fn create_filter(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(user_id): PathParams<String>,
    JsonBody(filter): JsonBody<Value>,
) -> Result<Json<Value>> {
    if parse_user_id(&user_id)? != session.user_id {
        return Err(Error::forbidden(
            "You can only create filters for yourself.",
        ));
    }
    let filter_id = services
        .account
        .create_filter(&session.user_id, &filter)
        .await?;
    Ok(Json(json!({ "filter_id": filter_id })))
}

/// `GET /_matrix/client/v3/user/{userId}/filter/{filterId}`
pub(crate) async fn get_filter(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams((user_id, filter_id)): PathParams<(String, String)>,
) -> Result<Json<Value>> {
    if parse_user_id(&user_id)? != session.user_id {
        return Err(Error::forbidden("You can only read your own filters."));
    }
    Ok(Json(
        services
            .account
            .filter(&session.user_id, &filter_id)
            .await?,
    ))
}
