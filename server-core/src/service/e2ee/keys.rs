//! Device keys, one-time and fallback keys, cross-signing keys and signatures
//! (spec: end_to_end_encryption.md, "Key management API" and "Cross-signing").

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use reqwest::Method;
use ruma::{OwnedServerName, ServerName, UserId};
use serde_json::{Map, Value, json};

use super::E2ee;
use crate::{
    crypto::verify_signature,
    error::{Error, ErrorKind, Result},
    storage::{CrossSigningKey, KeySignature, KeyUpload, OneTimeKey},
};

/// What a device uploads with `keys/upload`.
#[derive(Debug, Clone, Default)]
pub struct KeysUpload {
    /// The device's identity keys.
    pub device_keys: Option<Value>,
    /// One-time keys by key ID.
    pub one_time_keys: Map<String, Value>,
    /// Fallback keys by key ID.
    pub fallback_keys: Map<String, Value>,
}

/// What `keys/device_signing/upload` carries.
#[derive(Debug, Clone, Default)]
pub struct CrossSigningUpload {
    /// The master key.
    pub master_key: Option<Value>,
    /// The self-signing key.
    pub self_signing_key: Option<Value>,
    /// The user-signing key.
    pub user_signing_key: Option<Value>,
}

const MASTER: &str = "master";
const SELF_SIGNING: &str = "self_signing";
const USER_SIGNING: &str = "user_signing";

/// The one `ed25519:<public key>` entry of a cross-signing key, checked: the object is
/// `user_id`'s, its usage includes `usage`, and it has exactly one key whose ID names it.
fn cross_signing_public_key(key: &Value, user_id: &UserId, usage: &str) -> Result<String> {
    let bad = |why: &str| Error::invalid_param(format!("The {usage} key is invalid: {why}."));
    if key.get("user_id").and_then(Value::as_str) != Some(user_id.as_str()) {
        return Err(bad("it belongs to another user"));
    }
    let usages = key.get("usage").and_then(Value::as_array);
    if !usages.is_some_and(|u| u.iter().any(|x| x.as_str() == Some(usage))) {
        return Err(bad("its usage does not include this purpose"));
    }
    let keys = key
        .get("keys")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("it has no keys"))?;
    let mut entries = keys.iter();
    match (entries.next(), entries.next()) {
        (Some((id, Value::String(public))), None)
            if id.strip_prefix("ed25519:") == Some(public.as_str()) =>
        {
            Ok(public.clone())
        }
        _ => Err(bad(
            "it must hold exactly one ed25519 key named after itself",
        )),
    }
}

/// Sets `value[path[0]][path[1]]... = leaf`, making (or replacing) non-objects on the way.
/// Stored keys came from clients, so their shape is not trusted: `serde_json`'s `IndexMut`
/// would panic on a string where an object was expected.
fn set_in(value: &mut Value, path: &[&str], leaf: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = value;
    for name in parents {
        if !current.is_object() {
            *current = json!({});
        }
        let Some(object) = current.as_object_mut() else {
            return;
        };
        current = object.entry(*name).or_insert_with(|| json!({}));
    }
    if !current.is_object() {
        *current = json!({});
    }
    if let Some(object) = current.as_object_mut() {
        object.insert((*last).to_owned(), leaf);
    }
}

/// A key's JSON with stored signatures merged into its `signatures`.
fn with_signatures<'a>(
    mut key: Value,
    signatures: impl Iterator<Item = &'a KeySignature>,
) -> Value {
    for s in signatures {
        set_in(
            &mut key,
            &["signatures", &s.signer_user, &s.signer_key],
            json!(s.signature),
        );
    }
    key
}

fn parse_stored(json: &str) -> Result<Value> {
    serde_json::from_str(json).map_err(|e| Error::internal(format!("stored key: {e}")))
}

/// Splits `signed_curve25519:AAAAHQ` into its algorithm.
fn algorithm_of(key_id: &str) -> Result<String> {
    match key_id.split_once(':') {
        Some((algorithm, id)) if !algorithm.is_empty() && !id.is_empty() => {
            Ok(algorithm.to_owned())
        }
        _ => Err(Error::invalid_param(format!(
            "{key_id} is not a key ID of the form <algorithm>:<id>."
        ))),
    }
}

