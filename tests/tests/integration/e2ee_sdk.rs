//! End-to-end encryption with real matrix-sdk clients (the library inside Element X), with
//! encryption enabled, against Kith: encrypted messages both ways, server-side key backup
//! and recovery on a new device, and cross-signing as the SDK reports it.
//!
//! Every wait is bounded: clients sync with `sync_once` and a short long-poll timeout, in
//! loops wrapped in `tokio::time::timeout`.
// matrix-sdk with end-to-end encryption nests futures deeper than the default limit.

use std::time::Duration;

use kith_tests::{TestServer, synapse::Synapse};
use matrix_sdk::{
    Client, Room,
    config::SyncSettings,
    deserialized_responses::TimelineEventKind,
    encryption::{
        BackupDownloadStrategy, EncryptionSettings, backups::BackupState, recovery::RecoveryState,
    },
    room::MessagesOptions,
    ruma::{
        OwnedRoomId, OwnedUserId, UserId,
        api::client::{
            room::create_room::v3::Request as CreateRoomRequest,
            uiaa::{self, AuthData, AuthType, MatrixUserIdentifier, UserIdentifier},
        },
        events::{
            InitialStateEvent,
            room::{
                encryption::RoomEncryptionEventContent,
                message::{OriginalSyncRoomMessageEvent, RoomMessageEventContent},
            },
        },
    },
};
use serde_json::Value;
use tokio::sync::mpsc;

/// Every user's password.
const PASSWORD: &str = "password";
/// The long-poll timeout of each `/sync`.
const SYNC_TIMEOUT: Duration = Duration::from_millis(300);
/// The longest any one condition is waited for (generous: across two servers on a slow
/// machine, a message takes several hops).
const WAIT: Duration = Duration::from_secs(60);

/// Encryption settings that bootstrap cross-signing at registration (the first upload of
/// cross-signing keys needs no user-interactive auth).
fn cross_signing() -> EncryptionSettings {
    EncryptionSettings {
        auto_enable_cross_signing: true,
        ..Default::default()
    }
}

async fn new_client(server: &TestServer, settings: EncryptionSettings) -> Client {
    new_client_at(&server.base_url, settings).await
}

/// A client of the homeserver at `url` (Kith's or Synapse's client listener).
async fn new_client_at(url: &str, settings: EncryptionSettings) -> Client {
    Client::builder()
        .homeserver_url(url)
        .with_encryption_settings(settings)
        .build()
        .await
        .expect("client builds")
}

/// Registers `name` on a new client (its first device) and waits for the SDK's end-to-end
/// encryption setup (cross-signing bootstrap if enabled, backup and recovery state).
async fn register(server: &TestServer, name: &str, settings: EncryptionSettings) -> Client {
    register_at(&server.base_url, name, settings).await
}

/// [`register`] on the homeserver at `url`.
async fn register_at(url: &str, name: &str, settings: EncryptionSettings) -> Client {
    let client = new_client_at(url, settings).await;
    let mut request = matrix_sdk::ruma::api::client::account::register::v3::Request::new();
    request.username = Some(name.to_owned());
    request.password = Some(PASSWORD.to_owned());
    request.auth = Some(AuthData::Dummy(Default::default()));
    client
        .matrix_auth()
        .register(request)
        .await
        .expect("registers");
    initialised(&client).await;
    client
}

/// Logs `name` in with its password on a new client: a new device.
async fn login(server: &TestServer, name: &str, settings: EncryptionSettings) -> Client {
    let client = new_client(server, settings).await;
    client
        .matrix_auth()
        .login_username(name, PASSWORD)
        .send()
        .await
        .expect("password login");
    initialised(&client).await;
    client
}

async fn initialised(client: &Client) {
    tokio::time::timeout(
        WAIT,
        client.encryption().wait_for_e2ee_initialization_tasks(),
    )
    .await
    .expect("the SDK's encryption setup finishes in time");
}

