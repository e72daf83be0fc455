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

#[cfg(test)]
mod tests {
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
}