/// A `failures` entry for a server that could not answer.
impl E2ee {
    /// Sends `{ field: users }` to `path` on every server in `remote` at once, each within
    /// `timeout`. Returns the answers, and the spec's `failures` entries for the servers
    /// that failed or did not answer in time.
    async fn ask_servers(
        &self,
        remote: BTreeMap<OwnedServerName, Map<String, Value>>,
        path: &str,
        field: &str,
        timeout: Duration,
    ) -> (Vec<(OwnedServerName, Value)>, Map<String, Value>) {
        let mut asks = tokio::task::JoinSet::new();
        for (server, users) in remote {
            let federation = self.federation.clone();
            let path = path.to_owned();
            let mut body = Map::new();
            body.insert(field.to_owned(), Value::Object(users));
            let body = Value::Object(body);
            asks.spawn(async move {
                let request =
                    federation.request(&server, Method::POST, &path, &[], Some(&body), true);
                let answer = tokio::time::timeout(timeout, request).await;
                (server, answer)
            });
        }
        let (mut answers, mut failures) = (Vec::new(), Map::new());
        while let Some(joined) = asks.join_next().await {
            let Ok((server, answer)) = joined else {
                continue;
            };
            match answer {
                Ok(Ok(answer)) => answers.push((server, answer)),
                Ok(Err(e)) => {
                    failures.insert(server.to_string(), remote_failure(&e.to_string()));
                }
                Err(_) => {
                    let why = format!("{server} did not answer in time");
                    failures.insert(server.to_string(), remote_failure(&why));
                }
            }
        }
        (answers, failures)
    }
}

fn remote_failure(message: &str) -> Value {
    json!({ "status": 503, "message": message })
}

/// The entries of a remote answer's `field` that belong to users of `server`: a server
/// speaks only for its own users.
fn users_of_server(server: &ServerName, field: Option<&Value>) -> Vec<(String, Value)> {
    let Some(Value::Object(users)) = field else {
        return Vec::new();
    };
    users
        .iter()
        .filter(|(user, _)| UserId::parse(user.as_str()).is_ok_and(|u| u.server_name() == server))
        .map(|(user, value)| (user.clone(), value.clone()))
        .collect()
}

/// Keys found for a `keys/query` answer.
#[derive(Default)]
struct FoundKeys {
    device_keys: Map<String, Value>,
    master_keys: Map<String, Value>,
    self_signing_keys: Map<String, Value>,
    user_signing_keys: Map<String, Value>,
}

impl FoundKeys {
    /// Adds what `server` answered to `user/keys/query`, for its own users only.
    fn merge_remote(&mut self, server: &ServerName, answer: &Value) {
        for (field, map) in [
            ("device_keys", &mut self.device_keys),
            ("master_keys", &mut self.master_keys),
            ("self_signing_keys", &mut self.self_signing_keys),
        ] {
            for (user, value) in users_of_server(server, answer.get(field)) {
                map.insert(user, value);
            }
        }
    }

    fn into_json(self) -> Value {
        json!({
            "device_keys": self.device_keys,
            "master_keys": self.master_keys,
            "self_signing_keys": self.self_signing_keys,
            "user_signing_keys": self.user_signing_keys,
        })
    }
}

