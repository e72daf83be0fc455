//! Federation with a real Synapse (from PyPI) on loopback: each server fetches the other's
//! keys, verifies its signed requests and answers them.

use std::time::{Duration, Instant};

use image::ImageFormat;
use kith_tests::{Client, TestServer, device_keys, synapse::Synapse, url_encode};
use serde_json::{Value, json};

use crate::{
    media::{dimensions, image_bytes, mxc_path},
    rooms::restricted_to,
};

/// Uploads `client`'s device keys and one one-time key, on whichever server it uses.
async fn upload_keys(client: &Client, one_time_key: &str) {
    let (status, body) = client
        .post(
            "/_matrix/client/v3/keys/upload",
            json!({
                "device_keys": device_keys(client),
                "one_time_keys": { "signed_curve25519:AAAAAQ": { "key": one_time_key, "signatures": {} } },
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn kith_and_synapse_answer_each_others_profile_directory_room_list_and_key_queries() {
    let kith = TestServer::start_federating().await;
    let synapse = Synapse::start().await;
    let alice = kith.register("alice").await;
    let sam = synapse.register("sam").await;
    for (client, name) in [(&alice, "Alice on Kith"), (&sam, "Sam on Synapse")] {
        let (status, body) = client
            .put(
                &format!(
                    "/_matrix/client/v3/profile/{}/displayname",
                    url_encode(&client.user_id)
                ),
                json!({ "displayname": name }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    // Kith asks Synapse (Synapse verifies Kith's signature with the key it fetches from Kith).
    let (status, profile) = alice
        .get(&format!(
            "/_matrix/client/v3/profile/{}",
            url_encode(&sam.user_id)
        ))
        .await;
    assert_eq!(status, 200, "{profile}\n{}", synapse.log_tail());
    assert_eq!(profile["displayname"], "Sam on Synapse");

    // Synapse asks Kith (Kith verifies Synapse's signature with the key it fetches).
    let (status, profile) = sam
        .get(&format!(
            "/_matrix/client/v3/profile/{}",
            url_encode(&alice.user_id)
        ))
        .await;
    assert_eq!(status, 200, "{profile}\n{}", synapse.log_tail());
    assert_eq!(profile["displayname"], "Alice on Kith");

    // Aliases resolve across, both ways.
    let kith_room = alice
        .create_room(
            json!({ "room_alias_name": "kitchen", "name": "Kitchen", "visibility": "public" }),
        )
        .await;
    let synapse_room = sam
        .create_room(
            json!({ "room_alias_name": "garden", "name": "Garden", "visibility": "public" }),
        )
        .await;
    let (status, found) = sam
        .get(&format!(
            "/_matrix/client/v3/directory/room/{}",
            url_encode(&format!("#kitchen:{}", kith.server_name()))
        ))
        .await;
    assert_eq!(status, 200, "{found}\n{}", synapse.log_tail());
    assert_eq!(found["room_id"], kith_room.as_str());
    let (status, found) = alice
        .get(&format!(
            "/_matrix/client/v3/directory/room/{}",
            url_encode(&format!("#garden:{}", synapse.server_name))
        ))
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["room_id"], synapse_room.as_str());
    assert!(
        found["servers"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s == synapse.server_name.as_str())),
        "{found}"
    );

    // Each lists the other's published rooms, with and without a search term.
    let (status, listed) = sam
        .post(
            &format!(
                "/_matrix/client/v3/publicRooms?server={}",
                kith.server_name()
            ),
            json!({ "filter": { "generic_search_term": "kitch" } }),
        )
        .await;
    assert_eq!(status, 200, "{listed}\n{}", synapse.log_tail());
    assert_eq!(
        listed["chunk"][0]["room_id"],
        kith_room.as_str(),
        "{listed}"
    );
    assert_eq!(listed["chunk"][0]["name"], "Kitchen", "{listed}");
    // Without a filter, Synapse asks with the GET form.
    let (status, listed) = sam
        .get(&format!(
            "/_matrix/client/v3/publicRooms?server={}&limit=5",
            kith.server_name()
        ))
        .await;
    assert_eq!(status, 200, "{listed}\n{}", synapse.log_tail());
    assert_eq!(
        listed["chunk"][0]["room_id"],
        kith_room.as_str(),
        "{listed}"
    );
    assert_eq!(listed["total_room_count_estimate"], 1, "{listed}");
    // Synapse lists a new room once its background statistics job has seen it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, own) = sam.get("/_matrix/client/v3/publicRooms").await;
        if own["chunk"][0]["room_id"] == synapse_room.as_str() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Synapse never listed its room: {own}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, listed) = alice
        .get(&format!(
            "/_matrix/client/v3/publicRooms?server={}",
            synapse.server_name
        ))
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(
        listed["chunk"][0]["room_id"],
        synapse_room.as_str(),
        "{listed}"
    );
    assert_eq!(listed["chunk"][0]["name"], "Garden", "{listed}");
    assert_eq!(listed["chunk"][0]["num_joined_members"], 1, "{listed}");
    let (status, listed) = alice
        .post(
            &format!(
                "/_matrix/client/v3/publicRooms?server={}",
                synapse.server_name
            ),
            json!({ "filter": { "generic_search_term": "no such room" } }),
        )
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["chunk"], json!([]), "{listed}");
    // Another server's list is only fetched for a signed-in user.
    let (status, refused) = kith
        .anonymous()
        .get(&format!(
            "/_matrix/client/v3/publicRooms?server={}",
            synapse.server_name
        ))
        .await;
    assert_eq!(status, 401, "{refused}");
    assert_eq!(refused["errcode"], "M_MISSING_TOKEN");

    // Device keys and one-time keys, both ways: what end-to-end encryption across servers
    // starts from.
    upload_keys(&alice, "alice-otk").await;
    upload_keys(&sam, "sam-otk").await;
    for (asker, owner, key) in [(&alice, &sam, "sam-otk"), (&sam, &alice, "alice-otk")] {
        let (status, found) = asker
            .post(
                "/_matrix/client/v3/keys/query",
                json!({ "device_keys": { owner.user_id.clone(): [] } }),
            )
            .await;
        assert_eq!(status, 200, "{found}");
        assert_eq!(
            found["failures"],
            json!({}),
            "{found}\n{}",
            synapse.log_tail()
        );
        assert_eq!(
            found["device_keys"][&owner.user_id][&owner.device_id]["keys"],
            device_keys(owner)["keys"],
            "{found}"
        );
        let (status, claimed) = asker
            .post(
                "/_matrix/client/v3/keys/claim",
                json!({ "one_time_keys": { owner.user_id.clone(): { owner.device_id.clone(): "signed_curve25519" } } }),
            )
            .await;
        assert_eq!(status, 200, "{claimed}");
        assert_eq!(
            claimed["one_time_keys"][&owner.user_id][&owner.device_id]["signed_curve25519:AAAAAQ"]
                ["key"],
            key,
            "{claimed}\n{}",
            synapse.log_tail()
        );
    }
}

#[tokio::test]
async fn media_crosses_between_kith_and_synapse_and_stays_cached() {
    let kith = TestServer::start_federating().await;
    let mut synapse = Synapse::start().await;
    let alice = kith.register("alice").await;
    let sam = synapse.register("sam").await;

    // Synapse's user downloads what Alice uploaded: Synapse asks Kith's federation media
    // endpoint and reads its multipart answer.
    let kitchen = image_bytes(64, 48, ImageFormat::Png);
    let (status, uploaded) = alice
        .upload(kitchen.clone(), "image/png", Some("kitchen.png"))
        .await;
    assert_eq!(status, 200, "{uploaded}");
    let kith_media = mxc_path(uploaded["content_uri"].as_str().expect("mxc")).to_owned();
    let response = sam
        .get_response(&format!("/_matrix/client/v1/media/download/{kith_media}"))
        .await;
    assert_eq!(response.status(), 200, "{}", synapse.log_tail());
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(response.bytes().await.expect("bytes").as_ref(), kitchen);

    // And the other way: Kith fetches Synapse's media, keeps its type and name, and makes
    // thumbnails of it.
    let garden = image_bytes(640, 480, ImageFormat::Png);
    let (status, uploaded) = sam
        .upload(garden.clone(), "image/png", Some("garden.png"))
        .await;
    assert_eq!(status, 200, "{uploaded}");
    let synapse_media = mxc_path(uploaded["content_uri"].as_str().expect("mxc")).to_owned();
    let download = format!("/_matrix/client/v1/media/download/{synapse_media}");
    let response = alice.get_response(&download).await;
    assert_eq!(response.status(), 200, "{}", synapse.log_tail());
    assert_eq!(response.headers()["content-type"], "image/png");
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(disposition.contains("garden.png"), "{disposition}");
    assert_eq!(response.bytes().await.expect("bytes").as_ref(), garden);
    let response = alice
        .get_response(&format!(
            "/_matrix/client/v1/media/thumbnail/{synapse_media}?width=96&height=96&method=scale"
        ))
        .await;
    assert_eq!(response.status(), 200);
    let (width, height) = dimensions(&response.bytes().await.expect("bytes"));
    assert!(width < 640 && height < 480, "{width}×{height}");

    // What Synapse does not have is not found here either.
    let (status, missing) = alice
        .get(&format!(
            "/_matrix/client/v1/media/download/{}/NoSuchMedia",
            synapse.server_name
        ))
        .await;
    assert_eq!(status, 404, "{missing}");
    assert_eq!(missing["errcode"], "M_NOT_FOUND");

    // Kept: with Synapse gone, Kith still serves the copy it fetched.
    synapse.kill();
    let response = alice.get_response(&download).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.expect("bytes").as_ref(), garden);
    // The deprecated unauthenticated endpoints serve no new remote media (the freeze).
    let response = kith
        .anonymous()
        .get_response(&format!("/_matrix/media/v3/download/{synapse_media}"))
        .await;
    assert_eq!(response.status(), 404);
}

/// Syncs `client` from `since` until a to-device event with `content` arrives (2 minutes
/// at most); returns it.
async fn wait_for_to_device(client: &Client, since: &mut String, content: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let sync = client.sync(Some(since.as_str()), 2_000).await;
        if let Some(next) = sync["next_batch"].as_str() {
            *since = next.to_owned();
        }
        let events = sync["to_device"]["events"].as_array().cloned();
        if let Some(event) = events
            .unwrap_or_default()
            .into_iter()
            .find(|e| &e["content"] == content)
        {
            return event;
        }
        assert!(
            Instant::now() < deadline,
            "no to-device {content} for {}",
            client.user_id
        );
    }
}

async fn send_to_device(from: &Client, txn_id: &str, to: &Client, content: &Value) {
    let (status, body) = from
        .put(
            &format!("/_matrix/client/v3/sendToDevice/org.example.ping/{txn_id}"),
            json!({ "messages": { to.user_id.clone(): { to.device_id.clone(): content } } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn to_device_messages_cross_both_ways_and_wait_out_an_outage() {
    let kith = TestServer::start_federating().await;
    let mut synapse = Synapse::start().await;
    let alice = kith.register("alice").await;
    let sam = synapse.register("sam").await;
    let next_batch = |sync: Value| sync["next_batch"].as_str().expect("next_batch").to_owned();
    let mut alice_since = next_batch(alice.sync(None, 0).await);
    let mut sam_since = next_batch(sam.sync(None, 0).await);

    // Kith to Synapse, and Synapse to Kith, each through the other's /send.
    send_to_device(&alice, "k1", &sam, &json!({ "n": 1 })).await;
    let event = wait_for_to_device(&sam, &mut sam_since, &json!({ "n": 1 })).await;
    assert_eq!(event["sender"], alice.user_id.as_str());
    assert_eq!(event["type"], "org.example.ping");
    send_to_device(&sam, "s1", &alice, &json!({ "n": 2 })).await;
    let event = wait_for_to_device(&alice, &mut alice_since, &json!({ "n": 2 })).await;
    assert_eq!(event["sender"], sam.user_id.as_str());

    // Synapse goes down. Kith accepts the message, keeps it, and records the failures.
    synapse.kill();
    send_to_device(&alice, "k2", &sam, &json!({ "n": 3 })).await;
    let federation = &kith.server().services().federation;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let health = federation.destination_health().await.expect("health");
        let synapse_health = health
            .iter()
            .find(|h| h.destination == synapse.server_name)
            .expect("Synapse is a destination");
        if synapse_health.failures >= 1 {
            assert_eq!(synapse_health.queued, 1, "{synapse_health:?}");
            assert!(synapse_health.last_success_ts.is_some());
            assert!(synapse_health.last_error.is_some());
            break;
        }
        assert!(Instant::now() < deadline, "no failure recorded: {health:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Back up: the first request Synapse makes to Kith (a profile lookup) ends Kith's
    // backoff, and the queued message arrives.
    synapse.restart().await;
    let (status, _) = sam
        .get(&format!(
            "/_matrix/client/v3/profile/{}",
            url_encode(&alice.user_id)
        ))
        .await;
    assert_eq!(status, 200, "{}", synapse.log_tail());
    let event = wait_for_to_device(&sam, &mut sam_since, &json!({ "n": 3 })).await;
    assert_eq!(event["sender"], alice.user_id.as_str());
    // The sender records the success just after Synapse's answer, so it may take a moment.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health = federation.destination_health().await.expect("health");
        let synapse_health = health
            .iter()
            .find(|h| h.destination == synapse.server_name)
            .expect("Synapse is a destination");
        if synapse_health.queued == 0 {
            assert_eq!(synapse_health.failures, 0, "{synapse_health:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{synapse_health:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Syncs `client` from `since` until its timeline in `room_id` shows a message `body`
/// (2 minutes at most, which a slow CI machine may need). Returns every message seen.
async fn wait_for_message(
    client: &Client,
    since: &mut Option<String>,
    room_id: &str,
    body: &str,
    log: impl Fn() -> String,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let sync = client.sync(since.as_deref(), 5_000).await;
        *since = sync["next_batch"].as_str().map(str::to_owned);
        seen.extend(kith_tests::timeline_bodies(&sync, room_id));
        if seen.iter().any(|b| b == body) {
            return seen;
        }
    }
    panic!(
        "{} never saw {body:?} in {room_id}; saw {seen:?}\n{}",
        client.user_id,
        log()
    );
}

#[tokio::test]
async fn a_synapse_user_joins_a_kith_room_by_alias_and_messages_flow_both_ways() {
    let kith = TestServer::start_federating().await;
    let synapse = Synapse::start().await;
    let alice = kith.register("alice").await;
    let sam = synapse.register("sam").await;
    let room_id = alice
        .create_room(json!({
            "room_alias_name": "porch", "name": "Porch", "preset": "public_chat",
        }))
        .await;
    let mut alice_since = Some(
        alice.sync(None, 0).await["next_batch"]
            .as_str()
            .expect("batch")
            .to_owned(),
    );

    // Synapse resolves the alias over federation, asks Kith for a join template, signs it
    // and sends it back; Kith checks it and answers with the room's state.
    let (status, joined) = sam
        .join(&url_encode(&format!("#porch:{}", kith.server_name())))
        .await;
    assert_eq!(status, 200, "{joined}\n{}", synapse.log_tail());
    assert_eq!(joined["room_id"], room_id.as_str());

    // Kith's member list has Sam, and Synapse knows the room's name from the state it got.
    let (status, members) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{room_id}/joined_members"
        ))
        .await;
    assert_eq!(status, 200, "{members}");
    assert!(members["joined"].get(&sam.user_id).is_some(), "{members}");
    let (status, name) = sam
        .get(&format!(
            "/_matrix/client/v3/rooms/{room_id}/state/m.room.name/"
        ))
        .await;
    assert_eq!(status, 200, "{name}\n{}", synapse.log_tail());
    assert_eq!(name["name"], "Porch");

    // Sam's message reaches Alice's sync on Kith; Alice's reaches Sam's on Synapse.
    let (status, sent) = sam.send_text(&room_id, "s1", "hello from Synapse").await;
    assert_eq!(status, 200, "{sent}");
    wait_for_message(
        &alice,
        &mut alice_since,
        &room_id,
        "hello from Synapse",
        || synapse.log_tail(),
    )
    .await;
    let mut sam_since = None;
    let (status, sent) = alice.send_text(&room_id, "a1", "hello from Kith").await;
    assert_eq!(status, 200, "{sent}");
    wait_for_message(&sam, &mut sam_since, &room_id, "hello from Kith", || {
        synapse.log_tail()
    })
    .await;

    // A conversation: several each way, in order on both sides.
    for i in 0..3 {
        let (status, _) = alice
            .send_text(&room_id, &format!("a-{i}"), &format!("kith {i}"))
            .await;
        assert_eq!(status, 200);
        let (status, _) = sam
            .send_text(&room_id, &format!("s-{i}"), &format!("synapse {i}"))
            .await;
        assert_eq!(status, 200);
    }
    let seen = wait_for_message(&alice, &mut alice_since, &room_id, "synapse 2", || {
        synapse.log_tail()
    })
    .await;
    let theirs: Vec<&String> = seen.iter().filter(|b| b.starts_with("synapse ")).collect();
    assert_eq!(theirs, ["synapse 0", "synapse 1", "synapse 2"]);
    let seen = wait_for_message(&sam, &mut sam_since, &room_id, "kith 2", || {
        synapse.log_tail()
    })
    .await;
    let ours: Vec<&String> = seen.iter().filter(|b| b.starts_with("kith ")).collect();
    assert_eq!(ours, ["kith 0", "kith 1", "kith 2"]);

    // Sam leaves; Kith sees it.
    let (status, left) = sam
        .post(
            &format!("/_matrix/client/v3/rooms/{room_id}/leave"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{left}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, members) = alice
            .get(&format!(
                "/_matrix/client/v3/rooms/{room_id}/joined_members"
            ))
            .await;
        assert_eq!(status, 200, "{members}");
        if members["joined"].get(&sam.user_id).is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Sam's leave never arrived\n{}",
            synapse.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_kith_user_joins_a_synapse_room_by_alias_and_messages_flow_both_ways() {
    let kith = TestServer::start_federating().await;
    let synapse = Synapse::start().await;
    let alice = kith.register("alice").await;
    let sam = synapse.register("sam").await;
    let room_id = sam
        .create_room(json!({
            "room_alias_name": "garden", "name": "Garden", "preset": "public_chat",
            "topic": "Tomatoes and such",
        }))
        .await;
    let (status, _) = sam.send_text(&room_id, "s0", "before Alice came").await;
    assert_eq!(status, 200);
    let mut sam_since = Some(
        sam.sync(None, 0).await["next_batch"]
            .as_str()
            .expect("batch")
            .to_owned(),
    );

    // Kith asks Synapse for the alias, then for a join template, signs it, sends it, and
    // checks the state and auth chain Synapse answers with.
    let (status, joined) = alice
        .join(&url_encode(&format!("#garden:{}", synapse.server_name)))
        .await;
    assert_eq!(status, 200, "{joined}\n{}", synapse.log_tail());
    assert_eq!(joined["room_id"], room_id.as_str());

    // Alice's first sync shows the room with its state: name, topic and both members.
    let sync = alice.sync(None, 0).await;
    let room = &sync["rooms"]["join"][room_id.as_str()];
    let state: Vec<&Value> = room["state"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(room["timeline"]["events"].as_array().into_iter().flatten())
        .collect();
    let find = |t: &str, k: &str| {
        state
            .iter()
            .find(|e| e["type"] == t && e["state_key"] == k)
            .map(|e| e["content"].clone())
    };
    assert_eq!(
        find("m.room.name", "").expect("name")["name"],
        "Garden",
        "{room}"
    );
    assert_eq!(
        find("m.room.topic", "").expect("topic")["topic"],
        "Tomatoes and such"
    );
    assert_eq!(
        find("m.room.member", &sam.user_id).expect("sam")["membership"],
        "join"
    );
    assert_eq!(
        find("m.room.member", &alice.user_id).expect("alice")["membership"],
        "join"
    );
    let (status, name) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{room_id}/state/m.room.name/"
        ))
        .await;
    assert_eq!(status, 200, "{name}");
    assert_eq!(name["name"], "Garden");
    let mut alice_since = sync["next_batch"].as_str().map(str::to_owned);

    // Synapse's side: Sam sees Alice join, and her message; Alice sees Sam's.
    let (status, sent) = alice.send_text(&room_id, "a1", "hello from Kith").await;
    assert_eq!(status, 200, "{sent}");
    wait_for_message(&sam, &mut sam_since, &room_id, "hello from Kith", || {
        synapse.log_tail()
    })
    .await;
    let (status, sent) = sam.send_text(&room_id, "s1", "hello from Synapse").await;
    assert_eq!(status, 200, "{sent}");
    wait_for_message(
        &alice,
        &mut alice_since,
        &room_id,
        "hello from Synapse",
        || synapse.log_tail(),
    )
    .await;

    // Sam renames the room; Alice's state follows.
    let (status, _) = sam
        .put(
            &format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.name/"),
            json!({ "name": "Vegetable garden" }),
        )
        .await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, name) = alice
            .get(&format!(
                "/_matrix/client/v3/rooms/{room_id}/state/m.room.name/"
            ))
            .await;
        assert_eq!(status, 200, "{name}");
        if name["name"] == "Vegetable garden" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rename never arrived\n{}",
            synapse.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Alice leaves; Sam's member list no longer has her.
    let (status, left) = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{room_id}/leave"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{left}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, members) = sam
            .get(&format!(
                "/_matrix/client/v3/rooms/{room_id}/joined_members"
            ))
            .await;
        assert_eq!(status, 200, "{members}");
        if members["joined"].get(&alice.user_id).is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Alice's leave never arrived\n{}",
            synapse.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn kith_gets_what_synapse_said_while_kith_was_down() {
    let mut kith = TestServer::start_federating().await;
    let synapse = Synapse::start().await;
    let alice = kith.register("alice").await;
    let sam = synapse.register("sam").await;
    let room_id = alice
        .create_room(json!({ "name": "Porch", "preset": "public_chat" }))
        .await;
    let (status, joined) = sam
        .post(
            &format!(
                "/_matrix/client/v3/join/{room_id}?via={}",
                url_encode(kith.server_name())
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{joined}\n{}", synapse.log_tail());

    // Kith is down while Sam talks; Synapse cannot deliver and backs off.
    kith.shut_down().await;
    for i in 0..4 {
        let (status, _) = sam
            .send_text(
                &room_id,
                &format!("gap-{i}"),
                &format!("while you were out {i}"),
            )
            .await;
        assert_eq!(status, 200);
    }
    let kith = kith.restart().await;
    let (status, login) = kith.login("alice", "password").await;
    assert_eq!(status, 200, "{login}");
    let alice = kith.anonymous().with_login(&login);

    // Synapse delivers what it could not (its retries outlast a short outage; a long one
    // makes it send only its newest event, and Kith fills the gap with get_missing_events,
    // which `federation_rooms` shows between two Kith servers).
    let mut alice_since = Some(
        alice.sync(None, 0).await["next_batch"]
            .as_str()
            .expect("batch")
            .to_owned(),
    );
    let (status, _) = alice.send_text(&room_id, "back", "I'm back").await;
    assert_eq!(status, 200);
    let (status, _) = sam.send_text(&room_id, "after", "welcome back").await;
    assert_eq!(status, 200);
    let seen = wait_for_message(&alice, &mut alice_since, &room_id, "welcome back", || {
        synapse.log_tail()
    })
    .await;
    let (status, page) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=30"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    let bodies: Vec<&str> = page["chunk"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    for i in 0..4 {
        let missed = format!("while you were out {i}");
        assert!(
            bodies.contains(&missed.as_str()),
            "{missed:?} is missing from {bodies:?} (sync saw {seen:?})\n{}",
            synapse.log_tail()
        );
    }
}

/// Syncs `client` until its sync shows an invite to `room_id`; returns the invite state.
async fn wait_for_invite(client: &Client, room_id: &str, log: impl Fn() -> String) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut since: Option<String> = None;
    while Instant::now() < deadline {
        let sync = client.sync(since.as_deref(), 2_000).await;
        since = sync["next_batch"].as_str().map(str::to_owned);
        if let Some(events) = sync["rooms"]["invite"][room_id]["invite_state"]["events"].as_array()
        {
            return events.clone();
        }
    }
    panic!(
        "{} never saw the invite to {room_id}\n{}",
        client.user_id,
        log()
    );
}

/// Waits until `client` (on either server) sees `user_id` with `membership` in the room.
async fn wait_for_membership(
    client: &Client,
    room_id: &str,
    user_id: &str,
    membership: &str,
    log: impl Fn() -> String,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, member) = client
            .get(&format!(
                "/_matrix/client/v3/rooms/{room_id}/state/m.room.member/{}",
                url_encode(user_id)
            ))
            .await;
        if status == 200 && member["membership"] == membership {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never saw {user_id} {membership}: {status} {member}\n{}",
            client.user_id,
            log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn invites_cross_both_ways_and_can_be_rejected_or_accepted() {
    let kith = TestServer::start_federating().await;
    let synapse = Synapse::start().await;
    let alice = kith.register("alice").await;
    let sam = synapse.register("sam").await;

    // Alice invites Sam to a private room on Kith; Synapse signs the invite, Sam sees it
    // with the room's name, accepts, and they talk.
    let kith_room = alice
        .create_room(json!({ "name": "Family", "preset": "private_chat" }))
        .await;
    let (status, invited) = alice.invite(&kith_room, &sam.user_id).await;
    assert_eq!(status, 200, "{invited}\n{}", synapse.log_tail());
    let state = wait_for_invite(&sam, &kith_room, || synapse.log_tail()).await;
    assert!(
        state
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Family"),
        "{state:?}"
    );
    let (status, joined) = sam.join(&kith_room).await;
    assert_eq!(status, 200, "{joined}\n{}", synapse.log_tail());
    wait_for_membership(&alice, &kith_room, &sam.user_id, "join", || {
        synapse.log_tail()
    })
    .await;

    // Sam invites Alice to a private room on Synapse; Kith signs and keeps the invite, and
    // Alice's sync shows it with the room's name. She rejects it through Synapse.
    let synapse_room = sam
        .create_room(json!({ "name": "Book club", "preset": "private_chat" }))
        .await;
    let (status, invited) = sam.invite(&synapse_room, &alice.user_id).await;
    assert_eq!(status, 200, "{invited}\n{}", synapse.log_tail());
    let state = wait_for_invite(&alice, &synapse_room, || synapse.log_tail()).await;
    assert!(
        state
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Book club"),
        "{state:?}"
    );
    assert!(
        state.iter().any(|e| e["type"] == "m.room.member"
            && e["state_key"] == alice.user_id.as_str()
            && e["content"]["membership"] == "invite"),
        "{state:?}"
    );
    let (status, left) = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{synapse_room}/leave"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{left}\n{}", synapse.log_tail());
    wait_for_membership(&sam, &synapse_room, &alice.user_id, "leave", || {
        synapse.log_tail()
    })
    .await;
    let sync = alice.sync(None, 0).await;
    assert!(
        sync["rooms"]["invite"].get(synapse_room.as_str()).is_none(),
        "{sync}"
    );

    // Invited again, she accepts: Kith joins through the inviting server.
    let (status, invited) = sam.invite(&synapse_room, &alice.user_id).await;
    assert_eq!(status, 200, "{invited}\n{}", synapse.log_tail());
    wait_for_invite(&alice, &synapse_room, || synapse.log_tail()).await;
    let (status, joined) = alice.join(&synapse_room).await;
    assert_eq!(status, 200, "{joined}\n{}", synapse.log_tail());
    wait_for_membership(&sam, &synapse_room, &alice.user_id, "join", || {
        synapse.log_tail()
    })
    .await;
    let (status, sent) = alice.send_text(&synapse_room, "a1", "count me in").await;
    assert_eq!(status, 200, "{sent}");
    let mut sam_since = None;
    wait_for_message(&sam, &mut sam_since, &synapse_room, "count me in", || {
        synapse.log_tail()
    })
    .await;
}

/// Syncs `client` until `check` holds for a sync response (2 minutes at most).
async fn wait_for_sync(
    client: &Client,
    what: &str,
    check: impl Fn(&Value) -> bool,
    log: impl Fn() -> String,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut since: Option<String> = None;
    while Instant::now() < deadline {
        let sync = client.sync(since.as_deref(), 2_000).await;
        if check(&sync) {
            return;
        }
        since = sync["next_batch"].as_str().map(str::to_owned);
    }
    panic!("{} never saw {what}\n{}", client.user_id, log());
}

/// The `m.typing` user IDs of a room in a sync response.
fn typing_in(sync: &Value, room_id: &str) -> Vec<String> {
    sync["rooms"]["join"][room_id]["ephemeral"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == "m.typing")
        .flat_map(|e| {
            e["content"]["user_ids"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|u| u.as_str().map(str::to_owned))
        .collect()
}

/// Whether a sync response shows `user_id`'s public read receipt on `event_id`.
fn has_receipt(sync: &Value, room_id: &str, event_id: &str, user_id: &str) -> bool {
    sync["rooms"]["join"][room_id]["ephemeral"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| {
            e["type"] == "m.receipt" && e["content"][event_id]["m.read"].get(user_id).is_some()
        })
}

#[tokio::test]
async fn typing_receipts_and_device_list_changes_cross_both_ways() {
    let kith = TestServer::start_federating().await;
    let synapse = Synapse::start().await;
    let alice = kith.register("alice").await;
    let sam = synapse.register("sam").await;
    let room_id = alice
        .create_room(json!({ "name": "Porch", "preset": "public_chat" }))
        .await;
    let (status, joined) = sam
        .post(
            &format!(
                "/_matrix/client/v3/join/{room_id}?via={}",
                url_encode(kith.server_name())
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{joined}\n{}", synapse.log_tail());
    let log = || synapse.log_tail();

    // Typing, both ways.
    let (status, _) = alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{room_id}/typing/{}",
                url_encode(&alice.user_id)
            ),
            json!({ "typing": true, "timeout": 20000 }),
        )
        .await;
    assert_eq!(status, 200);
    wait_for_sync(
        &sam,
        "Alice typing",
        |s| typing_in(s, &room_id).contains(&alice.user_id),
        log,
    )
    .await;
    let (status, _) = sam
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{room_id}/typing/{}",
                url_encode(&sam.user_id)
            ),
            json!({ "typing": true, "timeout": 20000 }),
        )
        .await;
    assert_eq!(status, 200);
    wait_for_sync(
        &alice,
        "Sam typing",
        |s| typing_in(s, &room_id).contains(&sam.user_id),
        log,
    )
    .await;

    // Read receipts, both ways.
    let (status, sent) = alice.send_text(&room_id, "a1", "read me").await;
    assert_eq!(status, 200, "{sent}");
    let alices = sent["event_id"].as_str().expect("event id").to_owned();
    let (status, sent) = sam.send_text(&room_id, "s1", "and me").await;
    assert_eq!(status, 200, "{sent}");
    let sams = sent["event_id"].as_str().expect("event id").to_owned();
    let mut sam_since = None;
    wait_for_message(&sam, &mut sam_since, &room_id, "read me", log).await;
    let (status, body) = sam
        .post(
            &format!("/_matrix/client/v3/rooms/{room_id}/receipt/m.read/{alices}"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    wait_for_sync(
        &alice,
        "Sam's receipt",
        |s| has_receipt(s, &room_id, &alices, &sam.user_id),
        log,
    )
    .await;
    let mut alice_since = None;
    wait_for_message(&alice, &mut alice_since, &room_id, "and me", log).await;
    let (status, body) = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{room_id}/receipt/m.read/{sams}"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    wait_for_sync(
        &sam,
        "Alice's receipt",
        |s| has_receipt(s, &room_id, &sams, &alice.user_id),
        log,
    )
    .await;

    // Sam signs in on a new device and uploads its keys: Synapse tells Kith, and Alice's
    // sync lists Sam among the users whose devices changed.
    let since = alice.sync(None, 0).await["next_batch"]
        .as_str()
        .expect("batch")
        .to_owned();
    let (status, login) = synapse
        .anonymous()
        .post(
            "/_matrix/client/v3/login",
            json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "sam" }, "password": "password" }),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    let sam_phone = synapse.anonymous().with_login(&login);
    upload_keys(&sam_phone, "phone-one-time-key").await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut since = Some(since);
    loop {
        let sync = alice.sync(since.as_deref(), 2_000).await;
        since = sync["next_batch"].as_str().map(str::to_owned);
        let changed = sync["device_lists"]["changed"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if changed.iter().any(|u| u == sam.user_id.as_str()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Sam's new device never showed\n{}",
            synapse.log_tail()
        );
    }

    // The other way: Alice's new device reaches Synapse, and Sam's key query lists it.
    let since = sam.sync(None, 0).await["next_batch"]
        .as_str()
        .expect("batch")
        .to_owned();
    let (status, login) = kith.login("alice", "password").await;
    assert_eq!(status, 200, "{login}");
    let alice_laptop = kith.anonymous().with_login(&login);
    upload_keys(&alice_laptop, "laptop-one-time-key").await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut since = Some(since);
    loop {
        let sync = sam.sync(since.as_deref(), 2_000).await;
        since = sync["next_batch"].as_str().map(str::to_owned);
        let changed = sync["device_lists"]["changed"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if changed.iter().any(|u| u == alice.user_id.as_str()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Alice's new device never showed\n{}",
            synapse.log_tail()
        );
    }
    let (status, keys) = sam
        .post(
            "/_matrix/client/v3/keys/query",
            json!({ "device_keys": { alice.user_id.clone(): [] } }),
        )
        .await;
    assert_eq!(status, 200, "{keys}");
    assert!(
        keys["device_keys"][alice.user_id.as_str()]
            .get(&alice_laptop.device_id)
            .is_some(),
        "{keys}\n{}",
        synapse.log_tail()
    );

    // Alice signs out of the laptop: Synapse hears the device is gone, and Sam's key query
    // stops listing it (his clients stop encrypting for it).
    let (status, body) = alice_laptop
        .post("/_matrix/client/v3/logout", json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, keys) = sam
            .post(
                "/_matrix/client/v3/keys/query",
                json!({ "device_keys": { alice.user_id.clone(): [] } }),
            )
            .await;
        assert_eq!(status, 200, "{keys}");
        if keys["device_keys"][alice.user_id.as_str()]
            .get(&alice_laptop.device_id)
            .is_none()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Sam still sees Alice's laptop: {keys}\n{}",
            synapse.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn kicks_and_bans_cross_both_ways_and_event_ids_match() {
    let kith = TestServer::start_federating().await;
    let synapse = Synapse::start().await;
    let alice = kith.register("alice").await;
    let sam = synapse.register("sam").await;
    let log = || synapse.log_tail();

    // A room on each side, each joined by the other's user.
    let kith_room = alice
        .create_room(json!({ "name": "Kith side", "preset": "public_chat" }))
        .await;
    let synapse_room = sam
        .create_room(json!({ "name": "Synapse side", "preset": "public_chat" }))
        .await;
    let (status, body) = sam
        .post(
            &format!(
                "/_matrix/client/v3/join/{kith_room}?via={}",
                url_encode(kith.server_name())
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}\n{}", log());
    let (status, body) = alice
        .post(
            &format!(
                "/_matrix/client/v3/join/{synapse_room}?via={}",
                url_encode(&synapse.server_name)
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // The same message has the same event ID on both servers.
    let (status, sent) = sam.send_text(&kith_room, "s1", "same everywhere").await;
    assert_eq!(status, 200, "{sent}");
    let event_id = sent["event_id"].as_str().expect("event id").to_owned();
    let mut since = None;
    wait_for_message(&alice, &mut since, &kith_room, "same everywhere", log).await;
    let (status, event) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{kith_room}/event/{event_id}"
        ))
        .await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["content"]["body"], "same everywhere");

    // Alice kicks Sam from her room; Sam sees it on Synapse.
    let (status, body) = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{kith_room}/kick"),
            json!({ "user_id": sam.user_id, "reason": "tidying up" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    wait_for_membership(&sam, &kith_room, &sam.user_id, "leave", log).await;

    // Sam bans Alice from his room; Kith sees it, and Alice cannot rejoin.
    let (status, body) = sam
        .post(
            &format!("/_matrix/client/v3/rooms/{synapse_room}/ban"),
            json!({ "user_id": alice.user_id, "reason": "no reason" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    wait_for_membership(&alice, &synapse_room, &alice.user_id, "ban", log).await;
    let (status, body) = alice
        .post(
            &format!(
                "/_matrix/client/v3/join/{synapse_room}?via={}",
                url_encode(&synapse.server_name)
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 403, "{body}");

    // The other way too: Alice bans Sam from her room, and his rejoin through Kith is
    // refused.
    let (status, body) = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{kith_room}/ban"),
            json!({ "user_id": sam.user_id }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    wait_for_membership(&alice, &kith_room, &sam.user_id, "ban", log).await;
    let (status, body) = sam
        .post(
            &format!(
                "/_matrix/client/v3/join/{kith_room}?via={}",
                url_encode(kith.server_name())
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 403, "{body}\n{}", log());
}

#[tokio::test]
async fn knocks_cross_both_ways_and_an_invite_lets_the_knocker_in() {
    let kith = TestServer::start_federating().await;
    let synapse = Synapse::start().await;
    let alice = kith.register("alice").await;
    let sam = synapse.register("sam").await;
    let log = || synapse.log_tail();
    let knock_room = json!({
        "preset": "private_chat",
        "initial_state": [{ "type": "m.room.join_rules", "state_key": "", "content": { "join_rule": "knock" } }],
    });

    // Sam knocks on Alice's room through Synapse; Kith takes the knock, Alice lets him in.
    let mut body = knock_room.clone();
    body["name"] = json!("Alice's study");
    let kith_room = alice.create_room(body).await;
    let (status, knocked) = sam
        .post(
            &format!(
                "/_matrix/client/v3/knock/{kith_room}?via={}",
                url_encode(kith.server_name())
            ),
            json!({ "reason": "may I?" }),
        )
        .await;
    assert_eq!(status, 200, "{knocked}\n{}", log());
    wait_for_membership(&alice, &kith_room, &sam.user_id, "knock", log).await;
    let (status, body) = alice.invite(&kith_room, &sam.user_id).await;
    assert_eq!(status, 200, "{body}\n{}", log());
    wait_for_invite(&sam, &kith_room, log).await;
    let (status, body) = sam.join(&kith_room).await;
    assert_eq!(status, 200, "{body}\n{}", log());
    wait_for_membership(&alice, &kith_room, &sam.user_id, "join", log).await;

    // Alice knocks on Sam's room through Kith; her sync shows the knock with the room's
    // name, and Sam's invite turns it into a join.
    let mut body = knock_room.clone();
    body["name"] = json!("Sam's workshop");
    let synapse_room = sam.create_room(body).await;
    let (status, knocked) = alice
        .post(
            &format!(
                "/_matrix/client/v3/knock/{synapse_room}?via={}",
                url_encode(&synapse.server_name)
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{knocked}\n{}", log());
    let sync = alice.sync(None, 0).await;
    let state = sync["rooms"]["knock"][synapse_room.as_str()]["knock_state"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        state
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Sam's workshop"),
        "{sync}"
    );
    wait_for_membership(&sam, &synapse_room, &alice.user_id, "knock", log).await;
    let (status, body) = sam.invite(&synapse_room, &alice.user_id).await;
    assert_eq!(status, 200, "{body}\n{}", log());
    wait_for_invite(&alice, &synapse_room, log).await;
    let (status, body) = alice.join(&synapse_room).await;
    assert_eq!(status, 200, "{body}\n{}", log());
    wait_for_membership(&sam, &synapse_room, &alice.user_id, "join", log).await;
}

#[tokio::test]
async fn history_from_before_a_remote_join_is_backfilled_when_paging_back() {
    let kith = TestServer::start_federating().await;
    let synapse = Synapse::start().await;
    let alice = kith.register("alice").await;
    let sam = synapse.register("sam").await;
    let room_id = sam
        .create_room(json!({ "name": "Old stories", "preset": "public_chat" }))
        .await;
    for i in 0..30 {
        let (status, _) = sam
            .send_text(&room_id, &format!("old-{i}"), &format!("story {i}"))
            .await;
        assert_eq!(status, 200);
    }
    let (status, joined) = alice
        .post(
            &format!(
                "/_matrix/client/v3/join/{room_id}?via={}",
                url_encode(&synapse.server_name)
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{joined}\n{}", synapse.log_tail());

    // Kith holds nothing from before the join; paging back fetches it from Synapse, page by
    // page, oldest last. The history is "shared", so Alice may read it.
    let mut bodies = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..10 {
        let mut path = format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=20");
        if let Some(from) = &from {
            path.push_str(&format!("&from={from}"));
        }
        let (status, page) = alice.get(&path).await;
        assert_eq!(status, 200, "{page}");
        for event in page["chunk"].as_array().into_iter().flatten() {
            if let Some(body) = event["content"]["body"].as_str() {
                bodies.push(body.to_owned());
            }
        }
        match page["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => break,
        }
    }
    bodies.reverse();
    let expected: Vec<String> = (0..30).map(|i| format!("story {i}")).collect();
    assert_eq!(bodies, expected, "{}", synapse.log_tail());
}

#[tokio::test]
async fn a_space_on_synapse_shows_its_rooms_to_a_kith_user() {
    let kith = TestServer::start_federating().await;
    let synapse = Synapse::start().await;
    let alice = kith.register("alice").await;
    let sam = synapse.register("sam").await;
    let space = sam
        .create_room(json!({
            "name": "Neighbourhood", "preset": "public_chat", "room_alias_name": "hood",
            "creation_content": { "type": "m.space" },
        }))
        .await;
    let mut children = Vec::new();
    for (name, suggested) in [("Bakery", true), ("Garage", false)] {
        let child = sam
            .create_room(json!({ "name": name, "preset": "public_chat" }))
            .await;
        let (status, body) = sam
            .put(
                &format!("/_matrix/client/v3/rooms/{space}/state/m.space.child/{child}"),
                json!({ "via": [synapse.server_name], "suggested": suggested }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        children.push(child);
    }

    // Alice joins the space; its children live only on Synapse, so Kith asks Synapse for
    // them over federation.
    let (status, joined) = alice
        .join(&url_encode(&format!("#hood:{}", synapse.server_name)))
        .await;
    assert_eq!(status, 200, "{joined}\n{}", synapse.log_tail());
    let names = |page: &Value| -> Vec<String> {
        page["rooms"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str().map(str::to_owned))
            .collect()
    };
    let (status, page) = alice
        .get(&format!("/_matrix/client/v1/rooms/{space}/hierarchy"))
        .await;
    assert_eq!(status, 200, "{page}\n{}", synapse.log_tail());
    let mut found = names(&page);
    found.sort();
    assert_eq!(found, ["Bakery", "Garage", "Neighbourhood"], "{page}");
    let top = &page["rooms"][0];
    assert_eq!(top["room_id"], space.as_str());
    assert_eq!(top["room_type"], "m.space");
    assert_eq!(
        top["children_state"].as_array().map(Vec::len),
        Some(2),
        "{top}"
    );
    let (status, page) = alice
        .get(&format!(
            "/_matrix/client/v1/rooms/{space}/hierarchy?suggested_only=true"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(names(&page), ["Neighbourhood", "Bakery"], "{page}");
    // Pages: one room at a time.
    let (status, page) = alice
        .get(&format!(
            "/_matrix/client/v1/rooms/{space}/hierarchy?limit=1"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(names(&page), ["Neighbourhood"]);
    let next = page["next_batch"].as_str().expect("next_batch").to_owned();
    let (status, page) = alice
        .get(&format!(
            "/_matrix/client/v1/rooms/{space}/hierarchy?limit=1&from={next}"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["rooms"].as_array().map(Vec::len), Some(1), "{page}");
}

#[tokio::test]
async fn presence_crosses_both_ways_when_kith_is_set_to_send_it() {
    let kith = TestServer::builder()
        .federation()
        .config(|c| c.federation.send_presence = true)
        .start()
        .await;
    let synapse = Synapse::start_with_presence().await;
    let alice = kith.register("alice").await;
    let sam = synapse.register("sam").await;
    let room_id = alice
        .create_room(json!({ "name": "Porch", "preset": "public_chat" }))
        .await;
    let (status, joined) = sam
        .post(
            &format!(
                "/_matrix/client/v3/join/{room_id}?via={}",
                url_encode(kith.server_name())
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{joined}\n{}", synapse.log_tail());
    let log = || synapse.log_tail();
    let status_path =
        |user: &str| format!("/_matrix/client/v3/presence/{}/status", url_encode(user));

    // Synapse to Kith: Sam's status shows in Alice's sync and when she asks.
    let (code, body) = sam
        .put(
            &status_path(&sam.user_id),
            json!({ "presence": "online", "status_msg": "Making cupcakes" }),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    wait_for_sync(
        &alice,
        "Sam's presence",
        |s| {
            s["presence"]["events"].as_array().is_some_and(|events| {
                events.iter().any(|e| {
                    e["sender"] == sam.user_id && e["content"]["status_msg"] == "Making cupcakes"
                })
            })
        },
        log,
    )
    .await;
    let (code, seen) = alice.get(&status_path(&sam.user_id)).await;
    assert_eq!(code, 200, "{seen}");
    assert_eq!(seen["presence"], "online");

    // Kith to Synapse, as the config allows: Sam sees Alice's new status.
    let (code, _) = alice
        .put(
            &status_path(&alice.user_id),
            json!({ "presence": "unavailable", "status_msg": "Out for lunch" }),
        )
        .await;
    assert_eq!(code, 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, seen) = sam.get(&status_path(&alice.user_id)).await;
        if code == 200 && seen["status_msg"] == "Out for lunch" {
            assert_eq!(seen["presence"], "unavailable");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Sam never saw Alice's status: {code} {seen}\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn restricted_rooms_admit_members_of_the_named_room_across_servers() {
    let kith = TestServer::start_federating().await;
    let synapse = Synapse::start().await;
    let alice = kith.register("alice").await;
    let sam = synapse.register("sam").await;
    let stranger = synapse.register("stranger").await;
    let log = || synapse.log_tail();

    // Kith holds the rooms: Sam is in the allowed room, so the restricted one lets him in
    // through Kith, on Alice's authority; a stranger is refused.
    let kids = admit_through_restricted_room(&alice, &sam, kith.server_name(), log).await;
    let (status, body) = stranger
        .post(
            &format!(
                "/_matrix/client/v3/join/{kids}?via={}",
                url_encode(kith.server_name())
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 403, "a stranger's join: {body}");

    // Synapse holds the rooms: the same, the other way.
    admit_through_restricted_room(&sam, &alice, &synapse.server_name, log).await;
}

/// `host` makes a room and invites `guest`, who joins it, then a room restricted to its
/// members, which `guest` joins through `host_server` without an invite. Checks that the
/// join names `host` as its authority; returns the restricted room.
async fn admit_through_restricted_room(
    host: &Client,
    guest: &Client,
    host_server: &str,
    log: impl Fn() -> String + Copy,
) -> String {
    let via = format!("?via={}", url_encode(host_server));
    let allowed = host
        .create_room(
            json!({ "name": "Family", "preset": "private_chat", "invite": [guest.user_id] }),
        )
        .await;
    wait_for_sync(
        guest,
        "the invite",
        |s| s["rooms"]["invite"].get(&allowed).is_some(),
        log,
    )
    .await;
    let (status, body) = guest
        .post(
            &format!("/_matrix/client/v3/join/{allowed}{via}"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}\n{}", log());
    let restricted = host
        .create_room(json!({ "name": "Kids", "initial_state": restricted_to(&allowed) }))
        .await;
    let (status, body) = guest
        .post(
            &format!("/_matrix/client/v3/join/{restricted}{via}"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{}'s join: {body}\n{}", guest.user_id, log());
    let (status, member) = host
        .get(&format!(
            "/_matrix/client/v3/rooms/{restricted}/state/m.room.member/{}",
            url_encode(&guest.user_id)
        ))
        .await;
    assert_eq!(status, 200, "{member}");
    assert_eq!(member["membership"], "join");
    assert_eq!(
        member["join_authorised_via_users_server"],
        host.user_id.as_str()
    );
    restricted
}
