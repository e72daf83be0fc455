//! The control API: what the desktop shell, the headless binary and the tests call.
//!
//! [`start`] opens the data dir, builds the services and serves the HTTP API on the
//! configured listener; the returned [`RunningServer`] gives `status`, an event stream
//! (`subscribe`) and a graceful `stop`. Nothing here knows about Tauri.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use tokio::{net::TcpListener, sync::broadcast, task::JoinHandle};

use crate::{
    api,
    config::Config,
    crypto,
    error::{Error, Result},
    service::{
        Services,
        certificates::{CertificateEvent, Certificates},
        dashboard::{Runtime, SAMPLE_INTERVAL},
        health::{FederationHealth, HealthState},
    },
    storage::Store,
};

/// The files in a data dir.
pub mod layout {
    use std::path::{Path, PathBuf};

    /// The first run's setup token (0600), while no admin exists.
    pub fn setup_token(data_dir: &Path) -> PathBuf {
        data_dir.join(crate::service::dashboard::SETUP_TOKEN_FILE)
    }
    /// The SQLite database.
    pub fn database(data_dir: &Path) -> PathBuf {
        data_dir.join("kith.db")
    }
    /// The server's ed25519 signing key (0600).
    pub fn signing_key(data_dir: &Path) -> PathBuf {
        data_dir.join("keys").join("signing.key")
    }
    /// Media files, named by the SHA-256 of their bytes (`media/ab/cd/abcd...`), and
    /// `media/tmp/` for uploads in progress.
    pub fn media(data_dir: &Path) -> PathBuf {
        data_dir.join("media")
    }
    /// The federation listener's certificates: the self-signed one and its key (0600),
    /// made on first start when `tls.mode` is "self-signed"; with "acme", the account,
    /// certificate and key in `acme/`.
    pub fn certificates(data_dir: &Path) -> crate::service::certificates::CertificateFiles {
        let dir = data_dir.join("tls");
        crate::service::certificates::CertificateFiles {
            self_signed: (dir.join("federation.crt"), dir.join("federation.key")),
            acme_dir: data_dir.join("acme"),
        }
    }
}

/// Something that happened to a running server, for the dashboard and tray.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// The client listener is up.
    Started {
        /// The address it listens on.
        client_addr: SocketAddr,
    },
    /// A federation self-check finished (at start, every few hours, or when asked).
    FederationHealth {
        /// `ok`, `degraded` or `failing`.
        state: HealthState,
        /// One line for the tray ("federation OK", or what is wrong first).
        summary: String,
    },
    /// The federation certificate changed, failed to change, or expires soon.
    Certificate(CertificateEvent),
    /// Shutdown has begun; in-flight requests are finishing.
    Stopping,
    /// The server has stopped.
    Stopped,
}

pub use crate::service::dashboard::{HealthSummary, Status};

/// A started server.
pub struct RunningServer {
    services: Services,
    /// Listeners, start time, certificate, config file, setup token, restart requests.
    runtime: Arc<Runtime>,
    federation: Option<FederationListener>,
    events: broadcast::Sender<ServerEvent>,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
    /// The self-check loop, the certificate watch, and the tasks that turn their results
    /// into server events.
    background: Vec<JoinHandle<()>>,
}

/// Opens the data dir's database and signing key and builds the services.
pub fn open(config: Config, data_dir: &Path) -> Result<Services> {
    let problems = config.validate();
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(Error::internal(format!(
            "invalid config: {}",
            list.join("; ")
        )));
    }
    std::fs::create_dir_all(data_dir)?;
    let store = Store::open(&layout::database(data_dir))?;
    let key = crypto::load_or_create_signing_key(&layout::signing_key(data_dir))?;
    Services::build(config, store, key, layout::media(data_dir))
}

/// The federation listener: TLS, with the Server-Server API.
struct FederationListener {
    addr: SocketAddr,
    handle: axum_server::Handle<SocketAddr>,
    task: JoinHandle<std::io::Result<()>>,
}

