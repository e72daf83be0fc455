//! Federation with a real Synapse (from PyPI) on loopback: each server fetches the other's
//! keys, verifies its signed requests and answers them.

use kith_tests::{Client, TestServer, device_keys, synapse::Synapse, url_encode};
use serde_json::json;

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
async fn kith_and_synapse_answer_each_others_profile_directory_and_key_queries() {
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
        .create_room(json!({ "room_alias_name": "kitchen", "preset": "public_chat" }))
        .await;
    let synapse_room = sam
        .create_room(json!({ "room_alias_name": "garden", "preset": "public_chat" }))
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
