//! Services: what the homeserver does, independent of HTTP.
//!
//! What belongs here: the rules and workflows of Matrix — who may do what, how an event is
//! built, signed, authorised and stored, what a sync contains. Services take plain Rust and
//! ruma types and return them; they never see axum or `http` types. What does not: request
//! parsing and response shapes (the api layer), SQL (the storage layer).
//!
//! [`Services`] is built once at start-up in dependency order and passed to the api layer.
//! There are no globals and no cycles: a service that needs another receives it when built.

pub mod account;
pub mod archive;
pub mod certificates;
pub mod checker;
pub mod dashboard;
pub mod delegation;
pub mod e2ee;
pub mod federation;
pub mod health;
mod locks;
pub mod media;
pub mod notifier;
pub mod portmap;
pub mod presence;
pub mod rate_limit;
pub mod rooms;
pub mod setup;
pub mod sync;
pub mod typing;
pub mod uiaa;
pub mod users;

use std::sync::Arc;

use ruma::{OwnedServerName, signatures::Ed25519KeyPair};

use crate::{config::Config, storage::Store};

/// Identity of this server, shared by the services that sign or name things.
pub struct ServerIdentity {
    /// Our server name.
    pub server_name: OwnedServerName,
    /// The signing key for events and key responses.
    pub signing_key: Ed25519KeyPair,
}

/// Every service, built once: a handle to [`AllServices`]. The router clones it for every
/// request, so a clone is one reference count, not one per service.
#[derive(Clone)]
pub struct Services(Arc<AllServices>);

impl std::ops::Deref for Services {
    type Target = AllServices;
    fn deref(&self) -> &AllServices {
        &self.0
    }
}

/// Every service, built once.
pub struct AllServices {
    /// The configuration the server started with.
    pub config: Arc<Config>,
    /// Server name and signing key.
    pub identity: Arc<ServerIdentity>,
    /// Wakes long-polling syncs when something new is stored.
    pub notifier: notifier::Notifier,
    /// Accounts, devices, logins and profiles.
    pub users: users::Users,
    /// User-interactive authentication sessions.
    pub uiaa: uiaa::Uiaa,
    /// Rooms: creation, membership, timeline, state, aliases, directory.
    pub rooms: rooms::Rooms,
    /// Typing notices.
    pub typing: typing::Typing,
    /// Account data, tags, push rules, receipts, filters.
    pub account: account::Account,
    /// Encryption keys, to-device messages, key backup and device lists.
    pub e2ee: e2ee::E2ee,
    /// The `/sync` engine.
    pub sync: sync::Sync,
    /// Who is online: local users' presence, and other servers' users'.
    pub presence: presence::Presence,
    /// The media repository: uploads, downloads, thumbnails, URL previews.
    pub media: media::Media,
    /// Talking to other servers: discovery, signed requests, server keys.
    pub federation: federation::Federation,
    /// Federation health: the self-check and outbound delivery.
    pub health: health::Health,
    /// What the dashboard lists and does, and its charts' figures.
    pub dashboard: dashboard::Dashboard,
}

impl Services {
    /// Builds every service, in dependency order. `media_dir` is where media files live
    /// (`<data_dir>/media`).
    pub fn build(
        config: Config,
        store: Store,
        signing_key: Ed25519KeyPair,
        media_dir: std::path::PathBuf,
    ) -> crate::error::Result<Self> {
        let server_name = ruma::ServerName::parse(&config.server_name)
            .map_err(|e| crate::error::Error::internal(format!("server_name: {e}")))?;
        let identity = Arc::new(ServerIdentity {
            server_name,
            signing_key,
        });
        let config = Arc::new(config);
        let notifier = notifier::Notifier::new();
        let typing = typing::Typing::new(notifier.clone());
        let users = users::Users::new(
            config.clone(),
            identity.clone(),
            store.clone(),
            notifier.clone(),
        );
        let federation = federation::Federation::new(&config, identity.clone(), store.clone())?;
        let e2ee = e2ee::E2ee::new(
            store.clone(),
            identity.clone(),
            notifier.clone(),
            federation.clone(),
        );
        let uiaa = uiaa::Uiaa::new(config.clone(), store.clone(), users.clone());
        let account = account::Account::new(store.clone(), notifier.clone());
        let rooms = rooms::Rooms::new(
            config.clone(),
            identity.clone(),
            store.clone(),
            notifier.clone(),
            account.clone(),
            federation.clone(),
        );
        let presence = presence::Presence::new(
            config.clone(),
            identity.clone(),
            store.clone(),
            notifier.clone(),
            federation.clone(),
        );
        let sync = sync::Sync::new(
            store.clone(),
            notifier.clone(),
            typing.clone(),
            rooms.clone(),
            account.clone(),
            e2ee.clone(),
            presence.clone(),
        );
        let media = media::Media::new(
            config.clone(),
            identity.clone(),
            store.clone(),
            media_dir,
            federation.clone(),
        )?;
        let health = health::Health::new(&config, federation.clone());
        let dashboard = dashboard::Dashboard::new(
            store,
            identity.clone(),
            users.clone(),
            rooms.clone(),
            e2ee.clone(),
        );
        Ok(Self(Arc::new(AllServices {
            config,
            identity,
            notifier,
            users,
            uiaa,
            rooms,
            typing,
            account,
            e2ee,
            sync,
            presence,
            media,
            federation,
            health,
            dashboard,
        })))
    }
}
