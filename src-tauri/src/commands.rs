//! The window's commands: one for each call of the HTTP setup and admin APIs
//! (`server-core/src/api/admin/`), with the same names, arguments and answers, over the
//! same server-core functions. The desktop app is trusted, so there is no token; the
//! setup commands work while no admin exists, as the setup link does.

use std::sync::Arc;

use kith::service::{
    archive::{self, Manifest},
    checker::{Checker, CheckerOptions, report::Report},
    dashboard::{
        ClosedRoom, Destination, RegistrationToken, RoomMember, RoomSummary, Stats, Status,
        UserSummary,
    },
    portmap::PortMapReport,
    setup::{
        AdminCheck, AnswerProblem, Applied, ConfigText, Restarting, SetupAnswers, SetupCheck,
        SetupState, UiLogin, check_admin as check_admin_answers, check_config_text,
    },
    users::LoginRequest,
};
use serde::Serialize;
use tauri::State;

use crate::desktop::{CommandError, Desktop};

type Shell<'a> = State<'a, Arc<Desktop>>;
type Answer<T> = Result<T, CommandError>;

fn user_id(text: &str) -> Answer<ruma::OwnedUserId> {
    ruma::UserId::parse(text)
        .map_err(|_| CommandError::new("M_INVALID_PARAM", format!("`{text}` is not a user ID.")))
}

#[tauri::command]
pub async fn setup_state(shell: Shell<'_>) -> Answer<SetupState> {
    let config = shell.base_config();
    let needs_setup = match shell.services().await {
        Ok(services) => !services.dashboard.has_admin().await?,
        Err(_) => !shell.configured(),
    };
    Ok(SetupState {
        needs_setup,
        server_name: config.server_name,
        version: env!("CARGO_PKG_VERSION").to_owned(),
    })
}

#[tauri::command]
pub async fn setup_answers(shell: Shell<'_>) -> Answer<SetupAnswers> {
    Ok(SetupAnswers::from_config(&shell.base_config()))
}

#[tauri::command]
pub async fn check_setup(shell: Shell<'_>, answers: SetupAnswers) -> Answer<SetupCheck> {
    Ok(answers.check(&shell.base_config()))
}

#[tauri::command]
pub async fn check_admin(
    shell: Shell<'_>,
    username: String,
    password: String,
    server_name: Option<String>,
) -> Answer<AdminCheck> {
    let server_name = server_name
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| shell.base_config().server_name);
    Ok(check_admin_answers(
        &username,
        &password,
        server_name.trim(),
    ))
}

/// The checker: the running server's (with its configured DNS and CA), or a plain one
/// before the server exists.
async fn federation_report(shell: &Desktop, server_name: &str) -> Answer<Report> {
    if let Ok(services) = shell.services().await {
        return Ok(services.health.check(server_name).await?);
    }
    let checker = Checker::new(&CheckerOptions {
        dns_server: None,
        extra_roots_pem: None,
        timeout: std::time::Duration::ZERO,
    })
    .map_err(|e| CommandError::new("M_UNKNOWN", e))?;
    Ok(checker.check(server_name).await)
}

#[tauri::command]
pub async fn federation_check(shell: Shell<'_>, server_name: String) -> Answer<Report> {
    federation_report(&shell, &server_name).await
}

#[tauri::command]
pub async fn check_federation(shell: Shell<'_>, server_name: String) -> Answer<Report> {
    federation_report(&shell, &server_name).await
}

#[tauri::command]
pub async fn port_mapping(shell: Shell<'_>, ports: Vec<(u16, u16)>) -> Answer<PortMapReport> {
    if ports.is_empty() {
        return Err(CommandError::new(
            "M_INVALID_PARAM",
            "There is no port to open.",
        ));
    }
    let search = shell.base_config().network.upnp_search_address.parse().ok();
    kith::service::portmap::map_ports(&ports, search, std::time::Duration::from_secs(5))
        .await
        .map_err(|e| CommandError::new("M_UNKNOWN", e))
}

/// Writes the wizard's answers into the config file and (re)starts the server with it.
#[tauri::command]
pub async fn apply_setup(shell: Shell<'_>, answers: SetupAnswers) -> Answer<Applied> {
    let base = shell.base_config();
    let (current_name, accounts_exist) = match shell.services().await {
        Ok(services) => (
            services.identity.server_name.to_string(),
            services.users.count().await? > 0,
        ),
        Err(_) => (base.server_name.clone(), false),
    };
    let config = answers.config_to_apply(&base, &current_name, accounts_exist)?;
    config
        .write_to(&shell.config_path)
        .map_err(|e| CommandError::new("KITH_CONFIG", format!("cannot write the config: {e}")))?;
    tracing::info!(config_file = %shell.config_path.display(), "the wizard wrote the config");
    shell.restart().await?;
    Ok(Applied {
        config_file: shell.config_path.display().to_string(),
        restarting: true,
    })
}

