//! Accounts: registration, login, tokens, passwords, devices, profiles, deactivation.

use std::sync::Arc;

use ruma::{OwnedDeviceId, OwnedUserId, UserId};

use super::{ServerIdentity, notifier::Notifier, rate_limit::FailureLimiter};
use crate::{
    config::Config,
    crypto,
    error::{Error, ErrorKind, Result},
    storage::{Device, Store, User},
};

/// Devices just deleted, each with the stream position of the device list change that
/// records it: what [`crate::service::e2ee::E2ee::announce_removed`] tells other servers.
pub type RemovedDevices = Vec<(String, i64)>;

/// An authenticated request's user and device.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who.
    pub user_id: OwnedUserId,
    /// With which device.
    pub device_id: OwnedDeviceId,
    /// Whether the account may use the admin API.
    pub admin: bool,
}

/// The tokens handed to a client at login, registration or refresh.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    /// The user.
    pub user_id: OwnedUserId,
    /// The device.
    pub device_id: OwnedDeviceId,
    /// The access token.
    pub access_token: String,
    /// A refresh token, if the client asked for one.
    pub refresh_token: Option<String>,
    /// How long the access token lives, in ms, when it expires.
    pub expires_in_ms: Option<u64>,
}

/// What a new login asks for.
#[derive(Debug, Clone, Default)]
pub struct LoginRequest {
    /// Reuse this device ID (its old tokens are revoked), or make a new one.
    pub device_id: Option<String>,
    /// The new device's display name.
    pub initial_device_display_name: Option<String>,
    /// Whether the client supports refresh tokens.
    pub refresh_token: bool,
}

/// How long a client transaction ID is remembered (the spec sets no lifetime; Synapse
/// keeps them a day, a week covers clients that send a queue after days offline).
pub const TRANSACTION_ID_LIFETIME: std::time::Duration =
    std::time::Duration::from_secs(7 * 24 * 3600);

/// The accounts service. Cheap to clone.
#[derive(Clone)]
pub struct Users {
    config: Arc<Config>,
    identity: Arc<ServerIdentity>,
    store: Store,
    failed_logins: FailureLimiter,
    /// Device changes reach other users' syncs as device list updates.
    notifier: Notifier,
}

/// Checks a localpart against the spec's grammar (spec: appendices.md, "User Identifiers":
/// `a-z`, `0-9`, `.`, `_`, `=`, `-`, `/` and `+`; the whole ID at most 255 bytes).
pub fn validate_localpart(localpart: &str, server_name: &str) -> Result<()> {
    let valid_chars = localpart
        .bytes()
        .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+'));
    if localpart.is_empty() || !valid_chars {
        return Err(Error::new(
            ErrorKind::InvalidUsername,
            "User names may only contain lower-case letters, digits and . _ = - / +",
        ));
    }
    if localpart.len() + server_name.len() + 2 > 255 {
        return Err(Error::new(
            ErrorKind::InvalidUsername,
            "That user name is too long.",
        ));
    }
    Ok(())
}

impl Users {
    /// Forgets client transaction IDs older than [`TRANSACTION_ID_LIFETIME`] and those of
    /// deleted devices: a retry comes within minutes, or days for a client that queued
    /// its sends while offline. Returns how many went.
    pub async fn prune_transaction_ids(&self) -> Result<usize> {
        let lifetime = i64::try_from(TRANSACTION_ID_LIFETIME.as_millis()).unwrap_or(i64::MAX);
        self.store
            .users()
            .prune_transaction_ids(crate::storage::now_ms().saturating_sub(lifetime))
            .await
    }

    /// Builds the service.
    pub fn new(
        config: Arc<Config>,
        identity: Arc<ServerIdentity>,
        store: Store,
        notifier: Notifier,
    ) -> Self {
        let failed_logins = FailureLimiter::new(config.limits.failed_logins_per_minute);
        Self {
            config,
            identity,
            store,
            failed_logins,
            notifier,
        }
    }

