//! The federation listener's API (spec: server-server-api.md): the version, our keys and
//! the notary, and the signed endpoints other servers call.
//!
//! Every endpoint but the key and version ones needs an X-Matrix signature ([`Signed`]):
//! a missing, malformed or wrong signature, a `destination` that is not us, or an origin
//! whose key cannot be fetched, is 401 `M_UNAUTHORIZED`.

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{DefaultBodyLimit, FromRequest, Request, State},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};
use ruma::{
    OwnedServerName, ServerName, api::federation::authentication::XMatrix, signatures::PublicKeyMap,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_stream::StreamExt;

use crate::{
    api::{
        client::{
            DownloadQuery, PublicRoomsBody, ThumbnailQuery, content_disposition, file_stream,
            local_public_rooms, thumbnail_request,
        },
        extract::{JsonBody, PathParams, QueryParams, body_bytes},
        parse_alias, parse_user_id,
    },
    error::{Error, ErrorKind, Result},
    service::{
        Services,
        federation::multipart,
        media::{Access, Content},
        rooms::{Incoming, Outcome},
    },
    storage::now_ms,
};

/// The federation listener's routes.
pub fn router(services: Services) -> Router {
    let max_body = services.config.limits.max_request_bytes;
    Router::new()
        .route("/_matrix/federation/v1/version", get(version))
        .route("/_matrix/key/v2/server", get(server_keys))
        .route("/_matrix/key/v2/server/{key_id}", get(server_keys))
        .route("/_matrix/key/v2/query", axum::routing::post(query_keys))
        .route("/_matrix/key/v2/query/{server_name}", get(query_keys_of))
        .route("/_matrix/federation/v1/query/profile", get(query_profile))
        .route(
            "/_matrix/federation/v1/query/directory",
            get(query_directory),
        )
        .route(
            "/_matrix/federation/v1/user/keys/query",
            axum::routing::post(user_keys_query),
        )
        .route(
            "/_matrix/federation/v1/user/keys/claim",
            axum::routing::post(user_keys_claim),
        )
        .route(
            "/_matrix/federation/v1/user/devices/{user_id}",
            get(user_devices),
        )
        .route(
            "/_matrix/federation/v1/media/download/{media_id}",
            get(media_download),
        )
        .route(
            "/_matrix/federation/v1/media/thumbnail/{media_id}",
            get(media_thumbnail),
        )
        .route(
            "/_matrix/federation/v1/send/{txn_id}",
            axum::routing::put(send_transaction),
        )
        .route(
            "/_matrix/federation/v1/make_join/{room_id}/{user_id}",
            get(make_join),
        )
        .route(
            "/_matrix/federation/v2/send_join/{room_id}/{event_id}",
            axum::routing::put(send_join),
        )
        .route(
            "/_matrix/federation/v1/make_leave/{room_id}/{user_id}",
            get(make_leave),
        )
        .route(
            "/_matrix/federation/v1/make_knock/{room_id}/{user_id}",
            get(make_knock),
        )
        .route(
            "/_matrix/federation/v1/send_knock/{room_id}/{event_id}",
            axum::routing::put(send_knock),
        )
        .route(
            "/_matrix/federation/v2/send_leave/{room_id}/{event_id}",
            axum::routing::put(send_leave),
        )
        .route(
            "/_matrix/federation/v2/invite/{room_id}/{event_id}",
            axum::routing::put(invite),
        )
        .route("/_matrix/federation/v1/event/{event_id}", get(event))
        .route("/_matrix/federation/v1/hierarchy/{room_id}", get(hierarchy))
        .route(
            "/_matrix/federation/v1/get_missing_events/{room_id}",
            axum::routing::post(get_missing_events),
        )
        .route("/_matrix/federation/v1/backfill/{room_id}", get(backfill))
        .route("/_matrix/federation/v1/state_ids/{room_id}", get(state_ids))
        .route("/_matrix/federation/v1/state/{room_id}", get(state))
        .route(
            "/_matrix/federation/v1/event_auth/{room_id}/{event_id}",
            get(event_auth),
        )
        .route(
            "/_matrix/federation/v1/publicRooms",
            get(public_rooms).post(public_rooms_filtered),
        )
        // When this listener answers on the server name's own host and port 443.
        .route(
            "/.well-known/matrix/server",
            get(super::well_known::well_known_server),
        )
        .fallback(super::unrecognized)
        .method_not_allowed_fallback(super::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::map_response(super::json_content_type))
        .layer(axum::middleware::from_fn_with_state(
            super::trusted_proxies(&services),
            super::client_addr_layer,
        ))
        .with_state(services)
}

fn unauthorized(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Unauthorized, message)
}

