//! Push rules: editing them through the API, and the unread counts they drive in `/sync`.

use kith_tests::{Client, TestServer};
use serde_json::{Value, json};

fn counts(sync: &Value, room: &str) -> (Value, Value) {
    let unread = &sync["rooms"]["join"][room]["unread_notifications"];
    (
        unread["notification_count"].clone(),
        unread["highlight_count"].clone(),
    )
}

fn rule_ids(rules: &Value, kind: &str) -> Vec<String> {
    rules["global"][kind]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|r| r["rule_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn put_rule(client: &Client, path: &str, body: Value) -> (u16, Value) {
    client
        .put(&format!("/_matrix/client/v3/pushrules/global/{path}"), body)
        .await
}

#[tokio::test]
async fn push_rules_are_added_ordered_toggled_changed_and_deleted() {
    let server = TestServer::start().await;
    let bob = server.register("bob").await;
    let first = bob.sync(None, 0).await;
    let since = first["next_batch"].as_str().expect("token").to_owned();

    let (status, body) = put_rule(
        &bob,
        "content/cake",
        json!({ "pattern": "cake*lie", "actions": ["notify"] }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, rule) = bob
        .get("/_matrix/client/v3/pushrules/global/content/cake")
        .await;
    assert_eq!(status, 200, "{rule}");
    assert_eq!(rule["rule_id"], "cake");
    assert_eq!(rule["pattern"], "cake*lie");
    assert_eq!(rule["enabled"], true, "new rules are enabled");
    assert_eq!(rule["default"], false);

    // `before` puts the new rule just ahead of the named one.
    let (status, body) = bob
        .put(
            "/_matrix/client/v3/pushrules/global/content/pie?before=cake",
            json!({ "pattern": "pie", "actions": [] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, all) = bob.get("/_matrix/client/v3/pushrules/").await;
    let content = rule_ids(&all, "content");
    let pie = content.iter().position(|r| r == "pie").expect("pie");
    let cake = content.iter().position(|r| r == "cake").expect("cake");
    assert!(pie < cake, "{content:?}");

    // Refusals: a reserved ID, an unknown neighbour, an unknown kind, a content rule with no
    // pattern, and a room rule that is not named by a room.
    let (status, body) = put_rule(&bob, "override/.m.rule.mine", json!({ "actions": [] })).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_INVALID_PARAM"))
    );
    let (status, body) = bob
        .put(
            "/_matrix/client/v3/pushrules/global/content/tart?after=nosuchrule",
            json!({ "pattern": "tart", "actions": [] }),
        )
        .await;
    assert_eq!((status, body["errcode"].as_str()), (400, Some("M_UNKNOWN")));
    let (status, body) = put_rule(&bob, "sideways/x", json!({ "actions": [] })).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_INVALID_PARAM"))
    );
    let (status, body) = put_rule(&bob, "content/nopattern", json!({ "actions": [] })).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_MISSING_PARAM"))
    );
    let (status, body) = put_rule(&bob, "room/not-a-room", json!({ "actions": [] })).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_INVALID_PARAM"))
    );
    let (status, body) = bob
        .put(
            "/_matrix/client/v3/pushrules/global/sender/@x:kith.test?after=@x:kith.test",
            json!({ "actions": [] }),
        )
        .await;
    assert_eq!((status, body["errcode"].as_str()), (400, Some("M_UNKNOWN")));
    let (status, body) = put_rule(&bob, "content/bad", json!({ "pattern": "x" })).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_BAD_JSON"))
    );

    // Server defaults can be switched on and off and given other actions, not deleted.
    let master = "/_matrix/client/v3/pushrules/global/override/.m.rule.master";
    let (status, enabled) = bob.get(&format!("{master}/enabled")).await;
    assert_eq!((status, &enabled), (200, &json!({ "enabled": false })));
    let (status, _) = bob
        .put(&format!("{master}/enabled"), json!({ "enabled": true }))
        .await;
    assert_eq!(status, 200);
    let (_, enabled) = bob.get(&format!("{master}/enabled")).await;
    assert_eq!(enabled, json!({ "enabled": true }));
    let (status, body) = bob.delete(master, json!({})).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN"))
    );

    let cake_path = "/_matrix/client/v3/pushrules/global/content/cake";
    let (status, _) = bob
        .put(
            &format!("{cake_path}/actions"),
            json!({ "actions": ["notify", { "set_tweak": "highlight" }] }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, actions) = bob.get(&format!("{cake_path}/actions")).await;
    assert_eq!(
        actions,
        json!({ "actions": ["notify", { "set_tweak": "highlight" }] })
    );

    let (status, _) = bob.delete(cake_path, json!({})).await;
    assert_eq!(status, 200);
    let (status, body) = bob.get(cake_path).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (404, Some("M_NOT_FOUND"))
    );
    let (status, body) = bob.delete(cake_path, json!({})).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (404, Some("M_NOT_FOUND"))
    );
    let (status, _) = bob.get(&format!("{cake_path}/enabled")).await;
    assert_eq!(status, 404);

    // Other devices learn of the change through account data.
    let synced = bob.sync(Some(&since), 0).await;
    let pushed = synced["account_data"]["events"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["type"] == "m.push_rules"))
        .cloned()
        .expect("m.push_rules in sync");
    assert_eq!(
        rule_ids(&pushed["content"], "content")
            .first()
            .map(String::as_str),
        Some("pie")
    );
    let master_rule = pushed["content"]["global"]["override"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["rule_id"] == ".m.rule.master"))
        .cloned()
        .expect("master rule");
    assert_eq!(master_rule["enabled"], true);

    // Another user's rules are untouched.
    let carol = server.register("carol").await;
    let (_, enabled) = carol.get(&format!("{master}/enabled")).await;
    assert_eq!(enabled, json!({ "enabled": false }));
}

