//! What the dashboard shows and does: accounts and registration tokens, rooms and their
//! members, other servers' delivery health, and the figures of the last hour (memory, the
//! cache of other servers' media, events stored per second).
//!
//! The types here are what the UI sees, through the HTTP admin API and through the desktop
//! shell's commands alike; `ui/src/lib/api/generated/` is generated from them (ts-rs, in
//! the tests).

use std::{collections::VecDeque, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use ruma::UserId;
use serde::Serialize;

use super::{
    ServerIdentity, certificates::CertificateStatus, e2ee::E2ee, health::HealthState, rooms::Rooms,
    users::Users,
};
use crate::{
    config::RegistrationMode,
    crypto,
    error::{Error, ErrorKind, Result},
    storage::{DestinationHealth, Store},
};

/// A snapshot of the server: what the overview and the tray show.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Status {
    /// The server name.
    pub server_name: String,
    /// Kith's version.
    pub version: String,
    /// The client listener.
    #[cfg_attr(test, ts(type = "string"))]
    pub client_addr: SocketAddr,
    /// The federation listener, if there is one.
    #[cfg_attr(test, ts(type = "string | null"))]
    pub federation_addr: Option<SocketAddr>,
    /// Seconds since start.
    #[cfg_attr(test, ts(type = "number"))]
    pub uptime_secs: u64,
    /// Active accounts.
    #[cfg_attr(test, ts(type = "number"))]
    pub user_count: u64,
    /// Rooms known to the server.
    #[cfg_attr(test, ts(type = "number"))]
    pub room_count: u64,
    /// Resident memory of this process, in bytes (if the OS tells).
    #[cfg_attr(test, ts(type = "number | null"))]
    pub rss_bytes: Option<u64>,
    /// Other servers' media kept here, in bytes.
    #[cfg_attr(test, ts(type = "number"))]
    pub cache_bytes: u64,
    /// Who may create an account.
    pub registration: RegistrationMode,
    /// The latest federation self-check.
    pub federation_health: Option<HealthSummary>,
    /// The federation listener's certificate: names, end and days left.
    pub certificate: Option<CertificateStatus>,
}

/// The latest federation self-check, in one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct HealthSummary {
    /// ok, degraded or failing.
    pub state: HealthState,
    /// One line: "federation OK", or what is wrong first.
    pub summary: String,
    /// When it ran (ms since the epoch).
    #[cfg_attr(test, ts(type = "number"))]
    pub checked_at: i64,
}

/// The setup token's file in the data dir.
pub const SETUP_TOKEN_FILE: &str = "setup-token";

/// What the running server is, beyond its services: where it listens, since when, its
/// certificate, its config file, and the way to ask it to restart. The control layer
/// makes it when it starts the listeners; the admin API reads it.
pub struct Runtime {
    /// When the server started.
    pub started: std::time::Instant,
    /// The client listener.
    pub client_addr: SocketAddr,
    /// The federation listener, if any.
    pub federation_addr: Option<SocketAddr>,
    /// The federation certificate, when there is a TLS federation listener.
    pub certificates: Option<super::certificates::Certificates>,
    /// The config file the server started from, when it has one (the wizard and the
    /// settings page write it).
    pub config_file: Option<PathBuf>,
    /// The log lines kept in memory, when the process keeps them.
    pub logs: Option<crate::logging::LogBuffer>,
    /// The data dir.
    pub data_dir: PathBuf,
    /// The setup token of the first run: it opens the setup API until an admin exists.
    pub setup_token: Option<String>,
    /// Notified when an admin asks for a restart (to take a new config).
    pub restart: tokio::sync::Notify,
}

