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
    push::{Action, PushConditionPowerLevelsCtx, PushConditionRoomCtx, Ruleset},
    serde::Raw,
};
use serde_json::Value;

use std::collections::HashMap;

use super::{Rooms, timeline::Head};
use crate::{error::Result, pdu::Pdu};

/// What push rule evaluation needs of a room, read once for any number of events that do
/// not change its state. The default notifies no one.
#[derive(Default)]
pub(super) struct PushContext {
    /// Joined members, for the `room_member_count` condition.
    member_count: UInt,
    /// Each local user who may be notified, with their display name in the room (else the
    /// localpart, spec: "m.room.member") and their push rules.
    recipients: Vec<(OwnedUserId, String, Ruleset)>,
    /// For `sender_notification_permission`; `None` when unreadable.
    power_levels: Option<PushConditionPowerLevelsCtx>,
}

impl PushContext {
    /// The local users `pdu` (signed JSON `json`) notifies, each with whether it highlights.
    pub(super) async fn evaluate(&self, pdu: &Pdu, json: &str) -> Result<Vec<(String, bool)>> {
        let event: Raw<Value> =
            Raw::from_json(serde_json::value::RawValue::from_string(json.to_owned())?);
        let mut notified = Vec::new();
        for (user, display_name, rules) in &self.recipients {
            if *user == pdu.sender {
                continue;
            }
            let mut context = PushConditionRoomCtx::new(
                pdu.in_room.clone(),
                self.member_count,
                user.clone(),
                display_name.clone(),
            );
            if let Some(levels) = &self.power_levels {
                context = context.with_power_levels(levels.clone());
            }
            let actions = rules.get_actions(&event, &context).await;
            if actions.iter().any(Action::should_notify) {
                notified.push((user.to_string(), actions.iter().any(Action::is_highlight)));
            }
        }
        Ok(notified)
    }
}

impl Rooms {
    /// The local users `pdu` (signed JSON `json`) notifies, each with whether it highlights.
    pub(super) async fn notified_users(
        &self,
        pdu: &Pdu,
        json: &str,
    ) -> Result<Vec<(String, bool)>> {
        // An invite notifies its local invitee, who is not joined yet.
        let content = pdu.content_value();
        let invitee = (pdu.kind == TimelineEventType::RoomMember
            && content.get("membership").and_then(Value::as_str) == Some("invite"))
        .then(|| pdu.state_key.as_deref().and_then(|k| UserId::parse(k).ok()))
        .flatten();
        let head = self.head(&pdu.in_room).await?;
        let state = self
            .state_events(
                &head,
                push_keys(&head, &self.identity.server_name, invitee.as_deref()),
            )
            .await?;
        let context = self.push_context(&head, invitee, &state).await?;
        context.evaluate(pdu, json).await
    }

    /// What push evaluation needs of the room as `head` has it, with `state` holding (at
    /// least) the current state at [`push_keys`]; `invitee` is a local user being invited,
    /// notified too.
    pub(super) async fn push_context(
        &self,
        head: &Head,
        invitee: Option<OwnedUserId>,
        state: &HashMap<(String, String), Pdu>,
    ) -> Result<PushContext> {
        let member_count = UInt::try_from(head.joined.len()).unwrap_or(UInt::MAX);
        let get = |event_type: &str, state_key: &str| {
            state.get(&(event_type.to_owned(), state_key.to_owned()))
        };
        let power_levels = push_power_levels(
            head,
            get("m.room.power_levels", ""),
            get("m.room.create", ""),
        );
        let mut recipients = Vec::new();
        for user in self.local_members(head, invitee.as_deref()) {
            // Display name in this room, else the localpart (spec: "m.room.member").
            let display_name = get("m.room.member", user.as_str())
                .and_then(|p| {
                    p.content_value()
                        .get("displayname")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| user.localpart().to_owned());
            let rules = self.account.push_rules(&user).await?;
            recipients.push((user, display_name, rules));
        }
        Ok(PushContext {
            member_count,
            recipients,
            power_levels,
        })
    }

    /// The local users an event may notify: the joined ones, and a local invitee.
    fn local_members(&self, head: &Head, invitee: Option<&UserId>) -> Vec<OwnedUserId> {
        let mut users: Vec<OwnedUserId> = head
            .joined
            .iter()
            .filter_map(|user| UserId::parse(user).ok())
            .chain(invitee.map(ToOwned::to_owned))
            .filter(|user| user.server_name() == self.identity.server_name)
            .collect();
        users.sort();
        users.dedup();
        users
    }
}

/// The state keys push evaluation reads: the power levels, the create event, and the
/// member events of the room's joined local users (`ours`) and of `invitee`.
pub(super) fn push_keys(
    head: &Head,
    ours: &ruma::ServerName,
    invitee: Option<&UserId>,
) -> Vec<(String, String)> {
    let mut keys = vec![
        ("m.room.power_levels".to_owned(), String::new()),
        ("m.room.create".to_owned(), String::new()),
    ];
    keys.extend(
        head.joined
            .iter()
            .filter_map(|user| UserId::parse(user).ok())
            .filter(|user| user.server_name() == ours)
            .map(|user| user.to_string())
            .chain(invitee.map(|u| u.to_string()))
            .map(|user| ("m.room.member".to_owned(), user)),
    );
    keys
}

/// The room's power levels as push conditions need them (`sender_notification_permission`),
/// or `None` if they cannot be read, in which case such conditions do not match.
fn push_power_levels(
    head: &Head,
    levels: Option<&Pdu>,
    create: Option<&Pdu>,
) -> Option<PushConditionPowerLevelsCtx> {
    let content = match levels {
        Some(levels) => Some(
            serde_json::from_value::<RoomPowerLevelsEventContent>(levels.content_value()).ok()?,
        ),
        None => None,
    };
    // Room v12 creators outrank everyone (spec: rooms/v12.md, "Authorization rules").
    let creators = create.map(Pdu::room_creators).unwrap_or_default();
    let levels = RoomPowerLevels::new(
        RoomPowerLevelsSource::from(content),
        &head.rules.authorization,
        creators,
    );
    Some(levels.into())
}
