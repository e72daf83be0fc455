//! Rooms shared by two Kith servers: joins over federation, and what a receiving server
//! does with PDUs that come with gaps, broken hashes or broken signatures.

use kith_tests::{Client, TestServer, url_encode};
use matrix_sdk::ruma::{EventId, OwnedEventId, ServerName};
use serde_json::{Value, json};

/// The message bodies of a room as `client` pages back through it, oldest first, with the
/// full events.
async fn history(client: &Client, room_id: &str) -> Vec<Value> {
    let (status, page) = client
        .get(&format!(
            "/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=50"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    let mut events: Vec<Value> = page["chunk"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == "m.room.message")
        .cloned()
        .collect();
    events.reverse();
    events
}

fn bodies(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["content"]["body"].as_str().unwrap_or("<no body>"))
        .collect()
}

#[tokio::test]
async fn a_gap_is_filled_and_tampered_pdus_are_redacted_or_rejected() {
    let one = TestServer::start_federating().await;
    let two = TestServer::start_federating().await;
    let alice = one.register("alice").await;
    let bob = two.register("bob").await;
    let room_id = alice
        .create_room(json!({ "name": "Lounge", "preset": "public_chat" }))
        .await;

    // Bob joins through server one, by room ID and `via`.
    let (status, joined) = bob
        .post(
            &format!(
                "/_matrix/client/v3/join/{room_id}?via={}",
                url_encode(one.server_name())
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{joined}");
    let (status, members) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{room_id}/joined_members"
        ))
        .await;
    assert_eq!(status, 200, "{members}");
    assert!(members["joined"].get(&bob.user_id).is_some(), "{members}");

    // Server one stops sending, so what Alice says next waits in its outbox.
    let services = one.server().services();
    services.federation.stop_sending();
    let mut ids = Vec::new();
    for i in 1..=5 {
        let (status, sent) = alice
            .send_text(&room_id, &format!("m{i}"), &format!("message {i}"))
            .await;
        assert_eq!(status, 200, "{sent}");
        ids.push(EventId::parse(sent["event_id"].as_str().expect("id")).expect("event id"));
    }
    let two_name = ServerName::parse(two.server_name()).expect("server name");
    let pdu = |i: usize| {
        let id = ids[i].clone();
        let two_name = two_name.clone();
        async move {
            services
                .rooms
                .event_for_server(&two_name, &id)
                .await
                .expect("pdu")
        }
    };
    let one_name = one.server_name().to_owned();
    let send = |txn: &'static str, pdu: Value| {
        let two_name = two_name.clone();
        let one_name = one_name.clone();
        async move {
            let body = json!({ "origin": one_name, "origin_server_ts": 1, "pdus": [pdu] });
            services
                .federation
                .request(
                    &two_name,
                    reqwest::Method::PUT,
                    &format!("/_matrix/federation/v1/send/{txn}"),
                    &[],
                    Some(&body),
                    true,
                )
                .await
                .expect("transaction accepted")
        }
    };

    // Only message 3 arrives: server two asks one for 1 and 2 (get_missing_events).
    let answer = send("gap", pdu(2).await).await;
    assert_eq!(answer["pdus"][ids[2].as_str()], json!({}), "{answer}");
    assert_eq!(
        bodies(&history(&bob, &room_id).await),
        ["message 1", "message 2", "message 3"]
    );

    // Message 4 with its content changed: the signature still holds over the redacted
    // form, so it is kept, redacted (spec: "Validating hashes and signatures").
    let mut tampered = pdu(3).await;
    tampered["content"]["body"] = json!("message 4, altered on the way");
    let answer = send("hash", tampered).await;
    assert_eq!(answer["pdus"][ids[3].as_str()], json!({}), "{answer}");
    let events = history(&bob, &room_id).await;
    assert_eq!(events.len(), 4);
    assert_eq!(events[3]["event_id"], ids[3].as_str());
    assert_eq!(events[3]["content"], json!({}), "{}", events[3]);

    // Message 5 with its timestamp changed: the signature fails, so it is rejected and
    // never shown.
    let mut forged = pdu(4).await;
    forged["origin_server_ts"] = json!(1);
    let answer = send("sig", forged.clone()).await;
    let forged_id = answer["pdus"]
        .as_object()
        .and_then(|m| m.keys().next().cloned())
        .expect("an answer for the PDU");
    assert!(
        answer["pdus"][&forged_id]["error"]
            .as_str()
            .is_some_and(|e| e.contains("signature")),
        "{answer}"
    );
    assert_eq!(history(&bob, &room_id).await.len(), 4);

    // Sending resumes: the real message 5 arrives; message 4 stays as first received.
    services.federation.start_sending().await.expect("sending");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let events = history(&bob, &room_id).await;
        if events.len() == 5 {
            assert_eq!(bodies(&events)[4], "message 5");
            assert_eq!(events[3]["content"], json!({}));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{events:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Bob answers; Alice sees it.
    let (status, _) = bob.send_text(&room_id, "b1", "got them all").await;
    assert_eq!(status, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !bodies(&history(&alice, &room_id).await).contains(&"got them all") {
        assert!(
            std::time::Instant::now() < deadline,
            "Bob's answer never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The room's name as `client` sees it now.
async fn room_name(client: &Client, room_id: &str) -> String {
    let (status, name) = client
        .get(&format!(
            "/_matrix/client/v3/rooms/{room_id}/state/m.room.name/"
        ))
        .await;
    assert_eq!(status, 200, "{name}");
    name["name"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn concurrent_state_changes_on_two_servers_resolve_to_the_same_state() {
    let one = TestServer::start_federating().await;
    let two = TestServer::start_federating().await;
    let alice = one.register("alice").await;
    let bob = two.register("bob").await;
    let room_id = alice
        .create_room(json!({ "name": "Start", "preset": "public_chat" }))
        .await;
    let (status, joined) = bob
        .post(
            &format!(
                "/_matrix/client/v3/join/{room_id}?via={}",
                url_encode(one.server_name())
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{joined}");
    // Alice (the room's creator) makes Bob a moderator, so both may rename the room.
    let (status, body) = alice
        .put(
            &format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.power_levels/"),
            // In a v12 room the creator outranks everyone and is not listed.
            json!({ "users": { bob.user_id.clone(): 50 }, "state_default": 50 }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, levels) = bob
            .get(&format!(
                "/_matrix/client/v3/rooms/{room_id}/state/m.room.power_levels/"
            ))
            .await;
        if levels["users"][bob.user_id.as_str()] == 50 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{levels}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Neither server sends while both rename the room: the graph forks.
    one.server().services().federation.stop_sending();
    two.server().services().federation.stop_sending();
    let (status, _) = alice
        .put(
            &format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.name/"),
            json!({ "name": "Alice's name" }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = bob
        .put(
            &format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.name/"),
            json!({ "name": "Bob's name" }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(room_name(&alice, &room_id).await, "Alice's name");
    assert_eq!(room_name(&bob, &room_id).await, "Bob's name");

    // Both send again: each resolves the two forks, and they agree. Both names rest on
    // the same power levels, so state resolution v2 orders them by timestamp and the later
    // one, Bob's, is applied last (spec: rooms/v2.md, "Mainline ordering").
    one.server()
        .services()
        .federation
        .start_sending()
        .await
        .expect("sending");
    two.server()
        .services()
        .federation
        .start_sending()
        .await
        .expect("sending");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (a, b) = (
            room_name(&alice, &room_id).await,
            room_name(&bob, &room_id).await,
        );
        if a == b {
            assert_eq!(a, "Bob's name");
            break;
        }
        if std::time::Instant::now() >= deadline {
            let path = format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=5");
            panic!(
                "one: {a}, two: {b}\none: {}\ntwo: {}",
                alice.get(&path).await.1,
                bob.get(&path).await.1
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Messages after the merge follow both forks on each side, and still cross.
    let (status, _) = alice.send_text(&room_id, "after", "merged").await;
    assert_eq!(status, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !bodies(&history(&bob, &room_id).await).contains(&"merged") {
        assert!(
            std::time::Instant::now() < deadline,
            "the message after the merge never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_server_denied_by_the_rooms_acl_is_refused_everywhere() {
    let one = TestServer::start_federating().await;
    let two = TestServer::start_federating().await;
    let alice = one.register("alice").await;
    let bob = two.register("bob").await;
    let room_id = alice
        .create_room(json!({ "name": "Private porch", "preset": "public_chat" }))
        .await;
    let (status, joined) = bob
        .post(
            &format!(
                "/_matrix/client/v3/join/{room_id}?via={}",
                url_encode(one.server_name())
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{joined}");

    // Both test servers are "localhost" without their ports, which is what ACLs match.
    // The ACL binds other servers only: server one's own users go on.
    let (status, body) = alice
        .put(
            &format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.server_acl/"),
            json!({ "allow": ["*"], "deny": ["localhost"], "allow_ip_literals": false }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = alice.send_text(&room_id, "a1", "still here").await;
    assert_eq!(status, 200);

    let federation = &two.server().services().federation;
    let one_name = ServerName::parse(one.server_name()).expect("server name");
    let room = matrix_sdk::ruma::RoomId::parse(&room_id).expect("room id");
    let bob_id = matrix_sdk::ruma::UserId::parse(&bob.user_id).expect("user id");

    // make_join and state_ids are refused with 403 M_FORBIDDEN.
    let error = federation
        .make_join(&one_name, &room, &bob_id, &["12"])
        .await
        .expect_err("denied");
    assert_eq!(error.errcode(), "M_FORBIDDEN", "{error}");
    let (status, sent) = bob.send_text(&room_id, "b1", "let me in").await;
    assert_eq!(status, 200, "{sent}");
    let bobs = EventId::parse(sent["event_id"].as_str().expect("id")).expect("event id");
    let error = federation
        .state_ids(&one_name, &room, &bobs)
        .await
        .expect_err("denied");
    assert_eq!(error.errcode(), "M_FORBIDDEN", "{error}");

    // A PDU from server two is refused with an error in the transaction's answer.
    let pdu = two
        .server()
        .services()
        .rooms
        .event_for_server(&one_name, &bobs)
        .await
        .expect("pdu");
    let answer = federation
        .request(
            &one_name,
            reqwest::Method::PUT,
            "/_matrix/federation/v1/send/acl-1",
            &[],
            Some(&json!({ "origin": two.server_name(), "origin_server_ts": 1, "pdus": [pdu] })),
            true,
        )
        .await
        .expect("transaction answered");
    assert!(
        answer["pdus"][bobs.as_str()]["error"]
            .as_str()
            .is_some_and(|e| e.contains("ACL")),
        "{answer}"
    );
    assert!(!bodies(&history(&alice, &room_id).await).contains(&"let me in"));
}

/// Two federating Kith servers; Alice on the first creates a public room named "Kept", Bob
/// on the second joins it, and Alice says hello. The servers, both clients, the room, and
/// the hello's event ID.
async fn a_room_on_two_servers() -> (TestServer, TestServer, Client, Client, String, String) {
    let one = TestServer::start_federating().await;
    let two = TestServer::start_federating().await;
    let alice = one.register("alice").await;
    let bob = two.register("bob").await;
    let room_id = alice
        .create_room(json!({ "name": "Kept", "preset": "public_chat" }))
        .await;
    let (status, joined) = bob
        .post(
            &format!(
                "/_matrix/client/v3/join/{room_id}?via={}",
                url_encode(one.server_name())
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{joined}");
    let (status, sent) = alice.send_text(&room_id, "a1", "hello").await;
    assert_eq!(status, 200, "{sent}");
    let hello_id = sent["event_id"].as_str().expect("an event ID").to_owned();
    (one, two, alice, bob, room_id, hello_id)
}

/// How many PDUs and EDUs `server` holds for `destination`.
async fn queued_for(server: &TestServer, destination: &str) -> u64 {
    server
        .server()
        .services()
        .federation
        .destination_health()
        .await
        .expect("health")
        .into_iter()
        .find(|h| h.destination == destination)
        .map_or(0, |h| h.queued)
}

/// `pdu` sent from `from` to `to` in transaction `txn`: the receiver's answer.
async fn send_pdu(
    from: &TestServer,
    to: &TestServer,
    txn: &str,
    pdu: &matrix_sdk::ruma::CanonicalJsonObject,
) -> Value {
    let to_name = ServerName::parse(to.server_name()).expect("server name");
    from.server()
        .services()
        .federation
        .request(
            &to_name,
            reqwest::Method::PUT,
            &format!("/_matrix/federation/v1/send/{txn}"),
            &[],
            Some(&json!({ "origin": from.server_name(), "origin_server_ts": 1, "pdus": [pdu] })),
            true,
        )
        .await
        .expect("transaction answered")
}

/// The error a transaction's answer gives for the PDU `event_id` (empty if none).
fn pdu_error(answer: &Value, event_id: &str) -> String {
    answer["pdus"][event_id]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `event` (a room v12 PDU) hashed and signed with `server`'s own key, as that server
/// would send it, and its event ID.
fn signed_by(server: &TestServer, event: Value) -> (matrix_sdk::ruma::CanonicalJsonObject, String) {
    use matrix_sdk::ruma::{
        CanonicalJsonValue, RoomVersionId,
        signatures::{hash_and_sign_event, reference_hash},
    };
    let mut object = match CanonicalJsonValue::try_from(event).expect("canonical") {
        CanonicalJsonValue::Object(object) => object,
        _ => panic!("not an object"),
    };
    object.remove("hashes");
    object.remove("signatures");
    object.remove("unsigned");
    let key = kith::crypto::load_or_create_signing_key(&server.data_dir().join("keys/signing.key"))
        .expect("the server's key");
    let rules = RoomVersionId::V12.rules().expect("rules");
    hash_and_sign_event(server.server_name(), &key, &mut object, &rules.redaction).expect("signed");
    let id = format!("${}", reference_hash(&object, &rules).expect("hash"));
    (object, id)
}

#[tokio::test]
async fn pdus_breaking_the_auth_rules_or_malformed_are_refused_and_change_no_state() {
    let (one, two, _alice, bob, room_id, hello_id) = a_room_on_two_servers().await;

    // Server one, misbehaving: a rename by Mallory, a user of its own who never joined,
    // properly hashed and signed with its key. The signature is fine; the auth rules are
    // not (the sender is not in the room).
    let services = one.server().services();
    let two_name = ServerName::parse(two.server_name()).expect("server name");
    let template = services
        .rooms
        .event_for_server(&two_name, &EventId::parse(&hello_id).expect("event id"))
        .await
        .expect("pdu");
    let mut forged = template.clone();
    forged["type"] = json!("m.room.name");
    forged["state_key"] = json!("");
    forged["sender"] = json!(format!("@mallory:{}", one.server_name()));
    forged["content"] = json!({ "name": "Taken over" });
    let (object, forged_id) = signed_by(&one, forged);
    let answer = send_pdu(&one, &two, "forged-1", &object).await;
    let error = pdu_error(&answer, &forged_id);
    assert!(!error.is_empty(), "{answer}");

    // Server two kept the room as it was: the name, and no trace in the timeline.
    assert_eq!(room_name(&bob, &room_id).await, "Kept");
    let (status, page) = bob
        .get(&format!(
            "/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=50"
        ))
        .await;
    assert_eq!(status, 200);
    assert!(
        !page["chunk"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["event_id"] == forged_id.as_str()),
        "{page}"
    );
    // And the same PDU again is answered the same way without being checked again.
    let answer = send_pdu(&one, &two, "forged-2", &object).await;
    assert_eq!(answer["pdus"][forged_id.as_str()]["error"], error.as_str());
    assert_eq!(room_name(&bob, &room_id).await, "Kept");

    // Malformed: a PDU that is not a PDU is dropped from an otherwise good transaction,
    // and a body that is not JSON at all is refused before anything else.
    let answer = services
        .federation
        .request(
            &two_name,
            reqwest::Method::PUT,
            "/_matrix/federation/v1/send/junk-1",
            &[],
            Some(&json!({ "origin": one.server_name(), "origin_server_ts": 1,
                "pdus": [{ "room_id": room_id, "type": 7, "content": "no" }] })),
            true,
        )
        .await
        .expect("transaction answered");
    assert_eq!(answer, json!({ "pdus": {} }));
    let response = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client")
        .put(format!(
            "{}/_matrix/federation/v1/send/junk-2",
            two.federation_url()
        ))
        .header(
            "Authorization",
            format!(
                r#"X-Matrix origin="{}",destination="{}",key="ed25519:a",sig="{}""#,
                one.server_name(),
                two.server_name(),
                "a".repeat(86)
            ),
        )
        .header("Content-Type", "application/json")
        .body("{ this is not json")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 400);
    let error: Value = response.json().await.expect("JSON error");
    assert_eq!(error["errcode"], "M_NOT_JSON", "{error}");
    assert_eq!(room_name(&bob, &room_id).await, "Kept");
}

/// The room's power levels as `client` sees them now.
async fn power_levels(client: &Client, room_id: &str) -> Value {
    let (status, levels) = client
        .get(&format!(
            "/_matrix/client/v3/rooms/{room_id}/state/m.room.power_levels/"
        ))
        .await;
    assert_eq!(status, 200, "{levels}");
    levels
}

#[tokio::test]
async fn concurrent_power_level_changes_resolve_with_the_more_powerful_first() {
    let one = TestServer::start_federating().await;
    let two = TestServer::start_federating().await;
    let alice = one.register("alice").await;
    let bob = two.register("bob").await;
    let room_id = alice
        .create_room(json!({ "name": "Council", "preset": "public_chat" }))
        .await;
    let (status, joined) = bob
        .post(
            &format!(
                "/_matrix/client/v3/join/{room_id}?via={}",
                url_encode(one.server_name())
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{joined}");
    // Bob may change power levels (at 50, below Alice, the creator).
    let (status, body) = alice
        .put(
            &format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.power_levels/"),
            json!({ "users": { bob.user_id.clone(): 50 }, "events": { "m.room.power_levels": 50 } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while power_levels(&bob, &room_id).await["users"][bob.user_id.as_str()] != 50 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Partitioned: Alice demotes Bob, while Bob lowers the level needed to kick.
    one.server().services().federation.stop_sending();
    two.server().services().federation.stop_sending();
    let (status, body) = alice
        .put(
            &format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.power_levels/"),
            json!({ "users": { bob.user_id.clone(): 0 }, "events": { "m.room.power_levels": 50 } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = bob
        .put(
            &format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.power_levels/"),
            json!({ "users": { bob.user_id.clone(): 50 }, "events": { "m.room.power_levels": 50 }, "kick": 0 }),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Reconnected. Server one soft-fails Bob's change: it passes against the state before
    // it but not against the current state, where Bob was demoted (spec: "Soft failure").
    // Server two resolves the fork (spec: rooms/v2.md, state resolution): power events go
    // in order of their senders' power, so Alice's demotion is applied first and Bob's
    // change then fails the auth rules. Both end with Alice's levels.
    one.server()
        .services()
        .federation
        .start_sending()
        .await
        .expect("sending");
    two.server()
        .services()
        .federation
        .start_sending()
        .await
        .expect("sending");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (a, b) = (
            power_levels(&alice, &room_id).await,
            power_levels(&bob, &room_id).await,
        );
        if a == b {
            assert_eq!(a["users"][bob.user_id.as_str()], 0, "{a}");
            assert!(a.get("kick").is_none(), "{a}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "one: {a}\ntwo: {b}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_space_is_served_to_another_server_without_its_private_rooms() {
    let one = TestServer::start_federating().await;
    let two = TestServer::start_federating().await;
    let alice = one.register("alice").await;
    let bob = two.register("bob").await;
    let space = alice
        .create_room(json!({
            "name": "Family", "preset": "public_chat",
            "creation_content": { "type": "m.space" },
        }))
        .await;
    for (name, preset) in [("Photos", "public_chat"), ("Parents only", "private_chat")] {
        let child = alice
            .create_room(json!({ "name": name, "preset": preset }))
            .await;
        let (status, body) = alice
            .put(
                &format!("/_matrix/client/v3/rooms/{space}/state/m.space.child/{child}"),
                json!({ "via": [one.server_name()] }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, joined) = bob
        .post(
            &format!(
                "/_matrix/client/v3/join/{space}?via={}",
                url_encode(one.server_name())
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{joined}");

    // Server two asks server one about the children: the public one is described, the
    // private one is listed as inaccessible and left out.
    let (status, page) = bob
        .get(&format!("/_matrix/client/v1/rooms/{space}/hierarchy"))
        .await;
    assert_eq!(status, 200, "{page}");
    let names: Vec<&str> = page["rooms"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["Family", "Photos"], "{page}");
    let answer = two
        .server()
        .services()
        .federation
        .hierarchy(
            &ServerName::parse(one.server_name()).expect("server name"),
            &matrix_sdk::ruma::RoomId::parse(&space).expect("room id"),
            false,
        )
        .await
        .expect("hierarchy");
    assert_eq!(
        answer["inaccessible_children"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );
    // Alice, in every room, sees all three.
    let (status, page) = alice
        .get(&format!("/_matrix/client/v1/rooms/{space}/hierarchy"))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["rooms"].as_array().map(Vec::len), Some(3), "{page}");
}

#[tokio::test]
async fn an_event_citing_a_fetched_auth_event_that_breaks_the_rules_is_rejected() {
    let (one, two, _alice, bob, room_id, hello_id) = a_room_on_two_servers().await;

    let services = one.server().services();
    let two_name = ServerName::parse(two.server_name()).expect("server name");
    let template = services
        .rooms
        .event_for_server(&two_name, &EventId::parse(&hello_id).expect("event id"))
        .await
        .expect("pdu");
    let sign = |event: Value| signed_by(&one, event);

    // Server one, misbehaving: power levels set by Mallory, a user who never joined. Well
    // signed, but the auth rules refuse it (its sender is not in the room). Server one
    // serves it as if it were part of the room: planted in its database, with the state
    // after the message as its own.
    let mallory = format!("@mallory:{}", one.server_name());
    let mut forged_levels = template.clone();
    forged_levels["type"] = json!("m.room.power_levels");
    forged_levels["state_key"] = json!("");
    forged_levels["sender"] = json!(mallory);
    forged_levels["content"] = json!({ "users": { mallory.clone(): 100 } });
    forged_levels["prev_events"] = json!([hello_id]);
    let (levels, levels_id) = sign(forged_levels);
    let db = rusqlite::Connection::open(one.data_dir().join("kith.db")).expect("server one's db");
    db.busy_timeout(std::time::Duration::from_secs(5))
        .expect("timeout");
    db.execute(
        "INSERT INTO outliers (event_id, room_id, json, soft_failed, received_ts) VALUES (?1, ?2, ?3, 0, 0)",
        rusqlite::params![
            levels_id,
            room_id,
            serde_json::to_string(&levels).expect("JSON")
        ],
    )
    .expect("the forged event is planted");
    db.execute(
        "INSERT INTO event_state (event_id, group_id) SELECT ?1, group_id FROM event_state WHERE event_id = ?2",
        rusqlite::params![levels_id, hello_id],
    )
    .expect("and given a state");

    // Then a rename by Alice, a creator (whose power no power levels event can lower), that
    // cites the forged power levels among its auth events instead of the real ones. Server
    // two must fetch them, find that they break the rules, reject them, and so reject the
    // rename.
    let mut auth: Vec<Value> = Vec::new();
    for id in template["auth_events"].as_array().expect("auth events") {
        let event_id = EventId::parse(id.as_str().expect("an ID")).expect("an event ID");
        let event = services
            .rooms
            .event_for_server(&two_name, &event_id)
            .await
            .expect("an auth event");
        if event["type"] != "m.room.power_levels" {
            auth.push(id.clone());
        }
    }
    auth.push(json!(levels_id));
    let mut rename = template.clone();
    rename["type"] = json!("m.room.name");
    rename["state_key"] = json!("");
    rename["content"] = json!({ "name": "Taken over" });
    rename["auth_events"] = json!(auth);
    rename["prev_events"] = json!([hello_id]);
    let (rename, rename_id) = sign(rename);
    let answer = send_pdu(&one, &two, "forged-auth-1", &rename).await;
    let error = pdu_error(&answer, &rename_id);
    assert!(
        error.contains(&format!("its auth event {levels_id} was rejected")),
        "{answer}"
    );
    assert_eq!(room_name(&bob, &room_id).await, "Kept");
}

#[tokio::test]
async fn typing_notices_cross_at_once_but_are_never_stored_for_a_server_that_is_down() {
    let (one, mut two, alice, bob, room_id, _) = a_room_on_two_servers().await;
    let since = bob.sync(None, 0).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    let typing_path = format!(
        "/_matrix/client/v3/rooms/{room_id}/typing/{}",
        url_encode(&alice.user_id)
    );
    let (status, body) = alice
        .put(&typing_path, json!({ "typing": true, "timeout": 20_000 }))
        .await;
    assert_eq!(status, 200, "{body}");
    // Bob, on the other server, sees Alice typing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let sync = bob.sync(Some(&since), 2_000).await;
        let typing = &sync["rooms"]["join"][&room_id]["ephemeral"]["events"];
        if typing
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["type"] == "m.typing" && e["content"]["user_ids"] == json!([alice.user_id]))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no typing notice reached bob"
        );
    }
    let two_name = two.server_name().to_owned();
    assert_eq!(queued_for(&one, &two_name).await, 0);

    // Two goes down: a typing notice is not kept for it, a message is.
    two.take_server().stop().await.expect("two stops");
    let (status, body) = alice.put(&typing_path, json!({ "typing": false })).await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        queued_for(&one, &two_name).await,
        0,
        "the typing notice is not stored"
    );
    let (status, body) = alice.send_text(&room_id, "a2", "are you there?").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        queued_for(&one, &two_name).await,
        1,
        "the message waits for two"
    );
}

#[tokio::test]
async fn pdus_collapsed_while_a_server_was_down_are_fetched_when_it_is_back() {
    let (one, mut two, alice, bob, room_id, _) = a_room_on_two_servers().await;
    let two_name = two.server_name().to_owned();
    // What the room sent two so far (Alice's hello) has left one's outbox.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while queued_for(&one, &two_name).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "one never emptied its outbox"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    two.take_server().stop().await.expect("two stops");
    for (i, text) in ["one", "two", "three"].into_iter().enumerate() {
        let (status, body) = alice.send_text(&room_id, &format!("late{i}"), text).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(queued_for(&one, &two_name).await, 3);
    // A day later, as housekeeping sees it: only the newest PDU of the room stays queued.
    let collapsed = one
        .server()
        .services()
        .federation
        .collapse_stale_outbox(std::time::Duration::ZERO)
        .await
        .expect("collapsed");
    assert_eq!(collapsed, 2);
    assert_eq!(queued_for(&one, &two_name).await, 1);

    // Two is back: the newest PDU arrives, two asks one for the ones before it, and Bob
    // reads all three.
    let two = two.restart().await;
    let bob = two.anonymous().with_login(&json!({
        "access_token": bob.token, "user_id": bob.user_id, "device_id": bob.device_id,
    }));
    // Two's first request shows one that two is up (the catch-up starts at once).
    let _ = two
        .server()
        .services()
        .federation
        .get(one.server_name(), "/_matrix/federation/v1/version", &[])
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let events = history(&bob, &room_id).await;
        let texts = bodies(&events);
        if ["one", "two", "three"].iter().all(|t| texts.contains(t)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "bob did not get all three: {texts:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Sends a text message that must be accepted; returns its event ID.
async fn said(client: &Client, room_id: &str, txn: &str, text: &str) -> OwnedEventId {
    let (status, sent) = client.send_text(room_id, txn, text).await;
    assert_eq!(status, 200, "{sent}");
    EventId::parse(sent["event_id"].as_str().expect("an event ID")).expect("event ID")
}

/// For each event, whether server `one` serves it to server `two` (its `/event`): the
/// event, or `M_NOT_FOUND` as for an unknown event.
async fn served_to(
    one: &TestServer,
    two: &TestServer,
    room_id: &str,
    ids: &[&EventId],
) -> Vec<bool> {
    let services = one.server().services();
    let two_name = ServerName::parse(two.server_name()).expect("server name");
    let mut seen = Vec::new();
    for id in ids {
        seen.push(match services.rooms.event_for_server(&two_name, id).await {
            Ok(event) => {
                assert_eq!(event["room_id"], json!(room_id), "{event}");
                true
            }
            Err(e) => {
                assert_eq!(e.errcode(), "M_NOT_FOUND", "{e}");
                false
            }
        });
    }
    seen
}

#[tokio::test]
async fn with_shared_history_a_server_whose_user_left_still_sees_what_came_before_the_leave() {
    let one = TestServer::start_federating().await;
    let two = TestServer::start_federating().await;
    let alice = one.register("alice").await;
    let bob = two.register("bob").await;
    // "shared" is the default history visibility of a public room.
    let room_id = alice
        .create_room(json!({ "name": "Porch", "preset": "public_chat" }))
        .await;
    let before = said(&alice, &room_id, "s1", "before Bob came").await;
    let (status, joined) = bob
        .post(
            &format!(
                "/_matrix/client/v3/join/{room_id}?via={}",
                url_encode(one.server_name())
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{joined}");
    let during = said(&alice, &room_id, "s2", "while Bob is here").await;
    let (status, left) = bob
        .post(
            &format!("/_matrix/client/v3/rooms/{room_id}/leave"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{left}");
    // Server two is in the room, so Bob's leave reaches server one as a PDU of its own.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, members) = alice
            .get(&format!(
                "/_matrix/client/v3/rooms/{room_id}/joined_members"
            ))
            .await;
        assert_eq!(status, 200, "{members}");
        if members["joined"].get(&bob.user_id).is_none() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Bob's leave never reached server one"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let after = said(&alice, &room_id, "s3", "after Bob left").await;

    // Spec ("Server behaviour" of history visibility, rule 3 for "shared"): Bob joined
    // after the first message, was joined at the second, and never after the third.
    let seen = served_to(&one, &two, &room_id, &[&before, &during, &after]).await;
    assert_eq!(seen, [true, true, false]);
}

#[tokio::test]
async fn another_server_sees_the_events_its_users_history_visibility_allows() {
    let one = TestServer::start_federating().await;
    let two = TestServer::start_federating().await;
    let alice = one.register("alice").await;
    let _bob = two.register("bob").await;
    let bob_id = format!("@bob:{}", two.server_name());
    let room_id = alice
        .create_room(json!({
            "preset": "private_chat",
            "initial_state": [{
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": { "history_visibility": "invited" }
            }]
        }))
        .await;
    let before = said(&alice, &room_id, "v1", "before Bob's invite").await;
    let (status, invited) = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{room_id}/invite"),
            json!({ "user_id": bob_id }),
        )
        .await;
    assert_eq!(status, 200, "{invited}");
    let after = said(&alice, &room_id, "v2", "after Bob's invite").await;
    let (status, set) = alice
        .put(
            &format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.history_visibility/"),
            json!({ "history_visibility": "joined" }),
        )
        .await;
    assert_eq!(status, 200, "{set}");
    let members_only = said(&alice, &room_id, "v3", "for members only").await;

    // What server one serves server two (its /event, /backfill, ...), as the spec's history
    // visibility rules say for Bob, invited: not before his invite; after it while the
    // history is "invited"; not once it is "joined".
    let seen = served_to(&one, &two, &room_id, &[&before, &after, &members_only]).await;
    assert_eq!(seen, [false, true, false]);
}
