//! The tray icon: its colour is the federation health (green OK, amber degraded or a
//! certificate expiring soon, red failing or stopped), and one line says "Kith: <server
//! name>, federation OK, RAM 23 MB, cache 4 MB". On Linux the tray has no tooltip and
//! delivers no clicks on the icon (appindicator), so the same line is the menu's first,
//! disabled item and the indicator's label as well.

use std::sync::Arc;

use kith::service::{dashboard::Status, health::HealthState};
use tauri::{
    AppHandle, Manager, Wry,
    image::Image,
    menu::{CheckMenuItem, Menu, MenuItem, PredefinedMenuItem},
    tray::TrayIconBuilder,
};
use tauri_plugin_autostart::ManagerExt as _;
use tauri_plugin_clipboard_manager::ClipboardExt as _;

use crate::desktop::Desktop;

const TRAY: &str = "kith";

/// The menu items whose text changes.
pub struct TrayItems {
    status: MenuItem<Wry>,
    toggle: MenuItem<Wry>,
    check: MenuItem<Wry>,
}

/// The three colours of the status dot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Light {
    Green,
    Amber,
    Red,
}

/// The tray's line and colour for a running server's status (`None`: stopped).
pub fn summary(status: Option<&Status>) -> (String, Light) {
    let Some(status) = status else {
        return ("Kith: stopped".to_owned(), Light::Red);
    };
    let mib = |bytes: u64| bytes.div_ceil(1024 * 1024);
    let (federation, mut light) = match (&status.federation_addr, &status.federation_health) {
        (None, _) => ("LAN only".to_owned(), Light::Green),
        (Some(_), None) => ("checking federation".to_owned(), Light::Amber),
        (Some(_), Some(health)) => (
            health.summary.clone(),
            match health.state {
                HealthState::Ok => Light::Green,
                HealthState::Degraded => Light::Amber,
                HealthState::Failing => Light::Red,
            },
        ),
    };
    let mut line = format!(
        "Kith: {}, {federation}, RAM {} MB, cache {} MB",
        status.server_name,
        mib(status.rss_bytes.unwrap_or_default()),
        mib(status.cache_bytes),
    );
    if let Some(certificate) = &status.certificate
        && certificate.days_left <= 14
    {
        line.push_str(&format!(
            ", certificate ends in {} days",
            certificate.days_left
        ));
        if light == Light::Green {
            light = Light::Amber;
        }
    }
    (line, light)
}

/// The app icon with a status dot in its lower right corner.
fn icon(app: &AppHandle, light: Light) -> Option<Image<'static>> {
    let base = app.default_window_icon()?;
    let (width, height) = (base.width(), base.height());
    let mut rgba = base.rgba().to_vec();
    let colour: [u8; 3] = match light {
        Light::Green => [0x2e, 0xa0, 0x43],
        Light::Amber => [0xe0, 0x9b, 0x12],
        Light::Red => [0xd1, 0x24, 0x2f],
    };
    let radius = f64::from(width.min(height)) * 0.24;
    let (cx, cy) = (
        f64::from(width) - radius - 1.0,
        f64::from(height) - radius - 1.0,
    );
    for y in 0..height {
        for x in 0..width {
            let distance = (f64::from(x) - cx).hypot(f64::from(y) - cy);
            let pixel = ((y * width + x) * 4) as usize;
            let paint: Option<[u8; 3]> = if distance <= radius * 0.78 {
                Some(colour)
            } else if distance <= radius {
                Some([0xff, 0xff, 0xff])
            } else {
                None
            };
            if let (Some(paint), Some(target)) = (paint, rgba.get_mut(pixel..pixel + 4)) {
                target.copy_from_slice(&[paint[0], paint[1], paint[2], 0xff]);
            }
        }
    }
    Some(Image::new_owned(rgba, width, height))
}

/// Builds the tray icon and its menu.
pub fn build(app: &AppHandle) -> tauri::Result<()> {
    let status = MenuItem::with_id(app, "status", "Kith: starting…", false, None::<&str>)?;
    let open = MenuItem::with_id(app, "open", "Open dashboard", true, None::<&str>)?;
    let toggle = MenuItem::with_id(app, "toggle", "Stop server", true, None::<&str>)?;
    let check = MenuItem::with_id(app, "check", "Check federation now", true, None::<&str>)?;
    let invite = MenuItem::with_id(app, "invite", "Copy invite link", true, None::<&str>)?;
    let autostart_on = app.autolaunch().is_enabled().unwrap_or(false);
    let autostart = CheckMenuItem::with_id(
        app,
        "autostart",
        "Start with my computer",
        true,
        autostart_on,
        None::<&str>,
    )?;
    let quit = MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?;
    let separator = PredefinedMenuItem::separator(app)?;
    let menu = Menu::with_items(
        app,
        &[
            &status, &separator, &open, &toggle, &check, &invite, &autostart, &quit,
        ],
    )?;
    let mut builder = TrayIconBuilder::with_id(TRAY)
        .menu(&menu)
        .show_menu_on_left_click(true)
        .tooltip("Kith")
        .on_menu_event(move |app, event| on_menu(app, event.id.as_ref()));
    if let Some(image) = icon(app, Light::Amber) {
        builder = builder.icon(image);
    }
    builder.build(app)?;
    app.manage(TrayItems {
        status,
        toggle,
        check,
    });
    Ok(())
}

fn desktop(app: &AppHandle) -> Arc<Desktop> {
    app.state::<Arc<Desktop>>().inner().clone()
}

