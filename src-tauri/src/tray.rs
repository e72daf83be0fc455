//! The tray icon: its colour is the federation health (green OK, amber degraded or a
//! certificate expiring soon, red failing or stopped), and one line says "Kith: <server
//! name>, federation OK, RAM 23 MB, cache 4 MB": the tooltip, and also the menu's first,
//! disabled item (some panels show no tooltips).
//!
//! On Linux the tray is a StatusNotifierItem of our own (`sni`, over D-Bus), which needs no
//! window system: a tray-only start never loads GTK (see main.rs). Elsewhere it is Tauri's
//! (`tauri_tray`). Both show the same [`View`] and run the same [`Action`]s.

#[cfg(target_os = "linux")]
pub mod sni;
pub mod tauri_tray;

use std::sync::Arc;

use kith::service::{dashboard::Status, health::HealthState};

use crate::desktop::Desktop;

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

/// What the tray shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// "Kith: family.example, federation OK, RAM 23 MB, cache 4 MB".
    pub line: String,
    pub light: Light,
    /// Whether the server runs (the menu offers Stop, otherwise Start).
    pub running: bool,
    /// Whether the server federates (a LAN-only server has no federation to check).
    pub federating: bool,
}

impl View {
    /// What the tray shows before the first status arrives.
    pub fn starting() -> Self {
        Self {
            line: "Kith: starting…".to_owned(),
            light: Light::Amber,
            running: false,
            federating: false,
        }
    }

    pub async fn of(desktop: &Desktop) -> Self {
        let status = desktop.status().await.ok();
        let (line, light) = summary(status.as_ref());
        Self {
            line,
            light,
            running: status.is_some(),
            federating: status.as_ref().is_some_and(|s| s.federation_addr.is_some()),
        }
    }

    pub fn toggle_label(&self) -> &'static str {
        if self.running {
            "Stop server"
        } else {
            "Start server"
        }
    }
}

/// The menu's actions, in the menu's order (after the status line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Open,
    Toggle,
    Check,
    Invite,
    Autostart,
    Quit,
}

impl Action {
    pub const ALL: [Action; 6] = [
        Action::Open,
        Action::Toggle,
        Action::Check,
        Action::Invite,
        Action::Autostart,
        Action::Quit,
    ];

    /// The menu item's id.
    pub fn id(self) -> &'static str {
        match self {
            Action::Open => "open",
            Action::Toggle => "toggle",
            Action::Check => "check",
            Action::Invite => "invite",
            Action::Autostart => "autostart",
            Action::Quit => "quit",
        }
    }

    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.id() == id)
    }

    /// The menu item's text for `view`.
    pub fn label(self, view: &View) -> &'static str {
        match self {
            Action::Open => "Open dashboard",
            Action::Toggle => view.toggle_label(),
            Action::Check => "Check federation now",
            Action::Invite => "Copy invite link",
            Action::Autostart => "Start with my computer",
            Action::Quit => "Quit",
        }
    }

    /// Whether the item can be clicked for `view`.
    pub fn enabled(self, view: &View) -> bool {
        self != Action::Check || view.federating
    }
}

/// Runs a menu action (in the background: menus must not wait).
pub fn perform(desktop: &Arc<Desktop>, action: Action) {
    let desktop = desktop.clone();
    match action {
        Action::Open => desktop.open_window(),
        Action::Autostart => {
            if let Err(e) = toggle_autostart(&desktop) {
                tracing::warn!(error = %e, "start with my computer");
            }
            refresh(&desktop);
        }
        Action::Toggle => {
            tokio::spawn(async move {
                let result = if desktop.running().await {
                    desktop.stop().await
                } else if desktop.configured() {
                    desktop.start().await
                } else {
                    desktop.open_window();
                    Ok(())
                };
                if let Err(e) = result {
                    tracing::warn!(message = %e.message, "start/stop from the tray");
                }
                refresh(&desktop);
            });
        }
        Action::Check => {
            tokio::spawn(async move {
                if let Ok(services) = desktop.services().await
                    && services.health.enabled()
                    && let Err(e) = services.health.check_now().await
                {
                    tracing::warn!(error = %e, "federation check from the tray");
                }
                refresh(&desktop);
            });
        }
        Action::Invite => {
            tokio::spawn(async move {
                match invite_text(&desktop).await {
                    Ok(text) => {
                        if let Err(e) = copy(&desktop, text) {
                            tracing::warn!(error = %e, "cannot copy the invite");
                        }
                    }
                    Err(message) => tracing::warn!(%message, "no invite"),
                }
            });
        }
        Action::Quit => {
            tokio::spawn(async move { desktop.quit().await });
        }
    }
}

/// Whether the app starts (in the tray) when the user logs in.
pub fn autostart_enabled(desktop: &Desktop) -> bool {
    #[cfg(target_os = "linux")]
    let enabled = {
        let _ = desktop;
        sni::autostart().and_then(|launcher| launcher.is_enabled().map_err(|e| e.to_string()))
    };
    #[cfg(not(target_os = "linux"))]
    let enabled = tauri_tray::autostart_enabled(desktop);
    enabled.unwrap_or(false)
}

fn toggle_autostart(desktop: &Desktop) -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        let _ = desktop;
        let launcher = sni::autostart()?;
        let result = if launcher.is_enabled().unwrap_or(false) {
            launcher.disable()
        } else {
            launcher.enable()
        };
        result.map_err(|e| e.to_string())
    }
    #[cfg(not(target_os = "linux"))]
    tauri_tray::toggle_autostart(desktop)
}

fn copy(desktop: &Desktop, text: String) -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        let _ = desktop;
        sni::copy(text)
    }
    #[cfg(not(target_os = "linux"))]
    tauri_tray::copy(desktop, text)
}

/// The app icon with a status dot of `light`'s colour in its lower right corner (RGBA).
pub fn dotted_icon(base: &[u8], width: u32, height: u32, light: Light) -> Vec<u8> {
    let mut rgba = base.to_vec();
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
    rgba
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

/// Brings the tray up to date with the server's status now.
pub fn refresh(desktop: &Arc<Desktop>) {
    let desktop = desktop.clone();
    tokio::spawn(async move {
        let view = View::of(&desktop).await;
        #[cfg(target_os = "linux")]
        sni::show(&desktop, view.clone()).await;
        if let Some(app) = desktop.app() {
            tauri_tray::show(app, &desktop, &view);
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
    fn the_menu_offers_start_when_stopped_and_no_federation_check_on_a_lan() {
        let stopped = View {
            line: "Kith: stopped".to_owned(),
            light: Light::Red,
            running: false,
            federating: false,
        };
        assert_eq!(Action::Toggle.label(&stopped), "Start server");
        assert!(!Action::Check.enabled(&stopped));
        let federating = View {
            running: true,
            federating: true,
            ..stopped
        };
        assert_eq!(Action::Toggle.label(&federating), "Stop server");
        assert!(Action::Check.enabled(&federating));
        for action in Action::ALL {
            assert_eq!(Action::from_id(action.id()), Some(action));
        }
    }

    #[test]
    fn the_status_dot_sits_in_the_lower_right_corner() {
        let (width, height) = (32, 32);
        let base = vec![0u8; (width * height * 4) as usize];
        let icon = dotted_icon(&base, width, height, Light::Green);
        let pixel = |x: u32, y: u32| {
            let at = ((y * width + x) * 4) as usize;
            icon[at..at + 4].to_vec()
        };
        assert_eq!(pixel(24, 24), vec![0x2e, 0xa0, 0x43, 0xff]);
        assert_eq!(pixel(2, 2), vec![0, 0, 0, 0]);
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
