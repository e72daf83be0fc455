//! The federation benchmark: `make bench` runs it at full size in a release build and
//! reads its figures; `make test` runs it small, as a test that a room with members and
//! extra state is joined from both kinds of server and carries messages both ways. The
//! figures are printed, never asserted (timing belongs to benchmarks).
//!
//! - Join: a Synapse hosts a room with `KITH_BENCH_MEMBERS` members and about
//!   `KITH_BENCH_STATE` state events (`make bench`: 1,000 and 10,000; here by default 10
//!   and 60). A Kith user joins it, then a second Synapse's
//!   user does; each join is timed from the client's request to its answer.
//! - Throughput: `KITH_BENCH_MESSAGES` messages (500 in `make bench`, 20 here) from the
//!   Synapse user, sent one after another, timed until the last one shows in a Kith
//!   client's `/messages`, and as many the other way.
//! - `KITH_BENCH_KEEP_ROOM=DIR` keeps the host Synapse's data, ports and room in DIR, so
//!   that later runs join the same room without building it again.

use std::time::{Duration, Instant};

use kith_tests::{Client, TestServer, synapse::Synapse, url_encode};
use serde_json::json;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `task(i)` for `i` in `0..count`, `parallel` at a time.
async fn in_parallel<F, Fut>(count: usize, parallel: usize, task: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut running = tokio::task::JoinSet::new();
    for i in 0..count {
        if running.len() >= parallel {
            running
                .join_next()
                .await
                .expect("a task")
                .expect("task succeeds");
        }
        running.spawn(task(i));
    }
    while let Some(done) = running.join_next().await {
        done.expect("task succeeds");
    }
}

