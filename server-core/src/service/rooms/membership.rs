//! Membership: join, invite, leave, kick, ban, unban, knock, forget, and profile changes
//! that appear as new member events (spec: client-server-api/_index.md, "Room membership").
//!
//! Each change is an `m.room.member` event; whether it is allowed is decided by the room
//! version's auth rules in [`Rooms::send`], not by checks written twice here. The checks
//! that remain are the ones the auth rules cannot see (the room must be known here, a kick
//! must target a member).

use ruma::{OwnedEventId, OwnedRoomId, OwnedServerName, RoomId, UserId};
use serde_json::{Value, json};

use super::{Rooms, timeline::EventDraft};
use crate::error::{Error, ErrorKind, Result};

impl Rooms {
    /// The content of a member event for `user_id`, with their profile for joins and invites.
    pub(super) async fn member_content(
        &self,
        user_id: &UserId,
        membership: &str,
        reason: Option<&str>,
    ) -> Result<Value> {
        let mut content = json!({ "membership": membership });
        let Some(map) = content.as_object_mut() else {
            return Ok(content);
        };
        if matches!(membership, "join" | "invite" | "knock")
            && let Some(user) = self.store.users().get(user_id.as_str()).await?
        {
            if let Some(name) = user.displayname {
                map.insert("displayname".into(), json!(name));
            }
            if let Some(avatar) = user.avatar_url {
                map.insert("avatar_url".into(), json!(avatar));
            }
        }
        if let Some(reason) = reason {
            map.insert("reason".into(), json!(reason));
        }
        Ok(content)
    }

    async fn set_membership(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        target: &UserId,
        membership: &str,
        reason: Option<&str>,
    ) -> Result<OwnedEventId> {
        self.version(room_id)
            .await
            .map_err(|_| Error::not_found("This server does not know that room."))?;
        let content = self.member_content(target, membership, reason).await?;
        self.send(
            room_id,
            sender,
            EventDraft::state("m.room.member", target.as_str(), content),
            None,
        )
        .await
    }

    /// Joins a room by ID. Joining a room one is already in changes nothing.
    pub async fn join(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        reason: Option<&str>,
        via: &[OwnedServerName],
    ) -> Result<()> {
        if let Some(m) = self.membership(room_id, user_id).await?
            && m.membership == "join"
        {
            return Ok(());
        }
        let ours = self.identity.server_name.as_str();
        let resident = self.is_resident(room_id).await?;
        if !resident {
            // Over federation, through the servers the client named, and the room ID's own
            // server (room versions before 12 carry one).
            let mut servers = via.to_vec();
            servers.extend(self.remote_membership_servers(room_id, user_id).await?);
            if let Some(server) = room_id.server_name() {
                servers.push(server.to_owned());
            }
            let mut seen = std::collections::HashSet::new();
            servers.retain(|s| seen.insert(s.clone()));
            if servers.iter().any(|s| s.as_str() != ours) {
                self.join_remote(user_id, room_id, &servers, reason).await?;
                // An invite that brought the user here is used up.
                self.store
                    .events()
                    .end_remote_membership(room_id.as_str(), user_id.as_str(), None)
                    .await?;
                return Ok(());
            }
            if self
                .store
                .rooms()
                .version(room_id.as_str())
                .await?
                .is_none()
            {
                return Err(Error::not_found(
                    "This server does not know that room; name a server in it (`via`) to join it over federation.",
                ));
            }
        }
        self.version(room_id)
            .await
            .map_err(|_| Error::not_found("This server does not know that room."))?;
        let mut content = self.member_content(user_id, "join", reason).await?;
        // A restricted room lets members of the rooms it names in, on the authority of a
        // local user who may invite (restricted.rs).
        if let Some(authoriser) = self.join_authoriser(room_id, user_id).await? {
            content["join_authorised_via_users_server"] = serde_json::json!(authoriser);
        }
        self.send(
            room_id,
            user_id,
            EventDraft::state("m.room.member", user_id.as_str(), content),
            None,
        )
        .await
        .map_err(|e| match e {
            Error::Matrix {
                kind: ErrorKind::Forbidden,
                ..
            } => Error::forbidden("You are not invited to this room, and it is not public."),
            other => other,
        })?;
        Ok(())
    }

    /// Invites `target` (a local user) to the room.
    pub async fn invite(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        target: &UserId,
        reason: Option<&str>,
    ) -> Result<()> {
        let remote = target.server_name() != self.identity.server_name;
        if !remote
            && self
                .store
                .users()
                .get(target.as_str())
                .await?
                .is_none_or(|u| u.deactivated)
        {
            return Err(Error::not_found("There is no such user on this server."));
        }
        if let Some(m) = self.membership(room_id, target).await? {
            match m.membership.as_str() {
                "join" => {
                    return Err(Error::forbidden(format!(
                        "{target} is already in the room."
                    )));
                }
                "ban" => {
                    return Err(Error::forbidden(format!(
                        "{target} is banned from the room."
                    )));
                }
                _ => {}
            }
        }
        if remote {
            return self
                .invite_remote(sender, room_id, target, reason, false)
                .await;
        }
        self.set_membership(room_id, sender, target, "invite", reason)
            .await?;
        Ok(())
    }

