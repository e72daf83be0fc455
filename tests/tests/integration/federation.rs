//! Federation between two Kith servers on loopback, through their real TLS listeners and
//! server discovery (`localhost:PORT` names), with certificate checks off: server keys,
//! signed requests both ways, and what an unsigned or forged request gets.

use kith_tests::{TestServer, device_keys, url_encode};
use serde_json::{Value, json};

/// An HTTPS client for raw federation requests to test servers (self-signed certificates).
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client")
}

async fn get_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn users_on_two_kith_servers_read_each_others_profiles_and_aliases() {
    let one = TestServer::start_federating().await;
    let two = TestServer::start_federating().await;
    let alice = one.register("alice").await;
    let bob = two.register("bob").await;
    let (status, _) = alice
        .put(
            &format!(
                "/_matrix/client/v3/profile/{}/displayname",
                url_encode(&alice.user_id)
            ),
            json!({ "displayname": "Alice at home" }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = bob
        .put(
            &format!(
                "/_matrix/client/v3/profile/{}/displayname",
                url_encode(&bob.user_id)
            ),
            json!({ "displayname": "Bob elsewhere" }),
        )
        .await;
    assert_eq!(status, 200);

    // Each asks its own server, which asks the other one over federation.
    let (status, profile) = alice
        .get(&format!(
            "/_matrix/client/v3/profile/{}",
            url_encode(&bob.user_id)
        ))
        .await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["displayname"], "Bob elsewhere");
    let (status, profile) = bob
        .get(&format!(
            "/_matrix/client/v3/profile/{}/displayname",
            url_encode(&alice.user_id)
        ))
        .await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile, json!({ "displayname": "Alice at home" }));

    // An unknown remote user is 404, as the other server says.
    let (status, error) = alice
        .get(&format!(
            "/_matrix/client/v3/profile/{}",
            url_encode(&format!("@nobody:{}", two.server_name()))
        ))
        .await;
    assert_eq!(status, 404, "{error}");
    assert_eq!(error["errcode"], "M_NOT_FOUND");

    // A room alias on one server resolves from the other.
    let room_id = bob
        .create_room(json!({ "room_alias_name": "family", "preset": "public_chat" }))
        .await;
    let alias = format!("#family:{}", two.server_name());
    let (status, found) = alice
        .get(&format!(
            "/_matrix/client/v3/directory/room/{}",
            url_encode(&alias)
        ))
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["room_id"], room_id.as_str());
    assert_eq!(found["servers"], json!([two.server_name()]));
    let missing = format!("#nothing:{}", two.server_name());
    let (status, _) = alice
        .get(&format!(
            "/_matrix/client/v3/directory/room/{}",
            url_encode(&missing)
        ))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn federation_listener_serves_version_keys_and_the_notary() {
    let one = TestServer::start_federating().await;
    let two = TestServer::start_federating().await;
    let http = raw_client();

    let (status, version) = get_json(
        http.get(format!(
            "{}/_matrix/federation/v1/version",
            two.federation_url()
        ))
        .send()
        .await
        .expect("version"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(version["server"]["name"], "Kith");

    let (status, keys) = get_json(
        http.get(format!("{}/_matrix/key/v2/server", one.federation_url()))
            .send()
            .await
            .expect("keys"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(keys["server_name"], one.server_name());
    let key_id = keys["verify_keys"]
        .as_object()
        .and_then(|k| k.keys().next().cloned())
        .expect("a verify key");

    // Server two, as a notary, fetches server one's keys and countersigns them.
    let (status, notary) = get_json(
        http.post(format!("{}/_matrix/key/v2/query", two.federation_url()))
            .json(&json!({ "server_keys": { one.server_name(): { key_id.clone(): {} } } }))
            .send()
            .await
            .expect("notary"),
    )
    .await;
    assert_eq!(status, 200, "{notary}");
    let answer = &notary["server_keys"][0];
    assert_eq!(answer["server_name"], one.server_name());
    assert_eq!(answer["verify_keys"], keys["verify_keys"]);
    assert!(
        answer["signatures"][one.server_name()].is_object(),
        "{answer}"
    );
    assert!(
        answer["signatures"][two.server_name()].is_object(),
        "{answer}"
    );

    let (status, notary) = get_json(
        http.get(format!(
            "{}/_matrix/key/v2/query/{}",
            two.federation_url(),
            one.server_name()
        ))
        .send()
        .await
        .expect("notary GET"),
    )
    .await;
    assert_eq!(status, 200, "{notary}");
    assert_eq!(notary["server_keys"][0]["server_name"], one.server_name());

    // Unknown federation endpoints are 404 M_UNRECOGNIZED.
    let (status, error) = get_json(
        http.get(format!(
            "{}/_matrix/federation/v1/nothing",
            two.federation_url()
        ))
        .send()
        .await
        .expect("unknown"),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(error["errcode"], "M_UNRECOGNIZED");
}

#[tokio::test]
async fn unsigned_forged_and_misdirected_requests_are_refused_with_401() {
    let one = TestServer::start_federating().await;
    let two = TestServer::start_federating().await;
    let bob = two.register("bob").await;
    let http = raw_client();
    let url = format!(
        "{}/_matrix/federation/v1/query/profile?user_id={}",
        two.federation_url(),
        url_encode(&bob.user_id)
    );
    let (_, keys) = get_json(
        http.get(format!("{}/_matrix/key/v2/server", one.federation_url()))
            .send()
            .await
            .expect("keys"),
    )
    .await;
    let key_id = keys["verify_keys"]
        .as_object()
        .and_then(|k| k.keys().next().cloned())
        .expect("a verify key");
    let forged_sig = "a".repeat(86);

    let cases = [
        ("no signature", None),
        (
            "a signature that does not verify",
            Some(format!(
                r#"X-Matrix origin="{}",destination="{}",key="{key_id}",sig="{forged_sig}""#,
                one.server_name(),
                two.server_name()
            )),
        ),
        (
            "a request meant for another server",
            Some(format!(
                r#"X-Matrix origin="{}",destination="elsewhere.example",key="{key_id}",sig="{forged_sig}""#,
                one.server_name()
            )),
        ),
        (
            "an origin whose keys cannot be fetched",
            Some(format!(
                r#"X-Matrix origin="localhost:1",destination="{}",key="ed25519:x",sig="{forged_sig}""#,
                two.server_name()
            )),
        ),
        ("a malformed header", Some("X-Matrix nonsense".to_owned())),
    ];
    for (what, header) in cases {
        let mut request = http.get(&url);
        if let Some(header) = header {
            request = request.header("Authorization", header);
        }
        let (status, error) = get_json(request.send().await.expect("answered")).await;
        assert_eq!(status, 401, "{what}: {error}");
        assert_eq!(error["errcode"], "M_UNAUTHORIZED", "{what}: {error}");
    }
}

#[tokio::test]
async fn keys_of_another_kith_servers_users_are_queried_claimed_and_listed() {
    let one = TestServer::start_federating().await;
    let two = TestServer::start_federating().await;
    let alice = one.register("alice").await;
    let bob = two.register("bob").await;
    let (status, body) = bob
        .post(
            "/_matrix/client/v3/keys/upload",
            json!({
                "device_keys": device_keys(&bob),
                "one_time_keys": { "signed_curve25519:AAAAAQ": { "key": "bob-otk", "signatures": {} } },
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let (status, found) = alice
        .post(
            "/_matrix/client/v3/keys/query",
            json!({ "device_keys": { bob.user_id.clone(): [], "@nobody:localhost:1": [] } }),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    let bobs = &found["device_keys"][&bob.user_id][&bob.device_id];
    assert_eq!(bobs["keys"], device_keys(&bob)["keys"], "{found}");
    assert!(
        bobs["unsigned"]["device_display_name"].is_null(),
        "device names stay home: {found}"
    );
    // A server that cannot be reached is a failure, not an error.
    assert_eq!(found["failures"]["localhost:1"]["status"], 503, "{found}");

    let (status, claimed) = alice
        .post(
            "/_matrix/client/v3/keys/claim",
            json!({ "one_time_keys": { bob.user_id.clone(): { bob.device_id.clone(): "signed_curve25519" } } }),
        )
        .await;
    assert_eq!(status, 200, "{claimed}");
    assert_eq!(
        claimed["one_time_keys"][&bob.user_id][&bob.device_id]["signed_curve25519:AAAAAQ"]["key"],
        "bob-otk"
    );
    // It was one-time: a second claim finds none.
    let (_, claimed) = alice
        .post(
            "/_matrix/client/v3/keys/claim",
            json!({ "one_time_keys": { bob.user_id.clone(): { bob.device_id.clone(): "signed_curve25519" } } }),
        )
        .await;
    assert_eq!(claimed["one_time_keys"], json!({}), "{claimed}");

    // Server one asks server two for bob's device list, signed, over TLS.
    let devices = one
        .server()
        .services()
        .federation
        .get(
            two.server_name(),
            &format!(
                "/_matrix/federation/v1/user/devices/{}",
                url_encode(&bob.user_id)
            ),
            &[],
        )
        .await
        .expect("user/devices answers");
    assert_eq!(devices.status, 200);
    let devices: Value = serde_json::from_slice(&devices.body).expect("JSON");
    assert_eq!(devices["user_id"], bob.user_id.as_str());
    assert_eq!(devices["devices"][0]["device_id"], bob.device_id.as_str());
    assert_eq!(
        devices["devices"][0]["keys"]["keys"],
        device_keys(&bob)["keys"]
    );
    assert!(devices["stream_id"].as_i64().is_some(), "{devices}");
}

#[tokio::test]
async fn media_and_thumbnails_are_served_to_signed_servers_as_multipart() {
    use kith::service::federation::multipart;
    let one = TestServer::start_federating().await;
    let two = TestServer::start_federating().await;
    let alice = one.register("alice").await;
    let photo = crate::media::image_bytes(300, 200, image::ImageFormat::Png);
    let (status, uploaded) = alice
        .upload(photo.clone(), "image/png", Some("photo.png"))
        .await;
    assert_eq!(status, 200, "{uploaded}");
    let mxc = uploaded["content_uri"].as_str().expect("mxc");
    let media_id = mxc.rsplit('/').next().expect("media id");
    let federation = &two.server().services().federation;

    for (path, query) in [
        (
            format!("/_matrix/federation/v1/media/download/{media_id}"),
            vec![],
        ),
        (
            format!("/_matrix/federation/v1/media/thumbnail/{media_id}"),
            vec![("width", "64"), ("height", "64"), ("method", "crop")],
        ),
    ] {
        let answer = federation
            .get(one.server_name(), &path, &query)
            .await
            .expect("an answer");
        assert_eq!(
            answer.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        let boundary = multipart::boundary(&answer.content_type).expect("multipart/mixed");
        let parts = multipart::parse(&answer.body, &boundary).expect("two parts");
        assert_eq!(parts.len(), 2, "{path}");
        assert_eq!(parts[0].header("content-type"), Some("application/json"));
        assert_eq!(parts[0].body, b"{}");
        assert_eq!(parts[1].header("content-type"), Some("image/png"), "{path}");
        if query.is_empty() {
            assert_eq!(parts[1].body, photo);
            assert_eq!(
                parts[1]
                    .header("content-disposition")
                    .and_then(multipart::disposition_filename),
                Some("photo.png".to_owned())
            );
        } else {
            let (width, height) = crate::media::dimensions(parts[1].body);
            assert!(width < 300 && width == height, "{width}×{height}");
        }
    }

    // Unknown media is 404, and an unsigned request is refused.
    let answer = federation
        .get(
            one.server_name(),
            "/_matrix/federation/v1/media/download/NoSuchMedia",
            &[],
        )
        .await
        .expect("an answer");
    assert_eq!(answer.status, 404);
    let (status, body) = get_json(
        raw_client()
            .get(format!(
                "{}/_matrix/federation/v1/media/download/{media_id}",
                one.federation_url()
            ))
            .send()
            .await
            .expect("answered"),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["errcode"], "M_UNAUTHORIZED");
}

#[tokio::test]
async fn transactions_are_checked_and_their_to_device_messages_delivered_once() {
    use matrix_sdk::ruma::ServerName;
    let one = TestServer::start_federating().await;
    let two = TestServer::start_federating().await;
    let bob = two.register("bob").await;
    let since = bob.sync(None, 0).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    let federation = &one.server().services().federation;
    let to_two = ServerName::parse(two.server_name()).expect("server name");
    let to_two = &to_two;
    let send = |txn_id: &str, body: Value| {
        let path = format!("/_matrix/federation/v1/send/{txn_id}");
        async move {
            federation
                .request(to_two, reqwest::Method::PUT, &path, &[], Some(&body), true)
                .await
        }
    };
    let transaction = |edus: Value| json!({ "origin": one.server_name(), "origin_server_ts": 1, "pdus": [], "edus": edus });
    let ping = |sender: String, n: u32| {
        json!({ "edu_type": "m.direct_to_device", "content": {
            "sender": sender, "type": "org.example.ping", "message_id": format!("m{n}"),
            "messages": { bob.user_id.clone(): { bob.device_id.clone(): { "n": n } } },
        } })
    };

    // Refused: more than 50 PDUs, and an origin that is not the signer.
    let mut too_big = transaction(json!([]));
    too_big["pdus"] = json!(vec![json!({}); 51]);
    let error = send("big", too_big).await.expect_err("51 PDUs");
    assert!(error.to_string().contains("HTTP 400"), "{error}");
    let mut forged = transaction(json!([]));
    forged["origin"] = json!("elsewhere.example");
    let error = send("forged", forged).await.expect_err("wrong origin");
    assert_eq!(error.errcode(), "M_FORBIDDEN", "{error}");

    // One message, sent in a transaction that is retried and again in another one with the
    // same message ID, arrives once. A message whose sender is not of the sending server
    // does not arrive at all.
    let mallory = format!("@mallory:{}", one.server_name());
    for txn_id in ["t1", "t1", "t2"] {
        let answer = send(txn_id, transaction(json!([ping(mallory.clone(), 7)])))
            .await
            .expect("accepted");
        assert_eq!(answer, json!({ "pdus": {} }));
    }
    send(
        "t3",
        transaction(json!([ping("@eve:elsewhere.example".to_owned(), 8)])),
    )
    .await
    .expect("accepted");
    send("t4", transaction(json!([ping(mallory.clone(), 9)])))
        .await
        .expect("accepted");
    let sync = bob.sync(Some(&since), 0).await;
    let received: Vec<&Value> = sync["to_device"]["events"]
        .as_array()
        .expect("to-device events")
        .iter()
        .map(|e| &e["content"]["n"])
        .collect();
    assert_eq!(received, [&json!(7), &json!(9)], "{sync}");
    assert_eq!(sync["to_device"]["events"][0]["sender"], mallory.as_str());
}

#[tokio::test]
async fn queued_messages_survive_the_senders_restart_and_the_receivers_outage() {
    let one = TestServer::start_federating().await;
    let mut two = TestServer::start_federating().await;
    let alice = one.register("alice").await;
    let bob = two.register("bob").await;
    let since = bob.sync(None, 0).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();

    // Two goes down; Alice's message is accepted and waits in one's outbox.
    two.take_server().stop().await.expect("two stops");
    let (status, body) = alice
        .put(
            "/_matrix/client/v3/sendToDevice/org.example.ping/k1",
            json!({ "messages": { bob.user_id.clone(): { bob.device_id.clone(): { "n": 1 } } } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let failed = async |server: &TestServer| {
        let health = server
            .server()
            .services()
            .federation
            .destination_health()
            .await
            .expect("health");
        health
            .iter()
            .any(|h| h.destination == two.server_name() && h.failures > 0 && h.queued == 1)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !failed(&one).await {
        assert!(std::time::Instant::now() < deadline, "no failed attempt");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // One restarts, and so does two; the message still arrives.
    let one = one.restart().await;
    let two = two.restart().await;
    let bob = two.anonymous().with_login(&json!({
        "access_token": bob.token, "user_id": bob.user_id, "device_id": bob.device_id,
    }));
    // Two's first request to one shows one that two is up: one retries at once instead of
    // waiting out its backoff (the catch-up).
    let answer = two
        .server()
        .services()
        .federation
        .get(
            one.server_name(),
            "/_matrix/federation/v1/query/profile",
            &[("user_id", alice.user_id.as_str())],
        )
        .await
        .expect("one answers");
    assert_eq!(answer.status, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let sync = bob.sync(Some(&since), 2_000).await;
        let events = &sync["to_device"]["events"];
        if events.as_array().is_some_and(|e| !e.is_empty()) {
            assert_eq!(events[0]["content"], json!({ "n": 1 }), "{sync}");
            assert_eq!(events[0]["sender"], alice.user_id.as_str());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not delivered: {:?}",
            one.server()
                .services()
                .federation
                .destination_health()
                .await
        );
    }
    // The sender records the success just after two's answer, so it may take a moment.
    loop {
        let health = one
            .server()
            .services()
            .federation
            .destination_health()
            .await
            .expect("health");
        let to_two = health
            .iter()
            .find(|h| h.destination == two.server_name())
            .expect("two is a destination");
        if to_two.queued == 0 {
            assert!(to_two.last_success_ts.is_some() && to_two.last_failure_ts.is_some());
            assert_eq!(to_two.failures, 0, "{to_two:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{to_two:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn remote_media_is_followed_to_its_location_and_fetched_from_older_servers() {
    use axum::{Router, extract::Query, http::header, response::IntoResponse, routing::get};
    use kith::service::federation::multipart;
    use kith_tests::checker::{FakeServer, TestCa};

    let kith = TestServer::start_federating().await;
    let alice = kith.register("alice").await;
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
    };

    // Where one item's bytes really are: plain HTTP, as a CDN would serve them.
    let files = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let files_addr = files.local_addr().expect("address");
    let files_app = Router::new().route(
        "/cdn/cat",
        get(|| async {
            (
                [
                    (header::CONTENT_TYPE, "image/png"),
                    (header::CONTENT_DISPOSITION, "inline; filename=\"cat.png\""),
                ],
                b"the cat's bytes".to_vec(),
            )
        }),
    );
    tokio::spawn(async move { axum::serve(files, files_app).await });

    // Another server: it redirects one download, and knows only the deprecated endpoint for
    // another (as servers before Matrix 1.11 do).
    let fake_addr = free_port();
    let fake_name = fake_addr.to_string();
    let boundary = multipart::new_boundary();
    let location = format!("http://{files_addr}/cdn/cat");
    let redirect_boundary = boundary.clone();
    let fake_app = Router::new()
        .route(
            "/_matrix/federation/v1/media/download/cat",
            get(move || {
                let (boundary, location) = (redirect_boundary.clone(), location.clone());
                async move {
                    let (mut body, tail) =
                        multipart::envelope(&boundary, &[("Location", location.as_str())]);
                    body.extend_from_slice(&tail);
                    (
                        [(
                            header::CONTENT_TYPE,
                            format!("multipart/mixed; boundary={boundary}"),
                        )],
                        body,
                    )
                }
            }),
        )
        .route(
            "/_matrix/federation/v1/media/download/old",
            get(|| async {
                (
                    axum::http::StatusCode::NOT_FOUND,
                    axum::Json(
                        json!({ "errcode": "M_UNRECOGNIZED", "error": "Unrecognized request" }),
                    ),
                )
            }),
        )
        .route(
            "/_matrix/media/v3/download/{server}/old",
            get(
                |Query(query): Query<std::collections::HashMap<String, String>>| async move {
                    // spec: "When falling back, servers MUST be sure to set allow_remote to false".
                    if query.get("allow_remote").map(String::as_str) != Some("false") {
                        return (axum::http::StatusCode::BAD_REQUEST, Vec::new()).into_response();
                    }
                    (
                        [(header::CONTENT_TYPE, "text/plain")],
                        b"an old server's file".to_vec(),
                    )
                        .into_response()
                },
            ),
        );
    let cert = TestCa::new().issue(&["fake.test"], 30);
    let _fake = FakeServer::with_routes(fake_addr, &cert, fake_app).await;

    let download = async |media_id: &str| {
        alice
            .get_response(&format!(
                "/_matrix/client/v1/media/download/{fake_name}/{media_id}"
            ))
            .await
    };
    let response = download("cat").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE.as_str()],
        "image/png"
    );
    assert_eq!(
        response.bytes().await.expect("bytes").as_ref(),
        b"the cat's bytes"
    );
    let response = download("old").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.bytes().await.expect("bytes").as_ref(),
        b"an old server's file"
    );
}