/// A request signed by another server: who sent it and its body (spec: "Request
/// Authentication").
pub struct Signed {
    /// The server that signed the request.
    pub origin: OwnedServerName,
    /// The raw body (verified as part of the signature).
    pub body: Bytes,
}

impl FromRequest<Services> for Signed {
    type Rejection = Error;

    async fn from_request(req: Request, services: &Services) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let header_value = parts
            .headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| {
                v.trim_start()
                    .get(..8)
                    .is_some_and(|scheme| scheme.eq_ignore_ascii_case("X-Matrix"))
            })
            .ok_or_else(|| unauthorized("This endpoint needs an X-Matrix signature."))?;
        let x_matrix = XMatrix::parse(header_value)
            .map_err(|e| unauthorized(format!("The X-Matrix header is malformed: {e}.")))?;
        let ours = services.federation.server_name();
        if let Some(destination) = &x_matrix.destination
            && destination.as_str() != ours.as_str()
        {
            return Err(unauthorized(format!(
                "This request is for {destination}, but this server is {ours}."
            )));
        }
        let (method, uri) = (parts.method.clone(), parts.uri.clone());
        let bytes = body_bytes(Request::from_parts(parts, body), services).await?;
        if !bytes.is_empty() && serde_json::from_slice::<Value>(&bytes).is_err() {
            return Err(Error::new(
                ErrorKind::NotJson,
                "The request body is not valid JSON.",
            ));
        }
        let key = services
            .federation
            .verify_key(&x_matrix.origin, x_matrix.key.as_str(), now_ms())
            .await?;
        let keys: PublicKeyMap = [(
            x_matrix.origin.to_string(),
            [(x_matrix.key.to_string(), key)].into(),
        )]
        .into();
        let mut request = http::Request::new(bytes.clone());
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        x_matrix
            .verify_request(&request, ours, &keys)
            .map_err(|e| {
                unauthorized(format!(
                    "The X-Matrix signature of {} does not verify: {e}.",
                    x_matrix.origin
                ))
            })?;
        // A request from a server shows it is up: send it what waits for it now.
        services.federation.heard_from(&x_matrix.origin).await;
        Ok(Self {
            origin: x_matrix.origin,
            body: bytes,
        })
    }
}

/// `GET /_matrix/federation/v1/version`
async fn version() -> Json<Value> {
    Json(json!({ "server": { "name": "Kith", "version": env!("CARGO_PKG_VERSION") } }))
}

/// `GET /_matrix/key/v2/server`: our key, signed by itself (spec: "Publishing Keys").
pub(crate) async fn server_keys(State(services): State<Services>) -> Result<Json<Value>> {
    Ok(Json(serde_json::to_value(
        services.federation.own_key_response()?,
    )?))
}

#[derive(Deserialize)]
struct KeyQuery {
    server_keys:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, KeyCriteria>>,
}

#[derive(Deserialize, Default)]
struct KeyCriteria {
    #[serde(default)]
    minimum_valid_until_ts: Option<i64>,
}

/// `POST /_matrix/key/v2/query`: the notary (spec: "Querying Keys Through Another Server").
async fn query_keys(
    State(services): State<Services>,
    JsonBody(query): JsonBody<KeyQuery>,
) -> Result<Json<Value>> {
    let mut responses = Vec::new();
    for (server, criteria) in query.server_keys {
        let Ok(server) = ServerName::parse(&server) else {
            continue;
        };
        let minimum = criteria
            .values()
            .filter_map(|c| c.minimum_valid_until_ts)
            .max()
            .unwrap_or(0);
        for response in services.federation.notary_keys(&server, minimum).await? {
            responses.push(serde_json::to_value(response)?);
        }
    }
    Ok(Json(json!({ "server_keys": responses })))
}

#[derive(Deserialize)]
struct KeyQueryParams {
    minimum_valid_until_ts: Option<i64>,
}

