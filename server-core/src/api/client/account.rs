//! Accounts: registration, login, logout, whoami, passwords, deactivation, refresh
//! (spec: client-server-api/_index.md, "Client Authentication", "Account registration and management").

use axum::{Json, extract::State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::devices::announce_removed;
use crate::{
    api::extract::{AuthedUser, JsonBody, QueryParams},
    error::{Error, Result},
    service::{
        Services,
        uiaa::PASSWORD,
        users::{IssuedTokens, LoginRequest},
    },
};

fn tokens_body(tokens: &IssuedTokens) -> Value {
    let mut body = json!({
        "user_id": tokens.user_id,
        "access_token": tokens.access_token,
        "device_id": tokens.device_id,
    });
    if let Some(refresh) = &tokens.refresh_token {
        body["refresh_token"] = json!(refresh);
    }
    if let Some(expires) = tokens.expires_in_ms {
        body["expires_in_ms"] = json!(expires);
    }
    body
}

#[derive(Deserialize)]
pub(crate) struct RegisterBody {
    username: Option<String>,
    password: Option<String>,
    device_id: Option<String>,
    initial_device_display_name: Option<String>,
    #[serde(default)]
    inhibit_login: bool,
    #[serde(default)]
    refresh_token: bool,
    auth: Option<Value>,
}

#[derive(Deserialize)]
pub(crate) struct KindQuery {
    kind: Option<String>,
}

/// `POST /_matrix/client/v3/register`
///
/// Creates an account after user-interactive auth: `m.login.dummy` when registration is
/// open, `m.login.registration_token` when it is by token; refused when closed.
pub(crate) async fn register(
    State(services): State<Services>,
    QueryParams(query): QueryParams<KindQuery>,
    JsonBody(body): JsonBody<RegisterBody>,
) -> Result<Json<Value>> {
    if query.kind.as_deref() == Some("guest") {
        return Err(Error::forbidden(
            "Guest access is not enabled on this server.",
        ));
    }
    let flows = services.uiaa.registration_flows()?;
    let localpart = match &body.username {
        Some(name) => {
            let name = name.to_lowercase();
            if !services.users.is_available(&name).await? {
                return Err(Error::new(
                    crate::error::ErrorKind::UserInUse,
                    "That user name is already taken.",
                ));
            }
            name
        }
        None => services.users.generate_localpart().await?,
    };
    let password = body.password.as_deref().filter(|p| !p.is_empty());
    let completed = services
        .uiaa
        .check(body.auth.as_ref(), &flows, None)
        .await?;
    let user_id = services.users.create(&localpart, password, false).await?;
    if let Some(token) = completed.registration_token {
        services.users.use_registration_token(&token).await?;
    }
    if body.inhibit_login {
        return Ok(Json(json!({ "user_id": user_id })));
    }
    let login = LoginRequest {
        device_id: body.device_id,
        initial_device_display_name: body.initial_device_display_name,
        refresh_token: body.refresh_token,
    };
    let tokens = services.users.start_session(&user_id, login).await?;
    Ok(Json(tokens_body(&tokens)))
}

#[derive(Deserialize)]
pub(crate) struct UsernameQuery {
    username: String,
}

/// `GET /_matrix/client/v3/register/available`
pub(crate) async fn get_username_availability(
    State(services): State<Services>,
    QueryParams(query): QueryParams<UsernameQuery>,
) -> Result<Json<Value>> {
    if services
        .users
        .is_available(&query.username.to_lowercase())
        .await?
    {
        Ok(Json(json!({ "available": true })))
    } else {
        Err(Error::new(
            crate::error::ErrorKind::UserInUse,
            "That user name is already taken.",
        ))
    }
}

/// `GET /_matrix/client/v3/login`
pub(crate) async fn get_login_types() -> Json<Value> {
    Json(json!({ "flows": [{ "type": PASSWORD }] }))
}

#[derive(Deserialize)]
pub(crate) struct LoginBody {
    #[serde(rename = "type")]
    kind: String,
    identifier: Option<Value>,
    /// Deprecated top-level user field, still sent by some clients.
    user: Option<String>,
    password: Option<String>,
    device_id: Option<String>,
    initial_device_display_name: Option<String>,
    #[serde(default)]
    refresh_token: bool,
}

/// `POST /_matrix/client/v3/login`
///
/// Password login with an `m.id.user` identifier (a localpart or a full user ID).
pub(crate) async fn login(
    State(services): State<Services>,
    client: Option<axum::Extension<crate::api::ClientAddr>>,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Json<Value>> {
    if body.kind != PASSWORD {
        return Err(Error::new(
            crate::error::ErrorKind::Unknown,
            format!("Login type {} is not supported.", body.kind),
        ));
    }
    let user = match &body.identifier {
        Some(identifier) => {
            if identifier.get("type").and_then(Value::as_str) != Some("m.id.user") {
                return Err(Error::new(
                    crate::error::ErrorKind::Unknown,
                    "Only m.id.user identifiers are supported.",
                ));
            }
            identifier
                .get("user")
                .and_then(Value::as_str)
                .map(str::to_owned)
        }
        None => body.user.clone(),
    }
    .ok_or_else(|| Error::bad_json("The login has no user."))?;
    let user_id = if user.starts_with('@') {
        crate::api::parse_user_id(&user)
            .map_err(|_| Error::forbidden("Invalid username or password."))?
    } else {
        services
            .users
            .user_id(&user.to_lowercase())
            .map_err(|_| Error::forbidden("Invalid username or password."))?
    };
    if !services.users.is_local(&user_id) {
        return Err(Error::forbidden("Invalid username or password."));
    }
    let password = body
        .password
        .ok_or_else(|| Error::bad_json("The login has no password."))?;
    if let Err(e) = services.users.check_password(&user_id, &password).await {
        let client = client.map(|c| c.0.0.to_string()).unwrap_or_default();
        tracing::info!(%user_id, %client, "failed login");
        return Err(e);
    }
    let request = LoginRequest {
        device_id: body.device_id,
        initial_device_display_name: body.initial_device_display_name,
        refresh_token: body.refresh_token,
    };
    let tokens = services.users.start_session(&user_id, request).await?;
    Ok(Json(tokens_body(&tokens)))
}

#[derive(Deserialize)]
pub(crate) struct RefreshBody {
    refresh_token: String,
}

/// `POST /_matrix/client/v3/refresh`
pub(crate) async fn refresh(
    State(services): State<Services>,
    JsonBody(body): JsonBody<RefreshBody>,
) -> Result<Json<Value>> {
    let tokens = services.users.refresh(&body.refresh_token).await?;
    Ok(Json(json!({
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "expires_in_ms": tokens.expires_in_ms,
    })))
}

/// `POST /_matrix/client/v3/logout`
pub(crate) async fn logout(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
) -> Result<Json<Value>> {
    let removed = services.users.logout(&session).await?;
    announce_removed(&services, &session.user_id, &removed).await;
    Ok(Json(json!({})))
}

/// `POST /_matrix/client/v3/logout/all`
pub(crate) async fn logout_all(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
) -> Result<Json<Value>> {
    let removed = services.users.logout_all(&session.user_id).await?;
    announce_removed(&services, &session.user_id, &removed).await;
    Ok(Json(json!({})))
}

/// `GET /_matrix/client/v3/account/whoami`
pub(crate) async fn whoami(AuthedUser(session): AuthedUser) -> Json<Value> {
    Json(json!({ "user_id": session.user_id, "device_id": session.device_id, "is_guest": false }))
}

#[derive(Deserialize)]
pub(crate) struct PasswordBody {
    new_password: String,
    #[serde(default = "default_true")]
    logout_devices: bool,
    auth: Option<Value>,
}

fn default_true() -> bool {
    true
}

/// `POST /_matrix/client/v3/account/password`
///
/// Needs the current password through UIA; other devices are logged out unless asked not to.
pub(crate) async fn change_password(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    JsonBody(body): JsonBody<PasswordBody>,
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
        .change_password(&session, &body.new_password, body.logout_devices)
        .await?;
    announce_removed(&services, &session.user_id, &removed).await;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub(crate) struct DeactivateBody {
    auth: Option<Value>,
}

/// `POST /_matrix/client/v3/account/deactivate`
///
/// Needs the password through UIA; leaves every room, then disables the account.
pub(crate) async fn deactivate(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    JsonBody(body): JsonBody<DeactivateBody>,
) -> Result<Json<Value>> {
    services
        .uiaa
        .check(
            body.auth.as_ref(),
            &[vec![PASSWORD]],
            Some(&session.user_id),
        )
        .await?;
    services.rooms.leave_all(&session.user_id).await?;
    let removed = services.users.deactivate(&session.user_id).await?;
    announce_removed(&services, &session.user_id, &removed).await;
    Ok(Json(json!({ "id_server_unbind_result": "no-support" })))
}
