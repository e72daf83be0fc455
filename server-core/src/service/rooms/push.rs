//! Push rule evaluation: which local users an event notifies, and for whom it highlights.
//!
//! Each new event is matched against the push rules of every local joined member (and of an
//! invited user, for `.m.rule.invite_for_me`) with ruma's evaluator, in the room as it was
//! before the event (spec: client-server-api/modules/push.md, "Push Rules"). The result is
//! stored with the event, so unread counts in `/sync` are a count, not a re-evaluation.

use ruma::{
    OwnedUserId, UInt, UserId,
    events::{
        TimelineEventType,
        room::power_levels::{RoomPowerLevels, RoomPowerLevelsEventContent, RoomPowerLevelsSource},
    },
    push::{Action, PushConditionPowerLevelsCtx, PushConditionRoomCtx},
    serde::Raw,
};
use serde_json::Value;

use super::Rooms;
use crate::{error::Result, pdu::Pdu};

impl Rooms {
    /// The local users `pdu` (signed JSON `json`) notifies, each with whether it highlights.
    pub(super) async fn notified_users(
        &self,
        pdu: &Pdu,
        json: &str,
    ) -> Result<Vec<(String, bool)>> {
        let room_id = &pdu.in_room;
        let members = self.store.events().members(room_id.as_str()).await?;
        let ours = |user: &UserId| user.server_name() == self.identity.server_name;
        let joined: Vec<_> = members.iter().filter(|m| m.membership == "join").collect();
        let member_count = UInt::try_from(joined.len()).unwrap_or(UInt::MAX);

        // (user, their member event) for each local user who may be notified.
        let mut recipients: Vec<(OwnedUserId, Option<String>)> = joined
            .iter()
            .filter_map(|m| {
                let user = UserId::parse(&m.user_id).ok()?;
                (ours(&user) && user != pdu.sender).then(|| (user, Some(m.event_id.clone())))
            })
            .collect();
        let content = pdu.content_value();
        if pdu.kind == TimelineEventType::RoomMember
            && content.get("membership").and_then(Value::as_str) == Some("invite")
            && let Some(invitee) = pdu.state_key.as_deref().and_then(|k| UserId::parse(k).ok())
            && ours(&invitee)
            && !recipients.iter().any(|(u, _)| *u == invitee)
        {
            recipients.push((invitee, None));
        }
        if recipients.is_empty() {
            return Ok(Vec::new());
        }

        let power_levels = self.push_power_levels(pdu).await?;
        let member_events = self
            .pdus(recipients.iter().filter_map(|(_, id)| id.clone()).collect())
            .await?;
        let event: Raw<Value> =
            Raw::from_json(serde_json::value::RawValue::from_string(json.to_owned())?);
        let mut notified = Vec::new();
        for (user, member_event) in recipients {
            // Display name in this room, else the localpart (spec: "m.room.member").
            let display_name = member_event
                .and_then(|id| member_events.iter().find(|p| *p.event_id == *id))
                .and_then(|p| {
                    p.content_value()
                        .get("displayname")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| user.localpart().to_owned());
            let mut context = PushConditionRoomCtx::new(
                room_id.clone(),
                member_count,
                user.clone(),
                display_name,
            );
            if let Some(levels) = &power_levels {
                context = context.with_power_levels(levels.clone());
            }
            let rules = self.account.push_rules(&user).await?;
            let actions = rules.get_actions(&event, &context).await;
            if actions.iter().any(Action::should_notify) {
                notified.push((user.to_string(), actions.iter().any(Action::is_highlight)));
            }
        }
        Ok(notified)
    }

    /// The room's power levels as push conditions need them (`sender_notification_permission`),
    /// or `None` if they cannot be read, in which case such conditions do not match.
    async fn push_power_levels(&self, pdu: &Pdu) -> Result<Option<PushConditionPowerLevelsCtx>> {
        let room_id = &pdu.in_room;
        let (_, rules) = self.version(room_id).await?;
        let content = match self.state_event(room_id, "m.room.power_levels", "").await? {
            Some(levels) => {
                match serde_json::from_value::<RoomPowerLevelsEventContent>(levels.content_value())
                {
                    Ok(content) => Some(content),
                    Err(_) => return Ok(None),
                }
            }
            None => None,
        };
        // Room v12 creators outrank everyone (spec: rooms/v12.md, "Authorization rules").
        let creators = self
            .state_event(room_id, "m.room.create", "")
            .await?
            .map(|create| create.room_creators())
            .unwrap_or_default();
        let levels = RoomPowerLevels::new(
            RoomPowerLevelsSource::from(content),
            &rules.authorization,
            creators,
        );
        Ok(Some(levels.into()))
    }
}
