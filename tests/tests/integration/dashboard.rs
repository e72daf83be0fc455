//! The wizard's setup API and the dashboard's admin API, as the UI (and the desktop shell)
//! use them, over real HTTP against a real server.

use std::time::Duration;

use kith::config::RegistrationMode;
use kith_tests::TestServer;
use serde_json::{Value, json};

/// Answers for a LAN-only server called `name`, as the wizard sends them.
fn lan_answers(name: &str, registration: &str) -> Value {
    json!({
        "kind": "lan",
        "server_name": name,
        "reachability": "direct",
        "delegated_host": "",
        "client_listen": "127.0.0.1:0",
        "federation_port": 8448,
        "tls_mode": "self-signed",
        "certificate_file": "",
        "private_key_file": "",
        "acme_contact": "",
        "registration": registration,
    })
}

fn problem_fields(check: &Value) -> Vec<String> {
    check["problems"]
        .as_array()
        .map(|problems| {
            problems
                .iter()
                .map(|p| p["field"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_first_run_setup_writes_the_config_restarts_and_makes_the_admin_once() {
    let server = TestServer::builder()
        .registration(RegistrationMode::Closed)
        .config_file()
        .start()
        .await;
    let anonymous = server.anonymous();
    let (status, state) = anonymous.get("/_kith/setup/v1/state").await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["needs_setup"], true);
    assert_eq!(state["server_name"], "kith.test");

    // The setup API opens only with the setup link's token.
    let (status, body) = anonymous
        .post("/_kith/setup/v1/check", lan_answers("family.test", "token"))
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (401, Some("M_MISSING_TOKEN")),
        "{body}"
    );
    let (status, body) = anonymous
        .with_token("not-the-setup-token")
        .get("/_kith/setup/v1/answers")
        .await;
    assert_eq!(status, 401, "{body}");
    let token = server
        .server()
        .setup_token()
        .expect("a setup token")
        .to_owned();
    let setup = anonymous.with_token(&token);

    // The wizard starts from the config's answers, and each bad answer is reported
    // against its own field.
    let (status, answers) = setup.get("/_kith/setup/v1/answers").await;
    assert_eq!(status, 200, "{answers}");
    assert_eq!(answers["kind"], "lan");
    assert_eq!(answers["server_name"], "kith.test");
    let mut bad = lan_answers("not a name", "token");
    bad["client_listen"] = json!("nowhere");
    let (status, check) = setup.post("/_kith/setup/v1/check", bad.clone()).await;
    assert_eq!(status, 200, "{check}");
    let fields = problem_fields(&check);
    assert!(fields.contains(&"server_name".to_owned()), "{check}");
    assert!(fields.contains(&"client_listen".to_owned()), "{check}");
    let (status, body) = setup.post("/_kith/setup/v1/apply", bad).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_INVALID_PARAM")),
        "{body}"
    );

    // A domain gets the records to publish.
    let mut domain = lan_answers("example.org", "token");
    domain["kind"] = json!("domain");
    domain["tls_mode"] = json!("acme");
    let (_, check) = setup.post("/_kith/setup/v1/check", domain).await;
    assert_eq!(problem_fields(&check), Vec::<String>::new(), "{check}");
    assert_eq!(check["delegation"]["certificate_name"], "example.org");

    // Applying writes the config file and asks for a restart.
    let good = lan_answers("family.test", "token");
    let (_, check) = setup.post("/_kith/setup/v1/check", good.clone()).await;
    assert_eq!(problem_fields(&check), Vec::<String>::new(), "{check}");
    let (status, applied) = setup.post("/_kith/setup/v1/apply", good).await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["restarting"], true);
    tokio::time::timeout(Duration::from_secs(5), server.server().restart_requested())
        .await
        .expect("a restart is asked for");
    let written =
        kith::Config::load(&server.data_dir().join("kith.toml")).expect("the new config reads");
    assert_eq!(written.server_name, "family.test");
    assert_eq!(written.registration.mode, RegistrationMode::Token);

    // After the restart the same link still works, until the admin exists.
    let server = server.restart().await;
    assert_eq!(server.server().setup_token(), Some(token.as_str()));
    let setup = server.anonymous().with_token(&token);
    let (_, check) = setup
        .post(
            "/_kith/setup/v1/check_admin",
            json!({ "username": "alice", "password": "alice2026", "server_name": "family.test" }),
        )
        .await;
    assert_eq!(problem_fields(&check), ["password"], "{check}");
    assert_eq!(check["user_id"], "@alice:family.test");
    let (status, body) = setup
        .post(
            "/_kith/setup/v1/admin",
            json!({ "username": "alice", "password": "alice2026" }),
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_WEAK_PASSWORD")),
        "{body}"
    );
    let (status, login) = setup
        .post(
            "/_kith/setup/v1/admin",
            json!({ "username": "alice", "password": "correct horse battery staple" }),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    assert_eq!(login["user_id"], "@alice:family.test");
    let alice = server.anonymous().with_login(&login);
    let (status, overview) = alice.get("/_kith/admin/v1/status").await;
    assert_eq!(status, 200, "{overview}");
    assert_eq!(overview["server_name"], "family.test");
    assert_eq!(overview["registration"], "token");
    assert_eq!(overview["user_count"], 1);

    // The link is spent: setup is over.
    let (status, body) = setup
        .post(
            "/_kith/setup/v1/admin",
            json!({ "username": "mallory", "password": "correct horse battery staple" }),
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );
    let (_, state) = server.anonymous().get("/_kith/setup/v1/state").await;
    assert_eq!(state["needs_setup"], false);
    assert!(!server.data_dir().join("setup-token").exists());
    let (status, body) = server.login("alice", "correct horse battery staple").await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn admins_manage_accounts_tokens_and_rooms_through_the_admin_api() {
    let server = TestServer::builder()
        .registration(RegistrationMode::Token)
        .start()
        .await;
    let root = server.admin().await;

    // Accounts: a weak password is refused with the reason; a good one makes the account.
    let (status, body) = root
        .post(
            "/_kith/admin/v1/users",
            json!({ "username": "bob", "password": "bob12345" }),
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_WEAK_PASSWORD")),
        "{body}"
    );
    let (status, bob) = root
        .post(
            "/_kith/admin/v1/users",
            json!({ "username": "bob", "password": "a long enough passphrase" }),
        )
        .await;
    assert_eq!(status, 200, "{bob}");
    assert_eq!(bob["user_id"], "@bob:kith.test");
    assert_eq!(bob["admin"], false);
    let (status, login) = server.login("bob", "a long enough passphrase").await;
    assert_eq!(status, 200, "{login}");
    let bob = server.anonymous().with_login(&login);
    let (status, body) = bob.get("/_kith/admin/v1/users").await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );

    // Rooms: what bob made shows up with its name and members.
    let room_id = bob
        .create_room(json!({ "name": "Family", "room_alias_name": "family" }))
        .await;
    let (status, rooms) = root.get("/_kith/admin/v1/rooms").await;
    assert_eq!(status, 200, "{rooms}");
    let room = rooms
        .as_array()
        .and_then(|rooms| rooms.iter().find(|r| r["room_id"] == room_id.as_str()))
        .unwrap_or_else(|| panic!("the room is listed: {rooms}"));
    assert_eq!(room["name"], "Family");
    assert_eq!(room["joined_members"], 1);
    assert_eq!(room["local_members"], 1);
    assert_eq!(room["local"], true);
    let (status, members) = root
        .get(&format!(
            "/_kith/admin/v1/rooms/{}/members",
            kith_tests::url_encode(&room_id)
        ))
        .await;
    assert_eq!(status, 200, "{members}");
    assert_eq!(members[0]["user_id"], "@bob:kith.test");
    assert_eq!(members[0]["membership"], "join");
    let (status, _) = root
        .get("/_kith/admin/v1/rooms/!nowhere:kith.test/members")
        .await;
    assert_eq!(status, 404);

    // Closing a room here: its users here leave, its alias here goes.
    let (status, closed) = root
        .post(
            &format!(
                "/_kith/admin/v1/rooms/{}/close",
                kith_tests::url_encode(&room_id)
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["left"], json!(["@bob:kith.test"]));
    assert_eq!(closed["aliases_removed"], json!(["#family:kith.test"]));
    let (_, rooms) = root.get("/_kith/admin/v1/rooms").await;
    assert_eq!(rooms[0]["joined_members"], 0, "{rooms}");
    let (status, _) = bob
        .get(&format!(
            "/_matrix/client/v3/directory/room/{}",
            kith_tests::url_encode("#family:kith.test")
        ))
        .await;
    assert_eq!(status, 404);

    // Registration tokens: made here, used by a newcomer, spent, revoked.
    let (status, body) = root
        .post(
            "/_kith/admin/v1/registration_tokens",
            json!({ "uses_allowed": 0 }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, token) = root
        .post(
            "/_kith/admin/v1/registration_tokens",
            json!({ "uses_allowed": 1 }),
        )
        .await;
    assert_eq!(status, 200, "{token}");
    let token = token["token"].as_str().expect("a token").to_owned();
    let anonymous = server.anonymous();
    let (_, started) = anonymous
        .post(
            "/_matrix/client/v3/register",
            json!({ "username": "carol", "password": "carol's passphrase" }),
        )
        .await;
    let (status, body) = anonymous
        .post(
            "/_matrix/client/v3/register",
            json!({ "username": "carol", "password": "carol's passphrase", "auth": { "type": "m.login.registration_token", "token": token, "session": started["session"] } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, tokens) = root.get("/_kith/admin/v1/registration_tokens").await;
    assert_eq!(tokens[0]["completed"], 1, "{tokens}");
    assert_eq!(tokens[0]["valid"], false, "{tokens}");
    let path = format!("/_kith/admin/v1/registration_tokens/{token}");
    assert_eq!(root.delete(&path, json!({})).await.0, 200);
    assert_eq!(root.delete(&path, json!({})).await.0, 404);
    let (_, tokens) = root.get("/_kith/admin/v1/registration_tokens").await;
    assert_eq!(tokens, json!([]));

    // A password reset logs every device out; the old password stops working.
    let (status, body) = root
        .post(
            "/_kith/admin/v1/users/@bob:kith.test/password",
            json!({ "password": "a brand new passphrase" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = bob.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (401, Some("M_UNKNOWN_TOKEN")),
        "{body}"
    );
    assert_eq!(server.login("bob", "a long enough passphrase").await.0, 403);
    assert_eq!(server.login("bob", "a brand new passphrase").await.0, 200);

    // Admins: the last one stays; another can be made, then the first may step down.
    let (status, body) = root
        .put(
            "/_kith/admin/v1/users/@root:kith.test/admin",
            json!({ "admin": false }),
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );
    let (status, _) = root
        .put(
            "/_kith/admin/v1/users/@bob:kith.test/admin",
            json!({ "admin": true }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, login) = server.login("bob", "a brand new passphrase").await;
    let bob = server.anonymous().with_login(&login);
    assert_eq!(bob.get("/_kith/admin/v1/users").await.0, 200);

    // Deactivation: carol can no longer log in; nobody deactivates themselves here.
    let (status, body) = root
        .post(
            "/_kith/admin/v1/users/@carol:kith.test/deactivate",
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(server.login("carol", "carol's passphrase").await.0, 200);
    let (status, _) = root
        .post(
            "/_kith/admin/v1/users/@root:kith.test/deactivate",
            json!({}),
        )
        .await;
    assert_eq!(status, 403);
    let (_, users) = root.get("/_kith/admin/v1/users").await;
    let summary: Vec<(String, bool, bool)> = users
        .as_array()
        .expect("a list")
        .iter()
        .map(|u| {
            (
                u["user_id"].as_str().unwrap_or_default().to_owned(),
                u["admin"].as_bool().unwrap_or_default(),
                u["deactivated"].as_bool().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("@root:kith.test".to_owned(), true, false),
            ("@bob:kith.test".to_owned(), true, false),
            ("@carol:kith.test".to_owned(), false, true),
        ]
    );

    // The overview and its charts; no other servers yet; no restart without a file.
    let (status, overview) = root.get("/_kith/admin/v1/status").await;
    assert_eq!(status, 200, "{overview}");
    assert_eq!(overview["user_count"], 2);
    assert_eq!(overview["room_count"], 1);
    assert!(
        overview["rss_bytes"].as_u64().unwrap_or_default() > 0,
        "{overview}"
    );
    let (_, stats) = root.get("/_kith/admin/v1/stats").await;
    assert_eq!(stats["interval_secs"], 10);
    assert!(
        !stats["samples"].as_array().expect("samples").is_empty(),
        "a sample is taken at start: {stats}"
    );
    let (_, destinations) = root.get("/_kith/admin/v1/federation/destinations").await;
    assert_eq!(destinations, json!([]));
    let (status, _) = root.post("/_kith/admin/v1/server/restart", json!({})).await;
    assert_eq!(status, 403);
    server.stop().await;
}

#[tokio::test]
async fn the_web_ui_is_served_at_kith_with_a_strict_policy() {
    let server = TestServer::start().await;
    let response = server.anonymous().get_response("/_kith/").await;
    assert_eq!(
        response.status(),
        200,
        "the UI is built into the binary (make test builds ui/ first)"
    );
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let policy = headers["content-security-policy"]
        .to_str()
        .unwrap_or_default();
    assert!(policy.contains("default-src 'self'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    let page = response.text().await.expect("the page");
    assert!(page.contains("<script"), "{page}");
    let response = server
        .anonymous()
        .get_response("/_kith/no-such-file.js")
        .await;
    assert_eq!(response.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn the_settings_page_checks_and_saves_the_config_file_then_restarts() {
    let server = TestServer::builder().config_file().start().await;
    let root = server.admin().await;
    let (status, config) = root.get("/_kith/admin/v1/config").await;
    assert_eq!(status, 200, "{config}");
    let text = config["text"].as_str().expect("the text").to_owned();
    assert!(text.contains("server_name = \"kith.test\""), "{text}");

    // Every problem at once; the name cannot change under existing accounts.
    let bad = text
        .replace(
            "server_name = \"kith.test\"",
            "server_name = \"other.test\"",
        )
        .replace("client = \"127.0.0.1:0\"", "client = \"nowhere\"");
    let (status, problems) = root
        .post("/_kith/admin/v1/config/check", json!({ "text": bad }))
        .await;
    assert_eq!(status, 200, "{problems}");
    assert_eq!(problems.as_array().map(Vec::len), Some(2), "{problems}");
    let (status, body) = root
        .put("/_kith/admin/v1/config", json!({ "text": bad }))
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_INVALID_PARAM")),
        "{body}"
    );

    // A good text is written as given, comments and all, and the server restarts to take it.
    let good = text.replace("mode = \"open\"", "mode = \"closed\"");
    let (status, body) = root
        .put("/_kith/admin/v1/config", json!({ "text": good }))
        .await;
    assert_eq!(status, 200, "{body}");
    tokio::time::timeout(Duration::from_secs(5), server.server().restart_requested())
        .await
        .expect("a restart is asked for");
    let written = std::fs::read_to_string(server.data_dir().join("kith.toml")).expect("the file");
    assert_eq!(written, good);
    let server = server.restart().await;
    let (status, body) = server
        .anonymous()
        .post(
            "/_matrix/client/v3/register",
            json!({ "username": "dave", "password": "a long enough passphrase" }),
        )
        .await;
    assert_eq!(status, 403, "registration is closed now: {body}");

    // This server keeps no log lines in memory (the binaries do).
    let (_, login) = server.login("root", "a long admin password").await;
    let root = server.anonymous().with_login(&login);
    let (status, _) = root.get("/_kith/admin/v1/logs?level=warn").await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test]
async fn a_backup_made_while_running_is_restored_at_the_next_start_and_the_replaced_data_is_kept() {
    let server = TestServer::builder().config_file().start().await;
    let root = server.admin().await;
    let (status, _) = root
        .post(
            "/_kith/admin/v1/users",
            json!({ "username": "bob", "password": "a long enough passphrase" }),
        )
        .await;
    assert_eq!(status, 200);
    let media = root
        .upload_ok(b"a family photo".to_vec(), "image/png")
        .await;

    // The backup: a tar file with the manifest, the database, the key, media and config.
    let response = root.get_response("/_kith/admin/v1/backup").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-tar");
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        disposition.starts_with("attachment; filename=\"kith-backup-kith.test-"),
        "{disposition}"
    );
    let archive = response.bytes().await.expect("the backup").to_vec();
    let mut names = Vec::new();
    for entry in tar::Archive::new(archive.as_slice())
        .entries()
        .expect("a tar file")
    {
        let entry = entry.expect("an entry");
        names.push(entry.path().expect("a path").display().to_string());
    }
    for expected in [
        "kith-backup.json",
        "kith.db",
        "keys/signing.key",
        "kith.toml",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    assert!(names.iter().any(|n| n.starts_with("media/")), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("media/tmp")),
        "{names:?}"
    );

    // After the backup: carol. A restore brings back the server as it was: bob, no carol.
    let (status, _) = root
        .post(
            "/_kith/admin/v1/users",
            json!({ "username": "carol", "password": "a long enough passphrase" }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = root
        .post_raw("/_kith/admin/v1/restore", b"not a backup".to_vec())
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_INVALID_PARAM")),
        "{body}"
    );
    let (status, manifest) = root.post_raw("/_kith/admin/v1/restore", archive).await;
    assert_eq!(status, 200, "{manifest}");
    assert_eq!(manifest["server_name"], "kith.test");
    tokio::time::timeout(Duration::from_secs(5), server.server().restart_requested())
        .await
        .expect("a restart is asked for");
    let data_dir = server.data_dir().to_path_buf();
    let server = server.restart().await;
    let (_, login) = server.login("root", "a long admin password").await;
    let root = server.anonymous().with_login(&login);
    let (_, users) = root.get("/_kith/admin/v1/users").await;
    let ids: Vec<&str> = users
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|u| u["user_id"].as_str())
        .collect();
    assert_eq!(ids, ["@root:kith.test", "@bob:kith.test"]);
    let (status, _) = root
        .get(&format!(
            "/_matrix/client/v1/media/download/kith.test/{}",
            media.rsplit('/').next().unwrap_or_default()
        ))
        .await;
    assert_eq!(status, 200, "the media came back");
    let kept: Vec<String> = std::fs::read_dir(&data_dir)
        .expect("the data dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("before-restore-"))
        .collect();
    assert_eq!(kept.len(), 1, "the replaced data is kept aside");
    assert!(data_dir.join(&kept[0]).join("kith.db").is_file());
    assert!(!data_dir.join("restore.tar").exists());
    server.stop().await;
}

#[tokio::test]
async fn deleting_a_room_removes_its_history_and_its_users_clients_see_they_left() {
    use matrix_sdk::{
        Client, RoomState, config::SyncSettings,
        ruma::api::client::room::create_room::v3::Request as CreateRoomRequest,
        ruma::events::room::message::RoomMessageEventContent,
    };
    let server = TestServer::start().await;
    let root = server.admin().await;
    let alice = Client::builder()
        .homeserver_url(&server.base_url)
        .build()
        .await
        .expect("client builds");
    let mut register = matrix_sdk::ruma::api::client::account::register::v3::Request::new();
    register.username = Some("alice".to_owned());
    register.password = Some("alice's long passphrase".to_owned());
    register.auth = Some(matrix_sdk::ruma::api::client::uiaa::AuthData::Dummy(
        Default::default(),
    ));
    alice
        .matrix_auth()
        .register(register)
        .await
        .expect("alice registers");
    let mut create = CreateRoomRequest::new();
    create.name = Some("Holiday plans".to_owned());
    let room = alice.create_room(create).await.expect("room created");
    for text in ["the beach?", "the mountains?", "both"] {
        room.send(RoomMessageEventContent::text_plain(text))
            .await
            .expect("sent");
    }
    alice
        .sync_once(SyncSettings::default())
        .await
        .expect("alice syncs");
    assert_eq!(
        alice.get_room(room.room_id()).map(|r| r.state()),
        Some(RoomState::Joined)
    );

    let path = format!(
        "/_kith/admin/v1/rooms/{}",
        kith_tests::url_encode(room.room_id().as_str())
    );
    let (status, deleted) = root.delete(&path, json!({})).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["left"], json!(["@alice:kith.test"]));
    // The creation events, the three messages; alice's leave stays for her devices.
    assert!(
        deleted["events_removed"].as_u64().unwrap_or_default() >= 8,
        "{deleted}"
    );

    // Her client learns that she left, although the room's history is gone.
    alice
        .sync_once(SyncSettings::default().timeout(Duration::from_secs(2)))
        .await
        .expect("alice syncs after the deletion");
    assert_eq!(
        alice.get_room(room.room_id()).map(|r| r.state()),
        Some(RoomState::Left)
    );
    let (_, rooms) = root.get("/_kith/admin/v1/rooms").await;
    assert_eq!(rooms, json!([]), "the room is gone from the list");
    assert_eq!(root.get(&format!("{path}/members")).await.0, 404);
    assert_eq!(root.delete(&path, json!({})).await.0, 404);
    let (status, body) = raw_client(&server, &alice)
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b",
            kith_tests::url_encode(room.room_id().as_str())
        ))
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (404, Some("M_NOT_FOUND")),
        "its history is gone: {body}"
    );

    // Life goes on: a new room and a fresh sync work.
    let again = alice
        .create_room(CreateRoomRequest::new())
        .await
        .expect("a new room");
    alice
        .sync_once(SyncSettings::default())
        .await
        .expect("alice syncs");
    assert_eq!(
        alice.get_room(again.room_id()).map(|r| r.state()),
        Some(RoomState::Joined)
    );
    server.stop().await;
}

/// A raw HTTP client with the access token of matrix-sdk's `client`.
fn raw_client(server: &TestServer, client: &matrix_sdk::Client) -> kith_tests::Client {
    server
        .anonymous()
        .with_token(&client.access_token().expect("logged in"))
}
