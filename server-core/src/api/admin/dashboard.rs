//! The dashboard's admin API, under `/_kith/admin/v1/`: status and charts, accounts and
//! registration tokens, rooms and members, other servers' delivery, and restarts. Each
//! handler checks the caller is an admin and calls the dashboard service; the desktop
//! shell's commands call the same service functions.

use std::sync::Arc;

use axum::{
    Extension, Json, Router,
    extract::{Path, RawQuery, State},
    routing::{get, post, put},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{query_value, require_admin, to_json};
use crate::{
    api::extract::{AuthedUser, JsonBody},
    error::{Error, Result},
    service::{
        Services,
        dashboard::Runtime,
        setup::{AnswerProblem, ConfigText, Restarting, check_config_text},
    },
};

/// The dashboard routes.
pub(super) fn routes() -> Router<Services> {
    Router::new()
        .route("/_kith/admin/v1/status", get(status))
        .route("/_kith/admin/v1/stats", get(stats))
        .route("/_kith/admin/v1/users", get(users).post(create_user))
        .route(
            "/_kith/admin/v1/users/{user_id}/password",
            post(reset_password),
        )
        .route(
            "/_kith/admin/v1/users/{user_id}/deactivate",
            post(deactivate),
        )
        .route("/_kith/admin/v1/users/{user_id}/admin", put(set_admin))
        .route(
            "/_kith/admin/v1/registration_tokens",
            get(tokens).post(create_token),
        )
        .route(
            "/_kith/admin/v1/registration_tokens/{token}",
            axum::routing::delete(revoke_token),
        )
        .route("/_kith/admin/v1/rooms", get(rooms))
        .route("/_kith/admin/v1/rooms/{room_id}/members", get(members))
        .route("/_kith/admin/v1/rooms/{room_id}/close", post(close_room))
        .route(
            "/_kith/admin/v1/rooms/{room_id}",
            axum::routing::delete(delete_room),
        )
        .route("/_kith/admin/v1/federation/destinations", get(destinations))
        .route("/_kith/admin/v1/server/restart", post(restart))
        .route("/_kith/admin/v1/logs", get(logs))
        .route("/_kith/admin/v1/config", get(config_text).put(save_config))
        .route("/_kith/admin/v1/config/check", post(check_config))
        .route("/_kith/admin/v1/backup", get(backup))
        .route(
            "/_kith/admin/v1/restore",
            // A backup holds the media: far larger than the JSON limit.
            post(restore).layer(axum::extract::DefaultBodyLimit::disable()),
        )
}

/// `GET /_kith/admin/v1/status`: the overview.
async fn status(
    State(services): State<Services>,
    Extension(runtime): Extension<Arc<Runtime>>,
    AuthedUser(session): AuthedUser,
) -> Result<Json<Value>> {
    require_admin(&session)?;
    to_json(&runtime.status(&services).await?)
}

/// `GET /_kith/admin/v1/stats`: the charts' samples of the last hour.
async fn stats(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
) -> Result<Json<Value>> {
    require_admin(&session)?;
    to_json(&services.dashboard.stats())
}

/// `GET /_kith/admin/v1/users`
async fn users(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
) -> Result<Json<Value>> {
    require_admin(&session)?;
    to_json(&services.dashboard.users().await?)
}

#[derive(Deserialize)]
struct NewUser {
    username: String,
    password: String,
    #[serde(default)]
    admin: bool,
}

/// `POST /_kith/admin/v1/users`: creates an account with a password.
async fn create_user(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    JsonBody(body): JsonBody<NewUser>,
) -> Result<Json<Value>> {
    require_admin(&session)?;
    to_json(
        &services
            .dashboard
            .create_user(&body.username, &body.password, body.admin)
            .await?,
    )
}

fn user_id(text: &str) -> Result<ruma::OwnedUserId> {
    ruma::UserId::parse(text)
        .map_err(|_| Error::invalid_param(format!("`{text}` is not a user ID.")))
}

#[derive(Deserialize)]
struct NewPassword {
    password: String,
}

/// `POST /_kith/admin/v1/users/{user_id}/password`: a new password; every device of the
/// account is logged out.
async fn reset_password(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    Path(user): Path<String>,
    JsonBody(body): JsonBody<NewPassword>,
) -> Result<Json<Value>> {
    require_admin(&session)?;
    services
        .dashboard
        .reset_password(&user_id(&user)?, &body.password)
        .await?;
    Ok(Json(json!({})))
}

/// `POST /_kith/admin/v1/users/{user_id}/deactivate`
async fn deactivate(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    Path(user): Path<String>,
) -> Result<Json<Value>> {
    require_admin(&session)?;
    let user = user_id(&user)?;
    if user == session.user_id {
        return Err(Error::forbidden(
            "You cannot deactivate your own account from the dashboard.",
        ));
    }
    services.dashboard.deactivate(&user).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct AdminFlag {
    admin: bool,
}

/// `PUT /_kith/admin/v1/users/{user_id}/admin` with `{"admin": true|false}`.
async fn set_admin(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    Path(user): Path<String>,
    JsonBody(body): JsonBody<AdminFlag>,
) -> Result<Json<Value>> {
    require_admin(&session)?;
    services
        .dashboard
        .set_admin(&user_id(&user)?, body.admin)
        .await?;
    Ok(Json(json!({})))
}

/// `GET /_kith/admin/v1/registration_tokens`
async fn tokens(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
) -> Result<Json<Value>> {
    require_admin(&session)?;
    to_json(&services.dashboard.tokens().await?)
}

#[derive(Deserialize, Default)]
struct NewToken {
    #[serde(default)]
    uses_allowed: Option<u32>,
    #[serde(default)]
    expiry_ts: Option<i64>,
}

/// `POST /_kith/admin/v1/registration_tokens` with optional `uses_allowed` and `expiry_ts`.
async fn create_token(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    JsonBody(body): JsonBody<NewToken>,
) -> Result<Json<Value>> {
    require_admin(&session)?;
    to_json(
        &services
            .dashboard
            .create_token(body.uses_allowed, body.expiry_ts)
            .await?,
    )
}

/// `DELETE /_kith/admin/v1/registration_tokens/{token}`
async fn revoke_token(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    Path(token): Path<String>,
) -> Result<Json<Value>> {
    require_admin(&session)?;
    services.dashboard.revoke_token(&token).await?;
    Ok(Json(json!({})))
}

/// `GET /_kith/admin/v1/rooms`
async fn rooms(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
) -> Result<Json<Value>> {
    require_admin(&session)?;
    to_json(&services.dashboard.rooms().await?)
}

/// `GET /_kith/admin/v1/rooms/{room_id}/members`
async fn members(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    Path(room_id): Path<String>,
) -> Result<Json<Value>> {
    require_admin(&session)?;
    to_json(&services.dashboard.members(&room_id).await?)
}

/// `POST /_kith/admin/v1/rooms/{room_id}/close`: every user of this server leaves the
/// room, and its aliases and directory entry here go.
async fn close_room(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    Path(room_id): Path<String>,
) -> Result<Json<Value>> {
    require_admin(&session)?;
    to_json(&services.dashboard.close_room(&room_id).await?)
}

/// `DELETE /_kith/admin/v1/rooms/{room_id}`: closes the room, then removes it and its
/// history from this server.
async fn delete_room(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    Path(room_id): Path<String>,
) -> Result<Json<Value>> {
    require_admin(&session)?;
    to_json(&services.dashboard.delete_room(&room_id).await?)
}

/// `GET /_kith/admin/v1/federation/destinations`: every server this one sends to.
async fn destinations(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
) -> Result<Json<Value>> {
    require_admin(&session)?;
    to_json(&services.dashboard.destinations().await?)
}

/// `POST /_kith/admin/v1/server/restart`: stops and starts the server again with its
/// config file (as the settings page needs). Only where something restarts it: `kith
/// serve` and the desktop app do.
async fn restart(
    Extension(runtime): Extension<Arc<Runtime>>,
    AuthedUser(session): AuthedUser,
) -> Result<Json<Value>> {
    require_admin(&session)?;
    if runtime.config_file.is_none() {
        return Err(Error::forbidden(
            "This server was started without a config file: it has nothing to restart with.",
        ));
    }
    runtime.restart.notify_one();
    to_json(&Restarting { restarting: true })
}

/// `GET /_kith/admin/v1/logs?after=SEQ&level=info&limit=500`: the log lines after `after`
/// (the last `seq` seen), at `level` or more severe, oldest first.
async fn logs(
    Extension(runtime): Extension<Arc<Runtime>>,
    AuthedUser(session): AuthedUser,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>> {
    require_admin(&session)?;
    let query = query.as_deref();
    let after = match query_value(query, "after") {
        Some(text) => text
            .parse::<u64>()
            .map_err(|_| Error::invalid_param(format!("after `{text}` is not a number")))?,
        None => 0,
    };
    let level = match query_value(query, "level") {
        Some(text) => text.parse::<tracing::Level>().map_err(|_| {
            Error::invalid_param(format!(
                "level `{text}` is not one of error, warn, info, debug, trace"
            ))
        })?,
        None => tracing::Level::INFO,
    };
    let limit = query_value(query, "limit")
        .and_then(|text| text.parse::<usize>().ok())
        .unwrap_or(500)
        .min(2000);
    let buffer = runtime
        .logs
        .as_ref()
        .ok_or_else(|| Error::not_found("This server keeps no log in memory."))?;
    to_json(&buffer.lines(after, level, limit))
}

fn config_file(runtime: &Runtime) -> Result<std::path::PathBuf> {
    runtime.config_file.clone().ok_or_else(|| {
        Error::forbidden("This server was started without a config file, so it has none to edit.")
    })
}

/// `GET /_kith/admin/v1/config`: the config file's text.
async fn config_text(
    Extension(runtime): Extension<Arc<Runtime>>,
    AuthedUser(session): AuthedUser,
) -> Result<Json<Value>> {
    require_admin(&session)?;
    let path = config_file(&runtime)?;
    let read = path.clone();
    let text = tokio::task::spawn_blocking(move || std::fs::read_to_string(read))
        .await
        .map_err(Error::internal)??;
    to_json(&ConfigText {
        path: path.display().to_string(),
        text,
    })
}

#[derive(Deserialize)]
struct ConfigBody {
    text: String,
}

async fn config_problems(services: &Services, text: &str) -> Result<Vec<AnswerProblem>> {
    let accounts_exist = services.users.count().await? > 0;
    Ok(check_config_text(
        text,
        services.identity.server_name.as_str(),
        accounts_exist,
    ))
}

/// `POST /_kith/admin/v1/config/check` with `{"text": ...}`: every problem of a config text.
async fn check_config(
    State(services): State<Services>,
    AuthedUser(session): AuthedUser,
    JsonBody(body): JsonBody<ConfigBody>,
) -> Result<Json<Value>> {
    require_admin(&session)?;
    to_json(&config_problems(&services, &body.text).await?)
}

/// `PUT /_kith/admin/v1/config` with `{"text": ...}`: checks the text, writes it as the
/// config file (as given, comments and all), and restarts the server to take it.
async fn save_config(
    State(services): State<Services>,
    Extension(runtime): Extension<Arc<Runtime>>,
    AuthedUser(session): AuthedUser,
    JsonBody(body): JsonBody<ConfigBody>,
) -> Result<Json<Value>> {
    require_admin(&session)?;
    let path = config_file(&runtime)?;
    let problems = config_problems(&services, &body.text).await?;
    if let Some(problem) = problems.first() {
        return Err(Error::invalid_param(format!(
            "{} problem(s), the first: {}{}",
            problems.len(),
            if problem.field.is_empty() {
                String::new()
            } else {
                format!("{}: ", problem.field)
            },
            problem.message
        )));
    }
    tokio::task::spawn_blocking(move || crate::config::write_file(&path, &body.text))
        .await
        .map_err(Error::internal)??;
    tracing::info!("the settings page wrote a new config; restarting");
    runtime.restart.notify_one();
    to_json(&Restarting { restarting: true })
}

/// `GET /_kith/admin/v1/backup`: the whole data dir as one tar file (a consistent database
/// snapshot, keys, certificates, media, config), made now and streamed.
async fn backup(
    State(services): State<Services>,
    Extension(runtime): Extension<Arc<Runtime>>,
    AuthedUser(session): AuthedUser,
) -> Result<axum::response::Response> {
    require_admin(&session)?;
    let path = services
        .dashboard
        .export_backup(&runtime.data_dir, runtime.config_file.as_deref())
        .await?;
    let file = tokio::fs::File::open(&path).await?;
    let length = file.metadata().await?.len();
    // Unix keeps the open file readable; elsewhere the next backup clears the work folder.
    if let Err(e) = tokio::fs::remove_file(&path).await {
        tracing::debug!(error = %e, "the backup file stays until the next backup");
    }
    let name = format!(
        "kith-backup-{}-{}.tar",
        services.identity.server_name,
        crate::storage::now_ms() / 1000
    );
    let body = axum::body::Body::from_stream(crate::api::client::media::file_stream(file));
    axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "application/x-tar")
        .header(axum::http::header::CONTENT_LENGTH, length)
        .header(
            axum::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        )
        .body(body)
        .map_err(Error::internal)
}

/// `POST /_kith/admin/v1/restore` with a backup as the body: checks it, stages it, and
/// restarts; the server comes back with the backup's data (what it replaces is kept in
/// `before-restore-<time>/` in the data dir).
async fn restore(
    State(services): State<Services>,
    Extension(runtime): Extension<Arc<Runtime>>,
    AuthedUser(session): AuthedUser,
    body: axum::body::Body,
) -> Result<Json<Value>> {
    use http_body_util::BodyExt as _;
    use tokio::io::AsyncWriteExt as _;
    require_admin(&session)?;
    if runtime.config_file.is_none() {
        return Err(Error::forbidden(
            "This server was started without a config file: nothing would restart it.",
        ));
    }
    let data_dir = runtime.data_dir.clone();
    let upload = crate::service::archive::upload_path(&data_dir)?;
    let mut file = tokio::fs::File::create(&upload).await?;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Error::bad_json(format!("the upload broke off: {e}")))?;
        if let Ok(chunk) = frame.into_data() {
            file.write_all(&chunk).await?;
        }
    }
    file.sync_all().await?;
    drop(file);
    let staged = upload.clone();
    let manifest = tokio::task::spawn_blocking(move || {
        crate::service::archive::stage_restore(&data_dir, &staged)
    })
    .await
    .map_err(Error::internal)?;
    let manifest = match manifest {
        Ok(manifest) => manifest,
        Err(e) => {
            let _ = tokio::fs::remove_file(&upload).await;
            return Err(e);
        }
    };
    if manifest.server_name != services.identity.server_name.as_str() {
        tracing::warn!(
            from = %manifest.server_name,
            "restoring a backup of another server name"
        );
    }
    tracing::info!("a backup is staged; restarting to restore it");
    runtime.restart.notify_one();
    to_json(&manifest)
}
