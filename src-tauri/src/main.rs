//! Kith as a desktop app: the homeserver runs in this process (server-core, on its own
//! tokio runtime), the wizard and dashboard (`ui/`) in a window, and a tray icon shows
//! the federation health and memory. Closing the window keeps the server running in the
//! tray; only one instance runs (a second launch opens the first one's window).
//!
//! `kith-desktop [--hidden] [--config PATH]`: `--hidden` starts in the tray only (as
//! "Start with my computer" does). The window is not created until it is opened, and it
//! is destroyed (webview and all) when closed: memory matters on a family computer.
//!
//! On Linux a tray-only start does not even start the window system: GTK's start on X11
//! alone loads Mesa's OpenGL and LLVM (some 45 MiB), for a window nobody opened. The
//! server, the tray (`tray::sni`, D-Bus only) and the single-instance socket
//! (`instance`) run without it, and the main thread waits; the first request for the
//! window starts Tauri on the main thread, which then runs until the app ends. On
//! Windows and macOS, Tauri starts at once and the tray is its own.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod commands;
mod desktop;
#[cfg(target_os = "linux")]
mod instance;
mod tray;

use std::{path::PathBuf, sync::Arc, time::Duration};

use tauri::{AppHandle, Manager, RunEvent, WebviewWindowBuilder};

use crate::desktop::{Desktop, Wake};

/// Whether the window system waits until the window is first wanted (see above).
const LAZY_WINDOW_SYSTEM: bool = cfg!(target_os = "linux");

/// How often the tray's line is brought up to date.
const TRAY_REFRESH: Duration = Duration::from_secs(3);

struct Args {
    hidden: bool,
    config: Option<PathBuf>,
}

fn args() -> Args {
    let mut args = Args {
        hidden: false,
        config: None,
    };
    let mut iter = std::env::args().skip(1);
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--hidden" => args.hidden = true,
            "--config" => args.config = iter.next().map(PathBuf::from),
            _ => {}
        }
    }
    args
}

/// Opens the dashboard window, building it (and its webview) if it does not exist.
pub fn open_window(app: &AppHandle) {
    if let Some(window) = app.get_webview_window("main") {
        let _ = window.unminimize();
        let _ = window.show();
        let _ = window.set_focus();
        return;
    }
    let Some(config) = app.config().app.windows.first().cloned() else {
        return;
    };
    match WebviewWindowBuilder::from_config(app, &config).and_then(|b| b.build()) {
        Ok(window) => {
            let _ = window.set_focus();
        }
        Err(e) => tracing::error!(error = %e, "cannot open the window"),
    }
}

fn main() -> std::process::ExitCode {
    let logs = kith::logging::init();
    let args = args();
    let Some(config_path) = args
        .config
        .clone()
        .or_else(kith::config::default_config_path)
    else {
        eprintln!("Kith cannot find a home directory; pass --config PATH.");
        return std::process::ExitCode::FAILURE;
    };
    #[cfg(target_os = "linux")]
    let listener = match instance::claim(&config_path) {
        Ok(instance::Claim::First(listener)) => Some(listener),
        Ok(instance::Claim::Handed) => {
            eprintln!("Kith is running already: its window opens.");
            return std::process::ExitCode::SUCCESS;
        }
        Err(e) => {
            tracing::warn!(error = %e, "no single-instance socket");
            None
        }
    };
    // The server's runtime; Tauri's async commands run on it too.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("kith")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("Kith cannot start its runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    tauri::async_runtime::set(runtime.handle().clone());
    // The main thread spawns on it too (the tray's refreshes, from Tauri's callbacks).
    let _runtime = runtime.enter();
    let context = tauri::generate_context!();
    let icon = context
        .default_window_icon()
        .map(|image| (image.rgba().to_vec(), image.width(), image.height()));
    let (wake_tx, wake_rx) = std::sync::mpsc::channel();
    let desktop = Desktop::new(
        config_path,
        logs,
        icon,
        LAZY_WINDOW_SYSTEM.then_some(wake_tx),
    );
    let configured = desktop.configured();
    if configured {
        let desktop = desktop.clone();
        tokio::spawn(async move {
            if let Err(e) = desktop.start().await {
                tracing::error!(message = %e.message, "the server did not start");
            }
        });
    }
    let refresher = desktop.clone();
    tokio::spawn(async move {
        loop {
            tray::refresh(&refresher);
            tokio::time::sleep(TRAY_REFRESH).await;
        }
    });
    #[cfg(target_os = "linux")]
    {
        if let Some(listener) = listener {
            instance::serve(listener, desktop.clone());
        }
        if let Err(e) = runtime.block_on(tray::sni::build(&desktop)) {
            // No panel shows tray icons: the app still runs.
            tracing::warn!(error = %e, "no tray icon");
        }
    }
    // The wizard needs the window; so does a start without --hidden.
    let window_now = !args.hidden || !configured;
    if !window_now {
        eprintln!(
            "Kith is running in the tray. If no tray icon shows, start Kith again: \
             the second launch opens this one's window."
        );
    }
    if LAZY_WINDOW_SYSTEM && !window_now {
        // Nothing but the server and the tray until the window is wanted.
        loop {
            match wake_rx.recv() {
                Ok(Wake::OpenWindow) if has_display() => break,
                Ok(Wake::OpenWindow) => eprintln!(
                    "Kith has no display to open its window on; the server runs on. Its \
                     dashboard is also in a browser, at /_kith/ on the client address."
                ),
                Ok(Wake::Quit) | Err(_) => return std::process::ExitCode::SUCCESS,
            }
        }
    }
    run_tauri(context, desktop, window_now || LAZY_WINDOW_SYSTEM, wake_rx)
}

