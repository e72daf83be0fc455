//! Editing one push rule: fetch, add or change, move, enable or disable, change actions,
//! delete (spec: client-server-api/modules/push.md, "Push Rules: API"; the rules' meaning and
//! evaluation are ruma's).

use ruma::{
    OwnedRoomId, OwnedUserId, UserId,
    push::{
        Action, AnyPushRuleRef, InsertPushRuleError, NewConditionalPushRule, NewPatternedPushRule,
        NewPushRule, NewSimplePushRule, PushCondition, RemovePushRuleError, RuleKind,
    },
};
use serde::Deserialize;
use serde_json::Value;

use super::Account;
use crate::error::{Error, ErrorKind, Result};

/// The body of `PUT /pushrules/global/{kind}/{ruleId}`.
#[derive(Debug, Deserialize)]
pub struct PushRuleBody {
    /// What to do when the rule matches.
    pub actions: Vec<Action>,
    /// For `override` and `underride` rules; none means the rule always matches.
    #[serde(default)]
    pub conditions: Vec<PushCondition>,
    /// For `content` rules: the glob to match against the body.
    pub pattern: Option<String>,
}

/// The kind named in the path; anything but the spec's five is `M_INVALID_PARAM`.
pub fn rule_kind(kind: &str) -> Result<RuleKind> {
    match kind {
        "override" | "underride" | "sender" | "room" | "content" => Ok(RuleKind::from(kind)),
        _ => Err(Error::invalid_param(format!(
            "Unknown push rule kind '{kind}': use override, underride, sender, room or content."
        ))),
    }
}

fn not_found(kind: &RuleKind, rule_id: &str) -> Error {
    Error::not_found(format!(
        "There is no {} push rule '{rule_id}'.",
        kind.as_str()
    ))
}

impl Account {
    /// One rule as the spec shows it (`M_NOT_FOUND` if the user has none of that ID).
    pub async fn push_rule(&self, user_id: &UserId, kind: &str, rule_id: &str) -> Result<Value> {
        let kind = rule_kind(kind)?;
        let rules = self.push_rules(user_id).await?;
        let rule = rules
            .get(kind.clone(), rule_id)
            .ok_or_else(|| not_found(&kind, rule_id))?;
        Ok(match rule {
            AnyPushRuleRef::Override(r) | AnyPushRuleRef::Underride(r) => serde_json::to_value(r)?,
            AnyPushRuleRef::Content(r) => serde_json::to_value(r)?,
            AnyPushRuleRef::Room(r) => serde_json::to_value(r)?,
            AnyPushRuleRef::Sender(r) => serde_json::to_value(r)?,
            _ => return Err(not_found(&kind, rule_id)),
        })
    }

    /// Adds or replaces a user-defined rule, placed by `before`/`after` (spec:
    /// "PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}"). A new rule is enabled.
    pub async fn set_push_rule(
        &self,
        user_id: &UserId,
        kind: &str,
        rule_id: &str,
        body: PushRuleBody,
        before: Option<&str>,
        after: Option<&str>,
    ) -> Result<()> {
        let rule = new_rule(rule_kind(kind)?, rule_id, body)?;
        if before == Some(rule_id) || after == Some(rule_id) {
            return Err(Error::new(
                ErrorKind::Unknown,
                "A rule cannot be placed relative to itself.",
            ));
        }
        self.edit_push_rules(user_id, |rules| {
            // ruma's reordering indexes a set by position; a case it does not foresee must
            // be a refused request, not a crashed one.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                rules.insert(rule, after, before)
            }))
            .map_err(|_| Error::new(ErrorKind::Unknown, "The rule cannot be placed there."))?
            .map_err(|e| insert_error(e, before, after))
        })
        .await
    }

    /// Deletes a user-defined rule; the server's defaults cannot be deleted.
    pub async fn delete_push_rule(
        &self,
        user_id: &UserId,
        kind: &str,
        rule_id: &str,
    ) -> Result<()> {
        let kind = rule_kind(kind)?;
        self.edit_push_rules(user_id, |rules| {
            rules.remove(kind.clone(), rule_id).map_err(|e| match e {
                RemovePushRuleError::ServerDefault => Error::forbidden(
                    "The server's default push rules cannot be deleted; disable them instead.",
                ),
                _ => not_found(&kind, rule_id),
            })
        })
        .await
    }

    /// Whether a rule is enabled.
    pub async fn push_rule_enabled(
        &self,
        user_id: &UserId,
        kind: &str,
        rule_id: &str,
    ) -> Result<bool> {
        let kind = rule_kind(kind)?;
        let rules = self.push_rules(user_id).await?;
        rules
            .get(kind.clone(), rule_id)
            .map(AnyPushRuleRef::enabled)
            .ok_or_else(|| not_found(&kind, rule_id))
    }

    /// Enables or disables a rule (defaults included).
    pub async fn set_push_rule_enabled(
        &self,
        user_id: &UserId,
        kind: &str,
        rule_id: &str,
        enabled: bool,
    ) -> Result<()> {
        let kind = rule_kind(kind)?;
        self.edit_push_rules(user_id, |rules| {
            rules
                .set_enabled(kind.clone(), rule_id, enabled)
                .map_err(|_| not_found(&kind, rule_id))
        })
        .await
    }

    /// A rule's actions.
    pub async fn push_rule_actions(
        &self,
        user_id: &UserId,
        kind: &str,
        rule_id: &str,
    ) -> Result<Vec<Action>> {
        let kind = rule_kind(kind)?;
        let rules = self.push_rules(user_id).await?;
        rules
            .get(kind.clone(), rule_id)
            .map(|r| r.actions().to_vec())
            .ok_or_else(|| not_found(&kind, rule_id))
    }

    /// Replaces a rule's actions (defaults included).
    pub async fn set_push_rule_actions(
        &self,
        user_id: &UserId,
        kind: &str,
        rule_id: &str,
        actions: Vec<Action>,
    ) -> Result<()> {
        let kind = rule_kind(kind)?;
        self.edit_push_rules(user_id, |rules| {
            rules
                .set_actions(kind.clone(), rule_id, actions)
                .map_err(|_| not_found(&kind, rule_id))
        })
        .await
    }
}

