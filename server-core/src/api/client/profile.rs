//! Profiles (spec: client-server-api/_index.md, "Profiles").

use axum::{Json, extract::State};
use ruma::UserId;
use serde_json::{Value, json};

use crate::{
    api::{
        extract::{AuthedUser, JsonBody, PathParams},
        parse_user_id,
    },
    error::{Error, Result},
    service::Services,
};

/// A local user's public profile (`displayname`, `avatar_url`), for clients and for other
/// servers' profile queries.
pub(crate) async fn local_profile(services: &Services, user_id: &UserId) -> Result<Value> {
    let user = services
        .users
        .get(user_id)
        .await?
        .filter(|u| !u.deactivated)
        .ok_or_else(|| Error::not_found("This user has no profile here."))?;
    let mut profile = json!({});
    if let Some(name) = user.displayname {
        profile["displayname"] = json!(name);
    }
    if let Some(avatar) = user.avatar_url {
        profile["avatar_url"] = json!(avatar);
    }
    Ok(profile)
}

/// A profile, asking the user's own server over federation when they are not ours.
async fn profile_of(services: &Services, user_id: &str, field: Option<&str>) -> Result<Value> {
    let user_id = parse_user_id(user_id)?;
    if user_id.server_name() == &*services.identity.server_name {
        return local_profile(services, &user_id).await;
    }
    services.federation.query_profile(&user_id, field).await
}

/// `GET /_matrix/client/v3/profile/{userId}`
pub(crate) async fn get_profile(
    State(services): State<Services>,
    PathParams(user_id): PathParams<String>,
) -> Result<Json<Value>> {
    Ok(Json(profile_of(&services, &user_id, None).await?))
}

/// `GET /_matrix/client/v3/profile/{userId}/{keyName}`
pub(crate) async fn get_profile_field(
    State(services): State<Services>,
    PathParams((user_id, field)): PathParams<(String, String)>,
) -> Result<Json<Value>> {
    let profile = profile_of(&services, &user_id, Some(&field)).await?;
    let value = profile
        .get(&field)
        .cloned()
        .ok_or_else(|| Error::not_found(format!("The user has no {field}.")))?;
    Ok(Json(json!({ field: value })))
}

/// `PUT /_matrix/client/v3/profile/{userId}/{keyName}`
///
/// Sets `displayname` or `avatar_url`, then updates the member event in every joined room.
pub(crate) async fn set_profile_field(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    PathParams((user_id, field)): PathParams<(String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>> {
    if parse_user_id(&user_id)? != session.user_id {
        return Err(Error::forbidden("You can only change your own profile."));
    }
    let value = match body.get(&field) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) | None => None,
        Some(_) => return Err(Error::bad_json(format!("{field} must be a string."))),
    };
    let user = services
        .users
        .get(&session.user_id)
        .await?
        .ok_or_else(|| Error::not_found("Unknown user."))?;
    let (displayname, avatar_url) = match field.as_str() {
        "displayname" => (value, user.avatar_url),
        "avatar_url" => (user.displayname, value),
        _ => {
            return Err(Error::new(
                crate::error::ErrorKind::Unrecognized,
                "Only displayname and avatar_url can be set.",
            ));
        }
    };
    services
        .users
        .set_profile(&session.user_id, displayname, avatar_url)
        .await?;
    services.rooms.propagate_profile(&session.user_id).await?;
    Ok(Json(json!({})))
}