#[tokio::test]
async fn unread_counts_follow_push_rules_and_clear_with_a_receipt() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    // Three members, so `.m.rule.message` (not the one-to-one rule) applies.
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    assert_eq!(bob.join(&room).await.0, 200);
    assert_eq!(carol.join(&room).await.0, 200);

    assert_eq!(alice.send_text(&room, "t1", "hello all").await.0, 200);
    let synced = bob.sync(None, 0).await;
    assert_eq!(counts(&synced, &room), (json!(1), json!(0)));

    // A mention of bob highlights for bob only.
    let (status, _) = alice
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/t2"),
            json!({ "msgtype": "m.text", "body": "bob, look",
                    "m.mentions": { "user_ids": [bob.user_id] } }),
        )
        .await;
    assert_eq!(status, 200);
    let synced = bob.sync(None, 0).await;
    assert_eq!(counts(&synced, &room), (json!(2), json!(1)));
    let synced = carol.sync(None, 0).await;
    assert_eq!(counts(&synced, &room), (json!(2), json!(0)));

    // Bob mutes the room with a room rule that has no actions.
    let (status, body) = put_rule(&bob, &format!("room/{room}"), json!({ "actions": [] })).await;
    assert_eq!(status, 200, "{body}");
    let (_, sent) = alice.send_text(&room, "t3", "more chatter").await;
    let last = sent["event_id"].as_str().expect("event id").to_owned();
    let synced = bob.sync(None, 0).await;
    assert_eq!(counts(&synced, &room), (json!(2), json!(1)));
    let synced = carol.sync(None, 0).await;
    assert_eq!(counts(&synced, &room), (json!(3), json!(0)));

    // Sending a message marks what came before as read; so does a read receipt.
    assert_eq!(bob.send_text(&room, "b1", "ok").await.0, 200);
    let synced = bob.sync(None, 0).await;
    assert_eq!(counts(&synced, &room), (json!(0), json!(0)));
    let synced = carol.sync(None, 0).await;
    assert_eq!(counts(&synced, &room), (json!(4), json!(0)));
    let (status, _) = carol
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{last}"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let synced = carol.sync(None, 0).await;
    assert_eq!(
        counts(&synced, &room),
        (json!(1), json!(0)),
        "bob's message is still unread"
    );
}
