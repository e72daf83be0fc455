//! The checks of a `GET /_matrix/key/v2/server` answer (spec: server-server-api.md,
//! "Publishing Keys"): it names the server checked, `valid_until_ts` is in the future (and,
//! as the spec asks, at most 7 days away), it lists an ed25519 key, each key's signature
//! verifies, and it is served as `application/json`.

use std::collections::BTreeMap;

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue,
    serde::Base64,
    signatures::{PublicKeyMap, verify_json},
};
use serde_json::Value;

use super::report::{ConnectionChecks, Ed25519Checks};

/// Seven days in milliseconds: how long other servers keep a key response at most.
const SEVEN_DAYS_MS: i64 = 7 * 24 * 3600 * 1000;

/// What the key checks found: the checks, the keys that passed, and the failures (message
/// and fix) and warnings.
#[derive(Debug, Default)]
pub struct KeyFindings {
    /// The checks (the certificate's are not set here).
    pub checks: ConnectionChecks,
    /// Keys with a good signature, by key ID.
    pub verified: BTreeMap<String, String>,
    /// The parsed response.
    pub keys: Option<Value>,
    /// What stops federation: message and fix.
    pub problems: Vec<(String, String)>,
    /// What should be fixed: message and fix.
    pub warnings: Vec<(String, String)>,
}

/// Checks a key response of `server_name` fetched at `now_ms`.
pub fn check(
    server_name: &str,
    body: &[u8],
    content_type: Option<&str>,
    now_ms: i64,
) -> KeyFindings {
    let mut found = KeyFindings::default();
    let essence = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    found.checks.json_content_type = essence.as_deref() == Some("application/json");
    if !found.checks.json_content_type {
        found.problems.push((
            format!(
                "the key response is served as {}, not application/json; Synapse refuses it",
                content_type.unwrap_or("(no Content-Type)")
            ),
            "serve /_matrix/key/v2/server with `Content-Type: application/json` (a reverse \
             proxy or web server in front of the homeserver may be rewriting it)"
                .to_owned(),
        ));
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(value @ Value::Object(_)) => value,
        Ok(_) | Err(_) => {
            found.problems.push((
                "the key response is not a JSON object".to_owned(),
                "make sure this address reaches the homeserver, not another web server".to_owned(),
            ));
            return found;
        }
    };
    found.keys = Some(value.clone());

    let named = value.get("server_name").and_then(Value::as_str);
    found.checks.matching_server_name = named == Some(server_name);
    if !found.checks.matching_server_name {
        found.problems.push((
            format!(
                "the server here says it is {}, not {server_name}",
                named.map_or("nobody".to_owned(), |n| format!("`{n}`"))
            ),
            format!(
                "set `server_name = \"{server_name}\"` in this homeserver's config, or point \
                 {server_name}'s delegation (well-known or SRV) at the server that is \
                 {server_name}"
            ),
        ));
    }

    let valid_until = value.get("valid_until_ts").and_then(Value::as_i64);
    found.checks.future_valid_until_ts = valid_until.is_some_and(|ts| ts > now_ms);
    found.checks.valid_until_within_7_days =
        valid_until.is_some_and(|ts| ts <= now_ms.saturating_add(SEVEN_DAYS_MS));
    if !found.checks.future_valid_until_ts {
        found.problems.push((
            match valid_until {
                Some(ts) => format!(
                    "the keys' valid_until_ts is {} minutes in the past",
                    now_ms.saturating_sub(ts) / 60_000
                ),
                None => "the key response has no valid_until_ts".to_owned(),
            },
            "check the server's clock; a homeserver always publishes keys valid into the \
             future, so a stale answer may come from a cache in front of it"
                .to_owned(),
        ));
    } else if !found.checks.valid_until_within_7_days {
        found.warnings.push((
            "the keys' valid_until_ts is more than 7 days away; other servers keep them for \
             7 days at most (spec: \"Publishing Keys\")"
                .to_owned(),
            "publish a valid_until_ts at most 7 days ahead".to_owned(),
        ));
    }

    let verify_keys = value
        .get("verify_keys")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let signatures = value
        .get("signatures")
        .and_then(|s| s.get(server_name))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let object = match CanonicalJsonValue::try_from(value.clone()) {
        Ok(CanonicalJsonValue::Object(object)) => Some(object),
        Ok(_) => None,
        Err(e) => {
            found.problems.push((
                format!("the key response is not canonical JSON ({e}), so no signature on it can be checked"),
                "the homeserver must publish integers within the canonical JSON range and no \
                 floating-point numbers (appendix \"Canonical JSON\")"
                    .to_owned(),
            ));
            None
        }
    };
    for (key_id, key) in &verify_keys {
        if !key_id.starts_with("ed25519:") {
            continue;
        }
        found.checks.has_ed25519_key = true;
        let public = key.get("key").and_then(Value::as_str);
        let decoded = public.and_then(|k| Base64::parse(k).ok());
        let valid = decoded.as_ref().is_some_and(|k| k.as_bytes().len() == 32);
        let signed = match (&object, &decoded, signatures.get(key_id)) {
            (Some(object), Some(decoded), Some(_)) if valid => {
                signature_verifies(object, server_name, key_id, decoded)
            }
            _ => false,
        };
        found.checks.ed25519_checks.insert(
            key_id.clone(),
            Ed25519Checks {
                valid_ed25519: valid,
                matching_signature: signed,
            },
        );
        if valid && signed {
            found
                .verified
                .insert(key_id.clone(), public.unwrap_or_default().to_owned());
        } else if object.is_none() {
            // Already reported: not canonical JSON.
        } else if !valid {
            found.problems.push((
                format!("key {key_id} is not a 32-byte base64 ed25519 key"),
                "the homeserver's signing key file is damaged; restore it from a backup".to_owned(),
            ));
        } else {
            found.problems.push((
                format!("the key response carries no good signature by its key {key_id}"),
                "the response was signed with another key than the one it lists: something \
                 between the homeserver and the internet is serving an old or foreign key \
                 response, or the homeserver's signing key was replaced while a cache kept \
                 the old answer"
                    .to_owned(),
            ));
        }
    }
    if !found.checks.has_ed25519_key {
        found.problems.push((
            "the key response lists no ed25519 key".to_owned(),
            "make sure this address reaches the homeserver, not another web server".to_owned(),
        ));
    }
    let ed25519: Vec<_> = found.checks.ed25519_checks.values().collect();
    found.checks.all_ed25519_checks_ok = (!ed25519.is_empty()).then(|| {
        ed25519
            .iter()
            .all(|c| c.valid_ed25519 && c.matching_signature)
    });
    found.checks.all_checks_ok = found.checks.matching_server_name
        && found.checks.future_valid_until_ts
        && found.checks.has_ed25519_key
        && found.checks.all_ed25519_checks_ok == Some(true)
        && found.checks.json_content_type;
    found
}