/// The rule a `PUT` describes. `room` and `sender` rules are named by the room or user they
/// match, so their ID must be one (spec: modules/push.md, "Push Rules").
fn new_rule(kind: RuleKind, rule_id: &str, body: PushRuleBody) -> Result<NewPushRule> {
    let id = rule_id.to_owned();
    Ok(match kind {
        RuleKind::Override => NewPushRule::Override(NewConditionalPushRule::new(
            id,
            body.conditions,
            body.actions,
        )),
        RuleKind::Underride => NewPushRule::Underride(NewConditionalPushRule::new(
            id,
            body.conditions,
            body.actions,
        )),
        RuleKind::Content => {
            let pattern = body.pattern.ok_or_else(|| {
                Error::new(ErrorKind::MissingParam, "A content rule needs a 'pattern'.")
            })?;
            NewPushRule::Content(NewPatternedPushRule::new(id, pattern, body.actions))
        }
        RuleKind::Room => {
            let room_id = OwnedRoomId::try_from(rule_id).map_err(|_| {
                Error::invalid_param("A room rule's ID must be the ID of the room it matches.")
            })?;
            NewPushRule::Room(NewSimplePushRule::new(room_id, body.actions))
        }
        RuleKind::Sender => {
            let user_id = OwnedUserId::try_from(rule_id).map_err(|_| {
                Error::invalid_param("A sender rule's ID must be the ID of the user it matches.")
            })?;
            NewPushRule::Sender(NewSimplePushRule::new(user_id, body.actions))
        }
        _ => return Err(Error::invalid_param("Unknown push rule kind.")),
    })
}

/// The spec's errors for a refused insert: a reserved or invalid ID is `M_INVALID_PARAM`;
/// an unknown or unusable `before`/`after` is 400 `M_UNKNOWN` as in the spec's example.
fn insert_error(error: InsertPushRuleError, before: Option<&str>, after: Option<&str>) -> Error {
    let relative = before.or(after).unwrap_or_default();
    match error {
        InsertPushRuleError::ServerDefaultRuleId => {
            Error::invalid_param("Rule IDs starting with '.' are reserved for the server's rules.")
        }
        InsertPushRuleError::InvalidRuleId => {
            Error::invalid_param("Rule IDs cannot contain '/' or '\\'.")
        }
        InsertPushRuleError::RelativeToServerDefaultRule => Error::new(
            ErrorKind::Unknown,
            format!("A rule cannot be placed relative to the server's rule '{relative}'."),
        ),
        InsertPushRuleError::UnknownRuleId => Error::new(
            ErrorKind::Unknown,
            format!("before/after rule not found: {relative}"),
        ),
        InsertPushRuleError::BeforeHigherThanAfter => Error::new(
            ErrorKind::Unknown,
            "'before' names a rule more important than 'after'.",
        ),
        _ => Error::new(ErrorKind::Unknown, error.to_string()),
    }
}
