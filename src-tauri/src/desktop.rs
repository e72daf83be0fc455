//! The server inside the app: started from the config file when there is one, stopped and
//! started again from the tray, the wizard or the dashboard, and its events forwarded to
//! the window (`server-event`) and the tray. It also knows the app around the server: its
//! window (which may not exist yet; on Linux, not even its window system: see main.rs),
//! its tray, and how to quit.

use std::{path::PathBuf, sync::Arc};

use kith::{
    Config, RunningServer, ServerEvent, StartOptions,
    service::{Services, dashboard::Status},
};
use serde::Serialize;
use tauri::{AppHandle, Emitter};
use tokio::sync::Mutex;

/// An error as the UI receives it: `{code, message}`, like the HTTP admin API's
/// `{errcode, error}`.
#[derive(Debug, Clone, Serialize)]
pub struct CommandError {
    /// A Matrix errcode (`M_FORBIDDEN`, ...), or `KITH_STOPPED` when the server is not
    /// running, or `KITH_CONFIG` for a config that cannot be read.
    pub code: String,
    /// What went wrong, for the user.
    pub message: String,
}

impl CommandError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    fn stopped() -> Self {
        Self::new(
            "KITH_STOPPED",
            "The server is stopped: start it from the tray menu.",
        )
    }
}

impl From<kith::Error> for CommandError {
    fn from(e: kith::Error) -> Self {
        if matches!(e, kith::Error::Internal(_)) {
            tracing::warn!(error = %e, "command failed");
        }
        Self::new(e.errcode(), e.user_message())
    }
}

/// What the shell knows about its server.
pub struct Desktop {
    /// The config file (the wizard writes it; its folder is the data dir by default).
    pub config_path: PathBuf,
    /// The log lines kept for the dashboard.
    pub logs: kith::logging::LogBuffer,
    /// The server, and the task that restarts it when the admin API asks.
    server: Mutex<Option<(RunningServer, tokio::task::JoinHandle<()>)>>,
    /// The window system (Tauri), once it runs.
    app: std::sync::OnceLock<AppHandle>,
    /// Until Tauri runs, the way to ask the main thread to start it (or to end).
    wake: Option<std::sync::mpsc::Sender<Wake>>,
    /// The app's icon (RGBA, width, height), which the tray paints its status dot on.
    pub icon: Option<(Vec<u8>, u32, u32)>,
    /// The tray icon, on Linux (elsewhere it is Tauri's, found through `app`).
    #[cfg(target_os = "linux")]
    pub tray: std::sync::OnceLock<ksni::Handle<crate::tray::sni::SniTray>>,
}

/// What the main thread waits for while Tauri does not run yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Start Tauri and open the window.
    OpenWindow,
    /// End the app (the server is stopped already).
    Quit,
}

/// A server event as the window receives it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UiEvent {
    Started { client_addr: String },
    FederationHealth { state: String, summary: String },
    Certificate { summary: String },
    Stopping,
    Stopped,
}

impl From<&ServerEvent> for UiEvent {
    fn from(event: &ServerEvent) -> Self {
        match event {
            ServerEvent::Started { client_addr } => Self::Started {
                client_addr: client_addr.to_string(),
            },
            ServerEvent::FederationHealth { state, summary } => Self::FederationHealth {
                state: format!("{state:?}").to_lowercase(),
                summary: summary.clone(),
            },
            ServerEvent::Certificate(event) => Self::Certificate {
                summary: event.message.clone(),
            },
            ServerEvent::Stopping => Self::Stopping,
            ServerEvent::Stopped => Self::Stopped,
        }
    }
}

