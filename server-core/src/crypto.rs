//! Secrets: the server's signing key, random tokens, and password hashes.
//!
//! A leaf module. Sans-I/O except for [`load_or_create_signing_key`], which owns the key
//! file's format and permissions.

use std::{io::Write, path::Path};

use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
};
use base64::Engine;
use rand::{Rng, distr::Alphanumeric};
use ruma::signatures::Ed25519KeyPair;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Reads the signing key at `path`, or creates it (owner-only permissions) when absent.
///
/// The file holds one line, `ed25519 <version> <base64 PKCS#8>`. The key never changes once
/// made: remote servers cache it, and events we signed must stay verifiable.
pub fn load_or_create_signing_key(path: &Path) -> Result<Ed25519KeyPair> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_signing_key(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let document = Ed25519KeyPair::generate();
            let version: String = rand::rng()
                .sample_iter(&Alphanumeric)
                .take(6)
                .map(char::from)
                .collect();
            let line = format!(
                "ed25519 a_{version} {}\n",
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(&document[..])
            );
            write_private_file(path, line.as_bytes())?;
            parse_signing_key(&line)
        }
        Err(e) => Err(e.into()),
    }
}

fn parse_signing_key(text: &str) -> Result<Ed25519KeyPair> {
    let mut parts = text.split_whitespace();
    let (Some("ed25519"), Some(version), Some(encoded)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::internal(
            "signing key file is not `ed25519 <version> <key>`",
        ));
    };
    let document = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .map_err(|e| Error::internal(format!("signing key is not base64: {e}")))?;
    Ed25519KeyPair::from_der(&document, version.to_owned())
        .map_err(|e| Error::internal(format!("signing key: {e}")))
}

/// A certificate chain and its private key, both PEM.
#[derive(Clone)]
pub struct TlsIdentity {
    /// The certificate (chain), PEM.
    pub cert_pem: String,
    /// The private key, PEM.
    pub key_pem: String,
}

/// Reads the self-signed federation certificate at `cert_path`/`key_path`, or makes one
/// (rcgen, ECDSA P-256) for `host` when absent. The key file is 0600.
///
/// Other servers on the public network do not accept a self-signed certificate; it is for
/// LAN-only servers, tests and private federations until a real certificate is configured.
pub fn load_or_create_self_signed(
    cert_path: &Path,
    key_path: &Path,
    host: &str,
) -> Result<TlsIdentity> {
    if let (Ok(cert_pem), Ok(key_pem)) = (
        std::fs::read_to_string(cert_path),
        std::fs::read_to_string(key_path),
    ) {
        return Ok(TlsIdentity { cert_pem, key_pem });
    }
    let generated = rcgen::generate_simple_self_signed(vec![host.to_owned()])
        .map_err(|e| Error::internal(format!("cannot make a TLS certificate: {e}")))?;
    let identity = TlsIdentity {
        cert_pem: generated.cert.pem(),
        key_pem: generated.signing_key.serialize_pem(),
    };
    write_private_file(key_path, identity.key_pem.as_bytes())?;
    write_private_file(cert_path, identity.cert_pem.as_bytes())?;
    Ok(identity)
}

/// Writes a file only its owner may read (0600 on Unix), creating parent directories.
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    // An existing file keeps its mode when opened: make it private too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

/// A random token of `len` alphanumeric characters (access tokens, session ids, device ids).
pub fn random_string(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// How strong a password is: a rough estimate of how many guesses it would take, for the
/// wizard's strength meter and the check on passwords that admins set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct PasswordStrength {
    /// 0 (guessed at once) to 4 (very strong).
    pub score: u8,
    /// "very weak", "weak", "fair", "strong" or "very strong".
    pub label: String,
    /// Whether Kith accepts it for an account an admin makes (score 2 or more).
    pub acceptable: bool,
    /// What would make it stronger, in plain words.
    pub suggestions: Vec<String>,
}

/// Passwords tried first by anyone guessing; a password made of one of these (with digits
/// or symbols around it) is weak whatever its length.
const COMMON_PASSWORDS: [&str; 32] = [
    "password",
    "passwort",
    "motdepasse",
    "123456",
    "12345678",
    "123456789",
    "qwerty",
    "qwertz",
    "azerty",
    "abc123",
    "letmein",
    "welcome",
    "admin",
    "iloveyou",
    "monkey",
    "dragon",
    "football",
    "baseball",
    "sunshine",
    "princess",
    "master",
    "shadow",
    "secret",
    "matrix",
    "element",
    "homeserver",
    "kith",
    "family",
    "trustno1",
    "starwars",
    "hello",
    "changeme",
];

