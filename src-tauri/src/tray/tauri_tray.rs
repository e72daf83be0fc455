//! The tray on Windows and macOS: Tauri's tray icon, whose menu runs the shared actions.
//! (Built on Linux too, so that it compiles here, but not used there: see `sni`.)
#![cfg_attr(target_os = "linux", allow(dead_code))]

use std::sync::Arc;

use tauri::{
    AppHandle, Manager, Wry,
    image::Image,
    menu::{CheckMenuItem, IsMenuItem, Menu, MenuItem, PredefinedMenuItem},
    tray::TrayIconBuilder,
};
use tauri_plugin_autostart::ManagerExt as _;
use tauri_plugin_clipboard_manager::ClipboardExt as _;

use super::{Action, Light, View, dotted_icon};
use crate::desktop::Desktop;

const TRAY: &str = "kith";

/// The menu items whose text or state changes.
struct TrayItems {
    status: MenuItem<Wry>,
    toggle: MenuItem<Wry>,
    check: MenuItem<Wry>,
}

fn icon(desktop: &Desktop, light: Light) -> Option<Image<'static>> {
    let (base, width, height) = desktop.icon.as_ref()?;
    Some(Image::new_owned(
        dotted_icon(base, *width, *height, light),
        *width,
        *height,
    ))
}

/// Builds the tray icon and its menu.
pub fn build(app: &AppHandle, desktop: &Arc<Desktop>) -> tauri::Result<()> {
    let view = View::starting();
    let status = MenuItem::with_id(app, "status", &view.line, false, None::<&str>)?;
    let separator = PredefinedMenuItem::separator(app)?;
    let mut actions: Vec<Box<dyn IsMenuItem<Wry>>> = Vec::new();
    let mut toggle = None;
    let mut check = None;
    for action in Action::ALL {
        let (id, label) = (action.id(), action.label(&view));
        if action == Action::Autostart {
            let on = super::autostart_enabled(desktop);
            actions.push(Box::new(CheckMenuItem::with_id(
                app,
                id,
                label,
                true,
                on,
                None::<&str>,
            )?));
            continue;
        }
        let item = MenuItem::with_id(app, id, label, action.enabled(&view), None::<&str>)?;
        match action {
            Action::Toggle => toggle = Some(item.clone()),
            Action::Check => check = Some(item.clone()),
            _ => {}
        }
        actions.push(Box::new(item));
    }
    let mut items: Vec<&dyn IsMenuItem<Wry>> = vec![&status, &separator];
    items.extend(actions.iter().map(|item| item.as_ref()));
    let menu = Menu::with_items(app, &items)?;
    let menu_desktop = desktop.clone();
    let mut builder = TrayIconBuilder::with_id(TRAY)
        .menu(&menu)
        .show_menu_on_left_click(true)
        .tooltip("Kith")
        .on_menu_event(move |_app, event| {
            if let Some(action) = Action::from_id(event.id.as_ref()) {
                super::perform(&menu_desktop, action);
            }
        });
    if let Some(image) = icon(desktop, view.light) {
        builder = builder.icon(image);
    }
    builder.build(app)?;
    if let (Some(toggle), Some(check)) = (toggle, check) {
        app.manage(TrayItems {
            status,
            toggle,
            check,
        });
    }
    Ok(())
}

/// Shows `view` on the tray icon, when there is one.
pub fn show(app: &AppHandle, desktop: &Desktop, view: &View) {
    if let Some(items) = app.try_state::<TrayItems>() {
        let _ = items.status.set_text(&view.line);
        let _ = items.toggle.set_text(view.toggle_label());
        let _ = items.check.set_enabled(Action::Check.enabled(view));
    }
    if let Some(tray) = app.tray_by_id(TRAY) {
        let _ = tray.set_tooltip(Some(&view.line));
        if let Some(image) = icon(desktop, view.light) {
            let _ = tray.set_icon(Some(image));
        }
    }
}

pub fn autostart_enabled(desktop: &Desktop) -> Result<bool, String> {
    let app = desktop.app().ok_or("no app")?;
    app.autolaunch().is_enabled().map_err(|e| e.to_string())
}

pub fn toggle_autostart(desktop: &Desktop) -> Result<(), String> {
    let app = desktop.app().ok_or("no app")?;
    let launcher = app.autolaunch();
    let result = if launcher.is_enabled().unwrap_or(false) {
        launcher.disable()
    } else {
        launcher.enable()
    };
    result.map_err(|e| e.to_string())
}

pub fn copy(desktop: &Desktop, text: String) -> Result<(), String> {
    let app = desktop.app().ok_or("no app")?;
    app.clipboard().write_text(text).map_err(|e| e.to_string())
}
