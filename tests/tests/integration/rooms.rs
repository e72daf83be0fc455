//! Rooms, messages, state, sync and the failure cases, through real HTTP.

use kith_tests::{TestServer, timeline_bodies, url_encode};
use serde_json::{Value, json};

#[tokio::test]
async fn invited_user_joins_and_both_see_each_others_messages_in_sync() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = alice
        .create_room(json!({ "name": "Family", "preset": "private_chat" }))
        .await;

    // Bob is not invited yet: the room is invite-only.
    let (status, body) = bob.join(&room).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN"))
    );

    let bob_first = bob.sync(None, 0).await;
    let since = bob_first["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    assert_eq!(alice.invite(&room, &bob.user_id).await.0, 200);
    let invited = bob.sync(Some(&since), 5000).await;
    let invite_state = &invited["rooms"]["invite"][&room]["invite_state"]["events"];
    assert!(invite_state.as_array().is_some_and(|e| {
        e.iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Family")
    }));

    assert_eq!(bob.join(&room).await.0, 200);
    let (status, sent) = alice.send_text(&room, "t1", "hello bob").await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(bob.send_text(&room, "t1", "hi alice").await.0, 200);

    let synced = bob.sync(None, 0).await;
    assert_eq!(timeline_bodies(&synced, &room), ["hello bob", "hi alice"]);
    let state = synced["rooms"]["join"][&room]["state"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let timeline = synced["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let all: Vec<Value> = state.into_iter().chain(timeline).collect();
    assert!(
        all.iter().any(|e| e["type"] == "m.room.create"),
        "the room's state reaches a new member"
    );
}

#[tokio::test]
async fn long_polling_sync_wakes_when_a_message_arrives() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    assert_eq!(bob.join(&room).await.0, 200);
    let since = bob.sync(None, 0).await["next_batch"]
        .as_str()
        .expect("token")
        .to_owned();

    let waiting = tokio::spawn({
        let bob = bob.clone();
        async move {
            let started = std::time::Instant::now();
            let body = bob.sync(Some(&since), 20_000).await;
            (body, started.elapsed())
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(alice.send_text(&room, "x", "ping").await.0, 200);
    let (body, waited) = waiting.await.expect("sync task");
    assert_eq!(timeline_bodies(&body, &room), ["ping"]);
    assert!(
        waited < std::time::Duration::from_secs(10),
        "sync woke up early, after {waited:?}"
    );
}

#[tokio::test]
async fn duplicate_transaction_id_returns_the_same_event_and_sends_once() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = alice.create_room(json!({})).await;
    let (_, first) = alice.send_text(&room, "same", "once").await;
    let (status, second) = alice.send_text(&room, "same", "once").await;
    assert_eq!(status, 200);
    assert_eq!(first["event_id"], second["event_id"]);
    let synced = alice.sync(None, 0).await;
    assert_eq!(timeline_bodies(&synced, &room), ["once"]);
    let event = synced["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .and_then(|events| {
            events
                .iter()
                .find(|e| e["type"] == "m.room.message")
                .cloned()
        })
        .expect("message");
    assert_eq!(event["unsigned"]["transaction_id"], "same");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_among_sends_in_flight_takes_effect_between_two_of_them() {
    // A batch of messages commits while the next one is built on it (batch.rs); a ban
    // must wait for the batches in flight, and every batch after it must see it.
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    assert_eq!(bob.join(&room).await.0, 200);

    let mut sends = Vec::new();
    for i in 0..120 {
        let sender = if i % 2 == 0 {
            alice.clone()
        } else {
            bob.clone()
        };
        let room_id = room.clone();
        sends.push(tokio::spawn(async move {
            let body = format!("{} {i}", if i % 2 == 0 { "alice" } else { "bob" });
            let (status, answer) = sender.send_text(&room_id, &format!("t{i}"), &body).await;
            (body, status, answer)
        }));
        if i == 60 {
            let (alice, room, bob_id) = (alice.clone(), room.clone(), bob.user_id.clone());
            sends.push(tokio::spawn(async move {
                let (status, answer) = alice
                    .post(
                        &format!("/_matrix/client/v3/rooms/{room}/ban"),
                        json!({ "user_id": bob_id }),
                    )
                    .await;
                ("the ban".to_owned(), status, answer)
            }));
        }
    }
    let mut stored = std::collections::BTreeSet::new();
    for send in sends {
        let (body, status, answer) = send.await.expect("send task");
        match status {
            200 => {
                stored.insert(body);
            }
            _ => {
                assert!(body.starts_with("bob"), "{body}: {status} {answer}");
                assert_eq!(answer["errcode"], "M_FORBIDDEN", "{body}: {answer}");
            }
        }
    }
    assert!(stored.contains("the ban"));
    for i in (0..120).step_by(2) {
        assert!(
            stored.contains(&format!("alice {i}")),
            "alice {i} was not stored"
        );
    }

    // The timeline, oldest first: every message that was answered 200 is in it once, and
    // none of Bob's comes after his ban.
    let (status, page) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=500"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    let mut timeline: Vec<String> = page["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter_map(|e| match e["type"].as_str() {
            Some("m.room.message") => e["content"]["body"].as_str().map(str::to_owned),
            Some("m.room.member") if e["content"]["membership"] == "ban" => {
                Some("the ban".to_owned())
            }
            _ => None,
        })
        .collect();
    timeline.reverse();
    let banned_at = timeline
        .iter()
        .position(|b| b == "the ban")
        .expect("the ban in the timeline");
    assert!(
        !timeline[banned_at..].iter().any(|b| b.starts_with("bob")),
        "a message of Bob's after his ban: {timeline:?}"
    );
    let listed: std::collections::BTreeSet<String> = timeline.iter().cloned().collect();
    assert_eq!(
        listed.len(),
        timeline.len(),
        "a message twice: {timeline:?}"
    );
    assert_eq!(listed, stored);

    // And the room's graph is one chain in that order: each event follows the one before
    // it, so no event was built on a room that had moved on.
    let mut ids: Vec<String> = page["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
        .collect();
    ids.reverse();
    let ids: Vec<_> = ids
        .iter()
        .map(|id| matrix_sdk::ruma::EventId::parse(id).expect("event ID"))
        .collect();
    let pdus = server
        .server()
        .services()
        .rooms
        .pdu_json(&ids)
        .await
        .expect("stored events");
    assert_eq!(pdus.len(), ids.len());
    for (i, pdu) in pdus.iter().enumerate().skip(1) {
        assert_eq!(
            pdu["prev_events"],
            json!([ids[i - 1].as_str()]),
            "event {i} of {}: {pdu}",
            ids.len()
        );
    }
}

#[tokio::test]
async fn many_sends_at_once_to_one_room_are_each_stored_once_and_answered_alone() {
    // Sends waiting for the room's lock are stored together (service/rooms/batch.rs): each
    // must still get its own answer, and retries, refusals and notifications stay per send.
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    assert_eq!(bob.join(&room).await.0, 200);

    let mut sends = Vec::new();
    for i in 0..40 {
        // Every tenth transaction is sent twice at once, as a client retrying would.
        let copies = if i % 10 == 0 { 2 } else { 1 };
        for _ in 0..copies {
            let (alice, room) = (alice.clone(), room.clone());
            sends.push(tokio::spawn(async move {
                let (status, body) = alice
                    .send_text(&room, &format!("t{i}"), &format!("message {i}"))
                    .await;
                (i, status, body)
            }));
        }
    }
    // Carol is not in the room: her sends are refused, and alone.
    let refused: Vec<_> = (0..3)
        .map(|i| {
            let (carol, room) = (carol.clone(), room.clone());
            tokio::spawn(async move { carol.send_text(&room, &format!("c{i}"), "intruder").await })
        })
        .collect();

    let mut ids: std::collections::BTreeMap<usize, String> = Default::default();
    for send in sends {
        let (i, status, body) = send.await.expect("send task");
        assert_eq!(status, 200, "send {i}: {body}");
        let id = body["event_id"].as_str().expect("event_id").to_owned();
        if let Some(first) = ids.insert(i, id.clone()) {
            assert_eq!(first, id, "a retried transaction gets the same event");
        }
    }
    for send in refused {
        let (status, body) = send.await.expect("send task");
        assert_eq!(
            (status, body["errcode"].as_str()),
            (403, Some("M_FORBIDDEN"))
        );
    }
    let distinct: std::collections::BTreeSet<_> = ids.values().collect();
    assert_eq!(distinct.len(), 40, "one event per transaction");

    // Bob sees every message once, in one order, and each one counts as unread.
    let filter = url_encode(r#"{"room":{"timeline":{"limit":100}}}"#);
    let (status, synced) = bob
        .get(&format!("/_matrix/client/v3/sync?filter={filter}"))
        .await;
    assert_eq!(status, 200);
    let mut bodies = timeline_bodies(&synced, &room);
    assert_eq!(bodies.len(), 40, "{bodies:?}");
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 40);
    assert!(!bodies.iter().any(|b| b == "intruder"));
    assert_eq!(
        synced["rooms"]["join"][&room]["unread_notifications"]["notification_count"],
        40
    );
    let (_, page) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100"
        ))
        .await;
    let paged: Vec<&str> = page["chunk"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| e["type"] == "m.room.message")
                .filter_map(|e| e["event_id"].as_str())
                .collect()
        })
        .unwrap_or_default();
    let mut synced_ids: Vec<&str> = synced["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| e["type"] == "m.room.message")
                .filter_map(|e| e["event_id"].as_str())
                .collect()
        })
        .unwrap_or_default();
    synced_ids.reverse();
    assert_eq!(paged, synced_ids, "/messages and /sync agree on the order");
}

