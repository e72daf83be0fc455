//! Test helpers: a real Kith server on `127.0.0.1:0` with a temporary data dir, and a small
//! HTTP client that reads like prose (`server.register("alice")`, `alice.create_room(..)`).
//! [`synapse`] runs a real Synapse beside it for federation tests.

pub mod checker;
pub mod igd;
pub mod pebble;
pub mod synapse;

use std::time::Duration;

use kith::{Config, RunningServer, config::RegistrationMode};
use serde_json::{Value, json};

/// A running Kith server for one test.
pub struct TestServer {
    server: Option<RunningServer>,
    config: Config,
    /// The config file it started from, if any.
    config_file: Option<std::path::PathBuf>,
    dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    http: reqwest::Client,
}

/// Builds a [`TestServer`].
pub struct TestServerBuilder {
    config: Config,
    files: Vec<(std::path::PathBuf, Vec<u8>)>,
    config_file: bool,
}

impl TestServerBuilder {
    /// Sets the registration mode (tests default to open).
    pub fn registration(mut self, mode: RegistrationMode) -> Self {
        self.config.registration.mode = mode;
        self
    }

    /// Listens for federation on a free loopback port, named `localhost:PORT` after it
    /// (servers on loopback need an explicit port), with certificate checks off and
    /// loopback addresses allowed, as tests and private federations need.
    pub fn federation(mut self) -> Self {
        let port = free_port();
        self.config.server_name = format!("localhost:{port}");
        self.config.listen.federation = format!("127.0.0.1:{port}");
        self.config.federation.verify_certificates = false;
        self.config.federation.allow_private_addresses = true;
        self
    }

    /// Changes the config in any other way.
    pub fn config(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self
    }

    /// Puts a file into the data dir before the server starts (`path` relative to it).
    pub fn file(mut self, path: impl AsRef<std::path::Path>, bytes: impl Into<Vec<u8>>) -> Self {
        self.files.push((path.as_ref().to_path_buf(), bytes.into()));
        self
    }

    /// Writes the config to `kith.toml` in the data dir and starts from that file, as
    /// `kith serve` does: the setup API and the settings page can then write it.
    pub fn config_file(mut self) -> Self {
        self.config_file = true;
        self
    }

    /// Starts the server.
    pub async fn start(self) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        for (path, bytes) in &self.files {
            let path = dir.path().join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("a directory in the data dir");
            }
            std::fs::write(&path, bytes).expect("a file in the data dir");
        }
        let config_file = self.config_file.then(|| {
            let path = dir.path().join("kith.toml");
            std::fs::write(&path, self.config.to_commented_toml()).expect("kith.toml");
            path
        });
        TestServer::start_in(self.config, dir, config_file).await
    }
}

impl TestServer {
    /// A builder with test defaults: server name `kith.test`, open registration, port 0.
    pub fn builder() -> TestServerBuilder {
        let mut config = Config {
            server_name: "kith.test".to_owned(),
            ..Config::default()
        };
        config.listen.client = "127.0.0.1:0".to_owned();
        config.registration.mode = RegistrationMode::Open;
        TestServerBuilder {
            config,
            files: Vec::new(),
            config_file: false,
        }
    }

    /// A server with test defaults.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// A server with test defaults that federates (see [`TestServerBuilder::federation`]).
    pub async fn start_federating() -> Self {
        Self::builder().federation().start().await
    }

    /// The server name (`kith.test`, or `localhost:PORT` when federating).
    pub fn server_name(&self) -> &str {
        &self.config.server_name
    }

    /// `https://127.0.0.1:PORT` of the federation listener.
    pub fn federation_url(&self) -> String {
        let addr = self
            .server()
            .federation_addr()
            .expect("this server listens for federation");
        format!("https://{addr}")
    }

    async fn start_in(
        config: Config,
        dir: tempfile::TempDir,
        config_file: Option<std::path::PathBuf>,
    ) -> Self {
        let options = kith::StartOptions {
            config_file: config_file.clone(),
            logs: None,
        };
        let server = kith::start_with(config.clone(), dir.path().to_path_buf(), options)
            .await
            .expect("server starts");
        let base_url = format!("http://{}", server.client_addr());
        TestServer {
            server: Some(server),
            config,
            config_file,
            dir,
            base_url,
            http: reqwest::Client::new(),
        }
    }

