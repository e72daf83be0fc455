//! `kith-bench`: one reproducible HTTP workload, run the same way against any homeserver.
//!
//! `kith-bench run NAME BASE_URL PID OUT.json` measures one server (PID is the server's
//! process, for RSS and CPU time from /proc). `kith-bench table KITH.json SYNAPSE.json`
//! prints the comparison as a Markdown table with the ratio. Every phase is bounded in count
//! and in time ([`PHASE_BUDGET`]; a slow server gets fewer samples, and the table says how
//! many), and every request in time. Beside wall-clock figures it reports the server's CPU
//! time per operation, which host scheduling on a virtual machine distorts less, though not
//! always not at all (tests/bench/RESULTS.md, run 3).

mod devices;
mod media;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Messages sent with 16 in flight, for throughput; `KITH_BENCH_SENDS` changes it (a
/// longer run to profile the server under load).
const THROUGHPUT_MESSAGES: usize = 2000;
/// Sends in flight during the throughput phase.
const IN_FLIGHT: usize = 16;
/// Sequential sends, for PUT /send latency.
const LATENCY_SENDS: usize = 200;
/// Send-to-sync round trips, for delivery latency.
const DELIVERY_ROUNDS: usize = 100;
/// The longest the throughput, send latency and delivery phases each run; after it, a
/// phase stops taking new samples. Synapse on two loaded cores can take seconds per send.
const PHASE_BUDGET: Duration = Duration::from_secs(120);
/// Initial syncs timed.
const INITIAL_SYNCS: usize = 5;
/// `/messages` pages of 100 read backwards.
const PAGES: usize = 20;

type Result<T> = std::result::Result<T, String>;

/// The password of every benchmark account.
const PASSWORD: &str = "bench-password-1";

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    user_id: String,
}

impl Client {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(Duration::from_secs(120));
        if !self.token.is_empty() {
            request = request.bearer_auth(&self.token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| format!("{path}: {e}"))?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!("{path}: {status} {body}"))
        }
    }

    async fn send(&self, room: &str, txn: &str, text: &str) -> Result<String> {
        let body = self
            .call(
                reqwest::Method::PUT,
                &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"),
                Some(json!({ "msgtype": "m.text", "body": text })),
            )
            .await?;
        body["event_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no event_id in {body}"))
    }

    async fn sync(&self, query: &str) -> Result<Value> {
        self.call(
            reqwest::Method::GET,
            &format!("/_matrix/client/v3/sync?{query}"),
            None,
        )
        .await
    }
}

/// Registers a user with open registration, completing the dummy stage the spec's way
/// (first request for a session, then the stage).
async fn register(http: &reqwest::Client, base: &str, name: &str) -> Result<Client> {
    let anon = Client {
        http: http.clone(),
        base: base.to_owned(),
        token: String::new(),
        user_id: String::new(),
    };
    let url = format!("{base}/_matrix/client/v3/register");
    let first: Value = http
        .post(&url)
        .json(&json!({ "username": name, "password": PASSWORD }))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let session = first["session"].as_str().unwrap_or_default();
    let body = anon
        .call(
            reqwest::Method::POST,
            "/_matrix/client/v3/register",
            Some(json!({ "username": name, "password": PASSWORD,
                          "auth": { "type": "m.login.dummy", "session": session } })),
        )
        .await?;
    Ok(Client {
        token: body["access_token"].as_str().unwrap_or_default().to_owned(),
        user_id: body["user_id"].as_str().unwrap_or_default().to_owned(),
        ..anon
    })
}

/// Resident and peak resident memory of a process, in MiB (Linux /proc).
fn rss_mib(pid: u32) -> Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(f64::NAN)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// CPU time (user + system, all threads) a process has used so far, in milliseconds. Unlike
/// wall-clock figures, it does not count time the host takes the CPU away, as far as the
/// guest kernel accounts that time as steal; a VM that does not report all of it still
/// inflates this figure.
fn cpu_ms(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("reading /proc/{pid}/stat: {e}"))?;
    // Fields after the command name, which is in parentheses and may contain spaces;
    // utime and stime are fields 14 and 15 of the whole line (proc(5)).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .ok_or_else(|| format!("no field {i} in /proc/{pid}/stat"))
    };
    // `rest` starts at field 3, so field 14 is index 11. Clock ticks are USER_HZ, which
    // Linux fixes at 100 per second for user space.
    Ok((ticks(11)? + ticks(12)?) * 10.0)
}