fn on_menu(app: &AppHandle, id: &str) {
    let app = app.clone();
    match id {
        "open" => crate::open_window(&app),
        "toggle" => {
            tauri::async_runtime::spawn(async move {
                let desktop = desktop(&app);
                let result = if desktop.running().await {
                    desktop.stop().await
                } else if desktop.configured() {
                    desktop.start().await
                } else {
                    crate::open_window(&app);
                    Ok(())
                };
                if let Err(e) = result {
                    tracing::warn!(message = %e.message, "start/stop from the tray");
                }
                refresh(&app);
            });
        }
        "check" => {
            tauri::async_runtime::spawn(async move {
                if let Ok(services) = desktop(&app).services().await
                    && services.health.enabled()
                    && let Err(e) = services.health.check_now().await
                {
                    tracing::warn!(error = %e, "federation check from the tray");
                }
                refresh(&app);
            });
        }
        "invite" => {
            tauri::async_runtime::spawn(async move {
                match invite_text(&desktop(&app)).await {
                    Ok(text) => {
                        if let Err(e) = app.clipboard().write_text(text) {
                            tracing::warn!(error = %e, "cannot copy the invite");
                        }
                    }
                    Err(message) => tracing::warn!(%message, "no invite"),
                }
            });
        }
        "autostart" => {
            let launcher = app.autolaunch();
            let result = if launcher.is_enabled().unwrap_or(false) {
                launcher.disable()
            } else {
                launcher.enable()
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "start with my computer");
            }
        }
        "quit" => {
            tauri::async_runtime::spawn(async move {
                if let Err(e) = desktop(&app).stop().await {
                    tracing::warn!(message = %e.message, "stopping before quitting");
                }
                app.exit(0);
            });
        }
        _ => {}
    }
}

/// An invitation to paste into a message: where to connect, and a registration token
/// for one account, valid for a week.
async fn invite_text(desktop: &Desktop) -> Result<String, String> {
    let services = desktop.services().await.map_err(|e| e.message)?;
    let status = desktop.status().await.map_err(|e| e.message)?;
    let week = 7 * 24 * 3600 * 1000;
    let token = services
        .dashboard
        .create_token(Some(1), Some(kith::storage::now_ms() + week))
        .await
        .map_err(|e| e.user_message())?;
    let homeserver = if services.config.well_known.client_base_url.is_empty() {
        format!("http://{}", status.client_addr)
    } else {
        services.config.well_known.client_base_url.clone()
    };
    Ok(format!(
        "Join me on {name}, our own Matrix server. In Element (element.io), choose \
         \"Create account\", edit the homeserver to {homeserver}, and use the registration \
         token {token} (one account, valid for 7 days).",
        name = status.server_name,
        token = token.token,
    ))
}

/// Updates the tray's line, label, tooltip, icon and Start/Stop item now.
pub fn refresh(app: &AppHandle) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let desktop = desktop(&app);
        let status = desktop.status().await.ok();
        let (line, light) = summary(status.as_ref());
        if let Some(items) = app.try_state::<TrayItems>() {
            let _ = items.status.set_text(&line);
            let _ = items.toggle.set_text(if status.is_some() {
                "Stop server"
            } else {
                "Start server"
            });
            // A LAN-only server has no federation to check.
            let federating = status.as_ref().is_some_and(|s| s.federation_addr.is_some());
            let _ = items.check.set_enabled(federating);
        }
        if let Some(tray) = app.tray_by_id(TRAY) {
            let _ = tray.set_tooltip(Some(&line)); // a no-op on Linux
            let _ = tray.set_title(Some(&line)); // the indicator label on Linux
            if let Some(image) = icon(&app, light) {
                let _ = tray.set_icon(Some(image));
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> Status {
        Status {
            server_name: "family.test".to_owned(),
            version: "0.1.0".to_owned(),
            client_addr: "127.0.0.1:8008".parse().expect("an address"),
            federation_addr: Some("0.0.0.0:8448".parse().expect("an address")),
            uptime_secs: 60,
            user_count: 2,
            room_count: 1,
            rss_bytes: Some(23 * 1024 * 1024),
            cache_bytes: 4 * 1024 * 1024,
            registration: kith::config::RegistrationMode::Token,
            federation_health: Some(kith::service::dashboard::HealthSummary {
                state: HealthState::Ok,
                summary: "federation OK".to_owned(),
                checked_at: 0,
            }),
            certificate: None,
        }
    }

    #[test]
    fn the_line_says_name_health_memory_and_cache() {
        assert_eq!(
            summary(Some(&status())),
            (
                "Kith: family.test, federation OK, RAM 23 MB, cache 4 MB".to_owned(),
                Light::Green
            )
        );
        assert_eq!(summary(None), ("Kith: stopped".to_owned(), Light::Red));
    }

    #[test]
    fn the_light_is_amber_when_degraded_or_the_certificate_ends_soon_and_red_when_failing() {
        let mut degraded = status();
        if let Some(health) = degraded.federation_health.as_mut() {
            health.state = HealthState::Degraded;
        }
        assert_eq!(summary(Some(&degraded)).1, Light::Amber);
        let mut failing = status();
        if let Some(health) = failing.federation_health.as_mut() {
            health.state = HealthState::Failing;
        }
        assert_eq!(summary(Some(&failing)).1, Light::Red);
        let mut expiring = status();
        expiring.certificate = Some(kith::service::certificates::CertificateStatus {
            source: "acme".to_owned(),
            names: vec!["family.test".to_owned()],
            not_after: 0,
            days_left: 9,
            warnings: Vec::new(),
        });
        let (line, light) = summary(Some(&expiring));
        assert_eq!(light, Light::Amber);
        assert!(line.ends_with("certificate ends in 9 days"), "{line}");
        let mut lan = status();
        lan.federation_addr = None;
        lan.federation_health = None;
        assert_eq!(
            summary(Some(&lan)),
            (
                "Kith: family.test, LAN only, RAM 23 MB, cache 4 MB".to_owned(),
                Light::Green
            )
        );
    }
}