    /// The full user ID for a localpart on this server.
    pub fn user_id(&self, localpart: &str) -> Result<OwnedUserId> {
        UserId::parse(format!("@{localpart}:{}", self.identity.server_name))
            .map_err(|_| Error::new(ErrorKind::InvalidUsername, "That is not a valid user name."))
    }

    /// Whether a user ID belongs to this server.
    pub fn is_local(&self, user_id: &UserId) -> bool {
        user_id.server_name() == self.identity.server_name
    }

    /// Whether a localpart is free for registration.
    pub async fn is_available(&self, localpart: &str) -> Result<bool> {
        validate_localpart(localpart, self.identity.server_name.as_str())?;
        Ok(!self.store.users().localpart_exists(localpart).await?)
    }

    /// Creates an account. `M_USER_IN_USE` when the name is taken.
    pub async fn create(
        &self,
        localpart: &str,
        password: Option<&str>,
        admin: bool,
    ) -> Result<OwnedUserId> {
        let localpart = localpart.to_lowercase();
        validate_localpart(&localpart, self.identity.server_name.as_str())?;
        let user_id = self.user_id(&localpart)?;
        let hash = password.map(crypto::hash_password).transpose()?;
        if !self
            .store
            .users()
            .create(user_id.as_str(), &localpart, hash, admin)
            .await?
        {
            return Err(Error::new(
                ErrorKind::UserInUse,
                "That user name is already taken.",
            ));
        }
        Ok(user_id)
    }

    /// A fresh localpart for clients that register without choosing one.
    pub async fn generate_localpart(&self) -> Result<String> {
        loop {
            let candidate = format!("user{}", crypto::random_string(8).to_lowercase());
            if !self.store.users().localpart_exists(&candidate).await? {
                return Ok(candidate);
            }
        }
    }

    /// Issues tokens for a new (or reused) device of `user_id`.
    pub async fn start_session(
        &self,
        user_id: &UserId,
        request: LoginRequest,
    ) -> Result<IssuedTokens> {
        let device_id = request
            .device_id
            .unwrap_or_else(|| crypto::random_string(10).to_uppercase());
        let access_token = format!("kith_{}", crypto::random_string(40));
        let (refresh_token, expires_in_ms, expires_ts) = if request.refresh_token {
            let lifetime_ms = self.config.limits.refreshable_token_lifetime_secs * 1000;
            let expires_ts =
                crate::storage::now_ms() + i64::try_from(lifetime_ms).unwrap_or(i64::MAX);
            (
                Some(format!("kithr_{}", crypto::random_string(40))),
                Some(lifetime_ms),
                Some(expires_ts),
            )
        } else {
            (None, None, None)
        };
        self.store
            .users()
            .create_session(
                user_id.as_str(),
                &device_id,
                request.initial_device_display_name,
                crypto::hash_token(&access_token),
                expires_ts,
                refresh_token.as_deref().map(crypto::hash_token),
            )
            .await?;
        Ok(IssuedTokens {
            user_id: user_id.to_owned(),
            device_id: device_id.into(),
            access_token,
            refresh_token,
            expires_in_ms,
        })
    }

    /// Checks a password login, rate limiting failures per account.
    ///
    /// Unknown users and wrong passwords get the same `M_FORBIDDEN`, so the answer does not
    /// reveal which accounts exist.
    pub async fn check_password(&self, user_id: &UserId, password: &str) -> Result<User> {
        if let Some(wait) = self.failed_logins.check(user_id.as_str()) {
            return Err(Error::limit_exceeded(wait));
        }
        let user = self.store.users().get(user_id.as_str()).await?;
        let hash = user.as_ref().and_then(|u| u.password_hash.clone());
        let password = password.to_owned();
        let matches = match hash {
            Some(hash) => {
                tokio::task::spawn_blocking(move || crypto::verify_password(&password, &hash))
                    .await
                    .map_err(Error::internal)?
            }
            None => false,
        };
        match user {
            Some(user) if matches && !user.deactivated => {
                self.failed_logins.reset(user_id.as_str());
                Ok(user)
            }
            Some(user) if user.deactivated => Err(Error::new(
                ErrorKind::UserDeactivated,
                "This account has been deactivated.",
            )),
            _ => {
                self.failed_logins.record_failure(user_id.as_str());
                Err(Error::forbidden("Invalid username or password."))
            }
        }
    }