#[tokio::test]
async fn non_member_cannot_read_or_send_and_member_without_power_cannot_set_state() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let mallory = server.register("mallory").await;
    let room = alice
        .create_room(json!({ "preset": "public_chat", "name": "Old" }))
        .await;
    let (status, body) = mallory
        .get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b"))
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN"))
    );
    let (status, body) = mallory.send_text(&room, "t", "spam").await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN"))
    );

    assert_eq!(mallory.join(&room).await.0, 200);
    let (status, body) = mallory
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.name"),
            json!({ "name": "Pwned" }),
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("power")),
        "the message says why: {body}"
    );
    let (_, name) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{room}/state/m.room.name"
        ))
        .await;
    assert_eq!(name["name"], "Old");
    // The empty state key written with its trailing slash, as matrix-sdk sends it.
    let (status, name) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{room}/state/m.room.name/"
        ))
        .await;
    assert_eq!((status, &name["name"]), (200, &json!("Old")));
}

#[tokio::test]
async fn malformed_json_and_oversized_bodies_are_rejected_with_matrix_errors() {
    let server = TestServer::builder()
        .config(|c| c.limits.max_request_bytes = 2048)
        .start()
        .await;
    let alice = server.register("alice").await;
    let (status, body) = alice
        .post_raw("/_matrix/client/v3/createRoom", "{not json")
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_NOT_JSON"))
    );
    let (status, body) = alice
        .post(
            "/_matrix/client/v3/createRoom",
            json!({ "invite": "not a list" }),
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_BAD_JSON"))
    );
    let room = alice.create_room(json!({})).await;
    let (status, body) = alice.send_text(&room, "big", &"x".repeat(4096)).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (413, Some("M_TOO_LARGE"))
    );
    let (status, body) = alice.get("/_matrix/client/v3/no/such/endpoint").await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (404, Some("M_UNRECOGNIZED"))
    );
    let (status, body) = alice
        .delete("/_matrix/client/v3/createRoom", json!({}))
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (405, Some("M_UNRECOGNIZED"))
    );
}