impl Runtime {
    /// The server's status now.
    pub async fn status(&self, services: &super::Services) -> Result<Status> {
        Ok(Status {
            server_name: services.identity.server_name.to_string(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            client_addr: self.client_addr,
            federation_addr: self.federation_addr,
            uptime_secs: self.started.elapsed().as_secs(),
            user_count: services.users.count().await?,
            room_count: services.rooms.count().await?,
            rss_bytes: memory_stats::memory_stats().map(|m| m.physical_mem as u64),
            cache_bytes: services.dashboard.cache_bytes().await?,
            registration: services.config.registration.mode,
            federation_health: services.health.last().map(|h| HealthSummary {
                state: h.state,
                summary: h.summary,
                checked_at: h.checked_at,
            }),
            certificate: self
                .certificates
                .as_ref()
                .and_then(super::certificates::Certificates::status),
        })
    }

    /// Deletes the setup token's file once an admin exists (the token in memory stops
    /// working by itself: it opens setup only while there is no admin).
    pub fn forget_setup_token(&self) {
        if let Err(e) = std::fs::remove_file(self.data_dir.join(SETUP_TOKEN_FILE)) {
            tracing::debug!(error = %e, "setup token file not removed");
        }
    }

    /// Whether `token` is the first run's setup token, while no admin exists.
    pub async fn setup_allowed(&self, services: &super::Services, token: &str) -> Result<bool> {
        let Some(setup) = &self.setup_token else {
            return Ok(false);
        };
        if !crypto::constant_time_eq(setup.as_bytes(), token.as_bytes()) {
            return Ok(false);
        }
        Ok(!services.dashboard.has_admin().await?)
    }
}

/// An account.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct UserSummary {
    /// `@alice:example.org`.
    pub user_id: String,
    /// The display name, if set.
    pub displayname: Option<String>,
    /// Whether the account is a server admin.
    pub admin: bool,
    /// Whether the account is deactivated.
    pub deactivated: bool,
    /// When it was created (ms since the epoch).
    #[cfg_attr(test, ts(type = "number"))]
    pub created_ts: i64,
    /// Devices logged in.
    #[cfg_attr(test, ts(type = "number"))]
    pub devices: u64,
}

/// A registration token.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct RegistrationToken {
    /// The token to give to the person who will register.
    pub token: String,
    /// How many registrations it allows; `null`: any number.
    pub uses_allowed: Option<u32>,
    /// How many it has been used for.
    pub completed: u32,
    /// When it stops working (ms since the epoch); `null`: never.
    #[cfg_attr(test, ts(type = "number | null"))]
    pub expiry_ts: Option<i64>,
    /// Whether it still works (uses left, not expired).
    pub valid: bool,
}

/// A room.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct RoomSummary {
    /// The room ID.
    pub room_id: String,
    /// Its name, if it has one.
    pub name: Option<String>,
    /// Its canonical alias, if it has one.
    pub canonical_alias: Option<String>,
    /// The room version.
    pub version: String,
    /// Who created it.
    pub creator: String,
    /// Whether a user of this server created it.
    pub local: bool,
    /// Joined members, here and elsewhere.
    #[cfg_attr(test, ts(type = "number"))]
    pub joined_members: u64,
    /// Joined members of this server.
    #[cfg_attr(test, ts(type = "number"))]
    pub local_members: u64,
    /// Events this server holds for it.
    #[cfg_attr(test, ts(type = "number"))]
    pub events: u64,
}

/// A member of a room.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct RoomMember {
    /// The user ID.
    pub user_id: String,
    /// join, invite, knock, leave or ban.
    pub membership: String,
    /// The display name in the room, if any.
    pub displayname: Option<String>,
    /// Whether the user is of this server.
    pub local: bool,
}

/// Another server that this one sends to.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Destination {
    /// The server name.
    pub server_name: String,
    /// When it last accepted a transaction (ms), if ever.
    #[cfg_attr(test, ts(type = "number | null"))]
    pub last_success_ts: Option<i64>,
    /// When sending to it last failed (ms), if ever.
    #[cfg_attr(test, ts(type = "number | null"))]
    pub last_failure_ts: Option<i64>,
    /// Why it last failed.
    pub last_error: Option<String>,
    /// Failures since the last success.
    pub failures: u32,
    /// Not before this time (ms) is the next attempt made; 0: no backoff.
    #[cfg_attr(test, ts(type = "number"))]
    pub retry_at_ts: i64,
    /// PDUs and EDUs waiting for it.
    #[cfg_attr(test, ts(type = "number"))]
    pub queued: u64,
}

impl From<DestinationHealth> for Destination {
    fn from(health: DestinationHealth) -> Self {
        Self {
            server_name: health.destination,
            last_success_ts: health.last_success_ts,
            last_failure_ts: health.last_failure_ts,
            last_error: health.last_error,
            failures: health.failures,
            retry_at_ts: health.retry_at_ts,
            queued: health.queued,
        }
    }
}

/// What closing a room did.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ClosedRoom {
    /// This server's users who left it (or whose invite or knock was withdrawn).
    pub left: Vec<String>,
    /// The room's aliases on this server, now deleted.
    pub aliases_removed: Vec<String>,
    /// Events removed from this server when the room was deleted (0 when it was only
    /// closed).
    #[cfg_attr(test, ts(type = "number"))]
    pub events_removed: u64,
}