/// Polls the room's newest events as `client` sees them until one has `body` (messages
/// cross in order, so the last one sent arriving means all did).
async fn wait_for_message(client: &Client, room_id: &str, body: &str) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (status, page) = client
            .get(&format!(
                "/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=5"
            ))
            .await;
        assert_eq!(status, 200, "{page}");
        if page["chunk"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["content"]["body"] == body)
        {
            return;
        }
        assert!(Instant::now() < deadline, "{body:?} never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_with_members_and_state_is_joined_from_kith_and_synapse_and_carries_messages() {
    let members = env_number("KITH_BENCH_MEMBERS", 10);
    let state = env_number("KITH_BENCH_STATE", 60);
    let messages = env_number("KITH_BENCH_MESSAGES", 20);
    // Kith's log on standard error (seen with --nocapture): its join says what took how long.
    kith::logging::init();
    // KITH_BENCH_KEEP_ROOM=DIR keeps the host Synapse and its room in DIR: the first run
    // builds the room (an hour at full size), later runs join it again at once.
    let kept = std::env::var_os("KITH_BENCH_KEEP_ROOM").map(std::path::PathBuf::from);
    if let Some(dir) = &kept
        && !dir.join("room.json").exists()
    {
        // A build that was cut short: start again from nothing.
        let _ = std::fs::remove_dir_all(dir);
    }
    let host = match &kept {
        Some(dir) => Synapse::start_kept(dir).await,
        None => Synapse::start().await,
    };
    let other = Synapse::start().await;
    let kith = TestServer::start_federating().await;
    // Messages carry this run's tag: a kept room holds earlier runs' messages too.
    let run = std::process::id();

    let saved = kept.as_ref().map(|dir| dir.join("room.json"));
    let earlier: Option<serde_json::Value> = saved
        .as_ref()
        .and_then(|path| std::fs::read_to_string(path).ok())
        .and_then(|text| serde_json::from_str(&text).ok());
    let (owner, room_id, members, state) = match earlier {
        Some(room) => {
            eprintln!("room kept from an earlier run: {room}");
            let token = room["token"].as_str().expect("the owner's token");
            let room_id = room["room_id"].as_str().expect("the room ID").to_owned();
            let size = |key: &str| room[key].as_u64().unwrap_or_default() as usize;
            let (members, state) = (size("members"), size("state"));
            (host.anonymous().with_token(token), room_id, members, state)
        }
        None => {
            let (owner, room_id) = build_room(&host, members, state).await;
            if let Some(path) = &saved {
                let room = json!({ "room_id": room_id, "token": owner.token,
                                   "members": members, "state": state });
                std::fs::write(path, room.to_string()).expect("note the kept room");
            }
            (owner, room_id, members, state)
        }
    };

    // Joins, each from its own server.
    let alice = kith.register("alice").await;
    let via = url_encode(&host.server_name);
    let start = Instant::now();
    let (status, body) = alice
        .post(
            &format!("/_matrix/client/v3/join/{room_id}?via={via}"),
            json!({}),
        )
        .await;
    let kith_join = start.elapsed();
    assert_eq!(status, 200, "{body}");
    let sam = other.register("sam").await;
    let start = Instant::now();
    let (status, body) = sam
        .post(
            &format!("/_matrix/client/v3/join/{room_id}?via={via}"),
            json!({}),
        )
        .await;
    let synapse_join = start.elapsed();
    assert_eq!(status, 200, "{body}");

    // Throughput, one busy room: the host's owner to Kith, then Alice to the host.
    let start = Instant::now();
    for i in 0..messages {
        let (status, _) = owner
            .send_text(
                &room_id,
                &format!("in-{run}-{i}"),
                &format!("inbound {run} {i}"),
            )
            .await;
        assert_eq!(status, 200);
    }
    wait_for_message(&alice, &room_id, &format!("inbound {run} {}", messages - 1)).await;
    let inbound = start.elapsed();
    let start = Instant::now();
    for i in 0..messages {
        let (status, _) = alice
            .send_text(
                &room_id,
                &format!("out-{i}"),
                &format!("outbound {run} {i}"),
            )
            .await;
        assert_eq!(status, 200);
    }
    wait_for_message(
        &owner,
        &room_id,
        &format!("outbound {run} {}", messages - 1),
    )
    .await;
    let outbound = start.elapsed();

    println!("federation benchmark ({members} members, ~{state} state events):");
    println!(
        "  join from Kith:            {:>8.2} s",
        kith_join.as_secs_f64()
    );
    println!(
        "  join from a 2nd Synapse:   {:>8.2} s",
        synapse_join.as_secs_f64()
    );
    println!(
        "  ratio (Kith / Synapse):    {:>8.2}",
        kith_join.as_secs_f64() / synapse_join.as_secs_f64()
    );
    println!(
        "  Synapse -> Kith: {messages} messages in {:.1} s, {:.0} events/s (sent one by one, until the last showed on Kith)",
        inbound.as_secs_f64(),
        messages as f64 / inbound.as_secs_f64()
    );
    println!(
        "  Kith -> Synapse: {messages} messages in {:.1} s, {:.0} events/s",
        outbound.as_secs_f64(),
        messages as f64 / outbound.as_secs_f64()
    );
}

/// Builds the room on the host: its owner, then members, then extra state events up to
/// about `state` in all. Returns the owner and the room ID.
async fn build_room(host: &Synapse, members: usize, state: usize) -> (Client, String) {
    let built = Instant::now();
    let owner = host.register("owner").await;
    let room_id = owner
        .create_room(json!({ "name": "Big room", "preset": "public_chat" }))
        .await;
    let room = room_id.clone();
    let anonymous = host.anonymous();
    in_parallel(members.saturating_sub(1), 8, |i| {
        let (room, anonymous) = (room.clone(), anonymous.clone());
        async move {
            let member = anonymous.register(&format!("member{i}")).await;
            let (status, body) = member.join(&room).await;
            assert_eq!(status, 200, "{body}");
        }
    })
    .await;
    let extra = state.saturating_sub(members + 6);
    in_parallel(extra, 8, |i| {
        let (room, owner) = (room.clone(), owner.clone());
        async move {
            let (status, body) = owner
                .put(
                    &format!("/_matrix/client/v3/rooms/{room}/state/org.kith.bench/{i}"),
                    json!({ "n": i }),
                )
                .await;
            assert_eq!(status, 200, "{body}");
        }
    })
    .await;
    eprintln!(
        "room built: {members} members, ~{state} state events, in {:.0} s",
        built.elapsed().as_secs_f64()
    );
    (owner, room_id)
}