    /// Stops the server gracefully and starts it again on the same data dir (on a new
    /// port: make new clients afterwards).
    pub async fn restart(mut self) -> Self {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("server stops");
        }
        // A server started from a file starts again from it, as `kith serve` does.
        let config = match &self.config_file {
            Some(path) => Config::load(path).expect("the config file reads"),
            None => self.config.clone(),
        };
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        TestServer::start_in(config, dir, self.config_file.clone()).await
    }

    /// Stops the server gracefully, keeping its data dir, so that [`TestServer::restart`]
    /// can bring it back later (an outage).
    pub async fn shut_down(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("server stops");
        }
    }

    /// Takes the running server out, to stop it by hand while requests are in flight.
    pub fn take_server(&mut self) -> RunningServer {
        self.server.take().expect("server running")
    }

    /// The server's data dir.
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The running server (status, services).
    pub fn server(&self) -> &RunningServer {
        self.server.as_ref().expect("server running")
    }

    /// Stops the server gracefully.
    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("server stops");
        }
    }

    /// A server admin, `root`, created in-process and logged in.
    pub async fn admin(&self) -> Client {
        self.server()
            .services()
            .users
            .create("root", Some("a long admin password"), true)
            .await
            .expect("an admin");
        let (status, login) = self.login("root", "a long admin password").await;
        assert_eq!(status, 200, "{login}");
        self.anonymous().with_login(&login)
    }

    /// An anonymous client.
    pub fn anonymous(&self) -> Client {
        Client {
            http: self.http.clone(),
            base_url: self.base_url.clone(),
            token: None,
            user_id: String::new(),
            device_id: String::new(),
        }
    }

    /// Registers `name` with password `password` (open registration, dummy auth).
    pub async fn register(&self, name: &str) -> Client {
        self.anonymous().register(name).await
    }

    /// Logs `name` in with its password.
    pub async fn login(&self, name: &str, password: &str) -> (u16, Value) {
        self.anonymous()
            .post(
                "/_matrix/client/v3/login",
                json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": name }, "password": password }),
            )
            .await
    }
}

/// Device keys for `client`'s device, shaped as clients upload them. The key material is
/// made up: servers store and hand out keys without checking them (clients do).
pub fn device_keys(client: &Client) -> Value {
    json!({
        "user_id": client.user_id,
        "device_id": client.device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            format!("curve25519:{}", client.device_id): "curve",
            format!("ed25519:{}", client.device_id): "edkey",
        },
        "signatures": { client.user_id.clone(): { format!("ed25519:{}", client.device_id): "sig" } },
    })
}

/// A port that was free a moment ago on 127.0.0.1 (for servers whose name must carry their
/// port before they start).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// An HTTP client, logged in or not.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    /// The access token, if logged in.
    pub token: Option<String>,
    /// The user ID, if logged in.
    pub user_id: String,
    /// The device ID, if logged in.
    pub device_id: String,
}