/// The share of wall time a spinning thread actually ran during `span`: 1.0 on an idle
/// machine with its CPUs to itself, lower when the host takes them away. Gaps of over a
/// millisecond between two clock reads count as time the thread did not run.
fn cpu_availability(span: Duration) -> f64 {
    let start = Instant::now();
    let mut last = start;
    let mut missing = Duration::ZERO;
    while last.duration_since(start) < span {
        let now = Instant::now();
        let gap = now.duration_since(last);
        if gap > Duration::from_millis(1) {
            missing += gap;
        }
        last = now;
    }
    1.0 - missing.as_secs_f64() / last.duration_since(start).as_secs_f64()
}

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index.min(samples.len() - 1)].as_secs_f64() * 1000.0
}

async fn run(name: &str, base: &str, pid: u32) -> Result<Value> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .map_err(|e| e.to_string())?;
    let tag = std::process::id();
    let alice = register(&http, base, &format!("alice{tag}")).await?;
    let bob = register(&http, base, &format!("bob{tag}")).await?;
    // Settle, then the idle figure: a started server with two accounts and no traffic.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (idle_rss, _) = rss_mib(pid)?;
    let availability = tokio::task::spawn_blocking(|| cpu_availability(Duration::from_secs(5)))
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "[{name}] a spinning thread got {:.0} % of the wall time in 5 s",
        availability * 100.0
    );

    let room = alice
        .call(
            reqwest::Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(json!({ "preset": "public_chat", "name": "bench" })),
        )
        .await?["room_id"]
        .as_str()
        .ok_or("no room_id")?
        .to_owned();
    bob.call(
        reqwest::Method::POST,
        &format!("/_matrix/client/v3/join/{room}"),
        Some(json!({})),
    )
    .await?;

    // Throughput: THROUGHPUT_MESSAGES sends, IN_FLIGHT at a time, into one room.
    let total = std::env::var("KITH_BENCH_SENDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(THROUGHPUT_MESSAGES);
    eprintln!("[{name}] throughput: {total} sends, {IN_FLIGHT} in flight");
    let cpu_before = cpu_ms(pid)?;
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..IN_FLIGHT {
        let (alice, room) = (alice.clone(), room.clone());
        workers.push(tokio::spawn(async move {
            let mut i = worker;
            let mut sent = 0usize;
            while i < total && started.elapsed() < PHASE_BUDGET {
                alice
                    .send(&room, &format!("tp{i}"), &format!("message {i}"))
                    .await?;
                sent += 1;
                i += IN_FLIGHT;
            }
            Ok::<_, String>(sent)
        }));
    }
    let mut throughput_sends = 0;
    for worker in workers {
        throughput_sends += worker.await.map_err(|e| e.to_string())??;
    }
    let throughput = throughput_sends as f64 / started.elapsed().as_secs_f64();
    let cpu_per_send = (cpu_ms(pid)? - cpu_before) / throughput_sends.max(1) as f64;

    // PUT /send latency, one at a time.
    eprintln!("[{name}] send latency: {LATENCY_SENDS} sequential sends");
    let mut send_latency = Vec::with_capacity(LATENCY_SENDS);
    let cpu_before = cpu_ms(pid)?;
    let started = Instant::now();
    for i in 0..LATENCY_SENDS {
        if started.elapsed() >= PHASE_BUDGET {
            break;
        }
        let t = Instant::now();
        alice.send(&room, &format!("lat{i}"), "latency").await?;
        send_latency.push(t.elapsed());
    }
    let cpu_per_lone_send = (cpu_ms(pid)? - cpu_before) / send_latency.len().max(1) as f64;

    // Delivery: bob long-polls; alice sends; time until bob's sync returns the event.
    eprintln!("[{name}] delivery latency: {DELIVERY_ROUNDS} rounds");
    let mut since = bob
        .sync("timeout=0&filter=%7B%22room%22%3A%7B%22timeline%22%3A%7B%22limit%22%3A1%7D%7D%7D")
        .await?["next_batch"]
        .as_str()
        .ok_or("no next_batch")?
        .to_owned();
    let mut delivery = Vec::with_capacity(DELIVERY_ROUNDS);
    let started = Instant::now();
    for i in 0..DELIVERY_ROUNDS {
        if started.elapsed() >= PHASE_BUDGET {
            break;
        }
        let waiting = {
            let (bob, since) = (bob.clone(), since.clone());
            tokio::spawn(async move {
                let mut since = since;
                // Loop over wake-ups that carry other news (receipts, presence).
                loop {
                    let body = bob.sync(&format!("timeout=30000&since={since}")).await?;
                    since = body["next_batch"].as_str().unwrap_or_default().to_owned();
                    let has_message = body["rooms"]["join"]
                        .as_object()
                        .into_iter()
                        .flat_map(|rooms| rooms.values())
                        .filter_map(|r| r["timeline"]["events"].as_array())
                        .flatten()
                        .any(|e| e["content"]["body"] == format!("delivery {i}").as_str());
                    if has_message {
                        return Ok::<_, String>((Instant::now(), since));
                    }
                }
            })
        };
        // Give the long poll time to be parked on the server.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let sent_at = Instant::now();
        alice
            .send(&room, &format!("dl{i}"), &format!("delivery {i}"))
            .await?;
        let (arrived, next) = waiting.await.map_err(|e| e.to_string())??;
        delivery.push(arrived.saturating_duration_since(sent_at));
        since = next;
    }

    // Initial sync for bob (default filter), in a room of ~2300 events.
    eprintln!("[{name}] initial sync x{INITIAL_SYNCS}");
    let mut initial = Vec::new();
    let cpu_before = cpu_ms(pid)?;
    for _ in 0..INITIAL_SYNCS {
        let t = Instant::now();
        bob.sync("timeout=0").await?;
        initial.push(t.elapsed());
    }
    let cpu_per_initial_sync = (cpu_ms(pid)? - cpu_before) / INITIAL_SYNCS as f64;

    // /messages: PAGES pages of 100 backwards from the end.
    eprintln!("[{name}] /messages: {PAGES} pages of 100");
    let t = Instant::now();
    let mut from = String::new();
    let mut paged = 0usize;
    let mut pages = 0usize;
    for _ in 0..PAGES {
        pages += 1;
        let query = if from.is_empty() {
            "dir=b&limit=100".to_owned()
        } else {
            format!("dir=b&limit=100&from={from}")
        };
        let page = bob
            .call(
                reqwest::Method::GET,
                &format!("/_matrix/client/v3/rooms/{room}/messages?{query}"),
                None,
            )
            .await?;
        paged += page["chunk"].as_array().map_or(0, Vec::len);
        match page["end"].as_str() {
            Some(end) => from = end.to_owned(),
            None => break,
        }
    }
    let pages_time = t.elapsed();

    let media = media::run(name, &alice, pid).await?;
    let devices = devices::run(name, &http, base, &alice, pid).await?;

    let (_, peak_rss) = rss_mib(pid)?;
    let mut result = json!({
        "server": name,
        "idle_rss_mib": idle_rss,
        "peak_rss_mib": peak_rss,
        "send_throughput_per_s": throughput,
        "cpu_ms_per_send": cpu_per_send,
        "cpu_ms_per_lone_send": cpu_per_lone_send,
        "cpu_ms_per_initial_sync": cpu_per_initial_sync,
        "cpu_availability": availability,
        "send_p50_ms": percentile(&mut send_latency, 0.5),
        "send_p95_ms": percentile(&mut send_latency, 0.95),
        "delivery_p50_ms": percentile(&mut delivery, 0.5),
        "delivery_p95_ms": percentile(&mut delivery, 0.95),
        "initial_sync_p50_ms": percentile(&mut initial, 0.5),
        "messages_page_ms": pages_time.as_secs_f64() * 1000.0 / pages as f64,
        "messages_events_read": paged,
        "samples": {
            "throughput_sends": throughput_sends,
            "latency_sends": send_latency.len(),
            "delivery_rounds": delivery.len(),
            "media_files": media["files"],
            "images": media["images"],
            "to_device_syncs": devices["to_device_syncs"],
        },
    });
    for part in [media, devices] {
        if let (Some(into), Value::Object(part)) = (result.as_object_mut(), part) {
            into.extend(part);
        }
    }
    Ok(result)
}

