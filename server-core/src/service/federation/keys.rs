//! Server signing keys (spec: server-server-api.md, "Retrieving server keys"): ours, served
//! signed; other servers', fetched straight from them, checked, and kept; and the notary
//! answers (`/_matrix/key/v2/query`) that pass other servers' keys on, countersigned by us.
//!
//! A fetched key is trusted until the `valid_until_ts` of its response, capped at seven
//! days after the fetch. Keys are never deleted: old events stay verifiable with the key
//! that was valid when they were sent.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::{Duration, Instant},
};

use base64::Engine;
use reqwest::Method;
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, ServerName,
    serde::Base64,
    signatures::{PublicKeyMap, sign_json, verify_json},
};
use serde_json::Value;

use super::Federation;
use crate::{
    error::{Error, ErrorKind, Result},
    service::locks::KeyedLocks,
    storage::{KeyResponse, ServerKey, now_ms},
};

/// How long our own key response says it is valid.
const OWN_VALIDITY_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// The longest we trust a fetched key response (spec: room versions 5 and later).
const MAX_VALIDITY_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// After a failed fetch, the same server's keys are not fetched again for this long, so a
/// flood of requests naming an unreachable origin does not become a flood of fetches.
const FAILED_FETCH_PAUSE: Duration = Duration::from_secs(30);

/// Keys held in memory at most; past that the cache starts again empty.
const CACHED_KEYS: usize = 4096;

/// In-flight and recently failed key fetches, per server, and the keys already read from
/// the database (every signed request needs one, so they are kept in memory).
#[derive(Default)]
pub(super) struct Fetches {
    locks: KeyedLocks,
    failed: Mutex<HashMap<String, (Instant, String)>>,
    /// (server, key ID) → (public key, valid until ms).
    known: Mutex<HashMap<(String, String), (Base64, i64)>>,
}

impl Fetches {
    fn cached(&self, server: &str, key_id: &str, at_ts: i64) -> Option<Base64> {
        let known = self.known.lock().ok()?;
        known
            .get(&(server.to_owned(), key_id.to_owned()))
            .filter(|(_, valid_until)| *valid_until >= at_ts)
            .map(|(key, _)| key.clone())
    }
    fn remember(&self, server: &str, key_id: &str, key: &Base64, valid_until: i64) {
        if let Ok(mut known) = self.known.lock() {
            if known.len() >= CACHED_KEYS {
                known.clear();
            }
            known.insert(
                (server.to_owned(), key_id.to_owned()),
                (key.clone(), valid_until),
            );
        }
    }
    /// Forgets `server`'s keys (a fresh fetch may have changed them).
    fn forget(&self, server: &str) {
        if let Ok(mut known) = self.known.lock() {
            known.retain(|(s, _), _| s != server);
        }
    }
    fn recent_failure(&self, server: &str) -> Option<String> {
        let failed = self.failed.lock().ok()?;
        failed
            .get(server)
            .filter(|(at, _)| at.elapsed() < FAILED_FETCH_PAUSE)
            .map(|(_, why)| why.clone())
    }
    fn record_failure(&self, server: &str, why: &str) {
        if let Ok(mut failed) = self.failed.lock() {
            failed.retain(|_, (at, _)| at.elapsed() < FAILED_FETCH_PAUSE);
            failed.insert(server.to_owned(), (Instant::now(), why.to_owned()));
        }
    }
    fn clear_failure(&self, server: &str) {
        if let Ok(mut failed) = self.failed.lock() {
            failed.remove(server);
        }
    }
}

fn to_object(value: Value) -> Result<CanonicalJsonObject> {
    match CanonicalJsonValue::try_from(value) {
        Ok(CanonicalJsonValue::Object(object)) => Ok(object),
        Ok(_) => Err(Error::bad_json("a key response must be a JSON object")),
        Err(e) => Err(Error::bad_json(format!("not canonical JSON: {e}"))),
    }
}