/// One `/sync` (which also sends the SDK's pending key uploads, queries, claims and
/// to-device messages).
async fn sync(client: &Client) {
    tokio::time::timeout(
        Duration::from_secs(15),
        client.sync_once(SyncSettings::default().timeout(SYNC_TIMEOUT)),
    )
    .await
    .expect("sync answers in time")
    .expect("sync succeeds");
}

/// Syncs `clients` until `check` holds, at most [`WAIT`].
async fn sync_until(clients: &[&Client], what: &str, mut check: impl AsyncFnMut() -> bool) {
    let result = tokio::time::timeout(WAIT, async {
        loop {
            for client in clients {
                sync(client).await;
            }
            if check().await {
                return;
            }
        }
    })
    .await;
    assert!(result.is_ok(), "timed out waiting until {what}");
}

fn user_id(client: &Client) -> OwnedUserId {
    client.user_id().expect("logged in").to_owned()
}

/// Collects the plaintext of every `m.room.message` the client's event handlers see
/// (encrypted ones arrive here decrypted), as `(sender, body)`.
fn collect_messages(client: &Client) -> mpsc::UnboundedReceiver<(OwnedUserId, String)> {
    let (tx, rx) = mpsc::unbounded_channel();
    client.add_event_handler(move |event: OriginalSyncRoomMessageEvent| {
        let tx = tx.clone();
        async move {
            let _ = tx.send((event.sender.clone(), event.content.body().to_owned()));
        }
    });
    rx
}

/// What a user scrolling back in `room` sees: the bodies of the messages the SDK decrypted,
/// and how many events it could not decrypt. Plaintext (unencrypted) messages are ignored.
async fn history(room: &Room) -> (Vec<String>, usize) {
    let mut options = MessagesOptions::backward();
    options.limit = 50u32.into();
    let messages = tokio::time::timeout(Duration::from_secs(15), room.messages(options))
        .await
        .expect("/messages answers in time")
        .expect("/messages succeeds");
    let mut decrypted = Vec::new();
    let mut undecryptable = 0;
    for event in &messages.chunk {
        match &event.kind {
            TimelineEventKind::Decrypted(_) => {
                let json: Value =
                    serde_json::from_str(event.raw().json().get()).expect("event is JSON");
                if json["type"] == "m.room.message"
                    && let Some(body) = json["content"]["body"].as_str()
                {
                    decrypted.push(body.to_owned());
                }
            }
            TimelineEventKind::UnableToDecrypt { .. } => undecryptable += 1,
            TimelineEventKind::PlainText { .. } => {}
        }
    }
    decrypted.reverse();
    (decrypted, undecryptable)
}

/// `inviter` creates a room with `invitee`, encryption on from the first state event when
/// `encrypted_at_creation`, else turned on with `enable_encryption()` afterwards; the
/// invitee joins and both clients have synced the membership.
async fn shared_encrypted_room(
    inviter: &Client,
    invitee: &Client,
    encrypted_at_creation: bool,
) -> OwnedRoomId {
    let mut create = CreateRoomRequest::new();
    create.name = Some("Secret room".to_owned());
    create.invite = vec![user_id(invitee)];
    if encrypted_at_creation {
        create.initial_state = vec![
            InitialStateEvent::with_empty_state_key(
                RoomEncryptionEventContent::with_recommended_defaults(),
            )
            .to_raw_any(),
        ];
    }
    let room = inviter.create_room(create).await.expect("room created");
    if !encrypted_at_creation {
        room.enable_encryption().await.expect("encryption enabled");
    }
    let room_id = room.room_id().to_owned();

    sync_until(&[invitee], "the invitee sees the invite", async || {
        invitee.get_room(&room_id).is_some()
    })
    .await;
    invitee
        .get_room(&room_id)
        .expect("invited room")
        .join()
        .await
        .expect("invitee joins");
    let invitee_id = user_id(invitee);
    sync_until(
        &[inviter, invitee],
        "both see the room as encrypted with the invitee joined",
        async || {
            let (Some(a), Some(b)) = (inviter.get_room(&room_id), invitee.get_room(&room_id))
            else {
                return false;
            };
            let joined = a
                .get_member_no_sync(&invitee_id)
                .await
                .ok()
                .flatten()
                .is_some_and(|m| {
                    *m.membership() == matrix_sdk::ruma::events::room::member::MembershipState::Join
                });
            joined
                && a.latest_encryption_state()
                    .await
                    .is_ok_and(|s| s.is_encrypted())
                && b.latest_encryption_state()
                    .await
                    .is_ok_and(|s| s.is_encrypted())
        },
    )
    .await;
    room_id
}