/// The comparison table; "better" says which way a ratio favours Kith.
fn table(kith: &Value, synapse: &Value) -> String {
    let rows: [(&str, &str, bool); 25] = [
        ("idle RSS (MiB)", "idle_rss_mib", false),
        ("peak RSS (MiB)", "peak_rss_mib", false),
        (
            "one-room sends/s, 16 in flight",
            "send_throughput_per_s",
            true,
        ),
        (
            "server CPU per send, 16 in flight (ms)",
            "cpu_ms_per_send",
            false,
        ),
        (
            "server CPU per send, one at a time (ms)",
            "cpu_ms_per_lone_send",
            false,
        ),
        ("PUT /send p50 (ms)", "send_p50_ms", false),
        ("PUT /send p95 (ms)", "send_p95_ms", false),
        ("sync delivery p50 (ms)", "delivery_p50_ms", false),
        ("sync delivery p95 (ms)", "delivery_p95_ms", false),
        ("initial sync p50 (ms)", "initial_sync_p50_ms", false),
        (
            "server CPU per initial sync (ms)",
            "cpu_ms_per_initial_sync",
            false,
        ),
        ("/messages page of 100 (ms)", "messages_page_ms", false),
        ("events read by /messages", "messages_events_read", true),
        (
            "media upload, 1 MiB files (MiB/s)",
            "upload_mib_per_s",
            true,
        ),
        (
            "media download, 1 MiB files (MiB/s)",
            "download_mib_per_s",
            true,
        ),
        (
            "server CPU per 1 MiB upload (ms)",
            "cpu_ms_per_upload",
            false,
        ),
        (
            "server CPU per 1 MiB download (ms)",
            "cpu_ms_per_download",
            false,
        ),
        (
            "1600×1200 PNG upload p50 (ms)",
            "image_upload_p50_ms",
            false,
        ),
        ("first thumbnail p50 (ms)", "thumbnail_first_p50_ms", false),
        (
            "repeated thumbnail p50 (ms)",
            "thumbnail_repeat_p50_ms",
            false,
        ),
        (
            "server CPU per image, upload + 4 thumbnails (ms)",
            "cpu_ms_per_image",
            false,
        ),
        (
            "sync bringing 100 to-device msgs, 5 devices (ms)",
            "to_device_sync_ms",
            false,
        ),
        (
            "server CPU for that sync (ms)",
            "to_device_sync_cpu_ms",
            false,
        ),
        (
            "quiet incremental sync p50, 5 devices (ms)",
            "quiet_sync_p50_ms",
            false,
        ),
        ("server CPU per quiet sync (ms)", "quiet_sync_cpu_ms", false),
    ];
    let mut out =
        String::from("| measure | Kith | Synapse | Kith advantage |\n|---|---:|---:|---:|\n");
    for (label, key, higher_is_better) in rows {
        let (k, s) = (
            kith[key].as_f64().unwrap_or(f64::NAN),
            synapse[key].as_f64().unwrap_or(f64::NAN),
        );
        let advantage = if higher_is_better { k / s } else { s / k };
        out.push_str(&format!(
            "| {label} | {k:.1} | {s:.1} | {advantage:.1}× |\n"
        ));
    }
    for (server, result) in [("Kith", kith), ("Synapse", synapse)] {
        let samples = &result["samples"];
        out.push_str(&format!(
            "\n{server} samples: {} throughput sends, {} timed sends, {} delivery rounds, \
             {} media files, {} images, to-device messages in {} sync(s) \
             (each phase stops at {} s); a spinning thread got {:.0} % of the wall time \
             before its run.",
            samples["throughput_sends"],
            samples["latency_sends"],
            samples["delivery_rounds"],
            samples["media_files"],
            samples["images"],
            samples["to_device_syncs"],
            PHASE_BUDGET.as_secs(),
            result["cpu_availability"].as_f64().unwrap_or(f64::NAN) * 100.0
        ));
    }
    out.push('\n');
    out
}

fn read_json(path: &str) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let outcome = match argv.as_slice() {
        [_, "run", name, base, pid, out] => match pid.parse::<u32>() {
            Ok(pid) => match run(name, base, pid).await {
                Ok(result) => std::fs::write(out, result.to_string())
                    .map_err(|e| format!("{out}: {e}"))
                    .map(|()| println!("{result:#}")),
                Err(e) => Err(e),
            },
            Err(_) => Err(format!("PID must be a number, not {pid}")),
        },
        [_, "table", kith, synapse] => {
            read_json(kith).and_then(|k| read_json(synapse).map(|s| print!("{}", table(&k, &s))))
        }
        _ => Err(
            "usage: kith-bench run NAME BASE_URL PID OUT.json | kith-bench table KITH.json SYNAPSE.json"
                .to_owned(),
        ),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kith-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