/// `GET /_matrix/key/v2/query/{serverName}`
async fn query_keys_of(
    State(services): State<Services>,
    PathParams(server): PathParams<String>,
    QueryParams(params): QueryParams<KeyQueryParams>,
) -> Result<Json<Value>> {
    let server = ServerName::parse(&server)
        .map_err(|_| Error::invalid_param(format!("{server} is not a server name.")))?;
    let responses = services
        .federation
        .notary_keys(&server, params.minimum_valid_until_ts.unwrap_or(0))
        .await?;
    Ok(Json(json!({ "server_keys": responses })))
}

#[derive(Deserialize)]
struct ProfileQuery {
    user_id: Option<String>,
    field: Option<String>,
}

/// `GET /_matrix/federation/v1/query/profile` (spec: "Query information").
async fn query_profile(
    State(services): State<Services>,
    QueryParams(query): QueryParams<ProfileQuery>,
    signed: Signed,
) -> Result<Json<Value>> {
    let user_id = query
        .user_id
        .ok_or_else(|| Error::new(ErrorKind::MissingParam, "user_id is required."))?;
    let user_id = parse_user_id(&user_id)?;
    if user_id.server_name() != services.federation.server_name() {
        return Err(Error::invalid_param(format!(
            "{user_id} is not a user of this server."
        )));
    }
    tracing::debug!(origin = %signed.origin, %user_id, "federation profile query");
    let profile = super::client::local_profile(&services, &user_id).await?;
    match query.field.as_deref() {
        None => Ok(Json(profile)),
        Some(field @ ("displayname" | "avatar_url")) => Ok(Json(match profile.get(field) {
            Some(value) => json!({ field: value }),
            None => json!({}),
        })),
        Some(other) => Err(Error::invalid_param(format!(
            "{other} is not a profile field (displayname or avatar_url)."
        ))),
    }
}

#[derive(Deserialize)]
struct DirectoryQuery {
    room_alias: Option<String>,
}

/// `GET /_matrix/federation/v1/query/directory`
async fn query_directory(
    State(services): State<Services>,
    QueryParams(query): QueryParams<DirectoryQuery>,
    signed: Signed,
) -> Result<Json<Value>> {
    let alias = query
        .room_alias
        .ok_or_else(|| Error::new(ErrorKind::MissingParam, "room_alias is required."))?;
    let alias = parse_alias(&alias)?;
    if alias.server_name() != services.federation.server_name() {
        return Err(Error::invalid_param(format!(
            "{alias} is not an alias of this server."
        )));
    }
    tracing::debug!(origin = %signed.origin, %alias, "federation directory query");
    let (room_id, servers) = services.rooms.resolve_alias(&alias).await?;
    Ok(Json(json!({ "room_id": room_id, "servers": servers })))
}

impl Signed {
    /// The body as JSON of type `T` (`M_BAD_JSON` when it has the wrong shape).
    fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::bad_json(format!("The request body is invalid: {e}.")))
    }
}

#[derive(Deserialize)]
struct UserKeysQuery {
    device_keys: std::collections::BTreeMap<String, Vec<String>>,
}

/// `POST /_matrix/federation/v1/user/keys/query` (spec: "End-to-End Encryption").
async fn user_keys_query(State(services): State<Services>, signed: Signed) -> Result<Json<Value>> {
    let query: UserKeysQuery = signed.json()?;
    Ok(Json(
        services
            .e2ee
            .query_keys_for_server(query.device_keys)
            .await?,
    ))
}

#[derive(Deserialize)]
struct UserKeysClaim {
    one_time_keys: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
}

/// `POST /_matrix/federation/v1/user/keys/claim`
async fn user_keys_claim(State(services): State<Services>, signed: Signed) -> Result<Json<Value>> {
    let claim: UserKeysClaim = signed.json()?;
    let one_time_keys = services.e2ee.claim_local_keys(claim.one_time_keys).await?;
    Ok(Json(json!({ "one_time_keys": one_time_keys })))
}

#[derive(Deserialize)]
struct Transaction {
    origin: String,
    #[serde(default)]
    pdus: Vec<Value>,
    #[serde(default)]
    edus: Vec<Value>,
}