#[tokio::test]
async fn messages_paginate_backwards_and_forwards() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = alice.create_room(json!({})).await;
    for i in 0..5 {
        alice
            .send_text(&room, &format!("t{i}"), &format!("m{i}"))
            .await;
    }
    let filter = "%7B%22types%22%3A%5B%22m.room.message%22%5D%7D";
    let (status, page) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=3&filter={filter}"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    let bodies = |page: &Value| -> Vec<String> {
        page["chunk"]
            .as_array()
            .map(|c| {
                c.iter()
                    .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(bodies(&page), ["m4", "m3", "m2"]);
    let end = page["end"].as_str().expect("more to come");
    let (_, older) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=3&from={end}&filter={filter}"
        ))
        .await;
    assert_eq!(bodies(&older), ["m1", "m0"]);
    let (_, forward) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{room}/messages?dir=f&limit=2&filter={filter}"
        ))
        .await;
    assert_eq!(bodies(&forward), ["m0", "m1"]);
}

#[tokio::test]
async fn redacted_message_loses_its_content() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = alice.create_room(json!({})).await;
    let (_, sent) = alice.send_text(&room, "t", "secret").await;
    let event_id = sent["event_id"].as_str().expect("event id");
    let (status, body) = alice
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/redact/{event_id}/r1"),
            json!({ "reason": "oops" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, event) = alice
        .get(&format!("/_matrix/client/v3/rooms/{room}/event/{event_id}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(event["content"], json!({}));
    assert_eq!(
        event["unsigned"]["redacted_because"]["content"]["reason"],
        "oops"
    );
}

#[tokio::test]
async fn room_versions_10_11_and_12_work_and_others_are_refused() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    for version in ["10", "11", "12"] {
        let room = alice.create_room(json!({ "room_version": version })).await;
        assert_eq!(
            alice.send_text(&room, "t", "hi").await.0,
            200,
            "room version {version}"
        );
        let (_, create) = alice
            .get(&format!(
                "/_matrix/client/v3/rooms/{room}/state/m.room.create"
            ))
            .await;
        assert_eq!(create["room_version"], version);
    }
    let (status, body) = alice
        .post(
            "/_matrix/client/v3/createRoom",
            json!({ "room_version": "1" }),
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_UNSUPPORTED_ROOM_VERSION"))
    );
}

#[tokio::test]
async fn alias_resolves_and_public_room_is_listed_and_joinable_by_alias() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = alice.create_room(json!({ "visibility": "public", "room_alias_name": "lounge", "name": "Lounge", "topic": "chat" })).await;
    let (status, body) = bob
        .get("/_matrix/client/v3/directory/room/%23lounge:kith.test")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["room_id"], room.as_str());
    let (_, listed) = bob.get("/_matrix/client/v3/publicRooms").await;
    assert_eq!(listed["chunk"][0]["name"], "Lounge");
    assert_eq!(listed["chunk"][0]["canonical_alias"], "#lounge:kith.test");
    // Room types: `null` stands for rooms without one (spec: `POST /publicRooms`).
    let space = alice
        .create_room(json!({ "visibility": "public", "name": "Family space", "creation_content": { "type": "m.space" } }))
        .await;
    for (types, expected) in [
        (json!([null]), vec![room.as_str()]),
        (json!(["m.space"]), vec![space.as_str()]),
        (
            json!(["m.space", null]),
            vec![room.as_str(), space.as_str()],
        ),
        (json!(["org.example.other"]), vec![]),
        // An empty list is no list (as Synapse reads it).
        (json!([]), vec![room.as_str(), space.as_str()]),
    ] {
        let (status, listed) = bob
            .post(
                "/_matrix/client/v3/publicRooms",
                json!({ "filter": { "room_types": types } }),
            )
            .await;
        assert_eq!(status, 200, "{listed}");
        let found: Vec<&str> = listed["chunk"]
            .as_array()
            .expect("chunk")
            .iter()
            .filter_map(|r| r["room_id"].as_str())
            .collect();
        assert_eq!(found, expected, "{types}");
    }
    let (status, listed) = bob
        .post("/_matrix/client/v3/publicRooms", json!({ "filter": null }))
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["chunk"].as_array().map(Vec::len), Some(2));
    let (status, _) = bob
        .post("/_matrix/client/v3/join/%23lounge:kith.test", json!({}))
        .await;
    assert_eq!(status, 200);
    let (_, joined) = bob.get("/_matrix/client/v3/joined_rooms").await;
    assert_eq!(joined["joined_rooms"][0], room.as_str());
}