/// One point of the charts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Sample {
    /// When (ms since the epoch).
    #[cfg_attr(test, ts(type = "number"))]
    pub ts: i64,
    /// The process's resident memory, in bytes.
    #[cfg_attr(test, ts(type = "number"))]
    pub rss_bytes: u64,
    /// Other servers' media kept here, in bytes.
    #[cfg_attr(test, ts(type = "number"))]
    pub cache_bytes: u64,
    /// Events stored per second since the previous sample.
    pub events_per_sec: f64,
}

/// The figures of the last hour.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Stats {
    /// Seconds between samples.
    pub interval_secs: u32,
    /// Oldest first.
    pub samples: Vec<Sample>,
}

/// How often the charts get a point.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(10);
/// Points kept: one hour.
const SAMPLES_KEPT: usize = 360;

/// What the dashboard reads and does.
#[derive(Clone)]
pub struct Dashboard {
    store: Store,
    identity: Arc<ServerIdentity>,
    users: Users,
    rooms: Rooms,
    e2ee: E2ee,
    samples: Arc<std::sync::Mutex<Samples>>,
}

#[derive(Default)]
struct Samples {
    points: VecDeque<Sample>,
    /// The newest event's stream position at the last sample.
    last_event: Option<(i64, std::time::Instant)>,
}

impl Dashboard {
    /// The dashboard over the store and the services whose rules it follows.
    pub fn new(
        store: Store,
        identity: Arc<ServerIdentity>,
        users: Users,
        rooms: Rooms,
        e2ee: E2ee,
    ) -> Self {
        Self {
            store,
            identity,
            users,
            rooms,
            e2ee,
            samples: Arc::default(),
        }
    }

    fn is_local(&self, user_id: &str) -> bool {
        user_id
            .rsplit_once(':')
            .is_some_and(|(_, server)| server == self.identity.server_name.as_str())
    }

    /// Every account, oldest first.
    pub async fn users(&self) -> Result<Vec<UserSummary>> {
        Ok(self
            .store
            .dashboard()
            .accounts()
            .await?
            .into_iter()
            .map(|row| UserSummary {
                user_id: row.user_id,
                displayname: row.displayname,
                admin: row.admin,
                deactivated: row.deactivated,
                created_ts: row.created_ts,
                devices: row.devices,
            })
            .collect())
    }

    /// One account.
    pub async fn user(&self, user_id: &UserId) -> Result<UserSummary> {
        self.users()
            .await?
            .into_iter()
            .find(|user| user.user_id == user_id.as_str())
            .ok_or_else(|| Error::not_found(format!("There is no account {user_id} here.")))
    }

    /// Whether an active admin exists (the first-run setup ends when one does).
    pub async fn has_admin(&self) -> Result<bool> {
        self.store.dashboard().has_admin().await
    }