/// `PUT /_matrix/federation/v1/send/{txnId}` (spec: "Transactions"): another server's
/// PDUs and EDUs. A transaction seen before gets the answer it got then.
///
/// PDUs go through the rooms service's checks in order within each room, and the rooms
/// side by side (spec: "Transactions"). A PDU that fails gets an `error` in the answer;
/// PDUs of rooms this server does not know are dropped.
///
/// EDUs handled: `m.direct_to_device`, `m.typing`, `m.receipt`, `m.device_list_update`,
/// `m.signing_key_update` and `m.presence`. Each is about a user of the sending server;
/// typing and receipts count only for users joined to the room, presence only for users
/// who share a room with a local user.
async fn send_transaction(
    State(services): State<Services>,
    PathParams(txn_id): PathParams<String>,
    signed: Signed,
) -> Result<Json<Value>> {
    let transaction: Transaction = signed.json()?;
    let origin = &signed.origin;
    if transaction.origin != origin.as_str() {
        return Err(Error::forbidden(format!(
            "The transaction says it is from {}, but {origin} signed it.",
            transaction.origin
        )));
    }
    // spec: "Transactions": at most 50 PDUs and 100 EDUs.
    if transaction.pdus.len() > 50 || transaction.edus.len() > 100 {
        return Err(Error::bad_json(
            "A transaction carries at most 50 PDUs and 100 EDUs.",
        ));
    }
    if let Some(answer) = services.federation.answered(origin, &txn_id).await? {
        return Ok(Json(answer));
    }
    for edu in &transaction.edus {
        match edu.get("edu_type").and_then(Value::as_str) {
            Some("m.direct_to_device") => {
                if let Some(content) = edu.get("content") {
                    services.e2ee.receive_to_device(origin, content).await?;
                }
            }
            Some("m.typing") => receive_typing(&services, origin, &edu["content"]).await?,
            Some("m.receipt") => receive_receipts(&services, origin, &edu["content"]).await?,
            Some("m.device_list_update" | "m.signing_key_update") => {
                receive_device_list_update(&services, origin, &edu["content"]).await?;
            }
            Some("m.presence") => services.presence.receive(origin, &edu["content"]).await?,
            other => tracing::debug!(%origin, edu_type = ?other, "EDU dropped: not handled yet"),
        }
    }
    // Each room's PDUs in order, the rooms side by side.
    let mut rooms: Vec<(ruma::OwnedRoomId, Vec<Incoming>)> = Vec::new();
    for pdu in transaction.pdus {
        let incoming = match services.rooms.incoming(pdu).await {
            Ok(incoming) => incoming,
            Err(e) => {
                tracing::debug!(%origin, error = %e, "PDU dropped");
                continue;
            }
        };
        match rooms
            .iter_mut()
            .find(|(room, _)| room == incoming.room_id())
        {
            Some((_, list)) => list.push(incoming),
            None => rooms.push((incoming.room_id().to_owned(), vec![incoming])),
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (_, list) in rooms {
        let (services, origin) = (services.clone(), origin.clone());
        tasks.spawn(async move {
            let mut results = Vec::with_capacity(list.len());
            for incoming in list {
                let event_id = incoming.event_id().to_string();
                results.push((event_id, services.rooms.receive(&origin, incoming).await));
            }
            results
        });
    }
    let mut results = serde_json::Map::new();
    while let Some(done) = tasks.join_next().await {
        for (event_id, result) in done.map_err(Error::internal)? {
            let result = match result {
                Ok(Outcome::Accepted | Outcome::SoftFailed) => json!({}),
                Ok(Outcome::Rejected(reason)) => json!({ "error": reason }),
                Err(Error::Internal(e)) => return Err(Error::Internal(e)),
                Err(e) => json!({ "error": e.to_string() }),
            };
            results.insert(event_id, result);
        }
    }
    let answer = json!({ "pdus": results });
    services
        .federation
        .record_answer(origin, &txn_id, &answer)
        .await?;
    Ok(Json(answer))
}

/// `GET /_matrix/federation/v1/media/download/{mediaId}` (spec: "Content Repository"): a
/// media item of this server, as `multipart/mixed`.
async fn media_download(
    State(services): State<Services>,
    PathParams(media_id): PathParams<String>,
    QueryParams(query): QueryParams<DownloadQuery>,
    signed: Signed,
) -> Result<Response> {
    tracing::debug!(origin = %signed.origin, %media_id, "federation media download");
    let ours = services.federation.server_name().to_owned();
    let content = services
        .media
        .download(
            ours.as_str(),
            &media_id,
            query.timeout_ms,
            Access::Authenticated,
        )
        .await?;
    Ok(multipart_media(content))
}

/// `GET /_matrix/federation/v1/media/thumbnail/{mediaId}`: a thumbnail, the same way.
async fn media_thumbnail(
    State(services): State<Services>,
    PathParams(media_id): PathParams<String>,
    QueryParams(query): QueryParams<ThumbnailQuery>,
    signed: Signed,
) -> Result<Response> {
    tracing::debug!(origin = %signed.origin, %media_id, "federation media thumbnail");
    let ours = services.federation.server_name().to_owned();
    let request = thumbnail_request(&query)?;
    let content = services
        .media
        .thumbnail(
            ours.as_str(),
            &media_id,
            request,
            query.timeout_ms,
            Access::Authenticated,
        )
        .await?;
    Ok(multipart_media(content))
}

/// The two-part body the spec's media endpoints answer with: `{}` as metadata, then the
/// bytes, streamed from their file.
fn multipart_media(content: Content) -> Response {
    let boundary = multipart::new_boundary();
    let disposition = content_disposition(&content.content_type, content.filename.as_deref());
    let (head, tail) = multipart::envelope(
        &boundary,
        &[
            ("Content-Type", &content.content_type),
            ("Content-Disposition", &disposition),
        ],
    );
    let length = head.len() as u64 + content.size + tail.len() as u64;
    let stream = tokio_stream::once(Ok(Bytes::from(head)))
        .chain(file_stream(content.file))
        .chain(tokio_stream::once(Ok(Bytes::from(tail))));
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&format!("multipart/mixed; boundary={boundary}")) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    response
}

#[derive(Deserialize)]
struct PublicRoomsQuery {
    limit: Option<u32>,
    since: Option<String>,
    third_party_instance_id: Option<String>,
}

/// `GET /_matrix/federation/v1/publicRooms` (spec: "Public Room Directory"): the rooms
/// published here, as for local clients.
async fn public_rooms(
    State(services): State<Services>,
    QueryParams(query): QueryParams<PublicRoomsQuery>,
    signed: Signed,
) -> Result<Json<Value>> {
    tracing::debug!(origin = %signed.origin, "federation public rooms");
    let body = PublicRoomsBody {
        limit: query.limit,
        since: query.since,
        third_party_instance_id: query.third_party_instance_id,
        ..PublicRoomsBody::default()
    };
    local_public_rooms(&services, body).await
}

/// `POST /_matrix/federation/v1/publicRooms`: the same, with a filter.
async fn public_rooms_filtered(
    State(services): State<Services>,
    signed: Signed,
) -> Result<Json<Value>> {
    tracing::debug!(origin = %signed.origin, "federation public rooms (filtered)");
    local_public_rooms(&services, signed.json()?).await
}

/// `GET /_matrix/federation/v1/user/devices/{userId}`
async fn user_devices(
    State(services): State<Services>,
    PathParams(user_id): PathParams<String>,
    _signed: Signed,
) -> Result<Json<Value>> {
    let user_id = parse_user_id(&user_id)?;
    if user_id.server_name() != services.federation.server_name() {
        return Err(Error::invalid_param(format!(
            "{user_id} is not a user of this server."
        )));
    }
    if services.users.get(&user_id).await?.is_none() {
        return Err(Error::not_found(format!("{user_id} is not known here.")));
    }
    Ok(Json(services.e2ee.devices_for_server(&user_id).await?))
}

/// The room versions a `make_join` request lists (`?ver=..&ver=..`; spec: joins-v1.yaml,
/// version 1 when none is given).
fn listed_versions(query: Option<&str>) -> Vec<String> {
    let versions: Vec<String> = query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.strip_prefix("ver="))
        .map(|v| v.replace("%2E", ".").replace("%2e", "."))
        .collect();
    if versions.is_empty() {
        vec!["1".to_owned()]
    } else {
        versions
    }
}