/// Waits until `client` has received a message `body` from `sender` through sync, decrypted.
async fn receive(
    client: &Client,
    messages: &mut mpsc::UnboundedReceiver<(OwnedUserId, String)>,
    sender: &UserId,
    body: &str,
) {
    let mut seen = Vec::new();
    let result = tokio::time::timeout(WAIT, async {
        loop {
            sync(client).await;
            while let Ok((from, text)) = messages.try_recv() {
                if from == sender && text == body {
                    return;
                }
                seen.push((from, text));
            }
        }
    })
    .await;
    assert!(
        result.is_ok(),
        "{} never decrypted {body:?} from {sender}; it saw {seen:?}",
        user_id(client)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sdk_clients_exchange_and_decrypt_messages_in_an_encrypted_room() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice", EncryptionSettings::default()).await;
    let bob = register(&server, "bob", EncryptionSettings::default()).await;
    let mut alice_inbox = collect_messages(&alice);
    let mut bob_inbox = collect_messages(&bob);

    let room_id = shared_encrypted_room(&alice, &bob, true).await;
    let alice_room = alice.get_room(&room_id).expect("alice's room");
    let bob_room = bob.get_room(&room_id).expect("bob's room");

    alice_room
        .send(RoomMessageEventContent::text_plain(
            "hello bob, this is secret",
        ))
        .await
        .expect("alice sends an encrypted message");
    receive(
        &bob,
        &mut bob_inbox,
        &user_id(&alice),
        "hello bob, this is secret",
    )
    .await;

    bob_room
        .send(RoomMessageEventContent::text_plain(
            "hi alice, secret reply",
        ))
        .await
        .expect("bob sends an encrypted message");
    receive(
        &alice,
        &mut alice_inbox,
        &user_id(&bob),
        "hi alice, secret reply",
    )
    .await;

    // Scrolling back, both see both messages, decrypted (so they were sent encrypted).
    for (who, room) in [("alice", &alice_room), ("bob", &bob_room)] {
        let (decrypted, undecryptable) = history(room).await;
        assert_eq!(
            decrypted,
            ["hello bob, this is secret", "hi alice, secret reply"],
            "{who}'s decrypted history"
        );
        assert_eq!(undecryptable, 0, "{who} could decrypt everything");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_backup_recovers_history_on_a_new_device_which_is_then_cross_signed() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice", cross_signing()).await;
    let bob = register(&server, "bob", cross_signing()).await;
    let alice_id = user_id(&alice);
    let bob_id = user_id(&bob);

    // Cross-signing was bootstrapped at registration, without user-interactive auth.
    for (who, client) in [("alice", &alice), ("bob", &bob)] {
        let status = client
            .encryption()
            .cross_signing_status()
            .await
            .expect("cross-signing status");
        assert!(
            status.has_master && status.has_self_signing && status.has_user_signing,
            "{who} has all three private cross-signing keys: {status:?}"
        );
    }
    sync_until(
        &[&alice],
        "alice's device is cross-signed by alice",
        async || {
            alice
                .encryption()
                .get_own_device()
                .await
                .ok()
                .flatten()
                .is_some_and(|device| device.is_cross_signed_by_owner())
        },
    )
    .await;

    // Alice turns on recovery: a server-side key backup, and her secrets (cross-signing
    // keys, backup key) in secret storage under a recovery key.
    let recovery_key = tokio::time::timeout(WAIT, alice.encryption().recovery().enable())
        .await
        .expect("recovery is enabled in time")
        .expect("recovery is enabled");
    assert_eq!(
        alice.encryption().recovery().state(),
        RecoveryState::Enabled
    );
    assert_eq!(alice.encryption().backups().state(), BackupState::Enabled);

    let room_id = shared_encrypted_room(&alice, &bob, false).await;
    let alice_room = alice.get_room(&room_id).expect("alice's room");
    let bob_room = bob.get_room(&room_id).expect("bob's room");
    let mut alice_inbox = collect_messages(&alice);
    alice_room
        .send(RoomMessageEventContent::text_plain("first secret"))
        .await
        .expect("alice sends");
    alice_room
        .send(RoomMessageEventContent::text_plain("second secret"))
        .await
        .expect("alice sends");
    bob_room
        .send(RoomMessageEventContent::text_plain("bob's secret"))
        .await
        .expect("bob sends");
    // Alice gets bob's room key (and decrypts his message), so it is backed up too.
    receive(&alice, &mut alice_inbox, &bob_id, "bob's secret").await;
    tokio::time::timeout(WAIT, alice.encryption().backups().wait_for_steady_state())
        .await
        .expect("backup upload finishes in time")
        .expect("all room keys are backed up");

    // Alice logs in on a new device, which did not exist when the messages were sent.
    let settings = EncryptionSettings {
        backup_download_strategy: BackupDownloadStrategy::AfterDecryptionFailure,
        ..Default::default()
    };
    let alice_new = login(&server, "alice", settings).await;
    let new_device = alice_new.device_id().expect("device id").to_owned();
    assert_ne!(Some(&*new_device), alice.device_id());
    sync_until(&[&alice_new], "the new device sees the room", async || {
        alice_new.get_room(&room_id).is_some()
    })
    .await;
    let new_room = alice_new
        .get_room(&room_id)
        .expect("room on the new device");
    let (decrypted, undecryptable) = history(&new_room).await;
    assert!(
        decrypted.is_empty() && undecryptable == 3,
        "before recovery the new device cannot read the history: {decrypted:?}, \
         {undecryptable} undecryptable"
    );
    assert_ne!(
        alice_new.encryption().recovery().state(),
        RecoveryState::Enabled
    );

    // Recovery with the recovery key: secrets from secret storage, room keys from the
    // backup (fetched when an event fails to decrypt).
    tokio::time::timeout(
        WAIT,
        alice_new.encryption().recovery().recover(&recovery_key),
    )
    .await
    .expect("recovery finishes in time")
    .expect("recovers with the recovery key");
    assert_eq!(
        alice_new.encryption().recovery().state(),
        RecoveryState::Enabled
    );
    let status = alice_new
        .encryption()
        .cross_signing_status()
        .await
        .expect("cross-signing status");
    assert!(
        status.is_complete(),
        "the new device got the cross-signing keys from secret storage: {status:?}"
    );

    let mut last = (Vec::new(), 0);
    let recovered = tokio::time::timeout(WAIT, async {
        loop {
            last = history(&new_room).await;
            if last.1 == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await;
    assert!(
        recovered.is_ok(),
        "the new device never decrypted the history from the backup: {last:?}"
    );
    assert_eq!(
        last.0,
        ["first secret", "second secret", "bob's secret"],
        "the new device reads the history sent before it existed"
    );

    // The recovered device signed itself with the self-signing key from secret storage:
    // verified as seen from itself, from alice's first device and from bob.
    let new_device_seen_by = async |client: &Client| {
        client
            .encryption()
            .get_device(&alice_id, &new_device)
            .await
            .ok()
            .flatten()
    };
    sync_until(
        &[&alice_new],
        "the new device sees itself cross-signed",
        async || {
            alice_new
                .encryption()
                .get_own_device()
                .await
                .ok()
                .flatten()
                .is_some_and(|d| d.is_cross_signed_by_owner() && d.is_verified())
        },
    )
    .await;
    sync_until(
        &[&alice],
        "alice's first device sees the new device as verified",
        async || {
            new_device_seen_by(&alice)
                .await
                .is_some_and(|d| d.is_cross_signed_by_owner() && d.is_verified())
        },
    )
    .await;
    sync_until(
        &[&bob],
        "bob sees alice's new device cross-signed by alice",
        async || {
            new_device_seen_by(&bob)
                .await
                .is_some_and(|d| d.is_cross_signed_by_owner())
        },
    )
    .await;

    // Alice verifies bob's identity (a user-signing signature, uploaded to the server);
    // once her devices fetch it back, bob is verified for her, on both her devices.
    let bob_identity = alice
        .encryption()
        .get_user_identity(&bob_id)
        .await
        .expect("crypto store")
        .expect("alice knows bob's identity");
    assert!(!bob_identity.is_verified(), "bob is not verified yet");
    bob_identity.verify().await.expect("alice verifies bob");
    for (who, client) in [
        ("alice's first device", &alice),
        ("alice's new device", &alice_new),
    ] {
        sync_until(&[client], &format!("{who} sees bob verified"), async || {
            client
                .encryption()
                .get_user_identity(&bob_id)
                .await
                .ok()
                .flatten()
                .is_some_and(|identity| identity.is_verified())
        })
        .await;
    }
    // And bob's device is verified for alice through that signature.
    let bob_device = bob.device_id().expect("bob's device").to_owned();
    let device = alice
        .encryption()
        .get_device(&bob_id, &bob_device)
        .await
        .expect("crypto store")
        .expect("alice knows bob's device");
    assert!(device.is_verified(), "bob's device is verified for alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_cross_signing_keys_needs_the_password() {
    let server = TestServer::start().await;
    let carol = register(&server, "carol", cross_signing()).await;
    let carol_id = user_id(&carol);
    let master_key = async |client: &Client| {
        client
            .encryption()
            .get_user_identity(&carol_id)
            .await
            .ok()
            .flatten()
            .and_then(|identity| identity.master_key().get_first_key())
            .map(|key| key.to_base64())
    };
    let first_master = master_key(&carol).await.expect("carol has a master key");

    // A second device, without the private keys, makes a new identity: the server asks
    // for the password first.
    let carol2 = login(&server, "carol", EncryptionSettings::default()).await;
    sync(&carol2).await;
    let error = carol2
        .encryption()
        .bootstrap_cross_signing(None)
        .await
        .expect_err("replacing the cross-signing keys needs user-interactive auth");
    let uiaa = error
        .as_uiaa_response()
        .unwrap_or_else(|| panic!("a user-interactive auth challenge, not {error:?}"));
    assert!(
        uiaa.flows
            .iter()
            .any(|flow| flow.stages.contains(&AuthType::Password)),
        "password auth is offered: {:?}",
        uiaa.flows
    );
    let mut password = uiaa::Password::new(
        UserIdentifier::Matrix(MatrixUserIdentifier::new("carol".to_owned())),
        PASSWORD.to_owned(),
    );
    password.session = uiaa.session.clone();
    carol2
        .encryption()
        .bootstrap_cross_signing(Some(AuthData::Password(password)))
        .await
        .expect("the new cross-signing keys are accepted with the password");

    let status = carol2
        .encryption()
        .cross_signing_status()
        .await
        .expect("cross-signing status");
    assert!(status.is_complete(), "{status:?}");
    let second_master = master_key(&carol2).await.expect("new master key");
    assert_ne!(second_master, first_master, "a new master key");
    // The first device learns of the new identity through sync.
    sync_until(
        &[&carol],
        "the first device sees the new master key",
        async || master_key(&carol).await.as_ref() == Some(&second_master),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdk_client_on_kith_and_one_on_synapse_talk_encrypted() {
    let kith = TestServer::start_federating().await;
    let synapse = Synapse::start().await;
    let alice = register(&kith, "alice", EncryptionSettings::default()).await;
    let sam = register_at(&synapse.client_url, "sam", EncryptionSettings::default()).await;
    let mut alice_inbox = collect_messages(&alice);
    let mut sam_inbox = collect_messages(&sam);

    // Alice's room on Kith, encrypted from the start; Sam is invited over federation and
    // joins through Synapse. Keys are queried and claimed across, and the room keys travel
    // as to-device messages between the servers.
    let room_id = shared_encrypted_room(&alice, &sam, true).await;
    alice
        .get_room(&room_id)
        .expect("alice's room")
        .send(RoomMessageEventContent::text_plain("from Kith, sealed"))
        .await
        .expect("alice sends an encrypted message");
    receive(&sam, &mut sam_inbox, &user_id(&alice), "from Kith, sealed").await;
    sam.get_room(&room_id)
        .expect("sam's room")
        .send(RoomMessageEventContent::text_plain("from Synapse, sealed"))
        .await
        .expect("sam sends an encrypted message");
    receive(
        &alice,
        &mut alice_inbox,
        &user_id(&sam),
        "from Synapse, sealed",
    )
    .await;

    // What Kith stored and served was ciphertext: both messages decrypt from history too.
    let (decrypted, undecryptable) = history(&alice.get_room(&room_id).expect("room")).await;
    assert_eq!(decrypted, ["from Kith, sealed", "from Synapse, sealed"]);
    assert_eq!(undecryptable, 0);
}

#[tokio::test]
async fn a_device_alice_cross_signs_on_kith_shows_as_signed_to_a_synapse_user() {
    let kith = TestServer::start_federating().await;
    let synapse = Synapse::start().await;
    let alice = register(&kith, "alice", cross_signing()).await;
    let sam = register_at(&synapse.client_url, "sam", EncryptionSettings::default()).await;
    let alice_id = user_id(&alice);
    let _room_id = shared_encrypted_room(&alice, &sam, true).await;

    // Alice logs in on a second device; Sam's server learns of it, not yet signed.
    let second = login(&kith, "alice", EncryptionSettings::default()).await;
    let second_device = second.device_id().expect("device id").to_owned();
    let seen_by_sam = async || {
        sam.encryption()
            .get_device(&alice_id, &second_device)
            .await
            .ok()
            .flatten()
    };
    sync_until(
        &[&sam, &second],
        "sam sees alice's second device",
        async || seen_by_sam().await.is_some(),
    )
    .await;
    assert!(
        !seen_by_sam()
            .await
            .is_some_and(|d| d.is_cross_signed_by_owner()),
        "not signed yet"
    );

    // Her first device, which holds the self-signing key, signs it. Kith tells Synapse,
    // which fetches her devices again: Sam sees the device signed by its owner.
    sync_until(&[&alice], "alice sees her second device", async || {
        alice
            .encryption()
            .get_device(&alice_id, &second_device)
            .await
            .ok()
            .flatten()
            .is_some()
    })
    .await;
    alice
        .encryption()
        .get_device(&alice_id, &second_device)
        .await
        .expect("device query")
        .expect("the second device")
        .verify()
        .await
        .expect("alice signs her second device");
    sync_until(
        &[&sam],
        "sam sees alice's second device cross-signed by alice",
        async || {
            seen_by_sam()
                .await
                .is_some_and(|d| d.is_cross_signed_by_owner())
        },
    )
    .await;
}