    /// Creates an account with a password.
    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
        admin: bool,
    ) -> Result<UserSummary> {
        require_password(password, username)?;
        let user_id = self.users.create(username, Some(password), admin).await?;
        self.user(&user_id).await
    }

    /// Gives an account a new password and logs out all its devices.
    pub async fn reset_password(&self, user_id: &UserId, password: &str) -> Result<()> {
        self.local_account(user_id).await?;
        require_password(password, user_id.localpart())?;
        let removed = self.users.set_password(user_id, password).await?;
        if let Err(e) = self.e2ee.announce_removed(user_id, &removed).await {
            tracing::warn!(%user_id, error = %e, "logged-out devices not announced to other servers");
        }
        Ok(())
    }

    /// Deactivates an account: it leaves every room, its devices are logged out, and it
    /// can never log in again. The name stays taken.
    pub async fn deactivate(&self, user_id: &UserId) -> Result<()> {
        let account = self.local_account(user_id).await?;
        if account.deactivated {
            return Ok(());
        }
        self.rooms.leave_all(user_id).await?;
        let removed = self.users.deactivate(user_id).await?;
        if let Err(e) = self.e2ee.announce_removed(user_id, &removed).await {
            tracing::warn!(%user_id, error = %e, "deleted devices not announced to other servers");
        }
        Ok(())
    }

    /// Makes an account a server admin, or not. The last active admin stays one, so the
    /// server can always be administered.
    pub async fn set_admin(&self, user_id: &UserId, admin: bool) -> Result<()> {
        let account = self.local_account(user_id).await?;
        if account.deactivated && admin {
            return Err(Error::invalid_param(
                "A deactivated account cannot become an admin.",
            ));
        }
        if !admin && account.admin {
            let admins = self
                .users()
                .await?
                .into_iter()
                .filter(|u| u.admin && !u.deactivated)
                .count();
            if admins <= 1 {
                return Err(Error::forbidden(
                    "This is the last admin: make another account an admin first.",
                ));
            }
        }
        self.store
            .dashboard()
            .set_admin(user_id.as_str(), admin)
            .await?;
        Ok(())
    }

    async fn local_account(&self, user_id: &UserId) -> Result<UserSummary> {
        if !self.is_local(user_id.as_str()) {
            return Err(Error::invalid_param(format!(
                "{user_id} is not an account of this server."
            )));
        }
        self.user(user_id).await
    }

    /// Every registration token.
    pub async fn tokens(&self) -> Result<Vec<RegistrationToken>> {
        let now = crate::storage::now_ms();
        Ok(self
            .store
            .dashboard()
            .tokens()
            .await?
            .into_iter()
            .map(|row| RegistrationToken {
                valid: row.uses_allowed.is_none_or(|uses| row.completed < uses)
                    && row.expiry_ts.is_none_or(|expiry| expiry > now),
                token: row.token,
                uses_allowed: row.uses_allowed,
                completed: row.completed,
                expiry_ts: row.expiry_ts,
            })
            .collect())
    }

    /// Creates a registration token: random, for `uses_allowed` registrations (any number
    /// when `None`), until `expiry_ts` (never when `None`).
    pub async fn create_token(
        &self,
        uses_allowed: Option<u32>,
        expiry_ts: Option<i64>,
    ) -> Result<RegistrationToken> {
        if uses_allowed == Some(0) {
            return Err(Error::invalid_param(
                "A token must allow at least one registration.",
            ));
        }
        if expiry_ts.is_some_and(|expiry| expiry <= crate::storage::now_ms()) {
            return Err(Error::invalid_param("The expiry must be in the future."));
        }
        let token = crypto::random_string(16);
        self.store
            .users()
            .create_registration_token(&token, uses_allowed, expiry_ts)
            .await?;
        Ok(RegistrationToken {
            token,
            uses_allowed,
            completed: 0,
            expiry_ts,
            valid: true,
        })
    }

    /// Deletes a registration token; it stops working at once.
    pub async fn revoke_token(&self, token: &str) -> Result<()> {
        if self.store.dashboard().delete_token(token).await? {
            Ok(())
        } else {
            Err(Error::not_found("There is no such registration token."))
        }
    }

    /// Every room the server knows.
    pub async fn rooms(&self) -> Result<Vec<RoomSummary>> {
        let suffix = format!(":{}", self.identity.server_name);
        Ok(self
            .store
            .dashboard()
            .rooms(&suffix)
            .await?
            .into_iter()
            .map(|row| RoomSummary {
                local: self.is_local(&row.creator),
                room_id: row.room_id,
                name: row.name,
                canonical_alias: row.canonical_alias,
                version: row.version,
                creator: row.creator,
                joined_members: row.joined_members,
                local_members: row.local_members,
                events: row.events,
            })
            .collect())
    }

    /// A room's members, joined first.
    pub async fn members(&self, room_id: &str) -> Result<Vec<RoomMember>> {
        let rows = self
            .store
            .dashboard()
            .members(room_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("This server knows no room {room_id}.")))?;
        Ok(rows
            .into_iter()
            .map(|row| RoomMember {
                local: self.is_local(&row.user_id),
                user_id: row.user_id,
                membership: row.membership,
                displayname: row.displayname,
            })
            .collect())
    }

    /// Closes a room on this server: each of its users here leaves it (invites and knocks
    /// are withdrawn), its aliases here are deleted and it leaves the public directory.
    /// Members on other servers keep the room; its history stays stored.
    pub async fn close_room(&self, room_id: &str) -> Result<ClosedRoom> {
        let members = self.members(room_id).await?;
        let room = ruma::RoomId::parse(room_id)
            .map_err(|_| Error::invalid_param(format!("`{room_id}` is not a room ID.")))?;
        let mut left = Vec::new();
        for member in members
            .iter()
            .filter(|m| m.local && matches!(m.membership.as_str(), "join" | "invite" | "knock"))
        {
            let user = UserId::parse(member.user_id.as_str()).map_err(Error::internal)?;
            self.rooms
                .leave(&user, &room, Some("The server's admin closed this room."))
                .await?;
            left.push(member.user_id.clone());
        }
        let aliases_removed = self.store.rooms().aliases_of(room_id).await?;
        for alias in &aliases_removed {
            self.store.rooms().delete_alias(alias).await?;
        }
        self.store.rooms().set_published(room_id, false).await?;
        Ok(ClosedRoom {
            left,
            aliases_removed,
            events_removed: 0,
        })
    }

    /// Closes the room, then removes it and its history from this server. Its users' leaves
    /// are queued for the other servers in it first, and those servers keep their copies;
    /// the leaves stay here too, so that every device of its users syncs that they left.
    pub async fn delete_room(&self, room_id: &str) -> Result<ClosedRoom> {
        let mut closed = self.close_room(room_id).await?;
        let local_suffix = format!(":{}", self.identity.server_name);
        closed.events_removed = self
            .store
            .dashboard()
            .purge_room(room_id, &local_suffix)
            .await?
            .ok_or_else(|| Error::not_found(format!("This server knows no room {room_id}.")))?;
        Ok(closed)
    }

    /// Every server this one has sent to, with how that goes.
    pub async fn destinations(&self) -> Result<Vec<Destination>> {
        Ok(self
            .store
            .federation_queue()
            .health()
            .await?
            .into_iter()
            .map(Destination::from)
            .collect())
    }

    /// Makes a backup of the data dir (and the config file) and returns the file's path,
    /// in the data dir's work folder: the caller hands it over and deletes it.
    pub async fn export_backup(
        &self,
        data_dir: &std::path::Path,
        config_file: Option<&std::path::Path>,
    ) -> Result<PathBuf> {
        let store = self.store.clone();
        let data_dir = data_dir.to_path_buf();
        let config_file = config_file.map(std::path::Path::to_path_buf);
        let server_name = self.identity.server_name.to_string();
        tokio::task::spawn_blocking(move || {
            super::archive::export(&store, &data_dir, config_file.as_deref(), &server_name)
        })
        .await
        .map_err(Error::internal)?
    }

    /// Takes one sample for the charts (the control layer calls this every
    /// [`SAMPLE_INTERVAL`]).
    pub async fn sample(&self) -> Result<Sample> {
        let previous = self.lock_samples().last_event;
        let now = std::time::Instant::now();
        let (newest, events_per_sec) = match previous {
            Some((position, at)) => {
                let (count, newest) = self.store.dashboard().events_since(position).await?;
                let secs = now.duration_since(at).as_secs_f64().max(0.001);
                (newest, count as f64 / secs)
            }
            None => (self.store.dashboard().newest_event().await?, 0.0),
        };
        let sample = Sample {
            ts: crate::storage::now_ms(),
            rss_bytes: memory_stats::memory_stats().map_or(0, |m| m.physical_mem as u64),
            cache_bytes: self.store.dashboard().remote_media_bytes().await?,
            events_per_sec,
        };
        let mut samples = self.lock_samples();
        samples.last_event = Some((newest, now));
        if samples.points.len() == SAMPLES_KEPT {
            samples.points.pop_front();
        }
        samples.points.push_back(sample);
        Ok(sample)
    }

    /// Bytes of other servers' media kept here: the latest sample's figure (taken every
    /// [`SAMPLE_INTERVAL`]), or counted now before the first sample.
    pub async fn cache_bytes(&self) -> Result<u64> {
        let latest = self.lock_samples().points.back().map(|s| s.cache_bytes);
        match latest {
            Some(bytes) => Ok(bytes),
            None => self.store.dashboard().remote_media_bytes().await,
        }
    }

    /// The samples of the last hour, oldest first.
    pub fn stats(&self) -> Stats {
        Stats {
            interval_secs: SAMPLE_INTERVAL.as_secs() as u32,
            samples: self.lock_samples().points.iter().copied().collect(),
        }
    }

    fn lock_samples(&self) -> std::sync::MutexGuard<'_, Samples> {
        self.samples.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn require_password(password: &str, username: &str) -> Result<()> {
    let strength = crypto::password_strength(password, &[username]);
    if strength.acceptable {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::WeakPassword,
            format!(
                "This password is {}. {}",
                strength.label,
                strength.suggestions.join(" ")
            ),
        ))
    }
}