#[tokio::test]
async fn kicked_user_leaves_and_banned_user_cannot_rejoin() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await;
    let (status, _) = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/kick"),
            json!({ "user_id": bob.user_id }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, joined) = bob.get("/_matrix/client/v3/joined_rooms").await;
    assert_eq!(joined["joined_rooms"], json!([]));
    bob.join(&room).await;
    let (status, _) = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/ban"),
            json!({ "user_id": bob.user_id, "reason": "spam" }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(bob.join(&room).await.0, 403);
    let (status, _) = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/unban"),
            json!({ "user_id": bob.user_id }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(bob.join(&room).await.0, 200);
}

#[tokio::test]
async fn typing_receipts_account_data_and_push_rules_reach_sync() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await;
    let first = bob.sync(None, 0).await;
    assert!(
        first["account_data"]["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["type"] == "m.push_rules"))
    );
    let since = first["next_batch"].as_str().expect("token").to_owned();

    let (status, _) = alice
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/typing/{}", alice.user_id),
            json!({ "typing": true, "timeout": 10000 }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, sent) = alice.send_text(&room, "t", "read me").await;
    let event_id = sent["event_id"].as_str().expect("id");
    assert_eq!(
        alice
            .post(
                &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event_id}"),
                json!({})
            )
            .await
            .0,
        200
    );
    let (status, _) = bob
        .put(
            &format!(
                "/_matrix/client/v3/user/{}/account_data/org.example.x",
                bob.user_id
            ),
            json!({ "a": 1 }),
        )
        .await;
    assert_eq!(status, 200);

    let synced = bob.sync(Some(&since), 0).await;
    let ephemeral = synced["rooms"]["join"][&room]["ephemeral"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        ephemeral
            .iter()
            .any(|e| e["type"] == "m.typing"
                && e["content"]["user_ids"][0] == alice.user_id.as_str()),
        "{ephemeral:?}"
    );
    assert!(ephemeral.iter().any(|e| e["type"] == "m.receipt"
        && e["content"][event_id]["m.read"][&alice.user_id].is_object()));
    assert!(
        synced["account_data"]["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["type"] == "org.example.x"))
    );
    assert_eq!(
        synced["rooms"]["join"][&room]["unread_notifications"]["notification_count"],
        1
    );

    let (status, rules) = bob.get("/_matrix/client/v3/pushrules/").await;
    assert_eq!(status, 200);
    assert!(
        rules["global"]["override"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["rule_id"] == ".m.rule.master"))
    );
}

