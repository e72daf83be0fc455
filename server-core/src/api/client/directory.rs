//! Room aliases and the public room directory.

use axum::{Json, extract::State};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    api::{
        extract::{AuthedUser, JsonBody, PathParams, QueryParams},
        parse_alias, parse_room_id,
    },
    error::{Error, Result},
    service::Services,
};

/// `GET /_matrix/client/v3/directory/room/{roomAlias}`
pub(crate) async fn get_alias(
    State(services): State<Services>,
    PathParams(alias): PathParams<String>,
) -> Result<Json<Value>> {
    let alias = parse_alias(&alias)?;
    // Another server's alias is asked of that server (spec: "GET /directory/room/{roomAlias}").
    let (room_id, servers) = if alias.server_name() == &*services.identity.server_name {
        services.rooms.resolve_alias(&alias).await?
    } else {
        services.federation.query_directory(&alias).await?
    };
    Ok(Json(json!({ "room_id": room_id, "servers": servers })))
}

#[derive(Deserialize)]
pub(crate) struct AliasBody {
    room_id: String,
}

/// `PUT /_matrix/client/v3/directory/room/{roomAlias}`
pub(crate) async fn create_alias(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(alias): PathParams<String>,
    JsonBody(body): JsonBody<AliasBody>,
) -> Result<Json<Value>> {
    services
        .rooms
        .create_alias(
            &session.user_id,
            &parse_alias(&alias)?,
            &parse_room_id(&body.room_id)?,
        )
        .await?;
    Ok(Json(json!({})))
}

/// `DELETE /_matrix/client/v3/directory/room/{roomAlias}`
pub(crate) async fn delete_alias(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(alias): PathParams<String>,
) -> Result<Json<Value>> {
    services
        .rooms
        .delete_alias(&session.user_id, session.admin, &parse_alias(&alias)?)
        .await?;
    Ok(Json(json!({})))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/aliases`
pub(crate) async fn get_aliases(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(room_id): PathParams<String>,
) -> Result<Json<Value>> {
    let aliases = services
        .rooms
        .aliases(&session.user_id, &parse_room_id(&room_id)?)
        .await?;
    Ok(Json(json!({ "aliases": aliases })))
}

/// `GET /_matrix/client/v3/directory/list/room/{roomId}`
pub(crate) async fn get_room_visibility(
    State(services): State<Services>,
    PathParams(room_id): PathParams<String>,
) -> Result<Json<Value>> {
    let published = services
        .rooms
        .is_published(&parse_room_id(&room_id)?)
        .await?;
    Ok(Json(
        json!({ "visibility": if published { "public" } else { "private" } }),
    ))
}

#[derive(Deserialize)]
pub(crate) struct VisibilityBody {
    visibility: String,
}

/// `PUT /_matrix/client/v3/directory/list/room/{roomId}`
pub(crate) async fn set_room_visibility(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(room_id): PathParams<String>,
    JsonBody(body): JsonBody<VisibilityBody>,
) -> Result<Json<Value>> {
    let published = match body.visibility.as_str() {
        "public" => true,
        "private" => false,
        _ => {
            return Err(Error::invalid_param(
                "visibility must be public or private.",
            ));
        }
    };
    services
        .rooms
        .set_published(
            &session.user_id,
            session.admin,
            &parse_room_id(&room_id)?,
            published,
        )
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize, Default)]
pub(crate) struct PublicRoomsQuery {
    limit: Option<u32>,
    since: Option<String>,
}

#[derive(Deserialize, Default)]
pub(crate) struct PublicRoomsBody {
    limit: Option<u32>,
    since: Option<String>,
    filter: Option<Value>,
}

async fn public_rooms(
    services: &Services,
    limit: Option<u32>,
    since: Option<&str>,
    term: Option<&str>,
) -> Result<Json<Value>> {
    let page = services.rooms.public_rooms(limit, since, term).await?;
    let mut body = json!({ "chunk": page.chunk, "total_room_count_estimate": page.total });
    if let Some(next) = page.next_batch {
        body["next_batch"] = json!(next);
    }
    if since.is_some() {
        body["prev_batch"] = json!("0");
    }
    Ok(Json(body))
}

/// `GET /_matrix/client/v3/publicRooms`
pub(crate) async fn get_public_rooms(
    State(services): State<Services>,
    QueryParams(query): QueryParams<PublicRoomsQuery>,
) -> Result<Json<Value>> {
    public_rooms(&services, query.limit, query.since.as_deref(), None).await
}

/// `POST /_matrix/client/v3/publicRooms`
pub(crate) async fn get_public_rooms_filtered(
    State(services): State<Services>,
    _user: AuthedUser,
    JsonBody(body): JsonBody<PublicRoomsBody>,
) -> Result<Json<Value>> {
    let term = body
        .filter
        .as_ref()
        .and_then(|f| f.get("generic_search_term"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    public_rooms(
        &services,
        body.limit,
        body.since.as_deref(),
        term.as_deref(),
    )
    .await
}
