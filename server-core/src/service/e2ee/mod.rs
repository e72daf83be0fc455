//! End-to-end encryption support (spec: client-server-api/modules/end_to_end_encryption.md,
//! send_to_device.md): the server stores and hands out keys, relays to-device messages, keeps
//! encrypted key backups, and tells clients whose devices changed. It never sees plaintext.
//!
//! - `keys.rs`: device, one-time and fallback keys; cross-signing keys and signatures.
//! - `to_device.rs`: to-device messages, delivered by `/sync` until acknowledged.
//! - `backup.rs`: server-side key backup versions and keys.
//! - here: device list tracking for `/sync` and `keys/changes`.

mod backup;
mod keys;
mod to_device;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use ruma::UserId;

pub use self::{
    backup::RoomKeyUpload,
    keys::{CrossSigningUpload, KeysUpload},
};
use super::{ServerIdentity, federation::Federation, notifier::Notifier};
use crate::{error::Result, storage::Store};

/// The encryption service. Cheap to clone.
#[derive(Clone)]
pub struct E2ee {
    store: Store,
    identity: Arc<ServerIdentity>,
    notifier: Notifier,
    federation: Federation,
}

/// Users whose devices a client must refresh, and users it no longer shares a room with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceListUpdates {
    /// Users whose device or cross-signing keys changed, or who now share a room.
    pub changed: Vec<String>,
    /// Users who no longer share any room.
    pub left: Vec<String>,
}

impl DeviceListUpdates {
    /// Whether there is nothing to report.
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.left.is_empty()
    }
}

impl E2ee {
    /// Builds the service.
    pub fn new(
        store: Store,
        identity: Arc<ServerIdentity>,
        notifier: Notifier,
        federation: Federation,
    ) -> Self {
        Self {
            store,
            identity,
            notifier,
            federation,
        }
    }

    fn is_local(&self, user_id: &UserId) -> bool {
        user_id.server_name() == self.identity.server_name
    }

    /// Another server says its user's devices or cross-signing keys changed: local users
    /// sharing a room with them learn it in their next sync.
    pub async fn remote_device_list_changed(&self, user_id: &UserId) -> Result<()> {
        self.store
            .keys()
            .remote_device_list_changed(user_id.as_str())
            .await?;
        self.notifier.notify();
        Ok(())
    }

    /// Device list updates for `user_id` between two stream positions (spec: "Tracking the
    /// device list for a user" and "Extensions to /sync"). A user is `changed` when their keys
    /// changed and they share a room with `user_id`, or when they came to share a room (a
    /// join of theirs, or of `user_id`, in the window); `left` when a membership change in the
    /// window leaves them sharing no room. Like Synapse, any shared room counts, encrypted or
    /// not, and the user's own changes are reported to their other devices.
    pub async fn device_list_updates(
        &self,
        user_id: &UserId,
        after: i64,
        up_to: i64,
    ) -> Result<DeviceListUpdates> {
        let me = user_id.as_str();
        let keys = self.store.keys();
        let sharing: BTreeSet<String> = keys.users_sharing_a_room(me).await?.into_iter().collect();
        let mut changed: BTreeSet<String> = keys
            .device_list_changes(me, after, up_to)
            .await?
            .into_iter()
            .filter(|(u, only_for_me)| *only_for_me || u == me || sharing.contains(u))
            .map(|(u, _)| u)
            .collect();
        let mut left = BTreeSet::new();
        let memberships = keys.membership_changes_around(me, after, up_to).await?;
        // My own membership in each of those rooms, and whether it changed in the window
        // (every row carries it, whether or not my own row is among them).
        let mine: BTreeMap<&str, (&str, bool)> = memberships
            .iter()
            .map(|m| {
                let in_window = m.my_stream_pos > after && m.my_stream_pos <= up_to;
                (m.room_id.as_str(), (m.my_membership.as_str(), in_window))
            })
            .collect();
        for change in memberships.iter().filter(|m| m.user_id != me) {
            let Some(&(my_membership, i_changed)) = mine.get(change.room_id.as_str()) else {
                continue;
            };
            match (my_membership, change.membership.as_str()) {
                // We share this room now: they joined, or I did.
                ("join", "join") => {
                    changed.insert(change.user_id.clone());
                }
                // They left a room we shared, or I left a room they are in.
                ("join", "leave" | "ban") if change.stream_pos > after => {
                    left.insert(change.user_id.clone());
                }
                ("leave" | "ban", "join") if i_changed => {
                    left.insert(change.user_id.clone());
                }
                _ => {}
            }
        }
        let left: Vec<String> = left
            .into_iter()
            .filter(|u| !sharing.contains(u) && u != me)
            .collect();
        changed.retain(|u| !left.contains(u));
        Ok(DeviceListUpdates {
            changed: changed.into_iter().collect(),
            left,
        })
    }
}