/// How long federation requests in flight may take to finish at shutdown.
const FEDERATION_DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// The rustls configuration of the federation listener (TLS 1.2 and 1.3, HTTP/2 and 1.1),
/// whose certificate comes from `certificates` at each handshake.
fn federation_tls(certificates: &Certificates) -> Result<rustls::ServerConfig> {
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(Error::internal)?
        .with_no_client_auth()
        .with_cert_resolver(certificates.resolver());
    config.alpn_protocols = vec![
        b"h2".to_vec(),
        b"http/1.1".to_vec(),
        crate::service::certificates::acme::ACME_TLS_ALPN.to_vec(),
    ];
    Ok(config)
}

/// Binds the federation listener and serves the federation API on it: TLS with the
/// certificate `certificates` serves, or plain HTTP behind a reverse proxy (`None`).
fn start_federation(
    services: &Services,
    addr: &str,
    certificates: Option<&Certificates>,
) -> Result<FederationListener> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| Error::internal(format!("cannot listen for federation on {addr}: {e}")))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let handle = axum_server::Handle::new();
    let app = api::federation::router(services.clone())
        .into_make_service_with_connect_info::<SocketAddr>();
    let task = match certificates {
        Some(certificates) => {
            let tls = federation_tls(certificates)?;
            let server = axum_server::from_tcp_rustls(
                listener,
                axum_server::tls_rustls::RustlsConfig::from_config(std::sync::Arc::new(tls)),
            )?
            .handle(handle.clone());
            tokio::spawn(async move { server.serve(app).await })
        }
        None => {
            let server = axum_server::from_tcp(listener)?.handle(handle.clone());
            tokio::spawn(async move { server.serve(app).await })
        }
    };
    Ok(FederationListener { addr, handle, task })
}