impl Desktop {
    pub fn new(
        config_path: PathBuf,
        logs: kith::logging::LogBuffer,
        icon: Option<(Vec<u8>, u32, u32)>,
        wake: Option<std::sync::mpsc::Sender<Wake>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            config_path,
            logs,
            server: Mutex::new(None),
            app: std::sync::OnceLock::new(),
            wake,
            icon,
            #[cfg(target_os = "linux")]
            tray: std::sync::OnceLock::new(),
        })
    }

    /// Where events go; set once the app exists.
    pub fn attach(&self, app: AppHandle) {
        let _ = self.app.set(app);
    }

    /// The window system, once it runs.
    pub fn app(&self) -> Option<&AppHandle> {
        self.app.get()
    }

    /// Opens the dashboard window, starting the window system first if it does not run.
    pub fn open_window(&self) {
        if let Some(app) = self.app.get() {
            let handle = app.clone();
            if let Err(e) = app.run_on_main_thread(move || crate::open_window(&handle)) {
                tracing::warn!(error = %e, "cannot open the window");
            }
        } else {
            self.wake(Wake::OpenWindow);
        }
    }

    /// Stops the server, then ends the app.
    pub async fn quit(self: &Arc<Self>) {
        if let Err(e) = self.stop().await {
            tracing::warn!(message = %e.message, "stopping before quitting");
        }
        match self.app.get() {
            Some(app) => app.exit(0),
            None => self.wake(Wake::Quit),
        }
    }

    fn wake(&self, wake: Wake) {
        if let Some(sender) = &self.wake {
            // Read by the main thread, or by Tauri's setup if it is starting already.
            let _ = sender.send(wake);
        }
    }

    /// Whether a config file exists (otherwise the wizard runs first).
    pub fn configured(&self) -> bool {
        self.config_path.is_file()
    }

    /// The config in the file, checked.
    pub fn config(&self) -> Result<Config, CommandError> {
        let config = Config::load(&self.config_path)
            .map_err(|problems| config_error(&self.config_path, &problems))?;
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(config_error(&self.config_path, &problems))
        }
    }

    /// The config to start the wizard from: the file's, or the defaults.
    pub fn base_config(&self) -> Config {
        if self.configured() {
            Config::load(&self.config_path).unwrap_or_default()
        } else {
            Config::default()
        }
    }

    pub async fn running(&self) -> bool {
        self.server.lock().await.is_some()
    }

    /// The running server's services (cheap clones), or `KITH_STOPPED`.
    pub async fn services(&self) -> Result<Services, CommandError> {
        self.server
            .lock()
            .await
            .as_ref()
            .map(|(server, _)| server.services().clone())
            .ok_or_else(CommandError::stopped)
    }

    pub async fn status(&self) -> Result<Status, CommandError> {
        match self.server.lock().await.as_ref() {
            Some((server, _)) => Ok(server.status().await?),
            None => Err(CommandError::stopped()),
        }
    }

    /// Starts the server from the config file (nothing happens when it runs already).
    pub async fn start(self: &Arc<Self>) -> Result<(), CommandError> {
        let mut slot = self.server.lock().await;
        if slot.is_some() {
            return Ok(());
        }
        let config = self.config()?;
        let data_dir = config.resolved_data_dir(&self.config_path);
        let server = kith::start_with(
            config,
            data_dir,
            StartOptions {
                config_file: Some(self.config_path.clone()),
                logs: Some(self.logs.clone()),
            },
        )
        .await?;
        self.forward_events(&server);
        // The HTTP admin API (the same UI in a browser) may ask for a restart too.
        let restart = server.restart_signal();
        let me = self.clone();
        let watch = tokio::spawn(async move {
            restart.await;
            if let Err(e) = me.restart().await {
                tracing::warn!(message = %e.message, "restart failed");
            }
        });
        *slot = Some((server, watch));
        drop(slot);
        crate::tray::refresh(self);
        Ok(())
    }

    /// Stops the server gracefully (in-flight requests finish).
    pub async fn stop(self: &Arc<Self>) -> Result<(), CommandError> {
        let server = self.server.lock().await.take();
        if let Some((server, watch)) = server {
            // Not the watch's own restart: it is past waiting then, and ends by itself.
            if !watch.is_finished() && !is_current_task(&watch) {
                watch.abort();
            }
            server.stop().await?;
        }
        crate::tray::refresh(self);
        Ok(())
    }

    /// Stops and starts again from the config file. (Boxed: a started server's restart
    /// watch calls it, so its future contains itself.)
    pub fn restart(
        self: &Arc<Self>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), CommandError>> + Send + '_>> {
        Box::pin(async move {
            self.stop().await?;
            self.start().await
        })
    }

    /// Forwards the server's events to the window (when there is one: the window system
    /// may start later) and the tray.
    fn forward_events(self: &Arc<Self>, server: &RunningServer) {
        let mut events = server.subscribe();
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) => {
                        if let Some(app) = me.app.get() {
                            let _ = app.emit("server-event", UiEvent::from(&event));
                        }
                        crate::tray::refresh(&me);
                        if event == ServerEvent::Stopped {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
}

/// Whether `task` is the task running now (a restart asked through the admin API runs
/// in the watch task itself, which must not abort itself).
fn is_current_task(task: &tokio::task::JoinHandle<()>) -> bool {
    tokio::task::try_id() == Some(task.id())
}

fn config_error(path: &std::path::Path, problems: &[kith::config::Problem]) -> CommandError {
    let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
    CommandError::new(
        "KITH_CONFIG",
        format!("{} has problems: {}", path.display(), list.join("; ")),
    )
}