/// Checks a key response of `server` and returns its keys with validity capped at
/// `fetched_at + 7 days`, and its own `valid_until_ts`. The response must name `server`,
/// list at least one verify key, and carry a good signature of `server` by those keys.
pub fn check_key_response(
    server: &ServerName,
    response: &Value,
    fetched_at: i64,
) -> Result<(Vec<ServerKey>, i64), String> {
    let named = response.get("server_name").and_then(Value::as_str);
    if named != Some(server.as_str()) {
        return Err(format!(
            "the key response names server {named:?}, not {server}"
        ));
    }
    let valid_until_ts = response
        .get("valid_until_ts")
        .and_then(Value::as_i64)
        .ok_or("the key response has no valid_until_ts")?;
    let capped = valid_until_ts.min(fetched_at.saturating_add(MAX_VALIDITY_MS));
    let mut keys = Vec::new();
    let mut public_keys = BTreeMap::new();
    if let Some(verify_keys) = response.get("verify_keys").and_then(Value::as_object) {
        for (key_id, key) in verify_keys {
            let Some(public_key) = key.get("key").and_then(Value::as_str) else {
                return Err(format!("verify key {key_id} has no key"));
            };
            let decoded = Base64::parse(public_key)
                .map_err(|e| format!("verify key {key_id} is not base64: {e}"))?;
            public_keys.insert(key_id.clone(), decoded);
            keys.push(ServerKey {
                key_id: key_id.clone(),
                public_key: public_key.to_owned(),
                valid_until_ts: capped,
                expired_ts: None,
            });
        }
    }
    if keys.is_empty() {
        return Err("the key response lists no verify keys".to_owned());
    }
    if let Some(old) = response.get("old_verify_keys").and_then(Value::as_object) {
        for (key_id, key) in old {
            let (Some(public_key), Some(expired_ts)) = (
                key.get("key").and_then(Value::as_str),
                key.get("expired_ts").and_then(Value::as_i64),
            ) else {
                continue;
            };
            keys.push(ServerKey {
                key_id: key_id.clone(),
                public_key: public_key.to_owned(),
                valid_until_ts: expired_ts,
                expired_ts: Some(expired_ts),
            });
        }
    }
    // Only the server's own signatures count here; a notary's are checked by whoever asked it.
    let mut object = to_object(response.clone()).map_err(|e| e.to_string())?;
    let own_signatures = object
        .get("signatures")
        .and_then(|s| match s {
            CanonicalJsonValue::Object(map) => map.get(server.as_str()).cloned(),
            _ => None,
        })
        .ok_or("the key response is not signed by its server")?;
    object.insert(
        "signatures".to_owned(),
        CanonicalJsonValue::Object(CanonicalJsonObject::from([(
            server.as_str().to_owned(),
            own_signatures,
        )])),
    );
    let map: PublicKeyMap = BTreeMap::from([(server.as_str().to_owned(), public_keys)]);
    verify_json(&map, &object).map_err(|e| format!("the key response's signature: {e}"))?;
    Ok((keys, valid_until_ts))
}

impl Federation {
    /// Our key response, signed by ourselves (spec: "Publishing Keys").
    pub fn own_key_response(&self) -> Result<CanonicalJsonObject> {
        let identity = &self.inner.identity;
        let key_id = format!("ed25519:{}", identity.signing_key.version());
        let public = base64::engine::general_purpose::STANDARD_NO_PAD
            .encode(identity.signing_key.public_key());
        let body = serde_json::json!({
            "server_name": identity.server_name,
            "verify_keys": { key_id: { "key": public } },
            "old_verify_keys": {},
            "valid_until_ts": now_ms() + OWN_VALIDITY_MS,
        });
        let mut object = to_object(body)?;
        sign_json(
            identity.server_name.as_str(),
            &identity.signing_key,
            &mut object,
        )
        .map_err(Error::internal)?;
        Ok(object)
    }

    /// The public key `key_id` of `server`, valid at `at_ts` (ms), fetching the server's keys
    /// if we do not hold one. For request signatures `at_ts` is now.
    pub async fn verify_key(
        &self,
        server: &ServerName,
        key_id: &str,
        at_ts: i64,
    ) -> Result<Base64> {
        if server == self.server_name() {
            let identity = &self.inner.identity;
            if key_id == format!("ed25519:{}", identity.signing_key.version()) {
                return Ok(Base64::new(identity.signing_key.public_key().to_vec()));
            }
            return Err(unknown_key(server, key_id, "it is not our key"));
        }
        if let Some(key) = self.stored_key(server, key_id, at_ts).await? {
            return Ok(key);
        }
        let lock = self.inner.key_fetches.locks.lock_for(server.as_str());
        let _guard = lock.lock().await;
        // Another request may have fetched them while this one waited.
        if let Some(key) = self.stored_key(server, key_id, at_ts).await? {
            return Ok(key);
        }
        if let Some(why) = self.inner.key_fetches.recent_failure(server.as_str()) {
            return Err(unknown_key(server, key_id, &why));
        }
        if let Err(e) = self.fetch_keys(server).await {
            let why = e.to_string();
            self.inner.key_fetches.record_failure(server.as_str(), &why);
            return Err(unknown_key(server, key_id, &why));
        }
        self.inner.key_fetches.clear_failure(server.as_str());
        self.stored_key(server, key_id, at_ts)
            .await?
            .ok_or_else(|| unknown_key(server, key_id, "the server does not publish it"))
    }

    async fn stored_key(
        &self,
        server: &ServerName,
        key_id: &str,
        at_ts: i64,
    ) -> Result<Option<Base64>> {
        let fetches = &self.inner.key_fetches;
        if let Some(key) = fetches.cached(server.as_str(), key_id, at_ts) {
            return Ok(Some(key));
        }
        let keys = self
            .inner
            .store
            .server_keys()
            .keys_of(server.as_str())
            .await?;
        let Some((key, valid_until)) = keys
            .into_iter()
            .find(|k| k.key_id == key_id && k.valid_until_ts >= at_ts)
            .and_then(|k| Some((Base64::parse(&k.public_key).ok()?, k.valid_until_ts)))
        else {
            return Ok(None);
        };
        fetches.remember(server.as_str(), key_id, &key, valid_until);
        Ok(Some(key))
    }

