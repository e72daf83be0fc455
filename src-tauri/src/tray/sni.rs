//! The tray on Linux: a StatusNotifierItem with a dbusmenu menu (the `ksni` crate), spoken
//! over the D-Bus session bus to the panel (KDE, GNOME's AppIndicator extension, XFCE,
//! waybar...). It needs no window system, so that a tray-only start stays small; unlike
//! libappindicator it has a real tooltip, and a click on the icon opens the dashboard.
//! The clipboard and the autostart entry are done here without GTK too.

use std::sync::{Arc, Mutex};

use ksni::{
    MenuItem, ToolTip, TrayMethods as _,
    menu::{CheckmarkItem, StandardItem},
};

use super::{Action, View, dotted_icon};
use crate::desktop::Desktop;

/// The tray item's state, as the panel reads it.
pub struct SniTray {
    desktop: Arc<Desktop>,
    view: View,
    autostart: bool,
    runtime: tokio::runtime::Handle,
}

impl SniTray {
    fn perform(&self, action: Action) {
        let _guard = self.runtime.enter();
        super::perform(&self.desktop, action);
    }
}

impl ksni::Tray for SniTray {
    fn id(&self) -> String {
        "kith".to_owned()
    }

    fn title(&self) -> String {
        "Kith".to_owned()
    }

    /// A click on the icon opens the dashboard (the menu is on the other button).
    fn activate(&mut self, _x: i32, _y: i32) {
        self.perform(Action::Open);
    }

    fn icon_pixmap(&self) -> Vec<ksni::Icon> {
        let Some((base, width, height)) = self.desktop.icon.as_ref() else {
            return Vec::new();
        };
        let rgba = dotted_icon(base, *width, *height, self.view.light);
        // StatusNotifierItem pixmaps are ARGB32 in network byte order.
        let data = rgba
            .chunks_exact(4)
            .flat_map(|p| [p[3], p[0], p[1], p[2]])
            .collect();
        vec![ksni::Icon {
            width: i32::try_from(*width).unwrap_or(0),
            height: i32::try_from(*height).unwrap_or(0),
            data,
        }]
    }

    fn tool_tip(&self) -> ToolTip {
        ToolTip {
            title: self.view.line.clone(),
            ..Default::default()
        }
    }

    fn menu(&self) -> Vec<MenuItem<Self>> {
        let mut menu = vec![
            StandardItem {
                label: self.view.line.clone(),
                enabled: false,
                ..Default::default()
            }
            .into(),
            MenuItem::Separator,
        ];
        for action in Action::ALL {
            let label = action.label(&self.view).to_owned();
            let activate = Box::new(move |tray: &mut Self| tray.perform(action));
            menu.push(if action == Action::Autostart {
                CheckmarkItem {
                    label,
                    checked: self.autostart,
                    activate,
                    ..Default::default()
                }
                .into()
            } else {
                StandardItem {
                    label,
                    enabled: action.enabled(&self.view),
                    activate,
                    ..Default::default()
                }
                .into()
            });
        }
        menu
    }
}

/// Puts the tray item up. When no panel shows tray icons yet (none, or one that starts
/// after the app, as may happen when the app starts with the computer), the item waits
/// for one. Without a D-Bus session at all, this fails and the app runs without a tray.
pub async fn build(desktop: &Arc<Desktop>) -> Result<(), ksni::Error> {
    let tray = SniTray {
        desktop: desktop.clone(),
        view: View::starting(),
        autostart: super::autostart_enabled(desktop),
        runtime: tokio::runtime::Handle::current(),
    };
    // No well-known bus name: the panel finds the item by its unique name.
    let handle = tray
        .disable_dbus_name(true)
        .assume_sni_available(true)
        .spawn()
        .await?;
    let _ = desktop.tray.set(handle);
    Ok(())
}

/// Shows `view` (and the autostart entry's state) on the tray item, if there is one.
pub async fn show(desktop: &Desktop, view: View) {
    let Some(handle) = desktop.tray.get() else {
        return;
    };
    let autostart = super::autostart_enabled(desktop);
    handle
        .update(move |tray| {
            tray.view = view;
            tray.autostart = autostart;
        })
        .await;
}

/// The "Start with my computer" entry: `~/.config/autostart/Kith.desktop`, which starts
/// the app hidden, in the tray.
pub fn autostart() -> Result<auto_launch::AutoLaunch, String> {
    let path = match std::env::var_os("APPIMAGE") {
        // An AppImage's executable lives in a mount that is gone after a restart.
        Some(appimage) => std::path::PathBuf::from(appimage),
        None => std::env::current_exe().map_err(|e| e.to_string())?,
    };
    auto_launch::AutoLaunchBuilder::new()
        .set_app_name("Kith")
        .set_app_path(&path.display().to_string())
        .set_args(&["--hidden"])
        .build()
        .map_err(|e| e.to_string())
}

/// The clipboard (X11 or Wayland). It is kept: on Linux the copied text is served by the
/// process that copied it, for as long as it owns the clipboard.
static CLIPBOARD: Mutex<Option<arboard::Clipboard>> = Mutex::new(None);

pub fn copy(text: String) -> Result<(), String> {
    let mut slot = CLIPBOARD.lock().map_err(|e| e.to_string())?;
    if slot.is_none() {
        *slot = Some(arboard::Clipboard::new().map_err(|e| e.to_string())?);
    }
    let clipboard = slot.as_mut().ok_or("no clipboard")?;
    clipboard.set_text(text).map_err(|e| e.to_string())
}