/// Estimates the strength of `password`; `personal` are words the user is known by (user
/// name, server name), which make a password weak when it is built on them.
pub fn password_strength(password: &str, personal: &[&str]) -> PasswordStrength {
    let mut suggestions = Vec::new();
    let chars: Vec<char> = password.chars().collect();
    let lower = password.to_lowercase();
    // The alphabet a guesser must try: the kinds of character used.
    let mut alphabet = 0u32;
    if chars.iter().any(char::is_ascii_lowercase) {
        alphabet += 26;
    }
    if chars.iter().any(char::is_ascii_uppercase) {
        alphabet += 26;
    }
    if chars.iter().any(char::is_ascii_digit) {
        alphabet += 10;
    }
    if chars.iter().any(|c| c.is_ascii_punctuation() || *c == ' ') {
        alphabet += 33;
    }
    if chars.iter().any(|c| !c.is_ascii()) {
        alphabet += 100;
    }
    // Repeats and runs ("aaaa", "1234", "abcd") add almost nothing: count each as one.
    let mut effective = 0usize;
    for (i, c) in chars.iter().enumerate() {
        let repeat = i > 0 && chars[i - 1] == *c;
        let run = i > 0 && (*c as i64 - chars[i - 1] as i64).abs() == 1;
        if !(repeat || run) {
            effective += 1;
        }
    }
    if effective * 2 < chars.len() {
        suggestions.push("Avoid repeated characters and runs like 1234 or abcd.".to_owned());
    }
    let stripped: String = lower.chars().filter(|c| c.is_alphabetic()).collect();
    let common = COMMON_PASSWORDS
        .iter()
        .any(|word| lower.contains(word) && (stripped.len() <= word.len() + 2));
    // A personal word is guessed as one piece, not letter by letter.
    let personal_word = personal
        .iter()
        .map(|word| word.to_lowercase())
        .filter(|word| word.chars().count() >= 3 && lower.contains(word.as_str()))
        .map(|word| word.chars().count())
        .max();
    if let Some(length) = personal_word {
        effective = effective.saturating_sub(length - 1);
    }
    let mut bits = effective as f64 * f64::from(alphabet.max(1)).log2();
    if common {
        bits = bits.min(10.0);
        suggestions.push("It is built on a password that guessers try first.".to_owned());
    }
    if personal_word.is_some() {
        suggestions.push("Do not build it on your user or server name.".to_owned());
    }
    if chars.len() < 12 {
        suggestions.push(
            "Use at least 12 characters; a few unrelated words are easy to remember.".to_owned(),
        );
    }
    let score: u8 = match bits {
        b if b < 28.0 => 0,
        b if b < 40.0 => 1,
        b if b < 55.0 => 2,
        b if b < 75.0 => 3,
        _ => 4,
    };
    let label = ["very weak", "weak", "fair", "strong", "very strong"][usize::from(score)];
    PasswordStrength {
        score,
        label: label.to_owned(),
        acceptable: score >= 2,
        suggestions,
    }
}

/// Whether two secrets are equal, taking the same time wherever they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The form in which tokens are stored: a SHA-256, hex encoded. A leaked database then
/// holds no usable token.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hashes a password with argon2id and a random salt (PHC string format).
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(Error::internal)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(Error::internal)
}