    /// Fetches `server`'s keys from the server itself, checks them and stores them.
    async fn fetch_keys(&self, server: &ServerName) -> Result<KeyResponse> {
        let fetched_at = now_ms();
        let response = self
            .request(
                server,
                Method::GET,
                "/_matrix/key/v2/server",
                &[],
                None,
                false,
            )
            .await?;
        let (keys, valid_until_ts) = check_key_response(server, &response, fetched_at)
            .map_err(|why| Error::new(ErrorKind::BadGateway, why))?;
        let record = KeyResponse {
            response: serde_json::to_string(&response)?,
            valid_until_ts,
        };
        self.inner
            .store
            .server_keys()
            .record(server.as_str(), record.clone(), keys)
            .await?;
        self.inner.key_fetches.forget(server.as_str());
        tracing::debug!(%server, "fetched and stored server keys");
        Ok(record)
    }

    /// Notary: `server`'s key response valid at least until `minimum_valid_until_ts`,
    /// countersigned by us (spec: "Querying Keys Through Another Server"). Ours is served
    /// directly. A response is fetched again when the stored one is too old; if that fails,
    /// the stored one is still returned (the asker judges it) and an unknown server gets
    /// an empty list.
    pub async fn notary_keys(
        &self,
        server: &ServerName,
        minimum_valid_until_ts: i64,
    ) -> Result<Vec<CanonicalJsonObject>> {
        if server == self.server_name() {
            return Ok(vec![self.own_key_response()?]);
        }
        let stored = self
            .inner
            .store
            .server_keys()
            .response_of(server.as_str())
            .await?;
        let fresh_enough = stored
            .as_ref()
            .is_some_and(|r| r.valid_until_ts >= minimum_valid_until_ts.max(now_ms()));
        let response = if fresh_enough {
            stored
        } else {
            match self.fetch_keys(server).await {
                Ok(fetched) => Some(fetched),
                Err(e) => {
                    tracing::info!(%server, error = %e, "notary: cannot fetch keys");
                    stored
                }
            }
        };
        let Some(response) = response else {
            return Ok(Vec::new());
        };
        let mut object = to_object(serde_json::from_str(&response.response)?)?;
        let identity = &self.inner.identity;
        sign_json(
            identity.server_name.as_str(),
            &identity.signing_key,
            &mut object,
        )
        .map_err(Error::internal)?;
        Ok(vec![object])
    }
}

fn unknown_key(server: &ServerName, key_id: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::Unauthorized,
        format!("Cannot verify with key {key_id} of {server}: {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::signatures::Ed25519KeyPair;

    /// The largest integer canonical JSON allows (appendix "Canonical JSON").
    const FAR_FUTURE: i64 = 9_007_199_254_740_991;

    fn signed_response(server: &str, valid_until_ts: i64) -> (Value, Ed25519KeyPair) {
        let document = Ed25519KeyPair::generate();
        let key = Ed25519KeyPair::from_der(&document, "k1".to_owned()).expect("key");
        let public = base64::engine::general_purpose::STANDARD_NO_PAD.encode(key.public_key());
        let mut object = to_object(serde_json::json!({
            "server_name": server,
            "verify_keys": { "ed25519:k1": { "key": public } },
            "old_verify_keys": { "ed25519:old": { "key": public, "expired_ts": 5 } },
            "valid_until_ts": valid_until_ts,
        }))
        .expect("object");
        sign_json(server, &key, &mut object).expect("sign");
        (serde_json::to_value(object).expect("json"), key)
    }

    #[test]
    fn a_good_key_response_is_accepted_with_validity_capped_at_seven_days() {
        let server = ServerName::parse("remote.example").expect("name");
        let (response, _) = signed_response("remote.example", FAR_FUTURE);
        let (keys, valid_until) = check_key_response(&server, &response, 1000).expect("good");
        assert_eq!(valid_until, FAR_FUTURE);
        let current = keys.iter().find(|k| k.key_id == "ed25519:k1").expect("k1");
        assert_eq!(current.valid_until_ts, 1000 + MAX_VALIDITY_MS);
        let old = keys
            .iter()
            .find(|k| k.key_id == "ed25519:old")
            .expect("old");
        assert_eq!(old.expired_ts, Some(5));
    }

    #[test]
    fn forged_or_misnamed_key_responses_are_refused() {
        let server = ServerName::parse("remote.example").expect("name");
        let (mut response, _) = signed_response("remote.example", FAR_FUTURE);
        response["valid_until_ts"] = Value::from(1);
        let error = check_key_response(&server, &response, 0).expect_err("tampered");
        assert!(error.contains("signature"), "{error}");

        let (response, _) = signed_response("other.example", FAR_FUTURE);
        let error = check_key_response(&server, &response, 0).expect_err("wrong server");
        assert!(error.contains("other.example"), "{error}");

        let (mut response, _) = signed_response("remote.example", FAR_FUTURE);
        response["signatures"] = serde_json::json!({});
        assert!(check_key_response(&server, &response, 0).is_err());
    }
}
