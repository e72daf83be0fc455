//! Room aliases, the public room directory and space hierarchies.

use axum::{Json, extract::State};
use ruma::ServerName;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    api::{
        extract::{AuthedUser, JsonBody, PathParams, QueryParams},
        parse_alias, parse_room_id,
    },
    error::{Error, ErrorKind, Result},
    service::{Services, rooms::DirectoryFilter},
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
    server: Option<String>,
}

#[derive(Deserialize, Default)]
pub(crate) struct ServerQuery {
    server: Option<String>,
}

/// The body of `POST /publicRooms`, on the client and the federation API alike.
#[derive(Deserialize, Default)]
pub(crate) struct PublicRoomsBody {
    pub(crate) limit: Option<u32>,
    pub(crate) since: Option<String>,
    /// `null` or absent: no filter.
    pub(crate) filter: Option<PublicRoomsFilter>,
    pub(crate) third_party_instance_id: Option<String>,
}

#[derive(Deserialize, Default)]
pub(crate) struct PublicRoomsFilter {
    generic_search_term: Option<String>,
    room_types: Option<Vec<Option<String>>>,
}

/// A page of this server's own directory, as the spec's response object.
pub(crate) async fn local_public_rooms(
    services: &Services,
    body: PublicRoomsBody,
) -> Result<Json<Value>> {
    // Kith bridges no third-party networks, so a listing of one of them is empty.
    if body.third_party_instance_id.is_some() {
        return Ok(Json(json!({ "chunk": [], "total_room_count_estimate": 0 })));
    }
    let filter = body.filter.unwrap_or_default();
    let filter = DirectoryFilter {
        term: filter.generic_search_term,
        // An empty list is read as no list, as Synapse does.
        room_types: filter.room_types.filter(|types| !types.is_empty()),
    };
    let since = body.since.as_deref();
    let page = services
        .rooms
        .public_rooms(body.limit, since, &filter)
        .await?;
    let mut answer = json!({ "chunk": page.chunk, "total_room_count_estimate": page.total });
    if let Some(next) = page.next_batch {
        answer["next_batch"] = json!(next);
    }
    if since.is_some() {
        answer["prev_batch"] = json!("0");
    }
    Ok(Json(answer))
}

/// This server's directory, or, when `server` names another one, that server's, asked
/// over federation. Asking another server needs a signed-in user: otherwise anyone could
/// make this server send requests for them.
async fn public_rooms(
    services: &Services,
    server: Option<&str>,
    user: Option<&AuthedUser>,
    body: PublicRoomsBody,
) -> Result<Json<Value>> {
    let remote = match server {
        Some(name) if name != services.identity.server_name.as_str() => ServerName::parse(name)
            .map_err(|_| Error::invalid_param(format!("{name} is not a server name.")))?,
        _ => return local_public_rooms(services, body).await,
    };
    if user.is_none() {
        return Err(Error::new(
            ErrorKind::MissingToken,
            "Listing another server's rooms needs an access token.",
        ));
    }
    if body.third_party_instance_id.is_some() {
        return Err(Error::invalid_param(
            "Third-party networks of other servers cannot be listed.",
        ));
    }
    let filter = body.filter.unwrap_or_default();
    let page = services
        .federation
        .public_rooms(
            &remote,
            body.limit,
            body.since.as_deref(),
            filter.generic_search_term.as_deref(),
            filter.room_types.as_deref(),
        )
        .await?;
    Ok(Json(page))
}

/// `GET /_matrix/client/v3/publicRooms`
pub(crate) async fn get_public_rooms(
    State(services): State<Services>,
    user: Option<AuthedUser>,
    QueryParams(query): QueryParams<PublicRoomsQuery>,
) -> Result<Json<Value>> {
    let body = PublicRoomsBody {
        limit: query.limit,
        since: query.since,
        ..PublicRoomsBody::default()
    };
    public_rooms(&services, query.server.as_deref(), user.as_ref(), body).await
}

/// `POST /_matrix/client/v3/publicRooms`
pub(crate) async fn get_public_rooms_filtered(
    State(services): State<Services>,
    user: AuthedUser,
    QueryParams(query): QueryParams<ServerQuery>,
    JsonBody(body): JsonBody<PublicRoomsBody>,
) -> Result<Json<Value>> {
    public_rooms(&services, query.server.as_deref(), Some(&user), body).await
}

#[derive(Deserialize)]
pub(crate) struct HierarchyQuery {
    suggested_only: Option<bool>,
    max_depth: Option<usize>,
    limit: Option<usize>,
    from: Option<String>,
}

/// `GET /_matrix/client/v1/rooms/{roomId}/hierarchy` (spec: "Spaces").
pub(crate) async fn get_hierarchy(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams(room_id): PathParams<String>,
    QueryParams(query): QueryParams<HierarchyQuery>,
) -> Result<Json<Value>> {
    let room_id = parse_room_id(&room_id)?;
    let from = match query.from.as_deref() {
        None => 0,
        Some(token) => token
            .strip_prefix('h')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| Error::invalid_param("Invalid pagination token."))?,
    };
    let limit = query.limit.unwrap_or(50).clamp(1, 100);
    Ok(Json(
        services
            .rooms
            .hierarchy(
                &session.user_id,
                &room_id,
                query.suggested_only.unwrap_or(false),
                query.max_depth,
                limit,
                from,
            )
            .await?,
    ))
}