/// Whether `password` matches the stored argon2 `hash`. A malformed hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Whether `object` carries a valid ed25519 signature by `signer` with the key `key_id`
/// whose public key is `public_key` (unpadded base64). Other signatures and `unsigned` do
/// not count (spec: appendices.md, "Checking for a signature"). Never panics on bad input.
pub fn verify_signature(
    object: &serde_json::Value,
    signer: &str,
    key_id: &str,
    public_key: &str,
) -> bool {
    let Some(map) = object.as_object() else {
        return false;
    };
    let Some(signature) = map
        .get("signatures")
        .and_then(|s| s.get(signer))
        .and_then(|s| s.get(key_id))
        .cloned()
    else {
        return false;
    };
    let mut only_this = map.clone();
    only_this.insert(
        "signatures".to_owned(),
        serde_json::json!({ signer: { key_id: signature } }),
    );
    let Ok(ruma::CanonicalJsonValue::Object(canonical)) =
        ruma::CanonicalJsonValue::try_from(serde_json::Value::Object(only_this))
    else {
        return false;
    };
    let Ok(key) = ruma::serde::Base64::parse(public_key) else {
        return false;
    };
    let keys = std::collections::BTreeMap::from([(
        signer.to_owned(),
        std::collections::BTreeMap::from([(key_id.to_owned(), key)]),
    )]);
    ruma::signatures::verify_json(&keys, &canonical).is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn password_strength_grows_with_length_and_kinds_and_falls_for_common_or_personal_words() {
        assert_eq!(super::password_strength("", &[]).score, 0);
        assert!(!super::password_strength("password123", &[]).acceptable);
        assert!(!super::password_strength("aaaaaaaaaaaaaaaa", &[]).acceptable);
        assert!(!super::password_strength("1234567890123", &[]).acceptable);
        assert!(!super::password_strength("alice2026!", &["alice"]).acceptable);
        let fair = super::password_strength("Tr0mbone-Lamp", &["alice"]);
        assert!(fair.acceptable, "{fair:?}");
        let strong = super::password_strength("correct horse battery staple", &["alice"]);
        assert!(strong.score >= 3, "{strong:?}");
        assert!(strong.suggestions.is_empty(), "{strong:?}");
    }

    use super::*;

    #[test]
    fn signing_key_is_created_once_with_owner_only_permissions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys/signing.key");
        let first = load_or_create_signing_key(&path).expect("created");
        let second = load_or_create_signing_key(&path).expect("loaded");
        assert_eq!(first.public_key(), second.public_key());
        assert_eq!(first.version(), second.version());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn passwords_verify_only_against_their_own_hash() {
        let hash = hash_password("correct horse").expect("hashed");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn token_hash_is_stable_hex() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn signatures_verify_only_with_the_right_key_and_content() {
        use ruma::signatures::{Ed25519KeyPair, sign_json};
        let der = Ed25519KeyPair::generate();
        let probe = Ed25519KeyPair::from_der(&der, "x".to_owned()).expect("parse");
        let public = base64::engine::general_purpose::STANDARD_NO_PAD.encode(probe.public_key());
        // Cross-signing key IDs carry the public key itself, with `+` and `/`.
        let pair = Ed25519KeyPair::from_der(&der, public.clone()).expect("parse");
        let mut object = ruma::canonical_json::to_canonical_value(serde_json::json!({
            "user_id": "@a:x", "usage": ["self_signing"], "unsigned": { "ignored": 1 }
        }))
        .expect("canonical");
        let ruma::CanonicalJsonValue::Object(ref mut map) = object else {
            panic!("object")
        };
        sign_json("@a:x", &pair, map).expect("sign");
        let signed = serde_json::to_value(&*map).expect("json");
        let key_id = format!("ed25519:{public}");
        assert!(verify_signature(&signed, "@a:x", &key_id, &public));
        assert!(!verify_signature(&signed, "@b:x", &key_id, &public));
        let other =
            Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), "y".to_owned()).expect("parse");
        let other_public =
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(other.public_key());
        assert!(!verify_signature(&signed, "@a:x", &key_id, &other_public));
        let mut tampered = signed.clone();
        tampered["usage"] = serde_json::json!(["master"]);
        assert!(!verify_signature(&tampered, "@a:x", &key_id, &public));
        assert!(!verify_signature(
            &serde_json::json!("text"),
            "@a:x",
            &key_id,
            &public
        ));
        assert!(!verify_signature(&signed, "@a:x", &key_id, "not base64!"));
    }

    /// The test vectors of the spec's appendix (spec: appendices.md, "Canonical JSON" examples
    /// and "Cryptographic Test Vectors"), run through the same ruma calls the server uses.
    mod spec_vectors {
        use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
        use ruma::{
            CanonicalJsonObject, CanonicalJsonValue,
            room_version_rules::RedactionRules,
            signatures::{Ed25519KeyPair, hash_and_sign_event, sign_json},
        };
        use serde_json::{Value, json};

        use super::*;

        fn canonical(value: Value) -> CanonicalJsonObject {
            match CanonicalJsonValue::try_from(value).expect("canonical") {
                CanonicalJsonValue::Object(object) => object,
                other => panic!("not an object: {other:?}"),
            }
        }

        /// The appendix's key: `ed25519:1` from the seed `YJDBA9…XA1`.
        fn key() -> Ed25519KeyPair {
            // The seed's last base64 digit carries non-zero trailing bits, so decode leniently.
            let lenient = GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                GeneralPurposeConfig::new()
                    .with_decode_allow_trailing_bits(true)
                    .with_decode_padding_mode(DecodePaddingMode::Indifferent),
            );
            let seed = lenient
                .decode("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
                .expect("seed");
            // PKCS#8 v1 wrapping of a raw Ed25519 seed (RFC 8410).
            let mut der = vec![
                0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
                0x04, 0x20,
            ];
            der.extend_from_slice(&seed);
            Ed25519KeyPair::from_der(&der, "1".to_owned()).expect("key")
        }

        #[test]
        fn canonical_json_examples() {
            let cases = [
                (json!({}), r#"{}"#),
                (json!({"one": 1, "two": "Two"}), r#"{"one":1,"two":"Two"}"#),
                (json!({"b": "2", "a": "1"}), r#"{"a":"1","b":"2"}"#),
                (
                    json!({"auth": {"success": true, "mxid": "@john.doe:example.com",
                        "profile": {"display_name": "John Doe", "three_pids": [
                            {"medium": "email", "address": "john.doe@example.org"},
                            {"medium": "msisdn", "address": "123456789"}]}}}),
                    r#"{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}"#,
                ),
                (json!({"a": "日本語"}), r#"{"a":"日本語"}"#),
                (json!({"本": 2, "日": 1}), r#"{"日":1,"本":2}"#),
                (json!({"a": "\u{65E5}"}), r#"{"a":"日"}"#),
                (json!({"a": null}), r#"{"a":null}"#),
                (json!({"a": -0}), r#"{"a":0}"#),
                (
                    json!({"a": "\u{1F}\u{7}\u{8}\u{C}\n\r\t\"\\"}),
                    r#"{"a":"\u001f\u0007\b\f\n\r\t\"\\"}"#,
                ),
            ];
            for (input, expected) in cases {
                let text = serde_json::to_string(&canonical(input.clone())).expect("serialise");
                assert_eq!(text, expected, "canonical form of {input}");
            }
        }

        #[test]
        fn json_signing_vectors() {
            let mut empty = canonical(json!({}));
            sign_json("domain", &key(), &mut empty).expect("signed");
            assert_eq!(
                serde_json::to_value(&empty).expect("value"),
                json!({"signatures": {"domain": {"ed25519:1":
                    "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"}}})
            );
            let mut data = canonical(json!({"one": 1, "two": "Two"}));
            sign_json("domain", &key(), &mut data).expect("signed");
            assert_eq!(
                serde_json::to_value(&data).expect("value"),
                json!({"one": 1, "two": "Two", "signatures": {"domain": {"ed25519:1":
                    "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"}}})
            );
        }

        #[test]
        fn event_signing_vectors() {
            let mut event = canonical(json!({
                "room_id": "!x:domain",
                "sender": "@a:domain",
                "origin": "domain",
                "origin_server_ts": 1000000,
                "signatures": {},
                "hashes": {},
                "type": "X",
                "content": {},
                "prev_events": [],
                "auth_events": [],
                "depth": 3,
                "unsigned": {"age_ts": 1000000}
            }));
            hash_and_sign_event("domain", &key(), &mut event, &RedactionRules::V1).expect("signed");
            let event = serde_json::to_value(&event).expect("value");
            assert_eq!(
                event["hashes"]["sha256"],
                "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"
            );
            assert_eq!(
                event["signatures"]["domain"]["ed25519:1"],
                "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"
            );

            // An event with content that redaction strips: the hash covers the content, the
            // signature only what redaction keeps.
            let mut message = canonical(json!({
                "content": {"body": "Here is the message content"},
                "event_id": "$0:domain",
                "origin": "domain",
                "origin_server_ts": 1000000,
                "type": "m.room.message",
                "room_id": "!r:domain",
                "sender": "@u:domain",
                "signatures": {},
                "unsigned": {"age_ts": 1000000}
            }));
            hash_and_sign_event("domain", &key(), &mut message, &RedactionRules::V1)
                .expect("signed");
            let message = serde_json::to_value(&message).expect("value");
            assert_eq!(
                message["hashes"]["sha256"],
                "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"
            );
            assert_eq!(
                message["signatures"]["domain"]["ed25519:1"],
                "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"
            );
            assert_eq!(message["content"]["body"], "Here is the message content");
        }
    }
}