/// `GET /_matrix/federation/v1/make_join/{roomId}/{userId}` (spec: "Joining Rooms").
async fn make_join(
    State(services): State<Services>,
    PathParams((room_id, user_id)): PathParams<(String, String)>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    signed: Signed,
) -> Result<Json<Value>> {
    let room_id = super::parse_room_id(&room_id)?;
    let user_id = parse_user_id(&user_id)?;
    let supported = listed_versions(query.as_deref());
    let (version, event) = services
        .rooms
        .make_join(&signed.origin, &room_id, &user_id, &supported)
        .await?;
    Ok(Json(json!({ "room_version": version, "event": event })))
}

/// `PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}`
async fn send_join(
    State(services): State<Services>,
    PathParams((room_id, event_id)): PathParams<(String, String)>,
    signed: Signed,
) -> Result<Json<Value>> {
    let (room_id, event_id) = room_and_event(&room_id, &event_id)?;
    let pdu: Value = signed.json()?;
    Ok(Json(
        services
            .rooms
            .send_join(&signed.origin, &room_id, &event_id, pdu)
            .await?,
    ))
}

/// `GET /_matrix/federation/v1/event/{eventId}`: one event, to a server that may see it.
async fn event(
    State(services): State<Services>,
    PathParams(event_id): PathParams<String>,
    signed: Signed,
) -> Result<Json<Value>> {
    let event_id = parse_event_id(&event_id)?;
    let pdu = services
        .rooms
        .event_for_server(&signed.origin, &event_id)
        .await?;
    Ok(pdu_list(&services, vec![pdu]))
}

