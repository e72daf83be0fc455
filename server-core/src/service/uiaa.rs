//! User-interactive authentication (spec: client-server-api/_index.md,
//! "User-Interactive Authentication API").
//!
//! Sessions live in memory: they last minutes, and a restart only makes a client start the
//! flow again. A session is bound to the user it authenticates (if any) so a session made
//! for one account cannot authorise another.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ruma::UserId;
use serde_json::{Value, json};

use super::users::Users;
use crate::{
    config::{Config, RegistrationMode},
    crypto,
    error::{Error, ErrorKind, Result},
    storage::Store,
};

const SESSION_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// A login stage.
pub const DUMMY: &str = "m.login.dummy";
/// A login stage.
pub const PASSWORD: &str = "m.login.password";
/// A login stage.
pub const REGISTRATION_TOKEN: &str = "m.login.registration_token";

struct Session {
    completed: Vec<String>,
    user_id: Option<String>,
    /// For registration: the token used, counted once the account exists.
    registration_token: Option<String>,
    created: Instant,
}

/// What a completed flow proved.
#[derive(Debug, Default)]
pub struct Completed {
    /// The registration token used, if any.
    pub registration_token: Option<String>,
}

/// UIA sessions. Cheap to clone.
#[derive(Clone)]
pub struct Uiaa {
    config: Arc<Config>,
    store: Store,
    users: Users,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
}

impl Uiaa {
    /// Builds the service.
    pub fn new(config: Arc<Config>, store: Store, users: Users) -> Self {
        Self {
            config,
            store,
            users,
            sessions: Arc::default(),
        }
    }

    /// The flows that registration offers under the configured mode, or `M_FORBIDDEN` when
    /// registration is closed.
    pub fn registration_flows(&self) -> Result<Vec<Vec<&'static str>>> {
        match self.config.registration.mode {
            RegistrationMode::Closed => Err(Error::forbidden(
                "Registration is closed on this server; ask its admin for an account.",
            )),
            RegistrationMode::Token => Ok(vec![vec![REGISTRATION_TOKEN]]),
            RegistrationMode::Open => Ok(vec![vec![DUMMY]]),
        }
    }

    /// Runs one step of UIA. `auth` is the request's `auth` dict (absent on the first
    /// request). Returns when one of `flows` is complete; otherwise an [`Error::Uiaa`] that
    /// tells the client what to do next.
    pub async fn check(
        &self,
        auth: Option<&Value>,
        flows: &[Vec<&'static str>],
        user_id: Option<&UserId>,
    ) -> Result<Completed> {
        let Some(auth) = auth else {
            let session = self.new_session(user_id);
            return Err(self.challenge(flows, &session, &[], None));
        };
        let session_id = auth
            .get("session")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let session_id = match session_id {
            Some(id) if self.session_matches(&id, user_id)? => id,
            Some(_) => {
                return Err(Error::new(
                    ErrorKind::Unauthorized,
                    "Unknown or expired authentication session.",
                ));
            }
            // Clients may authenticate in one go, without a session from a first request.
            None => self.new_session(user_id),
        };
        let stage = auth
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let allowed = flows.iter().any(|flow| flow.contains(&stage.as_str()));
        let outcome = if allowed {
            self.run_stage(&stage, auth, user_id).await
        } else {
            Err(format!("Stage {stage} is not offered."))
        };
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let Some(session) = sessions.get_mut(&session_id) else {
            return Err(Error::new(
                ErrorKind::Unauthorized,
                "Unknown or expired authentication session.",
            ));
        };
        let failure = match outcome {
            Ok(token) => {
                if !session.completed.contains(&stage) {
                    session.completed.push(stage);
                }
                if token.is_some() {
                    session.registration_token = token;
                }
                None
            }
            Err(message) => Some(message),
        };
        let done = flows.iter().any(|flow| {
            flow.iter()
                .all(|s| session.completed.iter().any(|c| c == s))
        });
        if done && failure.is_none() {
            let session = sessions.remove(&session_id);
            return Ok(Completed {
                registration_token: session.and_then(|s| s.registration_token),
            });
        }
        let completed = session.completed.clone();
        drop(sessions);
        Err(self.challenge(flows, &session_id, &completed, failure))
    }

    fn new_session(&self, user_id: Option<&UserId>) -> String {
        let id = crypto::random_string(24);
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| s.created.elapsed() < SESSION_LIFETIME);
        sessions.insert(
            id.clone(),
            Session {
                completed: Vec::new(),
                user_id: user_id.map(|u| u.to_string()),
                registration_token: None,
                created: Instant::now(),
            },
        );
        id
    }

    fn session_matches(&self, id: &str, user_id: Option<&UserId>) -> Result<bool> {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        Ok(sessions.get(id).is_some_and(|s| {
            s.created.elapsed() < SESSION_LIFETIME
                && s.user_id.as_deref() == user_id.map(|u| u.as_str())
        }))
    }

    /// Checks one stage. Ok carries a registration token if that stage used one.
    async fn run_stage(
        &self,
        stage: &str,
        auth: &Value,
        user_id: Option<&UserId>,
    ) -> std::result::Result<Option<String>, String> {
        match stage {
            DUMMY => Ok(None),
            REGISTRATION_TOKEN => {
                let token = auth
                    .get("token")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                match self.store.users().registration_token_valid(token).await {
                    Ok(true) => Ok(Some(token.to_owned())),
                    Ok(false) => Err("That registration token is not valid.".to_owned()),
                    Err(e) => Err(e.to_string()),
                }
            }
            PASSWORD => {
                let Some(user_id) = user_id else {
                    return Err("Password authentication needs a user.".to_owned());
                };
                let claimed = auth
                    .pointer("/identifier/user")
                    .or_else(|| auth.get("user"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let claimed_matches = claimed == user_id.as_str() || claimed == user_id.localpart();
                let password = auth
                    .get("password")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if !claimed_matches {
                    return Err("You can only authenticate as yourself.".to_owned());
                }
                match self.users.check_password(user_id, password).await {
                    Ok(_) => Ok(None),
                    Err(e) => Err(match e {
                        Error::Matrix { message, .. } => message,
                        other => other.to_string(),
                    }),
                }
            }
            other => Err(format!("Unknown authentication stage {other}.")),
        }
    }

    fn challenge(
        &self,
        flows: &[Vec<&'static str>],
        session: &str,
        completed: &[String],
        failure: Option<String>,
    ) -> Error {
        let mut body = json!({
            "flows": flows.iter().map(|stages| json!({ "stages": stages })).collect::<Vec<_>>(),
            "params": {},
            "session": session,
        });
        if let Some(map) = body.as_object_mut() {
            if !completed.is_empty() {
                map.insert("completed".into(), json!(completed));
            }
            if let Some(message) = failure {
                map.insert("errcode".into(), json!("M_FORBIDDEN"));
                map.insert("error".into(), json!(message));
            }
        }
        Error::Uiaa(body)
    }
}