#[tokio::test]
async fn displayname_change_updates_member_events_and_profile() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = alice.create_room(json!({})).await;
    let (status, _) = alice
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", alice.user_id),
            json!({ "displayname": "Alice A." }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, profile) = alice
        .get(&format!("/_matrix/client/v3/profile/{}", alice.user_id))
        .await;
    assert_eq!(profile["displayname"], "Alice A.");
    let (_, member) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{room}/state/m.room.member/{}",
            alice.user_id
        ))
        .await;
    assert_eq!(member["displayname"], "Alice A.");
}

#[tokio::test]
async fn server_key_is_signed_and_stable_across_restarts() {
    let server = TestServer::start().await;
    let (status, keys) = server.anonymous().get("/_matrix/key/v2/server").await;
    assert_eq!(status, 200);
    assert_eq!(keys["server_name"], "kith.test");
    assert!(
        keys["signatures"]["kith.test"]
            .as_object()
            .is_some_and(|s| !s.is_empty())
    );
    let status = server.server().status().await.expect("status");
    assert_eq!(status.server_name, "kith.test");
}

#[tokio::test]
async fn context_shows_events_around_one_and_relations_list_replies() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = alice.create_room(json!({})).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let (_, sent) = alice
            .send_text(&room, &format!("c{i}"), &format!("m{i}"))
            .await;
        ids.push(sent["event_id"].as_str().expect("id").to_owned());
    }
    let (status, context) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{room}/context/{}?limit=2",
            ids[1]
        ))
        .await;
    assert_eq!(status, 200, "{context}");
    assert_eq!(context["event"]["content"]["body"], "m1");
    assert_eq!(context["events_before"][0]["content"]["body"], "m0");
    assert_eq!(context["events_after"][0]["content"]["body"], "m2");
    assert!(
        context["state"]
            .as_array()
            .is_some_and(|s| s.iter().any(|e| e["type"] == "m.room.create"))
    );

    let reply = json!({ "msgtype": "m.text", "body": "thread reply", "m.relates_to": { "rel_type": "m.thread", "event_id": ids[0] } });
    let (status, _) = alice
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/r1"),
            reply,
        )
        .await;
    assert_eq!(status, 200);
    let (status, related) = alice
        .get(&format!(
            "/_matrix/client/v1/rooms/{room}/relations/{}/m.thread",
            ids[0]
        ))
        .await;
    assert_eq!(status, 200, "{related}");
    assert_eq!(related["chunk"][0]["content"]["body"], "thread reply");
    let (_, none) = alice
        .get(&format!(
            "/_matrix/client/v1/rooms/{room}/relations/{}/m.annotation",
            ids[0]
        ))
        .await;
    assert_eq!(none["chunk"], json!([]));
}