/// The `{roomId}/{eventId}` of a path.
fn room_and_event(
    room_id: &str,
    event_id: &str,
) -> Result<(ruma::OwnedRoomId, ruma::OwnedEventId)> {
    Ok((super::parse_room_id(room_id)?, parse_event_id(event_id)?))
}

fn parse_event_id(id: &str) -> Result<ruma::OwnedEventId> {
    ruma::EventId::parse(id).map_err(|_| Error::invalid_param(format!("{id} is not an event ID.")))
}

/// A PDU list answer: `{origin, origin_server_ts, pdus}` (spec: "Transactions" format).
fn pdu_list(services: &Services, pdus: Vec<Value>) -> Json<Value> {
    Json(json!({
        "origin": services.federation.server_name(),
        "origin_server_ts": ruma::MilliSecondsSinceUnixEpoch::now(),
        "pdus": pdus,
    }))
}

#[derive(Deserialize)]
struct MissingEventsBody {
    #[serde(default)]
    earliest_events: Vec<String>,
    latest_events: Vec<String>,
    limit: Option<usize>,
    min_depth: Option<u64>,
}

/// `POST /_matrix/federation/v1/get_missing_events/{roomId}`
async fn get_missing_events(
    State(services): State<Services>,
    PathParams(room_id): PathParams<String>,
    signed: Signed,
) -> Result<Json<Value>> {
    let room_id = super::parse_room_id(&room_id)?;
    let body: MissingEventsBody = signed.json()?;
    let earliest = body
        .earliest_events
        .iter()
        .map(|id| parse_event_id(id))
        .collect::<Result<Vec<_>>>()?;
    let latest = body
        .latest_events
        .iter()
        .map(|id| parse_event_id(id))
        .collect::<Result<Vec<_>>>()?;
    let events = services
        .rooms
        .missing_events_for_server(
            &signed.origin,
            &room_id,
            &earliest,
            &latest,
            body.limit.unwrap_or(10),
            body.min_depth.unwrap_or(0),
        )
        .await?;
    Ok(Json(json!({ "events": events })))
}

/// `GET /_matrix/federation/v1/backfill/{roomId}?v=...&limit=`
async fn backfill(
    State(services): State<Services>,
    PathParams(room_id): PathParams<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    signed: Signed,
) -> Result<Json<Value>> {
    let room_id = super::parse_room_id(&room_id)?;
    let mut from = Vec::new();
    let mut limit = 10;
    for pair in query.as_deref().unwrap_or("").split('&') {
        if let Some(v) = pair.strip_prefix("v=") {
            from.push(parse_event_id(&super::percent_decoded(v))?);
        } else if let Some(l) = pair.strip_prefix("limit=") {
            limit = l
                .parse()
                .map_err(|_| Error::invalid_param("limit must be a number."))?;
        }
    }
    if from.is_empty() {
        return Err(Error::new(ErrorKind::MissingParam, "v is required."));
    }
    let pdus = services
        .rooms
        .backfill_for_server(&signed.origin, &room_id, &from, limit)
        .await?;
    Ok(pdu_list(&services, pdus))
}

#[derive(Deserialize)]
struct EventIdQuery {
    event_id: Option<String>,
}