/// Whether `object` carries a good signature of `server_name` by `key_id`, alone.
fn signature_verifies(
    object: &CanonicalJsonObject,
    server_name: &str,
    key_id: &str,
    key: &Base64,
) -> bool {
    let mut object = object.clone();
    let Some(CanonicalJsonValue::Object(all)) = object.get("signatures") else {
        return false;
    };
    let Some(CanonicalJsonValue::Object(own)) = all.get(server_name) else {
        return false;
    };
    let Some(signature) = own.get(key_id).cloned() else {
        return false;
    };
    let only = CanonicalJsonObject::from([(key_id.to_owned(), signature)]);
    object.insert(
        "signatures".to_owned(),
        CanonicalJsonValue::Object(CanonicalJsonObject::from([(
            server_name.to_owned(),
            CanonicalJsonValue::Object(only),
        )])),
    );
    let map: PublicKeyMap = BTreeMap::from([(
        server_name.to_owned(),
        BTreeMap::from([(key_id.to_owned(), key.clone())]),
    )]);
    verify_json(&map, &object).is_ok()
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use ruma::signatures::{Ed25519KeyPair, sign_json};
    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn key_pair(version: &str) -> Ed25519KeyPair {
        let der = Ed25519KeyPair::generate();
        Ed25519KeyPair::from_der(&der, version.to_owned()).expect("a key pair")
    }

    fn signed(server: &str, signer: &Ed25519KeyPair, listed: &Ed25519KeyPair) -> Vec<u8> {
        let public = base64::engine::general_purpose::STANDARD_NO_PAD.encode(listed.public_key());
        let mut object = match CanonicalJsonValue::try_from(json!({
            "server_name": server,
            "valid_until_ts": NOW + 3_600_000,
            "verify_keys": { format!("ed25519:{}", listed.version()): { "key": public } },
            "old_verify_keys": {},
        })) {
            Ok(CanonicalJsonValue::Object(object)) => object,
            _ => panic!("an object"),
        };
        sign_json(server, signer, &mut object).expect("signs");
        serde_json::to_vec(&object).expect("serialises")
    }

    #[test]
    fn a_good_key_response_passes_every_check() {
        let key = key_pair("a");
        let found = check(
            "example.org",
            &signed("example.org", &key, &key),
            Some("application/json"),
            NOW,
        );
        assert!(found.checks.all_checks_ok, "{found:?}");
        assert!(found.problems.is_empty() && found.warnings.is_empty());
        assert_eq!(found.verified.len(), 1);
    }

    #[test]
    fn a_response_signed_by_another_key_fails_with_its_reason() {
        let listed = key_pair("a");
        let other = key_pair("a");
        let found = check(
            "example.org",
            &signed("example.org", &other, &listed),
            Some("application/json"),
            NOW,
        );
        assert!(!found.checks.all_checks_ok);
        let checks = found.checks.ed25519_checks["ed25519:a"];
        assert!(checks.valid_ed25519 && !checks.matching_signature);
        assert!(
            found.problems[0]
                .0
                .contains("no good signature by its key ed25519:a")
        );
    }

    #[test]
    fn wrong_name_content_type_and_stale_keys_are_each_reported() {
        let key = key_pair("a");
        let body = signed("other.org", &key, &key);
        let found = check("example.org", &body, Some("text/plain"), NOW + 7_200_000);
        assert!(!found.checks.matching_server_name);
        assert!(!found.checks.json_content_type);
        assert!(!found.checks.future_valid_until_ts);
        let messages: Vec<&str> = found.problems.iter().map(|p| p.0.as_str()).collect();
        assert!(messages[0].contains("text/plain"), "{messages:?}");
        assert!(
            messages[1].contains("says it is `other.org`"),
            "{messages:?}"
        );
        assert!(messages[2].contains("minutes in the past"), "{messages:?}");
        // The signature is by other.org, so for example.org there is none.
        assert!(messages[3].contains("no good signature"), "{messages:?}");
    }

    #[test]
    fn a_web_page_instead_of_keys_is_not_a_key_response() {
        let found = check(
            "example.org",
            b"<html>It works!</html>",
            Some("text/html"),
            NOW,
        );
        assert!(!found.checks.all_checks_ok);
        assert!(
            found
                .problems
                .iter()
                .any(|p| p.0.contains("not a JSON object"))
        );
    }
}
