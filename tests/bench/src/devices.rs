//! The device phase: what `/sync` costs an account with five devices (an encrypting user's
//! phone, laptops and browsers) and 100 to-device messages waiting for each (room keys sent
//! to all their devices, as an encrypting client does).
//!
//! `carol` logs in five times. `alice` sends 100 to-device messages to all of carol's devices
//! (`*`). Then carol's first device syncs from where it was: that sync delivers the 100
//! messages (the spec lets a server split them over several syncs; the number of syncs it
//! took is reported). After that, quiet incremental syncs (nothing new) are timed.

use std::time::Instant;

use serde_json::{Value, json};

use super::{Client, Result, cpu_ms, percentile, register};

/// Devices of the syncing account.
const DEVICES: usize = 5;
/// To-device messages waiting for each of them.
const TO_DEVICE: usize = 100;
/// Quiet incremental syncs timed afterwards.
const QUIET_SYNCS: usize = 20;

async fn login(first: &Client, user: &str) -> Result<Client> {
    let body = first
        .call(
            reqwest::Method::POST,
            "/_matrix/client/v3/login",
            Some(json!({
                "type": "m.login.password",
                "identifier": { "type": "m.id.user", "user": user },
                "password": super::PASSWORD,
            })),
        )
        .await?;
    Ok(Client {
        token: body["access_token"]
            .as_str()
            .ok_or_else(|| format!("login: no access_token in {body}"))?
            .to_owned(),
        ..first.clone()
    })
}

fn next_batch(body: &Value) -> Result<String> {
    body["next_batch"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "no next_batch".to_owned())
}

/// Runs the device phase, with `alice` as the sender, against the server with process `pid`.
pub(super) async fn run(
    name: &str,
    http: &reqwest::Client,
    base: &str,
    alice: &Client,
    pid: u32,
) -> Result<Value> {
    eprintln!("[{name}] devices: {DEVICES} devices, {TO_DEVICE} to-device messages each");
    let localpart = format!("carol{}", std::process::id());
    let carol = register(http, base, &localpart).await?;
    for _ in 1..DEVICES {
        login(&carol, &localpart).await?;
    }
    let mut since = next_batch(&carol.sync("timeout=0").await?)?;

    for i in 0..TO_DEVICE {
        alice
            .call(
                reqwest::Method::PUT,
                &format!("/_matrix/client/v3/sendToDevice/m.bench.key/bench{i}"),
                Some(json!({ "messages": { &carol.user_id: { "*": { "n": i } } } })),
            )
            .await?;
    }

    // The sync (or syncs) that bring the waiting messages.
    let mut delivered = 0usize;
    let mut syncs = 0usize;
    let cpu_before = cpu_ms(pid)?;
    let started = Instant::now();
    while delivered < TO_DEVICE && syncs < 10 {
        let body = carol.sync(&format!("timeout=0&since={since}")).await?;
        delivered += body["to_device"]["events"]
            .as_array()
            .map_or(0, |events| events.len());
        since = next_batch(&body)?;
        syncs += 1;
    }
    let delivery_ms = started.elapsed().as_secs_f64() * 1000.0;
    let delivery_cpu = cpu_ms(pid)? - cpu_before;
    if delivered < TO_DEVICE {
        return Err(format!(
            "{name} delivered {delivered} of {TO_DEVICE} to-device messages in {syncs} syncs"
        ));
    }

    let mut quiet = Vec::with_capacity(QUIET_SYNCS);
    let cpu_before = cpu_ms(pid)?;
    for _ in 0..QUIET_SYNCS {
        let t = Instant::now();
        let body = carol.sync(&format!("timeout=0&since={since}")).await?;
        quiet.push(t.elapsed());
        since = next_batch(&body)?;
    }
    let quiet_cpu = (cpu_ms(pid)? - cpu_before) / QUIET_SYNCS as f64;

    Ok(json!({
        "to_device_sync_ms": delivery_ms,
        "to_device_sync_cpu_ms": delivery_cpu,
        "to_device_syncs": syncs,
        "quiet_sync_p50_ms": percentile(&mut quiet, 0.5),
        "quiet_sync_cpu_ms": quiet_cpu,
    }))
}