/// Whether there is a display for the window (GTK's start fails, and ends the app,
/// without one; a tray-only app on a machine without a display must not end so).
fn has_display() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
}

/// Runs Tauri (on the main thread) until the app ends; `open` opens the window at once.
fn run_tauri(
    context: tauri::Context,
    desktop: Arc<Desktop>,
    open: bool,
    wake: std::sync::mpsc::Receiver<Wake>,
) -> std::process::ExitCode {
    let setup_desktop = desktop.clone();
    let mut builder = tauri::Builder::default();
    if !LAZY_WINDOW_SYSTEM {
        builder = builder
            // First: a second launch hands over to this one, which opens its window.
            .plugin(tauri_plugin_single_instance::init(|app, _argv, _cwd| {
                open_window(app);
            }))
            .plugin(tauri_plugin_autostart::init(
                tauri_plugin_autostart::MacosLauncher::LaunchAgent,
                Some(vec!["--hidden"]),
            ))
            .plugin(tauri_plugin_clipboard_manager::init());
    }
    let app = builder
        .manage(desktop.clone())
        .invoke_handler(tauri::generate_handler![
            commands::setup_state,
            commands::setup_answers,
            commands::check_setup,
            commands::check_admin,
            commands::federation_check,
            commands::check_federation,
            commands::port_mapping,
            commands::apply_setup,
            commands::create_first_admin,
            commands::status,
            commands::stats,
            commands::users,
            commands::create_user,
            commands::reset_password,
            commands::deactivate_user,
            commands::set_admin,
            commands::tokens,
            commands::create_token,
            commands::revoke_token,
            commands::rooms,
            commands::room_members,
            commands::close_room,
            commands::delete_room,
            commands::destinations,
            commands::restart,
            commands::logs,
            commands::config_text,
            commands::check_config,
            commands::save_config,
            commands::backup,
            commands::restore,
        ])
        .setup(move |app| {
            let handle = app.handle().clone();
            setup_desktop.attach(handle.clone());
            // A Quit from the tray while Tauri was starting.
            if wake.try_iter().any(|w| w == Wake::Quit) {
                handle.exit(0);
                return Ok(());
            }
            if !LAZY_WINDOW_SYSTEM && let Err(e) = tray::tauri_tray::build(&handle, &setup_desktop)
            {
                // No tray (no system tray): the app still runs.
                tracing::warn!(error = %e, "no tray icon");
            }
            if open {
                open_window(&handle);
            }
            tray::refresh(&setup_desktop);
            Ok(())
        })
        .build(context);
    let app = match app {
        Ok(app) => app,
        Err(e) => {
            eprintln!("Kith cannot start its window system: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    app.run(move |_app, event| match event {
        // Closing the last window keeps the server running in the tray; only Quit (an
        // explicit exit code) ends the app.
        RunEvent::ExitRequested {
            api, code: None, ..
        } => api.prevent_exit(),
        RunEvent::Exit => {
            let desktop = desktop.clone();
            tauri::async_runtime::block_on(async move {
                if let Err(e) = desktop.stop().await {
                    tracing::warn!(message = %e.message, "stopping the server");
                }
            });
        }
        _ => {}
    });
    std::process::ExitCode::SUCCESS
}
