//! Presence between users of one server (spec: client-server-api/modules/presence.md).

use kith_tests::{TestServer, url_encode};
use serde_json::{Value, json};

/// The `m.presence` events of a sync response, by sender.
fn presence_of<'a>(sync: &'a Value, user_id: &str) -> Option<&'a Value> {
    sync["presence"]["events"]
        .as_array()?
        .iter()
        .rev()
        .find(|e| e["type"] == "m.presence" && e["sender"] == user_id)
        .map(|e| &e["content"])
}

#[tokio::test]
async fn people_who_share_a_room_see_each_others_presence_and_no_one_else_does() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    assert_eq!(bob.join(&room).await.0, 200);
    let status = |user: &str| format!("/_matrix/client/v3/presence/{}/status", url_encode(user));

    let (code, body) = alice
        .put(
            &status(&alice.user_id),
            json!({ "presence": "online", "status_msg": "Making cupcakes" }),
        )
        .await;
    assert_eq!(code, 200, "{body}");

    // Bob shares a room with Alice: he sees her status, there and in his sync.
    let (code, seen) = bob.get(&status(&alice.user_id)).await;
    assert_eq!(code, 200, "{seen}");
    assert_eq!(seen["presence"], "online");
    assert_eq!(seen["status_msg"], "Making cupcakes");
    assert_eq!(seen["currently_active"], true);
    assert!(seen["last_active_ago"].as_i64().is_some_and(|ago| ago >= 0));
    let synced = bob.sync(None, 0).await;
    let event = presence_of(&synced, &alice.user_id).expect("Alice's presence in Bob's sync");
    assert_eq!(event["status_msg"], "Making cupcakes");

    // A change wakes Bob's long poll.
    let since = synced["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    let waiting = tokio::spawn({
        let bob = bob.clone();
        async move { bob.sync(Some(&since), 20_000).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (code, _) = alice
        .put(
            &status(&alice.user_id),
            json!({ "presence": "unavailable", "status_msg": "Out for lunch" }),
        )
        .await;
    assert_eq!(code, 200);
    let woke = waiting.await.expect("sync task");
    let event = presence_of(&woke, &alice.user_id).expect("the change in Bob's long poll");
    assert_eq!(
        (event["presence"].as_str(), event["status_msg"].as_str()),
        (Some("unavailable"), Some("Out for lunch"))
    );

    // Carol shares no room with Alice: she is refused, and her sync says nothing of her.
    let (code, body) = carol.get(&status(&alice.user_id)).await;
    assert_eq!((code, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")));
    assert!(presence_of(&carol.sync(None, 0).await, &alice.user_id).is_none());

    // Nobody sets another's presence, and the state must be one the spec names.
    let (code, body) = bob
        .put(&status(&alice.user_id), json!({ "presence": "online" }))
        .await;
    assert_eq!((code, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")));
    let (code, body) = bob
        .put(&status(&bob.user_id), json!({ "presence": "busy" }))
        .await;
    assert_eq!(
        (code, body["errcode"].as_str()),
        (400, Some("M_INVALID_PARAM"))
    );
    let (code, body) = bob
        .put(
            &status(&bob.user_id),
            json!({ "presence": "online", "status_msg": "x".repeat(2000) }),
        )
        .await;
    assert_eq!(
        (code, body["errcode"].as_str()),
        (400, Some("M_INVALID_PARAM"))
    );

    // A filter that leaves presence out is obeyed.
    let filter = url_encode(r#"{"presence":{"not_types":["*"]}}"#);
    let (_, filtered) = bob
        .get(&format!("/_matrix/client/v3/sync?filter={filter}"))
        .await;
    assert!(
        presence_of(&filtered, &alice.user_id).is_none(),
        "{filtered}"
    );

    // Syncing marks Bob online unless he asks not to be.
    let (_, own) = bob.get(&status(&bob.user_id)).await;
    assert_eq!(own["presence"], "online");
    let (code, _) = carol
        .get("/_matrix/client/v3/sync?set_presence=offline&timeout=0")
        .await;
    assert_eq!(code, 200);
    let (_, hers) = carol.get(&status(&carol.user_id)).await;
    assert_eq!(
        hers["presence"], "online",
        "her earlier syncs marked her online"
    );
    let (code, body) = carol
        .get("/_matrix/client/v3/sync?set_presence=away&timeout=0")
        .await;
    assert_eq!(
        (code, body["errcode"].as_str()),
        (400, Some("M_INVALID_PARAM"))
    );
}