#[tokio::test]
async fn knocking_asks_to_join_and_an_invite_lets_the_knocker_in() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = alice
        .create_room(json!({
            "preset": "private_chat",
            "name": "Knock knock",
            "initial_state": [{ "type": "m.room.join_rules", "state_key": "",
                                "content": { "join_rule": "knock" } }],
        }))
        .await;
    let alice_since = alice.sync(None, 0).await["next_batch"]
        .as_str()
        .expect("token")
        .to_owned();

    let (status, body) = bob.join(&room).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN"))
    );
    let (status, body) = bob
        .post(
            &format!("/_matrix/client/v3/knock/{room}"),
            json!({ "reason": "it's bob" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["room_id"], room.as_str());

    // Bob sees his pending knock with the room's name; alice sees the request and reason.
    let synced = bob.sync(None, 0).await;
    let knock_state = synced["rooms"]["knock"][&room]["knock_state"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        knock_state
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Knock knock"),
        "{knock_state:?}"
    );
    let synced = alice.sync(Some(&alice_since), 0).await;
    let timeline = synced["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        timeline.iter().any(|e| e["type"] == "m.room.member"
            && e["state_key"] == bob.user_id.as_str()
            && e["content"]["membership"] == "knock"
            && e["content"]["reason"] == "it's bob"),
        "{timeline:?}"
    );

    // Alice lets bob in.
    assert_eq!(alice.invite(&room, &bob.user_id).await.0, 200);
    let (status, body) = bob.join(&room).await;
    assert_eq!(status, 200, "{body}");
    // Neither the invite nor the join leaves anything unread for bob.
    let synced = bob.sync(None, 0).await;
    assert_eq!(
        synced["rooms"]["join"][&room]["unread_notifications"]["notification_count"],
        0
    );

    // A room that is not knockable says so.
    let carol = server.register("carol").await;
    let public = alice.create_room(json!({ "preset": "public_chat" })).await;
    let (status, body) = carol
        .post(&format!("/_matrix/client/v3/knock/{public}"), json!({}))
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN"))
    );
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("knock")),
        "{body}"
    );
}

#[tokio::test]
async fn members_of_a_named_room_may_join_a_restricted_room_and_others_may_not() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let family = alice
        .create_room(json!({ "name": "Family", "preset": "private_chat", "invite": [bob.user_id] }))
        .await;
    assert_eq!(bob.join(&family).await.0, 200);
    let kids = restricted_room(&alice, "Kids", &family).await;

    // Bob is in Family, so he may join without an invite, on Alice's authority.
    let (status, body) = bob.join(&kids).await;
    assert_eq!(status, 200, "{body}");
    let (_, member) = bob
        .get(&format!(
            "/_matrix/client/v3/rooms/{kids}/state/m.room.member/{}",
            url_encode(&bob.user_id)
        ))
        .await;
    assert_eq!(member["membership"], "join");
    assert_eq!(
        member["join_authorised_via_users_server"],
        alice.user_id.as_str()
    );

    // Carol is in no room the rule names.
    let (status, body) = carol.join(&kids).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );

    // A rule naming only rooms this server is not in cannot be checked here.
    let elsewhere = restricted_room(&alice, "Elsewhere", "!nowhere:other.example").await;
    let (status, body) = carol.join(&elsewhere).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_UNABLE_TO_AUTHORISE_JOIN")),
        "{body}"
    );

    // A rule with no condition lets no one in without an invite.
    let closed = restricted_room(&alice, "Closed", "").await;
    let (status, body) = bob.join(&closed).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );
}

/// A private room that members of `allowed` may join without an invite.
async fn restricted_room(creator: &kith_tests::Client, name: &str, allowed: &str) -> String {
    creator
        .create_room(json!({
            "name": name,
            "preset": "private_chat",
            "initial_state": restricted_to(allowed),
        }))
        .await
}

/// `initial_state` for a room that members of `allowed` may join without an invite (none,
/// when `allowed` is empty).
pub(crate) fn restricted_to(allowed: &str) -> Value {
    let allow: Vec<Value> = (!allowed.is_empty())
        .then(|| json!({ "type": "m.room_membership", "room_id": allowed }))
        .into_iter()
        .collect();
    json!([{
        "type": "m.room.join_rules",
        "state_key": "",
        "content": { "join_rule": "restricted", "allow": allow },
    }])
}