/// Watches the certificate: reloads own files when they change (every few seconds), checks
/// the expiry every hour, and turns certificate events into [`ServerEvent::Certificate`].
fn start_certificate_tasks(
    certificates: &Certificates,
    events: &broadcast::Sender<ServerEvent>,
    http_challenge_listener: Option<TcpListener>,
    health: Option<crate::service::health::Health>,
) -> Vec<JoinHandle<()>> {
    let mut updates = certificates.subscribe();
    let events = events.clone();
    let forward = tokio::spawn(async move {
        loop {
            match updates.recv().await {
                Ok(event) => {
                    // A new certificate changes what other servers see: check again, so
                    // that the tray does not show the old verdict for hours.
                    if event.kind == crate::service::certificates::CertificateEventKind::Loaded
                        && let Some(health) = health.clone()
                    {
                        tokio::spawn(async move {
                            if let Err(e) = health.check_now().await {
                                tracing::warn!(error = %e, "the federation self-check could not run");
                            }
                        });
                    }
                    let _ = events.send(ServerEvent::Certificate(event));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let watched = certificates.clone();
    let watch = tokio::spawn(async move {
        let mut tick = tokio::time::interval(CERTIFICATE_POLL);
        let mut ticks: u64 = 0;
        loop {
            tick.tick().await;
            ticks += 1;
            if watched.watches_files() {
                let certificates = watched.clone();
                let _ = tokio::task::spawn_blocking(move || certificates.reload_if_changed()).await;
            }
            if ticks.is_multiple_of(3600 / CERTIFICATE_POLL.as_secs()) {
                watched.check_expiry();
            }
        }
    });
    let mut tasks = vec![
        forward,
        watch,
        tokio::spawn(certificates.clone().run_acme()),
    ];
    if certificates.serves_http_challenges() {
        tasks.push(tokio::spawn(serve_http_challenges(
            certificates.clone(),
            http_challenge_listener,
        )));
    }
    tasks
}

/// Serves ACME HTTP-01 answers (`/.well-known/acme-challenge/{token}`, RFC 8555 section
/// 8.3) on plain HTTP; everything else is 404.
async fn serve_http_challenges(certificates: Certificates, listener: Option<TcpListener>) {
    use axum::{extract::Path as UrlPath, http::StatusCode, routing::get};
    let Some(listener) = listener else {
        return;
    };
    let app = axum::Router::new().route(
        "/.well-known/acme-challenge/{token}",
        get(move |UrlPath(token): UrlPath<String>| {
            let answer = certificates.http_challenge(&token);
            async move {
                match answer {
                    Some(answer) => (StatusCode::OK, answer),
                    None => (StatusCode::NOT_FOUND, String::new()),
                }
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!(error = %e, "the ACME challenge listener stopped");
    }
}

/// How often own certificate files are looked at for changes.
const CERTIFICATE_POLL: std::time::Duration = std::time::Duration::from_secs(2);
/// When housekeeping first runs after a start, and how often after that.
const HOUSEKEEPING_DELAY: std::time::Duration = std::time::Duration::from_secs(60);
const HOUSEKEEPING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// How a server is started, beyond its config and data dir.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// The config file it comes from: the wizard and the settings page write it (without
    /// one, they cannot change the config).
    pub config_file: Option<PathBuf>,
    /// The log lines kept in memory ([`crate::logging::init`]), for the dashboard.
    pub logs: Option<crate::logging::LogBuffer>,
}

/// Starts a server: opens `data_dir`, binds the client listener (and the federation
/// listener, if configured) and serves until stopped.
pub async fn start(config: Config, data_dir: PathBuf) -> Result<RunningServer> {
    start_with(config, data_dir, StartOptions::default()).await
}

/// [`start`], with options.
pub async fn start_with(
    config: Config,
    data_dir: PathBuf,
    options: StartOptions,
) -> Result<RunningServer> {
    // A restore staged by the admin API is put in place before anything is opened; the
    // backup's config then replaces the one given.
    let mut config = config;
    let restored = {
        let dir = data_dir.clone();
        let file = options.config_file.clone();
        tokio::task::spawn_blocking(move || {
            crate::service::archive::apply_pending_restore(&dir, file.as_deref())
        })
        .await
        .map_err(Error::internal)??
    };
    if restored.is_some()
        && let Some(file) = &options.config_file
    {
        config = Config::load(file).map_err(|problems| {
            Error::internal(format!("the restored config has problems: {problems:?}"))
        })?;
    }
    crate::memory::return_large_blocks();
    let addr = config.listen.client.clone();
    let federation_addr = config.listen.federation.clone();
    if !federation_addr.is_empty() && config.federation.is_insecure() {
        tracing::warn!(
            verify_certificates = config.federation.verify_certificates,
            allow_private_addresses = config.federation.allow_private_addresses,
            "federation is insecure: other servers' certificates are not checked or private \
             addresses are reachable; use this only for tests and private federations"
        );
    }
    let dir = data_dir.clone();
    let tls_config = config.clone();
    let tls_http_listen = config.tls.acme_http_listen.clone();
    let services = tokio::task::spawn_blocking(move || open(config, &dir))
        .await
        .map_err(Error::internal)??;
    let behind_proxy = tls_config.tls.mode == crate::config::TlsMode::Proxy;
    let certificates = if federation_addr.is_empty() || behind_proxy {
        None
    } else {
        let dir = data_dir.clone();
        Some(
            tokio::task::spawn_blocking(move || {
                Certificates::load(&tls_config, layout::certificates(&dir))
            })
            .await
            .map_err(Error::internal)??,
        )
    };
    // ACME's HTTP-01 answers need their own plain-HTTP listener (port 80 from outside).
    let http_challenge_listener = match &certificates {
        Some(certificates) if certificates.serves_http_challenges() => {
            let addr = &tls_http_listen;
            Some(TcpListener::bind(addr).await.map_err(|e| {
                Error::internal(format!("cannot listen for ACME challenges on {addr}: {e}"))
            })?)
        }
        _ => None,
    };
    let federation = if federation_addr.is_empty() {
        None
    } else {
        Some(start_federation(
            &services,
            &federation_addr,
            certificates.as_ref(),
        )?)
    };
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|e| Error::internal(format!("cannot listen on {addr}: {e}")))?;
    let client_addr = listener.local_addr()?;
    // Small responses go out at once: with Nagle's algorithm, a body written after its
    // headers waited for the client's delayed ACK (40 ms on Linux) on kept-alive
    // connections.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let setup_token = setup_token(&services, &data_dir).await?;
    let runtime = Arc::new(Runtime {
        started: Instant::now(),
        client_addr,
        federation_addr: federation.as_ref().map(|f| f.addr),
        certificates: certificates.clone(),
        config_file: options.config_file,
        logs: options.logs,
        data_dir,
        setup_token,
        restart: tokio::sync::Notify::new(),
    });
    let (events, _) = broadcast::channel(64);
    let (shutdown, mut shutdown_rx) = tokio::sync::watch::channel(false);
    let app = api::router(services.clone(), runtime.clone());
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = shutdown_rx.wait_for(|stop| *stop).await;
        })
        .await
    });
    // What the federation outbox held when Kith stopped goes out now.
    services.federation.start_sending().await?;
    let _ = events.send(ServerEvent::Started { client_addr });
    let mut background = if services.health.enabled() {
        start_self_checks(&services, &events)
    } else {
        Vec::new()
    };
    background.push(start_sampling(&services));
    background.push(start_housekeeping(&services));
    if let Some(certificates) = &certificates {
        let health = services.health.enabled().then(|| services.health.clone());
        background.extend(start_certificate_tasks(
            certificates,
            &events,
            http_challenge_listener,
            health,
        ));
    }
    tracing::info!(
        %client_addr,
        federation_addr = ?federation.as_ref().map(|f| f.addr),
        server_name = %services.identity.server_name,
        "Kith is serving"
    );
    Ok(RunningServer {
        services,
        runtime,
        federation,
        events,
        shutdown,
        task,
        background,
    })
}

/// The first run's setup token: made (and kept in `setup-token`, 0600) while no admin
/// exists, so the one-time setup link printed at start keeps working across restarts
/// until the wizard has made the admin; deleted once one exists.
async fn setup_token(services: &Services, data_dir: &Path) -> Result<Option<String>> {
    let path = layout::setup_token(data_dir);
    if services.dashboard.has_admin().await? {
        if path.exists() {
            std::fs::remove_file(&path)?;
        }
        return Ok(None);
    }
    if let Ok(token) = std::fs::read_to_string(&path)
        && token.trim().len() >= 32
    {
        return Ok(Some(token.trim().to_owned()));
    }
    let token = crypto::random_string(43);
    crypto::write_private_file(&path, token.as_bytes())?;
    Ok(Some(token))
}

/// Prunes what grows without bound, a minute after start and then every hour (a desktop
/// app may never run an hour in one go).
fn start_housekeeping(services: &Services) -> JoinHandle<()> {
    let users = services.users.clone();
    let federation = services.federation.clone();
    tokio::spawn(async move {
        let first = tokio::time::Instant::now() + HOUSEKEEPING_DELAY;
        let mut ticks = tokio::time::interval_at(first, HOUSEKEEPING_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match users.prune_transaction_ids().await {
                Ok(0) => {}
                Ok(pruned) => tracing::debug!(pruned, "old transaction IDs forgotten"),
                Err(e) => tracing::warn!(error = %e, "cannot prune transaction IDs"),
            }
            match federation
                .collapse_stale_outbox(crate::service::federation::STALE_PDU)
                .await
            {
                Ok(0) => {}
                Ok(collapsed) => tracing::info!(
                    collapsed,
                    "PDUs waiting a day for a server collapsed to the newest of each room"
                ),
                Err(e) => tracing::warn!(error = %e, "cannot collapse the federation outbox"),
            }
        }
    })
}

/// Takes a sample for the dashboard's charts every [`SAMPLE_INTERVAL`].
fn start_sampling(services: &Services) -> JoinHandle<()> {
    let dashboard = services.dashboard.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(SAMPLE_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(e) = dashboard.sample().await {
                tracing::debug!(error = %e, "no sample for the charts");
            }
        }
    })
}