    /// Leaves a room, or rejects an invite, or withdraws a knock.
    pub async fn leave(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        reason: Option<&str>,
    ) -> Result<()> {
        match self.membership(room_id, user_id).await? {
            Some(m) if matches!(m.membership.as_str(), "invite" | "knock") => {
                // An invite or knock in a room this server is not in ends through the
                // server that has the room.
                if self
                    .store
                    .events()
                    .remote_membership(room_id.as_str(), user_id.as_str())
                    .await?
                    .is_some()
                {
                    return self.leave_remote_membership(room_id, user_id, reason).await;
                }
            }
            Some(m) if m.membership == "join" => {}
            _ => return Err(Error::forbidden("You are not in this room.")),
        }
        self.set_membership(room_id, user_id, user_id, "leave", reason)
            .await?;
        Ok(())
    }

    /// Kicks `target` out of the room.
    pub async fn kick(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        target: &UserId,
        reason: Option<&str>,
    ) -> Result<()> {
        match self.membership(room_id, target).await? {
            Some(m) if matches!(m.membership.as_str(), "join" | "invite" | "knock") => {}
            _ => return Err(Error::forbidden(format!("{target} is not in the room."))),
        }
        self.set_membership(room_id, sender, target, "leave", reason)
            .await?;
        Ok(())
    }

    /// Bans `target` from the room.
    pub async fn ban(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        target: &UserId,
        reason: Option<&str>,
    ) -> Result<()> {
        self.set_membership(room_id, sender, target, "ban", reason)
            .await?;
        Ok(())
    }

    /// Lifts a ban.
    pub async fn unban(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        target: &UserId,
        reason: Option<&str>,
    ) -> Result<()> {
        match self.membership(room_id, target).await? {
            Some(m) if m.membership == "ban" => {}
            _ => return Err(Error::forbidden(format!("{target} is not banned."))),
        }
        self.set_membership(room_id, sender, target, "leave", reason)
            .await?;
        Ok(())
    }

    /// Knocks on a room whose join rule allows knocking.
    pub async fn knock(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        reason: Option<&str>,
        via: &[OwnedServerName],
    ) -> Result<()> {
        if let Some(m) = self.membership(room_id, user_id).await?
            && m.membership == "join"
        {
            return Err(Error::forbidden("You are already in this room."));
        }
        let ours = self.identity.server_name.as_str();
        let resident = self.is_resident(room_id).await?;
        if !resident {
            let mut servers = via.to_vec();
            if let Some(server) = room_id.server_name() {
                servers.push(server.to_owned());
            }
            if servers.iter().any(|s| s.as_str() != ours) {
                return self.knock_remote(user_id, room_id, &servers, reason).await;
            }
        }
        self.set_membership(room_id, user_id, user_id, "knock", reason)
            .await
            .map_err(|e| match e {
                Error::Matrix {
                    kind: ErrorKind::Forbidden,
                    ..
                } => Error::forbidden("This room does not allow knocking."),
                other => other,
            })?;
        Ok(())
    }

    /// Forgets a room the user has left.
    pub async fn forget(&self, user_id: &UserId, room_id: &RoomId) -> Result<()> {
        if self
            .store
            .events()
            .forget(room_id.as_str(), user_id.as_str())
            .await?
        {
            return Ok(());
        }
        match self.membership(room_id, user_id).await? {
            Some(_) => Err(Error::new(
                ErrorKind::Unknown,
                "Leave the room before forgetting it.",
            )),
            None => Err(Error::not_found("You were never in that room.")),
        }
    }

    /// Sends new member events carrying the user's current profile to every joined room
    /// (spec: "PUT /profile/{userId}/displayname" — servers update member events).
    pub async fn propagate_profile(&self, user_id: &UserId) -> Result<Vec<OwnedRoomId>> {
        let rooms = self.joined_rooms(user_id).await?;
        for room_id in &rooms {
            let content = self.member_content(user_id, "join", None).await?;
            self.send(
                room_id,
                user_id,
                EventDraft::state("m.room.member", user_id.as_str(), content),
                None,
            )
            .await?;
        }
        Ok(rooms)
    }

    /// Leaves every room (for deactivation); failures in one room do not stop the rest.
    pub async fn leave_all(&self, user_id: &UserId) -> Result<()> {
        for m in self.memberships_of(user_id).await? {
            if matches!(m.membership.as_str(), "join" | "invite" | "knock")
                && let Ok(room_id) = RoomId::parse(&m.room_id)
                && let Err(e) = self.leave(user_id, &room_id, None).await
            {
                tracing::warn!(%user_id, room_id = %m.room_id, error = %e, "could not leave room during deactivation");
            }
        }
        Ok(())
    }
}
