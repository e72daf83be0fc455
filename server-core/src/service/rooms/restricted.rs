//! Restricted rooms (spec: client-server-api/_index.md, "Restricted rooms";
//! server-server-api.md, "Restricted rooms"; rooms/v8.md, "Authorization rules").
//!
//! A user who is neither invited nor joined may join a room whose join rule is `restricted`
//! (or `knock_restricted`) when they are joined to one of the rooms its `allow` conditions
//! name. The server that checks this names, in the join's `join_authorised_via_users_server`,
//! one of its own users who is joined and may invite, and signs the join; the auth rules
//! accept the join on that user's authority. This server does it for its own users' joins,
//! and for other servers' users who join through it (`make_join`/`send_join`).

use ruma::{
    CanonicalJsonObject, OwnedUserId, RoomId, UserId,
    events::room::power_levels::{
        RoomPowerLevels, RoomPowerLevelsEventContent, RoomPowerLevelsSource,
    },
};
use serde_json::Value;

use super::Rooms;
use crate::{
    error::{Error, ErrorKind, Result},
    pdu::Pdu,
};

impl Rooms {
    /// For a join of `user_id` to `room_id`: the local user to name in
    /// `join_authorised_via_users_server`, or `None` when the join needs no one's authority
    /// (the room is not restricted, or the user is invited or joined already).
    ///
    /// Errors as the spec orders them: `M_FORBIDDEN` when the user meets no condition,
    /// `M_UNABLE_TO_AUTHORISE_JOIN` when this server is in none of the rooms the conditions
    /// name, `M_UNABLE_TO_GRANT_JOIN` when no local user may invite.
    pub(super) async fn join_authoriser(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<Option<OwnedUserId>> {
        let head = self.head(room_id).await?;
        let rules = &head.rules.authorization;
        if !rules.restricted_join_rule {
            return Ok(None);
        }
        let key = |t: &str, k: &str| (t.to_owned(), k.to_owned());
        let state = self
            .state_events(
                &head,
                [
                    key("m.room.join_rules", ""),
                    key("m.room.power_levels", ""),
                    key("m.room.create", ""),
                    key("m.room.member", user_id.as_str()),
                ],
            )
            .await?;
        let get = |t: &str, k: &str| state.get(&key(t, k));
        let join_rules = get("m.room.join_rules", "").map(Pdu::content_value);
        let join_rule = join_rules
            .as_ref()
            .and_then(|c| c.get("join_rule"))
            .and_then(Value::as_str);
        let restricted = match join_rule {
            Some("restricted") => true,
            Some("knock_restricted") => rules.knock_restricted_join_rule,
            _ => false,
        };
        let membership = get("m.room.member", user_id.as_str()).and_then(|m| {
            m.content_value()
                .get("membership")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        if !restricted || matches!(membership.as_deref(), Some("invite" | "join")) {
            return Ok(None);
        }

        // spec: the only condition is `m.room_membership`: joined to the named room. This
        // server can only vouch for rooms it is in, whose members it knows.
        let allowed: Vec<&str> = join_rules
            .as_ref()
            .and_then(|c| c.get("allow"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|c| c.get("type").and_then(Value::as_str) == Some("m.room_membership"))
            .filter_map(|c| c.get("room_id").and_then(Value::as_str))
            .collect();
        // spec: with no valid condition, the user fails them all (M_FORBIDDEN); with some
        // but none in a room this server is in, it cannot tell (M_UNABLE_TO_AUTHORISE_JOIN).
        let allowed: Vec<_> = allowed
            .into_iter()
            .filter_map(|r| RoomId::parse(r).ok())
            .collect();
        let mut known = allowed.is_empty();
        let mut satisfied = false;
        for allowed in allowed {
            if !self.is_resident(&allowed).await? {
                continue;
            }
            known = true;
            if self
                .membership(&allowed, user_id)
                .await?
                .is_some_and(|m| m.membership == "join")
            {
                satisfied = true;
                break;
            }
        }
        if !satisfied {
            return Err(if known {
                Error::forbidden(
                    "You are not invited, and not in any of the rooms whose members may join this one.",
                )
            } else {
                Error::new(
                    ErrorKind::UnableToAuthoriseJoin,
                    "This server is in none of the rooms whose members may join this one, so it cannot check that you are.",
                )
            });
        }

        // A joined local member who may invite: the join is made on their authority.
        let content = get("m.room.power_levels", "").and_then(|p| {
            serde_json::from_value::<RoomPowerLevelsEventContent>(p.content_value()).ok()
        });
        let creators = get("m.room.create", "")
            .map(Pdu::room_creators)
            .unwrap_or_default();
        let levels = RoomPowerLevels::new(RoomPowerLevelsSource::from(content), rules, creators);
        head.joined
            .iter()
            .filter_map(|user| UserId::parse(user).ok())
            .filter(|user| user.server_name() == self.identity.server_name)
            .find(|user| levels.user_can_invite(user))
            .map(Some)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::UnableToGrantJoin,
                    "No one on this server may invite you to this room; try another server in it.",
                )
            })
    }

    /// A remote user's join sent through this server (`send_join`) that names one of our
    /// users in `join_authorised_via_users_server`: checked again, and signed by this
    /// server, as the auth rules require of the authorising user's server (spec: rooms/v8.md,
    /// "Signing key validation"). Other joins pass unchanged.
    pub(super) async fn countersign_join(&self, room_id: &RoomId, pdu: Value) -> Result<Value> {
        let Some(authoriser) = pdu
            .pointer("/content/join_authorised_via_users_server")
            .and_then(Value::as_str)
        else {
            return Ok(pdu);
        };
        let authoriser = UserId::parse(authoriser)
            .map_err(|_| Error::bad_json("join_authorised_via_users_server is not a user ID."))?;
        if authoriser.server_name() != self.identity.server_name {
            return Ok(pdu);
        }
        let sender = pdu
            .get("sender")
            .and_then(Value::as_str)
            .and_then(|s| UserId::parse(s).ok())
            .ok_or_else(|| Error::bad_json("The join has no valid sender."))?;
        // The conditions must still hold; the auth rules check the authoriser's power.
        self.join_authoriser(room_id, &sender).await?;
        let (_, rules) = self.version(room_id).await?;
        let mut object: CanonicalJsonObject = serde_json::from_value(pdu)
            .map_err(|e| Error::bad_json(format!("The join is not canonical JSON: {e}")))?;
        ruma::signatures::sign_event(
            self.identity.server_name.as_str(),
            &self.identity.signing_key,
            &mut object,
            &rules.redaction,
        )
        .map_err(|e| Error::bad_json(format!("The join cannot be signed: {e}")))?;
        Ok(serde_json::to_value(object)?)
    }
}
