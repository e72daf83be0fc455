//! Rooms shared by two Kith servers: joins over federation, and what a receiving server
//! does with PDUs that come with gaps, broken hashes or broken signatures.

use kith_tests::{Client, TestServer, url_encode};
use matrix_sdk::ruma::{EventId, ServerName};
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
