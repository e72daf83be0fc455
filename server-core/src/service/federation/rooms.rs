//! Requests about rooms to other servers (spec: server-server-api.md): membership
//! templates and signed membership events (joins, leaves, knocks, invites), the graph's
//! missing pieces (`get_missing_events`, `state_ids`, `event`, `backfill`) and spaces
//! (`hierarchy`). Each returns what the other server answered, unchecked: the rooms service
//! checks it.

use reqwest::Method;
use ruma::ServerName;
use serde_json::{Value, json};

use super::Federation;
use crate::error::{Error, ErrorKind, Result};

/// Percent-encodes one path segment (a room, user or event ID) of a federation URL.
fn path_segment(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Federation {
    /// `GET /_matrix/federation/v1/make_{join,leave,knock}/{roomId}/{userId}`: a membership
    /// event template from a server in the room, listing the room versions we support
    /// (none for leaves). Returns (room version, template).
    async fn membership_template(
        &self,
        server: &ServerName,
        membership: &str,
        room_id: &ruma::RoomId,
        user_id: &ruma::UserId,
        versions: &[&str],
    ) -> Result<(String, Value)> {
        let path = format!(
            "/_matrix/federation/v1/make_{membership}/{}/{}",
            path_segment(room_id.as_str()),
            path_segment(user_id.as_str())
        );
        let query: Vec<(&str, &str)> = versions.iter().map(|v| ("ver", *v)).collect();
        let answer = self
            .request(server, Method::GET, &path, &query, None, true)
            .await?;
        let version = answer
            .get("room_version")
            .and_then(Value::as_str)
            .unwrap_or("1")
            .to_owned();
        let event = answer
            .get("event")
            .filter(|e| e.is_object())
            .cloned()
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::BadGateway,
                    format!("{server} gave no {membership} event template"),
                )
            })?;
        Ok((version, event))
    }

    /// `GET /_matrix/federation/v1/make_join/{roomId}/{userId}` (spec: "Joining Rooms"):
    /// a join event template from a server in the room, listing the room versions we
    /// support. Returns (room version, template).
    pub async fn make_join(
        &self,
        server: &ServerName,
        room_id: &ruma::RoomId,
        user_id: &ruma::UserId,
        versions: &[&str],
    ) -> Result<(String, Value)> {
        self.membership_template(server, "join", room_id, user_id, versions)
            .await
    }

    /// `PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}`: our signed join, answered
    /// with the room's state and auth chain.
    pub async fn send_join(
        &self,
        server: &ServerName,
        room_id: &ruma::RoomId,
        event_id: &ruma::EventId,
        event: &Value,
    ) -> Result<Value> {
        self.send_membership(server, "v2/send_join", room_id, event_id, event)
            .await
    }

    /// `POST /_matrix/federation/v1/get_missing_events/{roomId}` (spec: "Retrieving missing
    /// events"): events between what we have (`earliest`) and `latest`, at most `limit`.
    pub async fn get_missing_events(
        &self,
        server: &ServerName,
        room_id: &ruma::RoomId,
        earliest: &[String],
        latest: &[String],
        limit: u32,
    ) -> Result<Vec<Value>> {
        let path = format!(
            "/_matrix/federation/v1/get_missing_events/{}",
            path_segment(room_id.as_str())
        );
        let body = json!({
            "earliest_events": earliest,
            "latest_events": latest,
            "limit": limit,
            "min_depth": 0,
        });
        let answer = self
            .request(server, Method::POST, &path, &[], Some(&body), true)
            .await?;
        Ok(answer
            .get("events")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// `GET /_matrix/federation/v1/state_ids/{roomId}?event_id=`: the IDs of the room state
    /// before `event_id`... and of its auth chain, as (state, auth chain).
    pub async fn state_ids(
        &self,
        server: &ServerName,
        room_id: &ruma::RoomId,
        event_id: &ruma::EventId,
    ) -> Result<(Vec<String>, Vec<String>)> {
        let path = format!(
            "/_matrix/federation/v1/state_ids/{}",
            path_segment(room_id.as_str())
        );
        let answer = self
            .request(
                server,
                Method::GET,
                &path,
                &[("event_id", event_id.as_str())],
                None,
                true,
            )
            .await?;
        let ids = |key: &str| -> Vec<String> {
            answer
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        };
        Ok((ids("pdu_ids"), ids("auth_chain_ids")))
    }

    /// `GET /_matrix/federation/v1/event/{eventId}`: one event's PDU.
    pub async fn event(&self, server: &ServerName, event_id: &ruma::EventId) -> Result<Value> {
        let path = format!(
            "/_matrix/federation/v1/event/{}",
            path_segment(event_id.as_str())
        );
        let answer = self
            .request(server, Method::GET, &path, &[], None, true)
            .await?;
        answer
            .get("pdus")
            .and_then(Value::as_array)
            .and_then(|pdus| pdus.first())
            .cloned()
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::BadGateway,
                    format!("{server} answered without the event {event_id}"),
                )
            })
    }

    /// `PUT /_matrix/federation/v2/invite/{roomId}/{eventId}` (spec: "Inviting to a
    /// room"): our invite to one of `server`'s users, answered with the event signed by it.
    pub async fn invite(
        &self,
        server: &ServerName,
        room_id: &ruma::RoomId,
        event_id: &ruma::EventId,
        body: &Value,
    ) -> Result<Value> {
        let answer = self
            .send_membership(server, "v2/invite", room_id, event_id, body)
            .await?;
        answer
            .get("event")
            .filter(|e| e.is_object())
            .cloned()
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::BadGateway,
                    format!("{server} answered the invite without the event"),
                )
            })
    }

    /// `GET /_matrix/federation/v1/make_leave/{roomId}/{userId}`: a leave template, as
    /// (room version, template).
    pub async fn make_leave(
        &self,
        server: &ServerName,
        room_id: &ruma::RoomId,
        user_id: &ruma::UserId,
    ) -> Result<(String, Value)> {
        self.membership_template(server, "leave", room_id, user_id, &[])
            .await
    }

    /// `PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}`
    pub async fn send_leave(
        &self,
        server: &ServerName,
        room_id: &ruma::RoomId,
        event_id: &ruma::EventId,
        event: &Value,
    ) -> Result<()> {
        self.send_membership(server, "v2/send_leave", room_id, event_id, event)
            .await?;
        Ok(())
    }

    /// `GET /_matrix/federation/v1/make_knock/{roomId}/{userId}` (spec: "Knocking upon a
    /// room"): a knock template, as (room version, template).
    pub async fn make_knock(
        &self,
        server: &ServerName,
        room_id: &ruma::RoomId,
        user_id: &ruma::UserId,
        versions: &[&str],
    ) -> Result<(String, Value)> {
        self.membership_template(server, "knock", room_id, user_id, versions)
            .await
    }

    /// `PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}`: our signed knock,
    /// answered with the room's stripped state.
    pub async fn send_knock(
        &self,
        server: &ServerName,
        room_id: &ruma::RoomId,
        event_id: &ruma::EventId,
        event: &Value,
    ) -> Result<Value> {
        self.send_membership(server, "v1/send_knock", room_id, event_id, event)
            .await
    }

    /// `GET /_matrix/federation/v1/backfill/{roomId}?v=...&limit=`: events before `from`.
    pub async fn backfill(
        &self,
        server: &ServerName,
        room_id: &ruma::RoomId,
        from: &[String],
        limit: u32,
    ) -> Result<Vec<Value>> {
        let path = format!(
            "/_matrix/federation/v1/backfill/{}",
            path_segment(room_id.as_str())
        );
        let limit = limit.to_string();
        let mut query: Vec<(&str, &str)> = from.iter().map(|v| ("v", v.as_str())).collect();
        query.push(("limit", &limit));
        let answer = self
            .request(server, Method::GET, &path, &query, None, true)
            .await?;
        Ok(answer
            .get("pdus")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// `GET /_matrix/federation/v1/hierarchy/{roomId}` (spec: "Spaces"): a space as
    /// `server` describes it.
    pub async fn hierarchy(
        &self,
        server: &ServerName,
        room_id: &ruma::RoomId,
        suggested_only: bool,
    ) -> Result<Value> {
        let path = format!(
            "/_matrix/federation/v1/hierarchy/{}",
            path_segment(room_id.as_str())
        );
        let suggested = if suggested_only { "true" } else { "false" };
        self.request(
            server,
            Method::GET,
            &path,
            &[("suggested_only", suggested)],
            None,
            true,
        )
        .await
    }

    /// `PUT /_matrix/federation/{endpoint}/{roomId}/{eventId}` with a signed membership
    /// event (or, for invites, the body around it): `send_join`, `send_leave`,
    /// `send_knock`, `invite`.
    async fn send_membership(
        &self,
        server: &ServerName,
        endpoint: &str,
        room_id: &ruma::RoomId,
        event_id: &ruma::EventId,
        body: &Value,
    ) -> Result<Value> {
        let path = format!(
            "/_matrix/federation/{endpoint}/{}/{}",
            path_segment(room_id.as_str()),
            path_segment(event_id.as_str())
        );
        self.request(server, Method::PUT, &path, &[], Some(body), true)
            .await
    }
}
