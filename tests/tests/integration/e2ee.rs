//! End-to-end encryption endpoints over HTTP, checked against the spec's rules
//! (client-server-api/modules/end_to_end_encryption.md, send_to_device.md). The real
//! encrypting client is in `e2ee_sdk.rs`; these cover the edges a client rarely shows.

use kith_tests::{Client, TestServer, device_keys};
use serde_json::{Value, json};

fn otk(n: u32) -> (String, Value) {
    (
        format!("signed_curve25519:AAAA{n}"),
        json!({ "key": format!("key{n}"), "signatures": {} }),
    )
}

async fn upload(client: &Client, body: Value) -> (u16, Value) {
    client.post("/_matrix/client/v3/keys/upload", body).await
}

#[tokio::test]
async fn keys_upload_query_and_claim_one_time_keys_before_the_fallback_key() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let (status, _) = alice
        .put(
            &format!("/_matrix/client/v3/devices/{}", alice.device_id),
            json!({ "display_name": "Alice's laptop" }),
        )
        .await;
    assert_eq!(status, 200);

    let (status, body) = upload(
        &alice,
        json!({
            "device_keys": device_keys(&alice),
            "one_time_keys": { otk(1).0: otk(1).1, otk(2).0: otk(2).1 },
            "fallback_keys": { "signed_curve25519:FB": { "key": "fallback", "fallback": true, "signatures": {} } },
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["one_time_key_counts"]["signed_curve25519"], 2);

    // The same key again is fine; the same ID with other content is refused, nothing lost.
    let (status, _) = upload(&alice, json!({ "one_time_keys": { otk(1).0: otk(1).1 } })).await;
    assert_eq!(status, 200);
    let (status, body) = upload(
        &alice,
        json!({ "one_time_keys": { otk(1).0: { "key": "other" }, otk(3).0: otk(3).1 } }),
    )
    .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_INVALID_PARAM"))
    );
    // Keys for another device are refused.
    let mut wrong = device_keys(&alice);
    wrong["device_id"] = json!("OTHER");
    let (status, _) = upload(&alice, json!({ "device_keys": wrong })).await;
    assert_eq!(status, 400);

    // Bob sees alice's device with its display name, and the keys as signed.
    let (status, body) = bob
        .post(
            "/_matrix/client/v3/keys/query",
            json!({ "device_keys": { "@alice:kith.test": [], "@carol:elsewhere.example": [] } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let device = &body["device_keys"]["@alice:kith.test"][&alice.device_id];
    assert_eq!(
        device["keys"][format!("ed25519:{}", alice.device_id)],
        "edkey"
    );
    // The name comes from the device, not from anything the client put in `unsigned`.
    assert_eq!(
        device["unsigned"]["device_display_name"], "Alice's laptop",
        "{device}"
    );
    // A server that cannot be reached is reported in failures, not silently left out.
    assert!(body["failures"]["elsewhere.example"].is_object(), "{body}");

    // Claims hand out the two one-time keys, then the fallback key, again and again.
    let claim = json!({ "one_time_keys": { "@alice:kith.test": { alice.device_id.clone(): "signed_curve25519" } } });
    let mut claimed = Vec::new();
    for _ in 0..4 {
        let (status, body) = bob
            .post("/_matrix/client/v3/keys/claim", claim.clone())
            .await;
        assert_eq!(status, 200, "{body}");
        let keys = body["one_time_keys"]["@alice:kith.test"][&alice.device_id]
            .as_object()
            .expect("a key")
            .clone();
        claimed.push(keys.keys().next().expect("key id").clone());
    }
    assert_eq!(
        claimed,
        [
            "signed_curve25519:AAAA1",
            "signed_curve25519:AAAA2",
            "signed_curve25519:FB",
            "signed_curve25519:FB"
        ]
    );

    // Alice's sync shows no keys left and the fallback key used.
    let sync = alice.sync(None, 0).await;
    assert_eq!(sync["device_one_time_keys_count"]["signed_curve25519"], 0);
    assert_eq!(sync["device_unused_fallback_key_types"], json!([]));
    // A new fallback key is unused again.
    upload(
        &alice,
        json!({ "fallback_keys": { "signed_curve25519:FB2": { "key": "new", "fallback": true } } }),
    )
    .await;
    let sync = alice.sync(None, 0).await;
    assert_eq!(
        sync["device_unused_fallback_key_types"],
        json!(["signed_curve25519"])
    );
}

#[tokio::test]
async fn to_device_messages_arrive_once_acknowledged_and_survive_a_lost_response() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let (_, login) = server.login("bob", "password").await;
    let bob2 = bob.with_login(&login);
    let bob_first = bob.sync(None, 0).await["next_batch"]
        .as_str()
        .expect("token")
        .to_owned();
    let bob2_first = bob2.sync(None, 0).await["next_batch"]
        .as_str()
        .expect("token")
        .to_owned();

    let send = |txn: &str, device: &str, n: u32| {
        let alice = alice.clone();
        let path = format!("/_matrix/client/v3/sendToDevice/m.test/{txn}");
        let body = json!({ "messages": { "@bob:kith.test": { device: { "n": n } } } });
        async move { alice.put(&path, body).await }
    };
    assert_eq!(send("t1", &bob.device_id, 1).await.0, 200);
    // The same transaction again is not a second message.
    assert_eq!(send("t1", &bob.device_id, 1).await.0, 200);
    assert_eq!(send("t2", "*", 2).await.0, 200);

    let numbers = |sync: &Value| -> Vec<u64> {
        sync["to_device"]["events"]
            .as_array()
            .expect("events")
            .iter()
            .inspect(|e| {
                assert_eq!(e["sender"], "@alice:kith.test");
                assert_eq!(e["type"], "m.test");
            })
            .filter_map(|e| e["content"]["n"].as_u64())
            .collect()
    };
    let first = bob.sync(Some(&bob_first), 0).await;
    assert_eq!(numbers(&first), [1, 2]);
    // The response was "lost": the same since gives the same messages again.
    let again = bob.sync(Some(&bob_first), 0).await;
    assert_eq!(numbers(&again), [1, 2]);
    // The next since acknowledges them: gone.
    let next = again["next_batch"].as_str().expect("token");
    let after = bob.sync(Some(next), 0).await;
    assert_eq!(numbers(&after), Vec::<u64>::new());
    // The `*` message reached bob's other device too, and only that one.
    assert_eq!(numbers(&bob2.sync(Some(&bob2_first), 0).await), [2]);

    // A long inbox arrives in pages of 100, none lost.
    for n in 0..150 {
        assert_eq!(send(&format!("bulk{n}"), &bob.device_id, n).await.0, 200);
    }
    let mut since = after["next_batch"].as_str().expect("token").to_owned();
    let mut got = Vec::new();
    for _ in 0..3 {
        let sync = bob.sync(Some(&since), 0).await;
        got.extend(numbers(&sync));
        since = sync["next_batch"].as_str().expect("token").to_owned();
    }
    assert_eq!(got, (0..150).collect::<Vec<u64>>());

    // A long-polling sync wakes up for a to-device message.
    let waiter = {
        let bob = bob.clone();
        let since = since.clone();
        tokio::spawn(async move { bob.sync(Some(&since), 10_000).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(send("wake", &bob.device_id, 7).await.0, 200);
    let woke = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
        .await
        .expect("woken before the timeout")
        .expect("task");
    assert_eq!(numbers(&woke), [7]);
}

#[tokio::test]
async fn device_lists_report_key_changes_of_room_mates_joins_leaves_and_deleted_devices() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    assert_eq!(bob.join(&room).await.0, 200);
    let token = |sync: &Value| sync["next_batch"].as_str().expect("token").to_owned();
    let lists = |sync: &Value, field: &str| -> Vec<String> {
        sync["device_lists"][field]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut since = token(&alice.sync(None, 0).await);

    // Bob uploads device keys: alice, who shares a room with him, sees him changed.
    upload(&bob, json!({ "device_keys": device_keys(&bob) })).await;
    // Carol, who shares no room with alice, changes keys too: alice is not told.
    upload(&carol, json!({ "device_keys": device_keys(&carol) })).await;
    let sync = alice.sync(Some(&since), 0).await;
    assert_eq!(lists(&sync, "changed"), ["@bob:kith.test"]);
    let (_, changes) = alice
        .get(&format!(
            "/_matrix/client/v3/keys/changes?from={since}&to={}",
            token(&sync)
        ))
        .await;
    assert_eq!(changes["changed"], json!(["@bob:kith.test"]));
    since = token(&sync);

    // Carol joins: now she shares a room, so she is changed.
    assert_eq!(carol.join(&room).await.0, 200);
    let sync = alice.sync(Some(&since), 0).await;
    assert_eq!(lists(&sync, "changed"), ["@carol:kith.test"]);
    since = token(&sync);

    // Bob deletes his device (logs out): his keys go, and alice hears of it.
    let bob_device = bob.device_id.clone();
    assert_eq!(
        bob.post("/_matrix/client/v3/logout", json!({})).await.0,
        200
    );
    let sync = alice.sync(Some(&since), 0).await;
    assert_eq!(lists(&sync, "changed"), ["@bob:kith.test"]);
    since = token(&sync);
    let (_, keys) = alice
        .post(
            "/_matrix/client/v3/keys/query",
            json!({ "device_keys": { "@bob:kith.test": [] } }),
        )
        .await;
    assert!(
        keys["device_keys"]["@bob:kith.test"]
            .get(&bob_device)
            .is_none(),
        "{keys}"
    );

    // Carol leaves the only room they share: she is in `left`.
    let (status, _) = carol
        .post(&format!("/_matrix/client/v3/rooms/{room}/leave"), json!({}))
        .await;
    assert_eq!(status, 200);
    let sync = alice.sync(Some(&since), 0).await;
    assert_eq!(lists(&sync, "left"), ["@carol:kith.test"]);
    assert!(!lists(&sync, "changed").contains(&"@carol:kith.test".to_owned()));
}

#[tokio::test]
async fn cross_signing_keys_first_upload_needs_no_password_and_bad_signatures_are_refused() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let master = json!({ "user_id": "@alice:kith.test", "usage": ["master"], "keys": { "ed25519:MASTERPUB": "MASTERPUB" } });
    let path = "/_matrix/client/v3/keys/device_signing/upload";

    // A self-signing key that the master key did not sign is refused.
    let forged = json!({
        "user_id": "@alice:kith.test", "usage": ["self_signing"], "keys": { "ed25519:SSKPUB": "SSKPUB" },
        "signatures": { "@alice:kith.test": { "ed25519:MASTERPUB": "bm90IGEgc2lnbmF0dXJl" } },
    });
    let (status, body) = alice
        .post(
            path,
            json!({ "master_key": master, "self_signing_key": forged }),
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_INVALID_SIGNATURE")),
        "{body}"
    );
    // A key for another user is refused.
    let mut other = master.clone();
    other["user_id"] = json!("@bob:kith.test");
    assert_eq!(
        alice.post(path, json!({ "master_key": other })).await.0,
        400
    );

    // The first master key needs no user-interactive auth; repeating it needs none either.
    let (status, body) = alice.post(path, json!({ "master_key": master })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        alice.post(path, json!({ "master_key": master })).await.0,
        200
    );
    // Replacing it does: the server asks for the password.
    let new_master = json!({ "user_id": "@alice:kith.test", "usage": ["master"], "keys": { "ed25519:NEWPUB": "NEWPUB" } });
    let (status, body) = alice.post(path, json!({ "master_key": new_master })).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["flows"][0]["stages"], json!(["m.login.password"]));
    let session = body["session"].as_str().expect("session");
    let (status, body) = alice
        .post(
            path,
            json!({ "master_key": new_master, "auth": {
                "type": "m.login.password", "session": session, "password": "password",
                "identifier": { "type": "m.id.user", "user": "alice" } } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, keys) = alice
        .post(
            "/_matrix/client/v3/keys/query",
            json!({ "device_keys": { "@alice:kith.test": [] } }),
        )
        .await;
    assert_eq!(
        keys["master_keys"]["@alice:kith.test"]["keys"]["ed25519:NEWPUB"],
        "NEWPUB"
    );

    // A signature that does not verify is reported per key, not stored.
    let mut signed = new_master.clone();
    signed["signatures"] =
        json!({ "@alice:kith.test": { format!("ed25519:{}", alice.device_id): "bm9wZQ" } });
    let (status, body) = alice
        .post(
            "/_matrix/client/v3/keys/signatures/upload",
            json!({ "@alice:kith.test": { "NEWPUB": signed } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["failures"]["@alice:kith.test"]["NEWPUB"]["errcode"].is_string(),
        "{body}"
    );
}

#[tokio::test]
async fn key_backup_versions_and_keys_at_all_three_levels_with_etag_and_count() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (status, body) = alice.get("/_matrix/client/v3/room_keys/version").await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (404, Some("M_NOT_FOUND"))
    );

    let algorithm = "m.megolm_backup.v1.curve25519-aes-sha2";
    let (status, body) = alice
        .post(
            "/_matrix/client/v3/room_keys/version",
            json!({ "algorithm": algorithm, "auth_data": { "public_key": "pk" } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let v1 = body["version"].as_str().expect("version").to_owned();

    let key = |index: u64, verified: bool, data: &str| json!({ "first_message_index": index, "forwarded_count": 0, "is_verified": verified, "session_data": { "ciphertext": data } });
    let keys_path = |suffix: &str, version: &str| {
        format!("/_matrix/client/v3/room_keys/keys{suffix}?version={version}")
    };
    // Session level.
    let (status, body) = alice
        .put(&keys_path("/!r1:kith.test/s1", &v1), key(5, false, "a"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["count"], 1);
    let etag1 = body["etag"].as_str().expect("etag").to_owned();
    // Room level, and all rooms.
    let (_, body) = alice
        .put(
            &keys_path("/!r1:kith.test", &v1),
            json!({ "sessions": { "s2": key(0, false, "b") } }),
        )
        .await;
    assert_eq!(body["count"], 2);
    let (_, body) = alice
        .put(
            &keys_path("", &v1),
            json!({ "rooms": { "!r2:kith.test": { "sessions": { "s3": key(0, true, "c") } } } }),
        )
        .await;
    assert_eq!(body["count"], 3);
    assert_ne!(body["etag"].as_str(), Some(etag1.as_str()));

    // A worse key does not replace a better one (higher index); a better one does.
    alice
        .put(&keys_path("/!r1:kith.test/s1", &v1), key(9, false, "worse"))
        .await;
    let (_, got) = alice.get(&keys_path("/!r1:kith.test/s1", &v1)).await;
    assert_eq!(got["session_data"]["ciphertext"], "a");
    alice
        .put(
            &keys_path("/!r1:kith.test/s1", &v1),
            key(7, true, "verified"),
        )
        .await;
    let (_, got) = alice.get(&keys_path("/!r1:kith.test/s1", &v1)).await;
    assert_eq!(got["session_data"]["ciphertext"], "verified");

    let (_, all) = alice.get(&keys_path("", &v1)).await;
    assert_eq!(
        all["rooms"]["!r2:kith.test"]["sessions"]["s3"]["is_verified"],
        true
    );
    let (_, room) = alice.get(&keys_path("/!r1:kith.test", &v1)).await;
    assert_eq!(room["sessions"].as_object().map(|s| s.len()), Some(2));
    let (status, _) = alice.get(&keys_path("/!r1:kith.test/nope", &v1)).await;
    assert_eq!(status, 404);
    let (_, info) = alice
        .get(&format!("/_matrix/client/v3/room_keys/version/{v1}"))
        .await;
    assert_eq!(
        (info["count"].as_u64(), info["algorithm"].as_str()),
        (Some(3), Some(algorithm))
    );

    // A new version becomes current: uploads to the old one are refused with its number.
    let (_, body) = alice
        .post(
            "/_matrix/client/v3/room_keys/version",
            json!({ "algorithm": algorithm, "auth_data": {} }),
        )
        .await;
    let v2 = body["version"].as_str().expect("version").to_owned();
    let (status, body) = alice
        .put(&keys_path("/!r1:kith.test/s9", &v1), key(0, false, "x"))
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_WRONG_ROOM_KEYS_VERSION"))
    );
    assert_eq!(body["current_version"].as_str(), Some(v2.as_str()));
    // The algorithm of a version cannot change.
    let (status, _) = alice
        .put(
            &format!("/_matrix/client/v3/room_keys/version/{v2}"),
            json!({ "algorithm": "other", "auth_data": {} }),
        )
        .await;
    assert_eq!(status, 400);

    // Deleting keys at room level, then the whole old version.
    let (_, body) = alice
        .delete(&keys_path("/!r1:kith.test", &v1), json!({}))
        .await;
    assert_eq!(body["count"], 1);
    assert_eq!(
        alice
            .delete(
                &format!("/_matrix/client/v3/room_keys/version/{v1}"),
                json!({})
            )
            .await
            .0,
        200
    );
    assert_eq!(
        alice
            .get(&format!("/_matrix/client/v3/room_keys/version/{v1}"))
            .await
            .0,
        404
    );
    let (_, current) = alice.get("/_matrix/client/v3/room_keys/version").await;
    assert_eq!(current["version"].as_str(), Some(v2.as_str()));
}