async fn state_query(
    services: &Services,
    room_id: &str,
    query: EventIdQuery,
    signed: &Signed,
) -> Result<(Vec<ruma::OwnedEventId>, Vec<ruma::OwnedEventId>)> {
    let room_id = super::parse_room_id(room_id)?;
    let event_id = query
        .event_id
        .ok_or_else(|| Error::new(ErrorKind::MissingParam, "event_id is required."))?;
    let event_id = parse_event_id(&event_id)?;
    services
        .rooms
        .state_before_for_server(&signed.origin, &room_id, &event_id)
        .await
}

/// `GET /_matrix/federation/v1/state_ids/{roomId}?event_id=`
async fn state_ids(
    State(services): State<Services>,
    PathParams(room_id): PathParams<String>,
    QueryParams(query): QueryParams<EventIdQuery>,
    signed: Signed,
) -> Result<Json<Value>> {
    let (state, chain) = state_query(&services, &room_id, query, &signed).await?;
    Ok(Json(json!({ "pdu_ids": state, "auth_chain_ids": chain })))
}

/// `GET /_matrix/federation/v1/state/{roomId}?event_id=`
async fn state(
    State(services): State<Services>,
    PathParams(room_id): PathParams<String>,
    QueryParams(query): QueryParams<EventIdQuery>,
    signed: Signed,
) -> Result<Json<Value>> {
    let (state, chain) = state_query(&services, &room_id, query, &signed).await?;
    Ok(Json(json!({
        "pdus": services.rooms.pdu_json(&state).await?,
        "auth_chain": services.rooms.pdu_json(&chain).await?,
    })))
}

/// `GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}`
async fn event_auth(
    State(services): State<Services>,
    PathParams((room_id, event_id)): PathParams<(String, String)>,
    signed: Signed,
) -> Result<Json<Value>> {
    let (room_id, event_id) = room_and_event(&room_id, &event_id)?;
    let chain = services
        .rooms
        .event_auth_for_server(&signed.origin, &room_id, &event_id)
        .await?;
    Ok(Json(json!({ "auth_chain": chain })))
}

/// `GET /_matrix/federation/v1/make_leave/{roomId}/{userId}` (spec: "Leaving Rooms
/// (Rejecting Invites)").
async fn make_leave(
    State(services): State<Services>,
    PathParams((room_id, user_id)): PathParams<(String, String)>,
    signed: Signed,
) -> Result<Json<Value>> {
    let room_id = super::parse_room_id(&room_id)?;
    let user_id = parse_user_id(&user_id)?;
    let (version, event) = services
        .rooms
        .make_leave(&signed.origin, &room_id, &user_id)
        .await?;
    Ok(Json(json!({ "room_version": version, "event": event })))
}

/// `PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}`
async fn send_leave(
    State(services): State<Services>,
    PathParams((room_id, event_id)): PathParams<(String, String)>,
    signed: Signed,
) -> Result<Json<Value>> {
    let (room_id, event_id) = room_and_event(&room_id, &event_id)?;
    let pdu: Value = signed.json()?;
    services
        .rooms
        .send_leave(&signed.origin, &room_id, &event_id, pdu)
        .await?;
    Ok(Json(json!({})))
}

/// `PUT /_matrix/federation/v2/invite/{roomId}/{eventId}` (spec: "Inviting to a room").
async fn invite(
    State(services): State<Services>,
    PathParams((room_id, event_id)): PathParams<(String, String)>,
    signed: Signed,
) -> Result<Json<Value>> {
    let (room_id, event_id) = room_and_event(&room_id, &event_id)?;
    let body: Value = signed.json()?;
    Ok(Json(
        services
            .rooms
            .receive_invite(&signed.origin, &room_id, &event_id, &body)
            .await?,
    ))
}

/// The user an EDU is about, if it is a user of the server that sent it.
fn origin_user(origin: &ServerName, value: &Value) -> Option<ruma::OwnedUserId> {
    value
        .as_str()
        .and_then(|u| ruma::UserId::parse(u).ok())
        .filter(|u| u.server_name() == origin)
}

/// Whether `user_id` is joined to `room_id` here.
async fn joined(
    services: &Services,
    room_id: &ruma::RoomId,
    user_id: &ruma::UserId,
) -> Result<bool> {
    Ok(services
        .rooms
        .membership(room_id, user_id)
        .await?
        .is_some_and(|m| m.membership == "join"))
}

