//! The server as a whole: discovery, CORS for web clients, and a graceful stop that loses
//! nothing it acknowledged.

use std::time::Duration;

use kith_tests::TestServer;
use serde_json::json;

#[tokio::test]
async fn web_clients_get_the_spec_cors_headers() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    // A browser's preflight before an authenticated PUT.
    let preflight = http
        .request(
            reqwest::Method::OPTIONS,
            format!(
                "{}/_matrix/client/v3/rooms/!r:kith.test/send/m.room.message/1",
                server.base_url
            ),
        )
        .header("Origin", "https://app.element.io")
        .header("Access-Control-Request-Method", "PUT")
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type",
        )
        .send()
        .await
        .expect("preflight answered");
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let header = |name: &str| {
        preflight
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    // spec: client-server-api/_index.md, "Web Browser Clients".
    assert_eq!(header("access-control-allow-origin"), "*");
    for method in ["get", "post", "put", "delete", "options"] {
        assert!(header("access-control-allow-methods").contains(method));
    }
    for name in ["x-requested-with", "content-type", "authorization"] {
        assert!(header("access-control-allow-headers").contains(name));
    }

    // Ordinary answers, errors included, carry the origin header too.
    let versions = http
        .get(format!("{}/_matrix/client/versions", server.base_url))
        .header("Origin", "https://app.element.io")
        .send()
        .await
        .expect("versions answered");
    assert_eq!(versions.status(), 200);
    assert_eq!(versions.headers()["access-control-allow-origin"], "*");
    let unknown = http
        .get(format!(
            "{}/_matrix/client/v3/no/such/thing",
            server.base_url
        ))
        .header("Origin", "https://app.element.io")
        .send()
        .await
        .expect("answered");
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn well_known_answers_only_what_is_configured() {
    let plain = TestServer::start().await;
    let anon = plain.anonymous();
    let (status, body) = anon.get("/.well-known/matrix/client").await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (404, Some("M_NOT_FOUND"))
    );
    let (status, _) = anon.get("/.well-known/matrix/server").await;
    assert_eq!(status, 404);

    let delegated = TestServer::builder()
        .config(|c| {
            c.well_known.client_base_url = "https://matrix.example.org".to_owned();
            c.well_known.server = "matrix.example.org:443".to_owned();
        })
        .start()
        .await;
    let anon = delegated.anonymous();
    let (status, body) = anon.get("/.well-known/matrix/client").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({ "m.homeserver": { "base_url": "https://matrix.example.org" } })
    );
    let (status, body) = anon.get("/.well-known/matrix/server").await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({ "m.server": "matrix.example.org:443" }));
}

#[tokio::test]
async fn stopping_ends_long_polls_and_keeps_every_acknowledged_message() {
    let mut server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    assert_eq!(bob.join(&room).await.0, 200);
    let since = bob.sync(None, 0).await["next_batch"]
        .as_str()
        .expect("token")
        .to_owned();

    // Bob waits for news; alice sends a burst; the server is told to stop meanwhile.
    let waiting = {
        let bob = bob.clone();
        tokio::spawn(async move {
            bob.try_get(&format!(
                "/_matrix/client/v3/sync?timeout=60000&since={since}"
            ))
            .await
        })
    };
    let sends: Vec<_> = (0..20)
        .map(|i| {
            let (alice, room) = (alice.clone(), room.clone());
            tokio::spawn(async move {
                let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/burst{i}");
                alice
                    .try_put(
                        &path,
                        json!({ "msgtype": "m.text", "body": format!("n{i}") }),
                    )
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let running = server.take_server();
    // A stop must not wait out the 60 s long poll.
    tokio::time::timeout(Duration::from_secs(30), running.stop())
        .await
        .expect("stop finishes without waiting for long polls")
        .expect("clean stop");

    let answer = waiting.await.expect("task");
    if let Ok((status, body)) = &answer {
        assert_eq!(*status, 200, "{body}");
    }
    let mut acknowledged = Vec::new();
    for send in sends {
        // Anything else was refused or cut off by the stop: never acknowledged, so nothing
        // is promised.
        if let Ok((200, body)) = send.await.expect("task") {
            acknowledged.push(body["event_id"].as_str().expect("id").to_owned());
        }
    }

    // Every acknowledged message is there after a restart.
    let restarted = server.restart().await;
    let (status, login) = restarted.login("alice", "password").await;
    assert_eq!(status, 200, "{login}");
    let alice = restarted.anonymous().with_login(&login);
    for event_id in &acknowledged {
        let (status, event) = alice
            .get(&format!("/_matrix/client/v3/rooms/{room}/event/{event_id}"))
            .await;
        assert_eq!(status, 200, "acknowledged {event_id} was lost: {event}");
    }
}