#[tauri::command]
pub async fn create_first_admin(
    shell: Shell<'_>,
    username: String,
    password: String,
) -> Answer<UiLogin> {
    let services = shell.services().await?;
    if services.dashboard.has_admin().await? {
        return Err(CommandError::new(
            "M_FORBIDDEN",
            "An admin exists: create accounts from the dashboard's Users page.",
        ));
    }
    let user = services
        .dashboard
        .create_user(&username, &password, true)
        .await?;
    let tokens = services
        .users
        .start_session(
            &user_id(&user.user_id)?,
            LoginRequest {
                initial_device_display_name: Some("Kith desktop".to_owned()),
                ..LoginRequest::default()
            },
        )
        .await?;
    Ok(UiLogin {
        user_id: tokens.user_id.to_string(),
        access_token: tokens.access_token,
        device_id: tokens.device_id.to_string(),
    })
}

#[tauri::command]
pub async fn status(shell: Shell<'_>) -> Answer<Status> {
    shell.status().await
}

#[tauri::command]
pub async fn stats(shell: Shell<'_>) -> Answer<Stats> {
    Ok(shell.services().await?.dashboard.stats())
}

#[tauri::command]
pub async fn users(shell: Shell<'_>) -> Answer<Vec<UserSummary>> {
    Ok(shell.services().await?.dashboard.users().await?)
}

#[tauri::command]
pub async fn create_user(
    shell: Shell<'_>,
    username: String,
    password: String,
    admin: bool,
) -> Answer<UserSummary> {
    Ok(shell
        .services()
        .await?
        .dashboard
        .create_user(&username, &password, admin)
        .await?)
}

#[tauri::command]
pub async fn reset_password(shell: Shell<'_>, user_id: String, password: String) -> Answer<()> {
    let user = self::user_id(&user_id)?;
    Ok(shell
        .services()
        .await?
        .dashboard
        .reset_password(&user, &password)
        .await?)
}

#[tauri::command]
pub async fn deactivate_user(shell: Shell<'_>, user_id: String) -> Answer<()> {
    let user = self::user_id(&user_id)?;
    Ok(shell.services().await?.dashboard.deactivate(&user).await?)
}

#[tauri::command]
pub async fn set_admin(shell: Shell<'_>, user_id: String, admin: bool) -> Answer<()> {
    let user = self::user_id(&user_id)?;
    Ok(shell
        .services()
        .await?
        .dashboard
        .set_admin(&user, admin)
        .await?)
}

#[tauri::command]
pub async fn tokens(shell: Shell<'_>) -> Answer<Vec<RegistrationToken>> {
    Ok(shell.services().await?.dashboard.tokens().await?)
}

#[tauri::command]
pub async fn create_token(
    shell: Shell<'_>,
    uses_allowed: Option<u32>,
    expiry_ts: Option<i64>,
) -> Answer<RegistrationToken> {
    Ok(shell
        .services()
        .await?
        .dashboard
        .create_token(uses_allowed, expiry_ts)
        .await?)
}

#[tauri::command]
pub async fn revoke_token(shell: Shell<'_>, token: String) -> Answer<()> {
    Ok(shell
        .services()
        .await?
        .dashboard
        .revoke_token(&token)
        .await?)
}

#[tauri::command]
pub async fn rooms(shell: Shell<'_>) -> Answer<Vec<RoomSummary>> {
    Ok(shell.services().await?.dashboard.rooms().await?)
}

#[tauri::command]
pub async fn room_members(shell: Shell<'_>, room_id: String) -> Answer<Vec<RoomMember>> {
    Ok(shell.services().await?.dashboard.members(&room_id).await?)
}

#[tauri::command]
pub async fn close_room(shell: Shell<'_>, room_id: String) -> Answer<ClosedRoom> {
    Ok(shell
        .services()
        .await?
        .dashboard
        .close_room(&room_id)
        .await?)
}

#[tauri::command]
pub async fn delete_room(shell: Shell<'_>, room_id: String) -> Answer<ClosedRoom> {
    Ok(shell
        .services()
        .await?
        .dashboard
        .delete_room(&room_id)
        .await?)
}

#[tauri::command]
pub async fn destinations(shell: Shell<'_>) -> Answer<Vec<Destination>> {
    Ok(shell.services().await?.dashboard.destinations().await?)
}