/// `m.typing` (spec: "Typing Notifications"): a remote user starts or stops typing. A
/// notice lasts 30 seconds unless renewed, as Synapse's do.
async fn receive_typing(services: &Services, origin: &ServerName, content: &Value) -> Result<()> {
    let (Some(user_id), Some(room_id)) = (
        origin_user(origin, &content["user_id"]),
        content["room_id"]
            .as_str()
            .and_then(|r| ruma::RoomId::parse(r).ok()),
    ) else {
        return Ok(());
    };
    if !joined(services, &room_id, &user_id).await?
        || !services.rooms.server_allowed(&room_id, origin).await?
    {
        return Ok(());
    }
    let typing = content["typing"].as_bool().unwrap_or(false);
    services.typing.set(
        room_id.as_str(),
        user_id.as_str(),
        typing.then(|| std::time::Duration::from_secs(30)),
    );
    Ok(())
}

/// `m.receipt` (spec: "Receipts"): remote users' public read receipts, per room.
async fn receive_receipts(services: &Services, origin: &ServerName, content: &Value) -> Result<()> {
    let Some(rooms) = content.as_object() else {
        return Ok(());
    };
    for (room_id, receipts) in rooms {
        let Ok(room_id) = ruma::RoomId::parse(room_id) else {
            continue;
        };
        let Some(readers) = receipts["m.read"].as_object() else {
            continue;
        };
        if !services.rooms.server_allowed(&room_id, origin).await? {
            continue;
        }
        for (user_id, receipt) in readers {
            let Some(user_id) = origin_user(origin, &json!(user_id)) else {
                continue;
            };
            if !joined(services, &room_id, &user_id).await? {
                continue;
            }
            let Some(event_id) = receipt["event_ids"]
                .as_array()
                .and_then(|ids| ids.last())
                .and_then(Value::as_str)
            else {
                continue;
            };
            let ts = receipt["data"]["ts"].as_i64().unwrap_or_else(now_ms);
            services
                .account
                .remote_receipt(
                    &user_id,
                    &room_id,
                    event_id,
                    receipt["data"]["thread_id"].as_str(),
                    ts,
                )
                .await?;
        }
    }
    Ok(())
}

/// `m.device_list_update` and `m.signing_key_update` (spec: "Device Management"): a
/// remote user's devices or cross-signing keys changed, so local users who share a room
/// with them see them in `device_lists.changed` and fetch their keys again.
async fn receive_device_list_update(
    services: &Services,
    origin: &ServerName,
    content: &Value,
) -> Result<()> {
    if let Some(user_id) = origin_user(origin, &content["user_id"]) {
        services.e2ee.remote_device_list_changed(&user_id).await?;
    }
    Ok(())
}

/// `GET /_matrix/federation/v1/make_knock/{roomId}/{userId}` (spec: "Knocking upon a
/// room").
async fn make_knock(
    State(services): State<Services>,
    PathParams((room_id, user_id)): PathParams<(String, String)>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    signed: Signed,
) -> Result<Json<Value>> {
    let room_id = super::parse_room_id(&room_id)?;
    let user_id = parse_user_id(&user_id)?;
    let supported = listed_versions(query.as_deref());
    let (version, event) = services
        .rooms
        .make_knock(&signed.origin, &room_id, &user_id, &supported)
        .await?;
    Ok(Json(json!({ "room_version": version, "event": event })))
}

/// `PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}`
async fn send_knock(
    State(services): State<Services>,
    PathParams((room_id, event_id)): PathParams<(String, String)>,
    signed: Signed,
) -> Result<Json<Value>> {
    let (room_id, event_id) = room_and_event(&room_id, &event_id)?;
    let pdu: Value = signed.json()?;
    Ok(Json(
        services
            .rooms
            .send_knock(&signed.origin, &room_id, &event_id, pdu)
            .await?,
    ))
}

#[derive(Deserialize)]
struct HierarchyQuery {
    suggested_only: Option<bool>,
}

/// `GET /_matrix/federation/v1/hierarchy/{roomId}` (spec: "Spaces").
async fn hierarchy(
    State(services): State<Services>,
    PathParams(room_id): PathParams<String>,
    QueryParams(query): QueryParams<HierarchyQuery>,
    signed: Signed,
) -> Result<Json<Value>> {
    let room_id = super::parse_room_id(&room_id)?;
    Ok(Json(
        services
            .rooms
            .hierarchy_for_server(
                &signed.origin,
                &room_id,
                query.suggested_only.unwrap_or(false),
            )
            .await?,
    ))
}