    /// The session an access token stands for.
    pub async fn authenticate(&self, access_token: &str) -> Result<Session> {
        let unknown = || {
            Error::new(
                ErrorKind::UnknownToken { soft_logout: false },
                "Unknown access token.",
            )
        };
        let info = self
            .store
            .users()
            .token_owner(&crypto::hash_token(access_token))
            .await?
            .ok_or_else(unknown)?;
        if info
            .expires_ts
            .is_some_and(|ts| ts <= crate::storage::now_ms())
        {
            return Err(Error::new(
                ErrorKind::UnknownToken { soft_logout: true },
                "The access token has expired; refresh it.",
            ));
        }
        let user_id = UserId::parse(info.user_id).map_err(Error::internal)?;
        Ok(Session {
            user_id,
            device_id: info.device_id.into(),
            admin: info.admin,
        })
    }

    /// Swaps a refresh token for new tokens (spec: "POST /refresh").
    pub async fn refresh(&self, refresh_token: &str) -> Result<IssuedTokens> {
        let lifetime_ms = self.config.limits.refreshable_token_lifetime_secs * 1000;
        let access_token = format!("kith_{}", crypto::random_string(40));
        let new_refresh = format!("kithr_{}", crypto::random_string(40));
        let expires_ts = crate::storage::now_ms() + i64::try_from(lifetime_ms).unwrap_or(i64::MAX);
        let (user_id, device_id) = self
            .store
            .users()
            .rotate_refresh_token(
                crypto::hash_token(refresh_token),
                crypto::hash_token(&access_token),
                expires_ts,
                crypto::hash_token(&new_refresh),
            )
            .await?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::UnknownToken { soft_logout: false },
                    "Unknown refresh token.",
                )
            })?;
        Ok(IssuedTokens {
            user_id: UserId::parse(user_id).map_err(Error::internal)?,
            device_id: device_id.into(),
            access_token,
            refresh_token: Some(new_refresh),
            expires_in_ms: Some(lifetime_ms),
        })
    }

    /// Ends one session: deletes the device and its tokens. Returns the deleted devices
    /// ([`RemovedDevices`]).
    pub async fn logout(&self, session: &Session) -> Result<RemovedDevices> {
        let removed = self
            .store
            .users()
            .delete_device(session.user_id.as_str(), session.device_id.as_str())
            .await?;
        self.notifier.notify();
        Ok(removed
            .map(|pos| (session.device_id.to_string(), pos))
            .into_iter()
            .collect())
    }

    /// Ends every session of the user. Returns the deleted devices.
    pub async fn logout_all(&self, user_id: &UserId) -> Result<RemovedDevices> {
        let removed = self
            .store
            .users()
            .delete_devices_except(user_id.as_str(), None)
            .await?;
        self.notifier.notify();
        Ok(removed)
    }

    /// Sets a new password; with `logout_devices`, every other device is logged out.
    pub async fn change_password(
        &self,
        session: &Session,
        new_password: &str,
        logout_devices: bool,
    ) -> Result<RemovedDevices> {
        if new_password.is_empty() {
            return Err(Error::new(
                ErrorKind::WeakPassword,
                "The password must not be empty.",
            ));
        }
        self.store_password(&session.user_id, new_password).await?;
        if !logout_devices {
            return Ok(Vec::new());
        }
        let removed = self
            .store
            .users()
            .delete_devices_except(
                session.user_id.as_str(),
                Some(session.device_id.to_string()),
            )
            .await?;
        self.notifier.notify();
        Ok(removed)
    }

    /// Sets a new password for an account (an admin's reset) and logs out all its devices.
    pub async fn set_password(&self, user_id: &UserId, password: &str) -> Result<RemovedDevices> {
        self.store_password(user_id, password).await?;
        self.logout_all(user_id).await
    }

    /// Hashes `password` (argon2id, on a blocking thread) and stores it as the user's.
    async fn store_password(&self, user_id: &UserId, password: &str) -> Result<()> {
        let password = password.to_owned();
        let hash = tokio::task::spawn_blocking(move || crypto::hash_password(&password))
            .await
            .map_err(Error::internal)??;
        self.store
            .users()
            .set_password_hash(user_id.as_str(), hash)
            .await
    }

    /// Deactivates the account: no more logins, all devices gone, profile cleared.
    pub async fn deactivate(&self, user_id: &UserId) -> Result<RemovedDevices> {
        let removed = self.store.users().deactivate(user_id.as_str()).await?;
        self.notifier.notify();
        Ok(removed)
    }

    /// A user's account, or `None` if unknown.
    pub async fn get(&self, user_id: &UserId) -> Result<Option<User>> {
        self.store.users().get(user_id.as_str()).await
    }

    /// Counts active accounts.
    pub async fn count(&self) -> Result<u64> {
        self.store.users().count().await
    }

    /// The user's devices.
    pub async fn devices(&self, user_id: &UserId) -> Result<Vec<Device>> {
        self.store.users().devices(user_id.as_str()).await
    }

    /// One device of the user; `M_NOT_FOUND` if they have no such device.
    pub async fn device(&self, user_id: &UserId, device_id: &str) -> Result<Device> {
        self.devices(user_id)
            .await?
            .into_iter()
            .find(|d| d.device_id == device_id)
            .ok_or_else(|| Error::not_found("No device with that ID."))
    }

    /// Renames a device; `M_NOT_FOUND` if the user has no such device.
    pub async fn rename_device(
        &self,
        user_id: &UserId,
        device_id: &str,
        name: Option<String>,
    ) -> Result<()> {
        if self
            .store
            .users()
            .rename_device(user_id.as_str(), device_id, name)
            .await?
        {
            self.notifier.notify();
            Ok(())
        } else {
            Err(Error::not_found("No device with that ID."))
        }
    }

    /// Deletes devices (and their tokens). Unknown IDs are ignored, as the spec allows.
    pub async fn delete_devices(
        &self,
        user_id: &UserId,
        device_ids: &[String],
    ) -> Result<RemovedDevices> {
        let mut removed = Vec::new();
        for device_id in device_ids {
            if let Some(pos) = self
                .store
                .users()
                .delete_device(user_id.as_str(), device_id)
                .await?
            {
                removed.push((device_id.clone(), pos));
            }
        }
        self.notifier.notify();
        Ok(removed)
    }

    /// Records that the session's device was just used.
    pub async fn touch(&self, session: &Session, ip: Option<String>) -> Result<()> {
        self.store
            .users()
            .touch_device(session.user_id.as_str(), session.device_id.as_str(), ip)
            .await
    }

    /// Creates a registration token (admin API, tests).
    pub async fn create_registration_token(&self, uses_allowed: Option<u32>) -> Result<String> {
        let token = crypto::random_string(16);
        self.store
            .users()
            .create_registration_token(&token, uses_allowed, None)
            .await?;
        Ok(token)
    }

    /// Counts one completed registration against a registration token.
    pub async fn use_registration_token(&self, token: &str) -> Result<()> {
        self.store.users().use_registration_token(token).await
    }

    /// Sets the global profile fields.
    pub async fn set_profile(
        &self,
        user_id: &UserId,
        displayname: Option<String>,
        avatar_url: Option<String>,
    ) -> Result<()> {
        self.store
            .users()
            .set_profile(user_id.as_str(), displayname, avatar_url)
            .await
    }

    /// Searches the user directory.
    pub async fn search(&self, term: &str, limit: u32) -> Result<Vec<User>> {
        self.store.users().search(term, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::validate_localpart;

    #[test]
    fn localparts_follow_the_spec_grammar() {
        assert!(validate_localpart("alice.b_c=d-e/f+g9", "example.org").is_ok());
        for bad in ["", "Alice", "al ice", "al:ice", "@alice", "élise"] {
            assert!(validate_localpart(bad, "example.org").is_err(), "{bad}");
        }
        assert!(validate_localpart(&"a".repeat(250), "example.org").is_err());
    }
}