impl Client {
    /// An anonymous client of the Client-Server API at `base_url` (any homeserver).
    pub fn anonymous_at(base_url: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: None,
            user_id: String::new(),
            device_id: String::new(),
        }
    }

    /// Registers `name` (open registration, dummy auth) on whatever server this client
    /// talks to, and returns the logged-in client.
    pub async fn register(&self, name: &str) -> Client {
        let (status, body) = self
            .post(
                "/_matrix/client/v3/register",
                json!({ "username": name, "password": "password", "auth": { "type": "m.login.dummy" } }),
            )
            .await;
        assert_eq!(status, 200, "registering {name}: {body}");
        self.with_login(&body)
    }

    /// This client with `token` as its bearer token (a setup token, say).
    pub fn with_token(&self, token: &str) -> Client {
        Client {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    /// This client logged in with a login or register response.
    pub fn with_login(&self, body: &Value) -> Client {
        Client {
            http: self.http.clone(),
            base_url: self.base_url.clone(),
            token: body["access_token"].as_str().map(str::to_owned),
            user_id: body["user_id"].as_str().unwrap_or_default().to_owned(),
            device_id: body["device_id"].as_str().unwrap_or_default().to_owned(),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        self.try_send(request).await.expect("request is answered")
    }

    async fn try_send(&self, request: reqwest::RequestBuilder) -> reqwest::Result<(u16, Value)> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.timeout(Duration::from_secs(60)).send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, body))
    }

    /// `PUT path`, or the transport error if the server did not answer (it was stopping).
    pub async fn try_put(&self, path: &str, body: Value) -> reqwest::Result<(u16, Value)> {
        self.try_send(
            self.http
                .put(format!("{}{path}", self.base_url))
                .json(&body),
        )
        .await
    }

    /// `GET path`, or the transport error if the server did not answer.
    pub async fn try_get(&self, path: &str) -> reqwest::Result<(u16, Value)> {
        self.try_send(self.http.get(format!("{}{path}", self.base_url)))
            .await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(format!("{}{path}", self.base_url)))
            .await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(
            self.http
                .post(format!("{}{path}", self.base_url))
                .json(&body),
        )
        .await
    }

    /// `POST path` with a raw body.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        self.send(
            self.http
                .post(format!("{}{path}", self.base_url))
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(
            self.http
                .put(format!("{}{path}", self.base_url))
                .json(&body),
        )
        .await
    }

    /// `DELETE path` with a JSON body.
    pub async fn delete(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(
            self.http
                .delete(format!("{}{path}", self.base_url))
                .json(&body),
        )
        .await
    }

    /// `POST /_matrix/media/v3/upload` with raw bytes; returns (status, body).
    pub async fn upload(
        &self,
        bytes: Vec<u8>,
        content_type: &str,
        filename: Option<&str>,
    ) -> (u16, Value) {
        let mut url = format!("{}/_matrix/media/v3/upload", self.base_url);
        if let Some(filename) = filename {
            url.push_str(&format!("?filename={}", url_encode(filename)));
        }
        self.send(
            self.http
                .post(url)
                .header("content-type", content_type)
                .body(bytes),
        )
        .await
    }

    /// Uploads and returns the `mxc://` URI; panics unless it succeeds.
    pub async fn upload_ok(&self, bytes: Vec<u8>, content_type: &str) -> String {
        let (status, body) = self.upload(bytes, content_type, None).await;
        assert_eq!(status, 200, "upload: {body}");
        body["content_uri"]
            .as_str()
            .expect("content_uri")
            .to_owned()
    }

    /// `PUT path` with raw bytes; returns (status, body).
    pub async fn put_bytes(&self, path: &str, bytes: Vec<u8>, content_type: &str) -> (u16, Value) {
        self.send(
            self.http
                .put(format!("{}{path}", self.base_url))
                .header("content-type", content_type)
                .body(bytes),
        )
        .await
    }

    /// `GET path`, the whole response (status, headers, bytes), for media downloads.
    pub async fn get_response(&self, path: &str) -> reqwest::Response {
        let request = self.http.get(format!("{}{path}", self.base_url));
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        request
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .expect("request is answered")
    }

    /// Creates a room; panics unless it succeeds.
    pub async fn create_room(&self, body: Value) -> String {
        let (status, response) = self.post("/_matrix/client/v3/createRoom", body).await;
        assert_eq!(status, 200, "createRoom: {response}");
        response["room_id"].as_str().expect("room_id").to_owned()
    }

    /// Sends a text message; returns (status, body).
    pub async fn send_text(&self, room_id: &str, txn_id: &str, text: &str) -> (u16, Value) {
        self.put(
            &format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn_id}"),
            json!({ "msgtype": "m.text", "body": text }),
        )
        .await
    }

    /// Joins a room; returns the status and body.
    pub async fn join(&self, room_id: &str) -> (u16, Value) {
        self.post(&format!("/_matrix/client/v3/join/{room_id}"), json!({}))
            .await
    }

    /// Invites a user; returns the status and body.
    pub async fn invite(&self, room_id: &str, user_id: &str) -> (u16, Value) {
        self.post(
            &format!("/_matrix/client/v3/rooms/{room_id}/invite"),
            json!({ "user_id": user_id }),
        )
        .await
    }

    /// Runs `/sync`; panics unless it succeeds.
    pub async fn sync(&self, since: Option<&str>, timeout_ms: u64) -> Value {
        let mut path = format!("/_matrix/client/v3/sync?timeout={timeout_ms}");
        if let Some(since) = since {
            path.push_str(&format!("&since={since}"));
        }
        let (status, body) = self.get(&path).await;
        assert_eq!(status, 200, "sync: {body}");
        body
    }
}

/// Percent-encodes a query parameter value (everything but unreserved characters).
pub fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The bodies of the `m.room.message` events in a sync timeline for a room.
pub fn timeline_bodies(sync: &Value, room_id: &str) -> Vec<String> {
    sync["rooms"]["join"][room_id]["timeline"]["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| e["type"] == "m.room.message")
                .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