impl E2ee {
    /// `keys/upload` for one device: stores its keys and returns its one-time key counts.
    pub async fn upload_keys(
        &self,
        user_id: &UserId,
        device_id: &str,
        upload: KeysUpload,
    ) -> Result<BTreeMap<String, u64>> {
        let device_keys = match upload.device_keys {
            Some(mut keys) => {
                // `unsigned` is the server's to add (spec: keys.yaml, DeviceKeys).
                if let Some(object) = keys.as_object_mut() {
                    object.remove("unsigned");
                }
                if keys.get("user_id").and_then(Value::as_str) != Some(user_id.as_str())
                    || keys.get("device_id").and_then(Value::as_str) != Some(device_id)
                {
                    return Err(Error::invalid_param(
                        "The device keys must name this user and device.",
                    ));
                }
                if !keys.get("keys").is_some_and(Value::is_object)
                    || !keys.get("algorithms").is_some_and(Value::is_array)
                {
                    return Err(Error::bad_json("Device keys need `keys` and `algorithms`."));
                }
                Some(serde_json::to_string(&keys)?)
            }
            None => None,
        };
        let one_time_keys = upload
            .one_time_keys
            .iter()
            .map(|(key_id, key)| {
                Ok(OneTimeKey {
                    algorithm: algorithm_of(key_id)?,
                    key_id: key_id.clone(),
                    json: serde_json::to_string(key)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // One fallback key per algorithm: the last one given wins.
        let mut fallback_keys: BTreeMap<String, OneTimeKey> = BTreeMap::new();
        for (key_id, key) in &upload.fallback_keys {
            let algorithm = algorithm_of(key_id)?;
            fallback_keys.insert(
                algorithm.clone(),
                OneTimeKey {
                    algorithm,
                    key_id: key_id.clone(),
                    json: serde_json::to_string(key)?,
                },
            );
        }
        let changed = self
            .store
            .keys()
            .upload(
                user_id.as_str(),
                device_id,
                KeyUpload {
                    device_keys,
                    one_time_keys,
                    fallback_keys: fallback_keys.into_values().collect(),
                },
            )
            .await?;
        if changed {
            self.notifier.notify();
            self.announce_devices(user_id, Some(device_id)).await?;
        }
        self.one_time_key_counts(user_id, device_id).await
    }

    /// Tells the servers that share a room with a local user that their devices changed
    /// (spec: server-server-api.md, "Device Management"): `m.device_list_update` for a
    /// device's new keys, with the IDs of this change and the one before it so a server
    /// that missed one fetches the whole list; `m.signing_key_update` for cross-signing
    /// keys (`device_id` `None`). Queued durably; best effort once the change is stored.
    ///
    /// Deleted devices: [`Self::announce_removed`]. New signatures of the user's own devices
    /// and keys are announced like new keys (see `upload_signatures`); device names are not
    /// shared over federation.
    pub(super) async fn announce_devices(
        &self,
        user_id: &UserId,
        device_id: Option<&str>,
    ) -> Result<()> {
        let servers = self.servers_to_tell(user_id).await?;
        if servers.is_empty() {
            return Ok(());
        }
        let devices = self.devices_for_server(user_id).await?;
        let (edu_type, content) = match device_id {
            Some(device_id) => {
                let (stream_id, prev_id) =
                    self.store.keys().last_two_changes(user_id.as_str()).await?;
                let keys = devices["devices"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|d| d["device_id"] == device_id)
                    .map(|d| d["keys"].clone());
                (
                    "m.device_list_update",
                    device_update(user_id, device_id, stream_id, prev_id, keys),
                )
            }
            None => {
                let mut content = json!({ "user_id": user_id });
                for key in ["master_key", "self_signing_key"] {
                    if let Some(value) = devices.get(key) {
                        content[key] = value.clone();
                    }
                }
                ("m.signing_key_update", content)
            }
        };
        self.tell(&servers, user_id, edu_type, &[content]).await;
        Ok(())
    }

    /// Tells the servers that share a room with a local user that devices of theirs were
    /// deleted (logout, device deletion, deactivation): one `m.device_list_update` with
    /// `deleted: true` per device, each with its own change and the one before it, so that
    /// the other server's clients stop encrypting for them.
    pub async fn announce_removed(
        &self,
        user_id: &UserId,
        removed: &[(String, i64)],
    ) -> Result<()> {
        let Some((_, first)) = removed.first() else {
            return Ok(());
        };
        let servers = self.servers_to_tell(user_id).await?;
        if servers.is_empty() {
            return Ok(());
        }
        let mut prev = self
            .store
            .keys()
            .change_before(user_id.as_str(), *first)
            .await?;
        let mut updates = Vec::with_capacity(removed.len());
        for (device_id, pos) in removed {
            updates.push(device_update(user_id, device_id, *pos, prev, None));
            prev = Some(*pos);
        }
        self.tell(&servers, user_id, "m.device_list_update", &updates)
            .await;
        Ok(())
    }

    /// The other servers with a user who shares a room with `user_id`.
    async fn servers_to_tell(&self, user_id: &UserId) -> Result<Vec<ruma::OwnedServerName>> {
        let ours = self.identity.server_name.as_str();
        let servers = self
            .store
            .events()
            .servers_sharing_rooms(user_id.as_str())
            .await?
            .iter()
            .filter(|s| s.as_str() != ours)
            .filter_map(|s| ruma::ServerName::parse(s).ok())
            .collect();
        Ok(servers)
    }

    /// Queues the EDUs, in order, for each server; a failure is logged, not returned (the
    /// change itself is stored).
    async fn tell(
        &self,
        servers: &[ruma::OwnedServerName],
        user_id: &UserId,
        edu_type: &str,
        contents: &[Value],
    ) {
        for server in servers {
            for content in contents {
                if let Err(e) = self
                    .federation
                    .queue_edu(server, edu_type, content.clone())
                    .await
                {
                    tracing::warn!(%server, %user_id, error = %e, "device list update not queued");
                }
            }
        }
    }

    /// Unclaimed one-time keys per algorithm; `signed_curve25519` is always present, so that
    /// clients see when they have none left.
    pub async fn one_time_key_counts(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> Result<BTreeMap<String, u64>> {
        let mut counts: BTreeMap<String, u64> = self
            .store
            .keys()
            .one_time_key_counts(user_id.as_str(), device_id)
            .await?
            .into_iter()
            .collect();
        counts.entry("signed_curve25519".to_owned()).or_insert(0);
        Ok(counts)
    }

    /// The algorithms of the device's fallback keys that are not used yet.
    pub async fn unused_fallback_key_types(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> Result<Vec<String>> {
        self.store
            .keys()
            .unused_fallback_key_types(user_id.as_str(), device_id)
            .await
    }

    /// `keys/query`: the devices and cross-signing keys of the users asked for. A user's
    /// user-signing key, and the signatures it made, are shown only to that user. Other
    /// servers' users are asked of their servers (each within `timeout`); a server that
    /// does not answer is listed in `failures`.
    pub async fn query_keys(
        &self,
        requester: &UserId,
        users: BTreeMap<String, Vec<String>>,
        timeout: Duration,
    ) -> Result<Value> {
        let mut found = FoundKeys::default();
        let mut remote: BTreeMap<OwnedServerName, Map<String, Value>> = BTreeMap::new();
        for (user, devices) in users {
            let user_id = UserId::parse(&user)
                .map_err(|_| Error::invalid_param(format!("{user} is not a valid user ID.")))?;
            if self.is_local(&user_id) {
                self.add_local_keys(&mut found, Some(requester), &user_id, devices)
                    .await?;
            } else {
                remote
                    .entry(user_id.server_name().to_owned())
                    .or_default()
                    .insert(user, json!(devices));
            }
        }
        let (answers, failures) = self
            .ask_servers(
                remote,
                "/_matrix/federation/v1/user/keys/query",
                "device_keys",
                timeout,
            )
            .await;
        for (server, answer) in answers {
            found.merge_remote(&server, &answer);
        }
        let mut answer = found.into_json();
        answer["failures"] = Value::Object(failures);
        Ok(answer)
    }

    /// `user/keys/query` from another server: our users' devices, master and self-signing
    /// keys (spec: server-server-api.md, "End-to-End Encryption"). Users of other servers
    /// are not answered for.
    pub async fn query_keys_for_server(
        &self,
        users: BTreeMap<String, Vec<String>>,
    ) -> Result<Value> {
        let mut found = FoundKeys::default();
        for (user, devices) in users {
            let Ok(user_id) = UserId::parse(&user) else {
                continue;
            };
            if self.is_local(&user_id) {
                self.add_local_keys(&mut found, None, &user_id, devices)
                    .await?;
            }
        }
        let mut answer = found.into_json();
        if let Some(object) = answer.as_object_mut() {
            object.remove("user_signing_keys");
        }
        Ok(answer)
    }

    /// Adds a local user's keys to `found`, as `requester` (none: another server) may see them.
    async fn add_local_keys(
        &self,
        found: &mut FoundKeys,
        requester: Option<&UserId>,
        user_id: &UserId,
        devices: Vec<String>,
    ) -> Result<()> {
        let user = user_id.as_str().to_owned();
        let keys = self.store.keys();
        let signatures = keys.signatures_for(user_id.as_str()).await?;
        let mut devices_out = Map::new();
        for device in keys.device_keys(user_id.as_str(), devices).await? {
            let mut key = with_signatures(
                parse_stored(&device.json)?,
                signatures
                    .iter()
                    .filter(|s| s.target_key == device.device_id),
            );
            // Device names stay on this server, as in Synapse's default: they often name a
            // person's hardware or whereabouts.
            if let (Some(name), Some(_)) = (device.display_name, requester) {
                set_in(&mut key, &["unsigned", "device_display_name"], json!(name));
            }
            devices_out.insert(device.device_id, key);
        }
        found
            .device_keys
            .insert(user.clone(), Value::Object(devices_out));
        for cross in keys.cross_signing_keys(user_id.as_str()).await? {
            let visible = signatures.iter().filter(|s| {
                s.target_key == cross.public_key
                    && (s.signer_user == user
                        || requester.is_some_and(|r| s.signer_user == r.as_str()))
            });
            let key = with_signatures(parse_stored(&cross.json)?, visible);
            match cross.key_type.as_str() {
                MASTER => found.master_keys.insert(user.clone(), key),
                SELF_SIGNING => found.self_signing_keys.insert(user.clone(), key),
                USER_SIGNING if requester == Some(user_id) => {
                    found.user_signing_keys.insert(user.clone(), key)
                }
                _ => None,
            };
        }
        Ok(())
    }

    /// `keys/claim`: one key per device asked for, a one-time key first and the fallback key
    /// when none is left (spec: "POST /keys/claim"). Other servers' users are claimed from
    /// their servers (each within `timeout`).
    pub async fn claim_keys(
        &self,
        wanted: BTreeMap<String, BTreeMap<String, String>>,
        timeout: Duration,
    ) -> Result<Value> {
        let mut local = BTreeMap::new();
        let mut remote: BTreeMap<OwnedServerName, Map<String, Value>> = BTreeMap::new();
        for (user, devices) in wanted {
            let user_id = UserId::parse(&user)
                .map_err(|_| Error::invalid_param(format!("{user} is not a valid user ID.")))?;
            if self.is_local(&user_id) {
                local.insert(user, devices);
            } else {
                remote
                    .entry(user_id.server_name().to_owned())
                    .or_default()
                    .insert(user, json!(devices));
            }
        }
        let mut one_time_keys = self.claim_local_keys(local).await?;
        let (answers, failures) = self
            .ask_servers(
                remote,
                "/_matrix/federation/v1/user/keys/claim",
                "one_time_keys",
                timeout,
            )
            .await;
        for (server, answer) in answers {
            for (user, keys) in users_of_server(&server, answer.get("one_time_keys")) {
                one_time_keys.insert(user, keys);
            }
        }
        Ok(json!({ "one_time_keys": one_time_keys, "failures": failures }))
    }

    /// Claims keys of our own users: `user → device → algorithm` in, `user → device →
    /// key ID → key` out. Users of other servers are skipped (for `user/keys/claim`).
    pub async fn claim_local_keys(
        &self,
        wanted: BTreeMap<String, BTreeMap<String, String>>,
    ) -> Result<Map<String, Value>> {
        let mut requests = Vec::new();
        for (user, devices) in wanted {
            if !UserId::parse(&user).is_ok_and(|u| self.is_local(&u)) {
                continue;
            }
            for (device, algorithm) in devices {
                requests.push((user.clone(), device, algorithm));
            }
        }
        let mut one_time_keys = Map::new();
        for (user, device, key_id, json) in self.store.keys().claim(requests).await? {
            let entry = one_time_keys.entry(user).or_insert_with(|| json!({}));
            set_in(
                entry,
                &[device.as_str(), key_id.as_str()],
                parse_stored(&json)?,
            );
        }
        Ok(one_time_keys)
    }

    /// `user/devices/{userId}` from another server: a local user's devices with their keys,
    /// and their master and self-signing keys (spec: "GET /user/devices/{userId}"), without
    /// device names.
    pub async fn devices_for_server(&self, user_id: &UserId) -> Result<Value> {
        let mut found = FoundKeys::default();
        self.add_local_keys(&mut found, None, user_id, Vec::new())
            .await?;
        let stream_id = self.store.current_stream_pos().await?;
        let mut devices = Vec::new();
        if let Some(Value::Object(keys)) = found.device_keys.remove(user_id.as_str()) {
            for (device_id, key) in keys {
                devices.push(json!({ "device_id": device_id, "keys": key }));
            }
        }
        let mut answer = json!({
            "user_id": user_id,
            "stream_id": stream_id,
            "devices": devices,
        });
        if let Some(master) = found.master_keys.remove(user_id.as_str()) {
            answer["master_key"] = master;
        }
        if let Some(ssk) = found.self_signing_keys.remove(user_id.as_str()) {
            answer["self_signing_key"] = ssk;
        }
        Ok(answer)
    }

    /// Whether this upload needs user-interactive auth (spec: "POST
    /// /keys/device_signing/upload"): not for a user's first master key, nor for a repeat of
    /// exactly the keys already stored; always to replace keys.
    pub async fn cross_signing_upload_needs_auth(
        &self,
        user_id: &UserId,
        upload: &CrossSigningUpload,
    ) -> Result<bool> {
        let stored = self
            .store
            .keys()
            .cross_signing_keys(user_id.as_str())
            .await?;
        if !stored.iter().any(|k| k.key_type == MASTER) {
            return Ok(false);
        }
        let same = |key_type: &str, new: &Option<Value>| match new {
            None => true,
            Some(new) => stored.iter().any(|k| {
                k.key_type == key_type
                    && serde_json::from_str::<Value>(&k.json).ok().as_ref() == Some(new)
            }),
        };
        Ok(!(upload.master_key.is_some()
            && same(MASTER, &upload.master_key)
            && same(SELF_SIGNING, &upload.self_signing_key)
            && same(USER_SIGNING, &upload.user_signing_key)))
    }

    /// Stores new cross-signing keys after checking them: each is the user's, has the right
    /// usage, and the self- and user-signing keys are signed by the (new or stored) master key.
    /// Without `authenticated` (UIA done), stored keys are never replaced by different ones.
    pub async fn upload_cross_signing_keys(
        &self,
        user_id: &UserId,
        upload: CrossSigningUpload,
        authenticated: bool,
    ) -> Result<()> {
        let mut keys = Vec::new();
        let master_public = match &upload.master_key {
            Some(master) => {
                let public = cross_signing_public_key(master, user_id, MASTER)?;
                keys.push(CrossSigningKey {
                    key_type: MASTER.to_owned(),
                    public_key: public.clone(),
                    json: serde_json::to_string(master)?,
                });
                public
            }
            None => self
                .store
                .keys()
                .cross_signing_keys(user_id.as_str())
                .await?
                .into_iter()
                .find(|k| k.key_type == MASTER)
                .map(|k| k.public_key)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::MissingParam,
                        "No master signing key is available.",
                    )
                })?,
        };
        for (usage, key) in [
            (SELF_SIGNING, &upload.self_signing_key),
            (USER_SIGNING, &upload.user_signing_key),
        ] {
            let Some(key) = key else { continue };
            let public = cross_signing_public_key(key, user_id, usage)?;
            let master_id = format!("ed25519:{master_public}");
            if !verify_signature(key, user_id.as_str(), &master_id, &master_public) {
                return Err(Error::new(
                    ErrorKind::InvalidSignature,
                    format!("The {usage} key is not signed by the master key."),
                ));
            }
            keys.push(CrossSigningKey {
                key_type: usage.to_owned(),
                public_key: public,
                json: serde_json::to_string(key)?,
            });
        }
        if keys.is_empty() {
            return Ok(());
        }
        if !self
            .store
            .keys()
            .set_cross_signing_keys(user_id.as_str(), keys, authenticated)
            .await?
        {
            return Err(Error::forbidden(
                "Cross-signing keys were uploaded meanwhile; replacing them needs authentication.",
            ));
        }
        self.notifier.notify();
        self.announce_devices(user_id, None).await?;
        Ok(())
    }

    /// `keys/signatures/upload`: checks and stores each new signature. The caller may sign
    /// their own devices with their self-signing key, their own master key with one of
    /// their devices, and other users' master keys with their user-signing key. Returns the
    /// spec's `failures` map; valid signatures are stored even when others fail.
    pub async fn upload_signatures(
        &self,
        signer: &UserId,
        signed: BTreeMap<String, BTreeMap<String, Value>>,
    ) -> Result<Value> {
        let keys = self.store.keys();
        let my_cross = keys.cross_signing_keys(signer.as_str()).await?;
        let public_of = |key_type: &str| {
            my_cross
                .iter()
                .find(|k| k.key_type == key_type)
                .map(|k| k.public_key.clone())
        };
        let my_devices = keys.device_keys(signer.as_str(), Vec::new()).await?;
        let mut accepted: Vec<KeySignature> = Vec::new();
        let mut changed: BTreeSet<String> = BTreeSet::new();
        let mut changed_for_me: BTreeSet<String> = BTreeSet::new();
        // The signer's own devices and cross-signing keys that got a signature: the servers
        // that track the signer are told (spec: server-server-api.md, "Device Management").
        let mut signed_devices: BTreeSet<String> = BTreeSet::new();
        let mut signed_cross_signing_key = false;
        let mut failures = Map::new();
        for (user, objects) in signed {
            let target = match UserId::parse(&user) {
                Ok(target) if self.is_local(&target) => target,
                _ => {
                    for key_id in objects.keys() {
                        failures.entry(user.clone()).or_insert_with(|| json!({}))[key_id] = json!({
                            "errcode": "M_INVALID_PARAM",
                            "error": "Only users of this server can be signed for now.",
                        });
                    }
                    continue;
                }
            };
            let target_cross = if target == signer {
                my_cross.clone()
            } else {
                keys.cross_signing_keys(target.as_str()).await?
            };
            for (key_id, object) in objects {
                let outcome = self.check_signed_object(
                    signer,
                    &target,
                    &key_id,
                    &object,
                    &target_cross,
                    &my_devices,
                    &public_of,
                );
                match outcome {
                    Ok(signatures) => {
                        // My own keys: everyone who tracks me must refetch. Another user's
                        // master key: only I see my user-signing signature, so only my
                        // devices are told that user changed (as Synapse does).
                        if target == signer {
                            changed.insert(signer.to_string());
                            if my_devices.iter().any(|d| d.device_id == key_id) {
                                signed_devices.insert(key_id.clone());
                            } else {
                                signed_cross_signing_key = true;
                            }
                        } else {
                            changed_for_me.insert(target.to_string());
                        }
                        accepted.extend(signatures);
                    }
                    Err(e) => {
                        failures.entry(user.clone()).or_insert_with(|| json!({}))[&key_id] =
                            json!({ "errcode": e.errcode(), "error": e.to_string() });
                    }
                }
            }
        }
        if !accepted.is_empty() {
            let changed_for = changed_for_me
                .into_iter()
                .map(|user| (user, signer.to_string()))
                .collect();
            keys.add_signatures(accepted, changed.into_iter().collect(), changed_for)
                .await?;
            self.notifier.notify();
            // Stored already: a failure to tell other servers fails nothing here (they learn
            // it when they next fetch the signer's devices).
            let devices = signed_devices.iter().map(|d| Some(d.as_str()));
            let cross = signed_cross_signing_key.then_some(None);
            for device in devices.chain(cross) {
                if let Err(e) = self.announce_devices(signer, device).await {
                    tracing::warn!(user = %signer, error = %e, "cannot announce new signatures");
                }
            }
        }
        Ok(json!({ "failures": failures }))
    }

    /// Checks one signed object of `keys/signatures/upload` and returns the signatures in it
    /// that `signer` newly made and that verify.
    #[allow(clippy::too_many_arguments)]
    fn check_signed_object(
        &self,
        signer: &UserId,
        target: &UserId,
        key_id: &str,
        object: &Value,
        target_cross: &[CrossSigningKey],
        my_devices: &[crate::storage::DeviceKeys],
        public_of: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<KeySignature>> {
        let invalid_signature = |why: &str| Error::new(ErrorKind::InvalidSignature, why.to_owned());
        let new_signatures: Vec<(String, String)> = object
            .get("signatures")
            .and_then(|s| s.get(signer.as_str()))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(id, sig)| Some((id.clone(), sig.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        if new_signatures.is_empty() {
            return Err(invalid_signature(
                "The object carries no signature of yours.",
            ));
        }
        // The signed part must be exactly the stored key: a signature over anything else
        // would be shown next to a key it does not sign.
        let signable = |v: &Value| {
            let mut v = v.clone();
            if let Some(m) = v.as_object_mut() {
                m.remove("signatures");
                m.remove("unsigned");
            }
            v
        };
        // The signature of `signer`'s own cross-signing key of `key_type` over the object.
        let signed_by_cross_signing_key = |key_type: &str, name: &str| {
            let public = public_of(key_type)
                .ok_or_else(|| invalid_signature(&format!("You have no {name} key.")))?;
            let signer_key = format!("ed25519:{public}");
            if !verify_signature(object, signer.as_str(), &signer_key, &public) {
                return Err(invalid_signature(&format!(
                    "The {name} signature does not verify."
                )));
            }
            let signature = new_signatures
                .iter()
                .find(|(id, _)| *id == signer_key)
                .map(|(_, s)| s.clone())
                .unwrap_or_default();
            Ok(KeySignature {
                target_user: target.to_string(),
                target_key: key_id.to_owned(),
                signer_user: signer.to_string(),
                signer_key,
                signature,
            })
        };
        let target_master = target_cross.iter().find(|k| k.key_type == MASTER);
        let mut out = Vec::new();
        if target == signer && target_master.is_none_or(|m| m.public_key != key_id) {
            // One of my devices, signed by my self-signing key.
            let device = my_devices
                .iter()
                .find(|d| d.device_id == key_id)
                .ok_or_else(|| Error::not_found(format!("No device or key {key_id}.")))?;
            if signable(&parse_stored(&device.json)?) != signable(object) {
                return Err(Error::invalid_param(
                    "The signed object is not that device's keys.",
                ));
            }
            out.push(signed_by_cross_signing_key(SELF_SIGNING, "self-signing")?);
            return Ok(out);
        }
        let master = target_master
            .filter(|m| m.public_key == key_id)
            .ok_or_else(|| Error::not_found(format!("No device or key {key_id}.")))?;
        if signable(&parse_stored(&master.json)?) != signable(object) {
            return Err(Error::invalid_param(
                "The signed object is not that master key.",
            ));
        }
        if target == signer {
            // My master key, signed by my devices.
            for (sig_key_id, signature) in new_signatures {
                let Some(device_id) = sig_key_id.strip_prefix("ed25519:") else {
                    continue;
                };
                let Some(device) = my_devices.iter().find(|d| d.device_id == device_id) else {
                    continue;
                };
                let device_keys = parse_stored(&device.json)?;
                let Some(public) = device_keys["keys"][&sig_key_id].as_str() else {
                    continue;
                };
                if !verify_signature(object, signer.as_str(), &sig_key_id, public) {
                    return Err(invalid_signature("A device signature does not verify."));
                }
                out.push(KeySignature {
                    target_user: target.to_string(),
                    target_key: key_id.to_owned(),
                    signer_user: signer.to_string(),
                    signer_key: sig_key_id,
                    signature,
                });
            }
        } else {
            // Another user's master key, signed by my user-signing key.
            out.push(signed_by_cross_signing_key(USER_SIGNING, "user-signing")?);
        }
        if out.is_empty() {
            return Err(invalid_signature("No signature by one of your devices."));
        }
        Ok(out)
    }
}

/// An `m.device_list_update` (spec: server-server-api.md, "m.device_list_update"): a
/// device's keys, or `deleted` without them.
fn device_update(
    user_id: &UserId,
    device_id: &str,
    stream_id: i64,
    prev_id: Option<i64>,
    keys: Option<Value>,
) -> Value {
    let mut content = json!({
        "user_id": user_id,
        "device_id": device_id,
        "stream_id": stream_id,
        "prev_id": prev_id.into_iter().collect::<Vec<_>>(),
        "deleted": keys.is_none(),
    });
    if let Some(keys) = keys {
        content["keys"] = keys;
    }
    content
}