/// Checks the server's own federation now and then every `checker.self_check_hours`, and
/// turns each result (these, and those asked for through the admin API or
/// [`RunningServer::check_federation_now`]) into a [`ServerEvent::FederationHealth`].
fn start_self_checks(
    services: &Services,
    events: &broadcast::Sender<ServerEvent>,
) -> Vec<JoinHandle<()>> {
    let mut results = services.health.subscribe();
    let events = events.clone();
    let forward = tokio::spawn(async move {
        loop {
            match results.recv().await {
                Ok(health) => {
                    let _ = events.send(ServerEvent::FederationHealth {
                        state: health.state,
                        summary: health.summary,
                    });
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let health = services.health.clone();
    let repeat = tokio::spawn(async move {
        loop {
            match health.check_now().await {
                Ok(result) => tracing::info!(
                    state = ?result.state,
                    summary = %result.summary,
                    "federation self-check"
                ),
                Err(e) => tracing::warn!(error = %e, "the federation self-check could not run"),
            }
            match health.interval() {
                Some(interval) => tokio::time::sleep(interval).await,
                None => return,
            }
        }
    });
    vec![forward, repeat]
}

impl RunningServer {
    /// Where the Client-Server API listens.
    pub fn client_addr(&self) -> SocketAddr {
        self.runtime.client_addr
    }

    /// The first run's setup token, while no admin exists: the setup link is
    /// `http://<client_addr>/_kith/#setup=<token>`.
    pub fn setup_token(&self) -> Option<&str> {
        self.runtime.setup_token.as_deref()
    }

    /// A future that completes when an admin asks for a restart; unlike
    /// [`RunningServer::restart_requested`] it does not borrow the server, so a shell can
    /// wait on it while it keeps the server elsewhere.
    pub fn restart_signal(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let runtime = self.runtime.clone();
        async move { runtime.restart.notified().await }
    }

    /// Returns when an admin has asked for a restart (after the wizard or the settings
    /// page wrote a new config): the caller stops this server and starts it again.
    pub async fn restart_requested(&self) {
        self.runtime.restart.notified().await;
    }

    /// Where the federation API listens (TLS), if it does.
    pub fn federation_addr(&self) -> Option<SocketAddr> {
        self.federation.as_ref().map(|f| f.addr)
    }

    /// The services, for admin operations in-process (the dashboard, tests).
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Subscribes to server events.
    pub fn subscribe(&self) -> broadcast::Receiver<ServerEvent> {
        self.events.subscribe()
    }

    /// The server's health now.
    pub async fn status(&self) -> Result<Status> {
        self.runtime.status(&self.services).await
    }

    /// Runs the federation self-check now (the tray's "Check federation now"); the result
    /// also goes out as a [`ServerEvent::FederationHealth`].
    pub async fn check_federation_now(&self) -> Result<FederationHealth> {
        if !self.services.health.enabled() {
            return Err(Error::not_found(
                "This server has no federation listener, so there is no federation to check.",
            ));
        }
        self.services.health.check_now().await
    }

    /// Stops accepting connections, lets in-flight requests finish, and returns when done.
    pub async fn stop(self) -> Result<()> {
        let _ = self.events.send(ServerEvent::Stopping);
        for task in &self.background {
            task.abort();
        }
        // Long-polling syncs answer now with what they have; other requests finish.
        self.services.notifier.close();
        self.services.federation.stop_sending();
        let _ = self.shutdown.send(true);
        if let Some(federation) = self.federation {
            federation.handle.graceful_shutdown(Some(FEDERATION_DRAIN));
            match federation.task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "federation listener"),
                Err(e) => tracing::warn!(error = %e, "federation listener task"),
            }
        }
        let result = self.task.await.map_err(Error::internal)?;
        let _ = self.events.send(ServerEvent::Stopped);
        result.map_err(Error::from)
    }

    /// Waits until the server stops (after [`RunningServer::stop`] from elsewhere, or an error).
    pub async fn stopped(&mut self) -> Result<()> {
        (&mut self.task)
            .await
            .map_err(Error::internal)?
            .map_err(Error::from)
    }
}

/// Creates a user directly in a data dir (for `kith user add`, with the server stopped or
/// running: SQLite serialises the writes).
pub async fn add_user(
    config: Config,
    data_dir: PathBuf,
    localpart: &str,
    password: &str,
    admin: bool,
) -> Result<String> {
    let services = tokio::task::spawn_blocking(move || open(config, &data_dir))
        .await
        .map_err(Error::internal)??;
    let user_id = services
        .users
        .create(localpart, Some(password), admin)
        .await?;
    Ok(user_id.to_string())
}