#[tauri::command]
pub async fn restart(shell: Shell<'_>) -> Answer<Restarting> {
    shell.inner().restart().await?;
    Ok(Restarting { restarting: true })
}

#[tauri::command]
pub async fn logs(
    shell: Shell<'_>,
    after: Option<u64>,
    level: Option<String>,
) -> Answer<Vec<kith::logging::LogLine>> {
    let level = match level {
        Some(text) => text.parse::<tracing::Level>().map_err(|_| {
            CommandError::new(
                "M_INVALID_PARAM",
                format!("level `{text}` is not one of error, warn, info, debug, trace"),
            )
        })?,
        None => tracing::Level::INFO,
    };
    Ok(shell.logs.lines(after.unwrap_or(0), level, 500))
}

#[tauri::command]
pub async fn config_text(shell: Shell<'_>) -> Answer<ConfigText> {
    let text = std::fs::read_to_string(&shell.config_path)
        .map_err(|e| CommandError::new("KITH_CONFIG", format!("cannot read the config: {e}")))?;
    Ok(ConfigText {
        path: shell.config_path.display().to_string(),
        text,
    })
}

async fn config_problems(shell: &Desktop, text: &str) -> Answer<Vec<AnswerProblem>> {
    let base = shell.base_config();
    let (current_name, accounts_exist) = match shell.services().await {
        Ok(services) => (
            services.identity.server_name.to_string(),
            services.users.count().await? > 0,
        ),
        Err(_) => (base.server_name, false),
    };
    Ok(check_config_text(text, &current_name, accounts_exist))
}

#[tauri::command]
pub async fn check_config(shell: Shell<'_>, text: String) -> Answer<Vec<AnswerProblem>> {
    config_problems(&shell, &text).await
}

#[tauri::command]
pub async fn save_config(shell: Shell<'_>, text: String) -> Answer<Restarting> {
    let problems = config_problems(&shell, &text).await?;
    if let Some(problem) = problems.first() {
        return Err(CommandError::new(
            "M_INVALID_PARAM",
            format!(
                "{} problem(s), the first: {}",
                problems.len(),
                problem.message
            ),
        ));
    }
    kith::config::write_file(&shell.config_path, &text)
        .map_err(|e| CommandError::new("KITH_CONFIG", format!("cannot write the config: {e}")))?;
    shell.inner().restart().await?;
    Ok(Restarting { restarting: true })
}

/// Where a backup went.
#[derive(Serialize)]
pub struct Saved {
    path: String,
}

/// Makes a backup into `path`, or into the user's documents folder.
#[tauri::command]
pub async fn backup(shell: Shell<'_>, path: Option<String>) -> Answer<Saved> {
    let services = shell.services().await?;
    let data_dir = shell.config()?.resolved_data_dir(&shell.config_path);
    let made = services
        .dashboard
        .export_backup(&data_dir, Some(&shell.config_path))
        .await?;
    let name = format!(
        "kith-backup-{}-{}.tar",
        services.identity.server_name,
        kith::storage::now_ms() / 1000
    );
    let dest = match path.filter(|p| !p.trim().is_empty()) {
        Some(path) => std::path::PathBuf::from(path.trim()),
        None => directories::UserDirs::new()
            .and_then(|dirs| dirs.document_dir().map(|d| d.to_path_buf()))
            .or_else(|| directories::BaseDirs::new().map(|dirs| dirs.home_dir().to_path_buf()))
            .ok_or_else(|| {
                CommandError::new("M_UNKNOWN", "There is no documents folder; give a path.")
            })?
            .join(name),
    };
    let moved = std::fs::rename(&made, &dest).or_else(|_| {
        std::fs::copy(&made, &dest)?;
        std::fs::remove_file(&made)
    });
    moved.map_err(|e| {
        CommandError::new("M_UNKNOWN", format!("cannot write {}: {e}", dest.display()))
    })?;
    Ok(Saved {
        path: dest.display().to_string(),
    })
}

/// Stages the backup at `path` and restarts to restore it.
#[tauri::command]
pub async fn restore(shell: Shell<'_>, path: String) -> Answer<Manifest> {
    let data_dir = shell.config()?.resolved_data_dir(&shell.config_path);
    let upload = archive::upload_path(&data_dir)?;
    std::fs::copy(path.trim(), &upload).map_err(|e| {
        CommandError::new("M_NOT_FOUND", format!("cannot read {}: {e}", path.trim()))
    })?;
    let manifest = match archive::stage_restore(&data_dir, &upload) {
        Ok(manifest) => manifest,
        Err(e) => {
            let _ = std::fs::remove_file(&upload);
            return Err(e.into());
        }
    };
    shell.inner().restart().await?;
    Ok(manifest)
}
