//! A real Matrix client — matrix-sdk, the library inside Element X — against Kith.
// matrix-sdk with end-to-end encryption nests futures deeper than the default limit.

use std::time::Duration;

use kith_tests::TestServer;
use matrix_sdk::{
    Client,
    config::SyncSettings,
    ruma::{
        api::client::room::create_room::v3::Request as CreateRoomRequest,
        events::room::message::{RoomMessageEventContent, SyncRoomMessageEvent},
    },
};

async fn client_for(server: &TestServer, name: &str) -> Client {
    let client = Client::builder()
        .homeserver_url(&server.base_url)
        .build()
        .await
        .expect("client builds");
    let mut request = matrix_sdk::ruma::api::client::account::register::v3::Request::new();
    request.username = Some(name.to_owned());
    request.password = Some("password".to_owned());
    request.auth = Some(matrix_sdk::ruma::api::client::uiaa::AuthData::Dummy(
        Default::default(),
    ));
    client
        .matrix_auth()
        .register(request)
        .await
        .expect("registers");
    client
}

#[tokio::test]
async fn two_sdk_clients_register_create_invite_join_and_exchange_messages_and_typing() {
    let server = TestServer::start().await;
    let alice = client_for(&server, "alice").await;
    let bob = client_for(&server, "bob").await;

    // Log in again as alice with a password, as a returning user would.
    let alice_again = Client::builder()
        .homeserver_url(&server.base_url)
        .build()
        .await
        .expect("client");
    alice_again
        .matrix_auth()
        .login_username("alice", "password")
        .send()
        .await
        .expect("password login");
    assert_eq!(
        alice_again.user_id().map(|u| u.as_str()),
        Some("@alice:kith.test")
    );

    let mut create = CreateRoomRequest::new();
    create.name = Some("Kith test".to_owned());
    let room = alice.create_room(create).await.expect("room created");
    room.invite_user_by_id(bob.user_id().expect("bob id"))
        .await
        .expect("invite");

    bob.sync_once(SyncSettings::default())
        .await
        .expect("bob syncs");
    let invited = bob.get_room(room.room_id()).expect("bob sees the invite");
    invited.join().await.expect("bob joins");

    alice
        .sync_once(SyncSettings::default())
        .await
        .expect("alice syncs");
    let alice_room = alice.get_room(room.room_id()).expect("alice's room");
    alice_room.typing_notice(true).await.expect("typing notice");
    alice_room
        .send(RoomMessageEventContent::text_plain("hello from alice"))
        .await
        .expect("alice sends");

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    bob.add_event_handler(move |event: SyncRoomMessageEvent| {
        let tx = tx.clone();
        async move {
            if let Some(original) = event.as_original() {
                let _ = tx.send(original.content.body().to_owned());
            }
        }
    });
    let bob_sync = tokio::spawn({
        let bob = bob.clone();
        async move {
            bob.sync(SyncSettings::default().timeout(Duration::from_secs(5)))
                .await
        }
    });
    let received = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(body) = rx.recv().await
                && body == "hello from alice"
            {
                return body;
            }
        }
    })
    .await
    .expect("bob receives alice's message");
    assert_eq!(received, "hello from alice");

    let bob_room = bob.get_room(room.room_id()).expect("bob's room");
    bob_room
        .send(RoomMessageEventContent::text_plain("hi alice"))
        .await
        .expect("bob sends");
    bob_sync.abort();

    // Alice sees bob's reply and bob as a joined member.
    let mut seen = false;
    for _ in 0..10 {
        alice
            .sync_once(SyncSettings::default().timeout(Duration::from_secs(2)))
            .await
            .expect("alice syncs");
        let messages = alice_room
            .messages(matrix_sdk::room::MessagesOptions::backward())
            .await
            .expect("messages");
        seen = messages
            .chunk
            .iter()
            .any(|event| event.raw().json().get().contains("hi alice"));
        if seen {
            break;
        }
    }
    assert!(seen, "alice sees bob's reply");
    let members = alice_room
        .members(matrix_sdk::RoomMemberships::JOIN)
        .await
        .expect("members");
    assert_eq!(members.len(), 2);
}
