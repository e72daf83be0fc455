//! The one error type of server-core.
//!
//! Protocol errors carry a Matrix errcode and a sentence for the client. Internal errors
//! (a failed query, a broken invariant) reach clients as `500 M_UNKNOWN` with a generic
//! message; the api layer logs them once with the request span.
//!
//! This module is a leaf: it knows nothing of HTTP. The api layer maps each [`ErrorKind`]
//! to a status code in one place (`api::response`).

use std::fmt;

/// Result alias used across server-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The Matrix error codes Kith produces (spec: client-server-api/_index.md, "Standard error response").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// `M_FORBIDDEN`: the request is understood but not allowed.
    Forbidden,
    /// `M_UNKNOWN_TOKEN`: the access token is unknown, expired or revoked.
    UnknownToken {
        /// True when the token merely expired, so the client may refresh it.
        soft_logout: bool,
    },
    /// `M_MISSING_TOKEN`: no access token was supplied.
    MissingToken,
    /// `M_BAD_JSON`: the body is JSON but not of the right shape.
    BadJson,
    /// `M_NOT_JSON`: the body is not JSON at all.
    NotJson,
    /// `M_NOT_FOUND`: the resource does not exist.
    NotFound,
    /// `M_LIMIT_EXCEEDED`: too many requests; try again after the delay.
    LimitExceeded {
        /// How long the client should wait, in milliseconds.
        retry_after_ms: u64,
    },
    /// `M_UNRECOGNIZED`: the server does not know this endpoint or method.
    Unrecognized,
    /// `M_UNKNOWN`: an internal error, or one without a better code.
    Unknown,
    /// `M_USER_IN_USE`: the username is taken.
    UserInUse,
    /// `M_INVALID_USERNAME`: the username is not a valid localpart.
    InvalidUsername,
    /// `M_ROOM_IN_USE`: the room alias is taken.
    RoomInUse,
    /// `M_INVALID_PARAM`: a parameter has a bad value.
    InvalidParam,
    /// `M_MISSING_PARAM`: a required parameter is missing.
    MissingParam,
    /// `M_TOO_LARGE`: the request body is too large.
    TooLarge,
    /// `M_USER_DEACTIVATED`: the account has been deactivated.
    UserDeactivated,
    /// `M_UNSUPPORTED_ROOM_VERSION`: the server does not support that room version.
    UnsupportedRoomVersion,
    /// `M_INCOMPATIBLE_ROOM_VERSION` (400): the asking server does not support the room's
    /// version (spec: server-server-api.md, "Joining Rooms").
    IncompatibleRoomVersion {
        /// The room's version.
        room_version: String,
    },
    /// `M_UNABLE_TO_AUTHORISE_JOIN` (400): a restricted room's conditions name only rooms
    /// this server knows nothing of (spec: server-server-api.md, "Restricted rooms").
    UnableToAuthoriseJoin,
    /// `M_UNABLE_TO_GRANT_JOIN` (400): the user meets a restricted room's conditions, but no
    /// user of this server may invite them; another server should be asked.
    UnableToGrantJoin,
    /// `M_INVALID_ROOM_STATE`: the initial state of a new room is invalid.
    InvalidRoomState,
    /// `M_UNAUTHORIZED`: the request was not correctly authorised (e.g. a bad UIA flow).
    Unauthorized,
    /// `M_EXCLUSIVE`: the resource is reserved.
    Exclusive,
    /// `M_WEAK_PASSWORD`: the password does not meet the server's policy.
    WeakPassword,
    /// `M_GUEST_ACCESS_FORBIDDEN`: guests may not do this.
    GuestAccessForbidden,
    /// `M_UNKNOWN` with 409: the resource already exists (e.g. a room alias).
    Conflict,
    /// `M_INVALID_SIGNATURE`: a signature on uploaded keys does not verify.
    InvalidSignature,
    /// `M_WRONG_ROOM_KEYS_VERSION` (403): the key backup version is not the current one.
    WrongRoomKeysVersion {
        /// The current backup version, if any.
        current_version: Option<String>,
    },
    /// `M_NOT_YET_UPLOADED` (504): the media ID exists but its bytes have not arrived in time.
    NotYetUploaded,
    /// `M_CANNOT_OVERWRITE_MEDIA` (409): the media ID already has its bytes.
    CannotOverwriteMedia,
    /// `M_UNKNOWN` with 502: a server Kith fetched from on the caller's behalf failed
    /// (a URL preview's page).
    BadGateway,
    /// `M_TOO_LARGE` with 502: another server's media is larger than Kith accepts (spec:
    /// content_repo.md, `GET /download`, "502").
    RemoteTooLarge,
}

impl ErrorKind {
    /// The errcode string as it appears on the wire.
    pub fn errcode(&self) -> &'static str {
        match self {
            Self::Forbidden => "M_FORBIDDEN",
            Self::UnknownToken { .. } => "M_UNKNOWN_TOKEN",
            Self::MissingToken => "M_MISSING_TOKEN",
            Self::BadJson => "M_BAD_JSON",
            Self::NotJson => "M_NOT_JSON",
            Self::NotFound => "M_NOT_FOUND",
            Self::LimitExceeded { .. } => "M_LIMIT_EXCEEDED",
            Self::Unrecognized => "M_UNRECOGNIZED",
            Self::Unknown => "M_UNKNOWN",
            Self::UserInUse => "M_USER_IN_USE",
            Self::InvalidUsername => "M_INVALID_USERNAME",
            Self::RoomInUse => "M_ROOM_IN_USE",
            Self::InvalidParam => "M_INVALID_PARAM",
            Self::MissingParam => "M_MISSING_PARAM",
            Self::TooLarge => "M_TOO_LARGE",
            Self::UserDeactivated => "M_USER_DEACTIVATED",
            Self::UnsupportedRoomVersion => "M_UNSUPPORTED_ROOM_VERSION",
            Self::InvalidRoomState => "M_INVALID_ROOM_STATE",
            Self::UnableToAuthoriseJoin => "M_UNABLE_TO_AUTHORISE_JOIN",
            Self::UnableToGrantJoin => "M_UNABLE_TO_GRANT_JOIN",
            Self::IncompatibleRoomVersion { .. } => "M_INCOMPATIBLE_ROOM_VERSION",
            Self::Unauthorized => "M_UNAUTHORIZED",
            Self::Exclusive => "M_EXCLUSIVE",
            Self::WeakPassword => "M_WEAK_PASSWORD",
            Self::GuestAccessForbidden => "M_GUEST_ACCESS_FORBIDDEN",
            Self::Conflict => "M_UNKNOWN",
            Self::InvalidSignature => "M_INVALID_SIGNATURE",
            Self::WrongRoomKeysVersion { .. } => "M_WRONG_ROOM_KEYS_VERSION",
            Self::NotYetUploaded => "M_NOT_YET_UPLOADED",
            Self::CannotOverwriteMedia => "M_CANNOT_OVERWRITE_MEDIA",
            Self::BadGateway => "M_UNKNOWN",
            Self::RemoteTooLarge => "M_TOO_LARGE",
        }
    }
}

/// Everything that can go wrong in server-core. Cloned when one failure answers several
/// requests (a batch of sends).
#[derive(Debug, Clone)]
pub enum Error {
    /// An error the client caused or may act on; it carries an errcode and a sentence.
    Matrix {
        /// Which Matrix error this is.
        kind: ErrorKind,
        /// A sentence for the user, saying why.
        message: String,
    },
    /// User-interactive auth must continue: the body is the spec's UIA response
    /// (`flows`, `params`, `session`, and maybe `completed`/`errcode`).
    Uiaa(serde_json::Value),
    /// Something failed inside the server. The text is for the log, never for the client.
    Internal(String),
}

impl Error {
    /// A protocol error with the given kind and message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::Matrix {
            kind,
            message: message.into(),
        }
    }
    /// `M_FORBIDDEN` with a sentence saying why.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }
    /// `M_NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// `M_BAD_JSON`.
    pub fn bad_json(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadJson, message)
    }
    /// `M_INVALID_PARAM`.
    pub fn invalid_param(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParam, message)
    }
    /// `M_LIMIT_EXCEEDED` with the time to wait.
    pub fn limit_exceeded(retry_after: std::time::Duration) -> Self {
        let retry_after_ms = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX);
        Self::new(
            ErrorKind::LimitExceeded { retry_after_ms },
            "Too many requests; wait and try again.",
        )
    }
    /// `M_UNRECOGNIZED`.
    pub fn unrecognized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unrecognized, message)
    }
    /// An internal error; `context` goes to the log only.
    pub fn internal(context: impl fmt::Display) -> Self {
        Self::Internal(context.to_string())
    }
    /// The sentence this error shows a user (internal details stay in the log).
    pub fn user_message(&self) -> String {
        match self {
            Self::Matrix { message, .. } => message.clone(),
            Self::Uiaa(_) => "More authentication is needed.".to_owned(),
            Self::Internal(_) => {
                "Something went wrong inside the server; its log says what.".to_owned()
            }
        }
    }

    /// The errcode this error shows a client.
    pub fn errcode(&self) -> &'static str {
        match self {
            Self::Matrix { kind, .. } => kind.errcode(),
            Self::Uiaa(_) => "M_FORBIDDEN",
            Self::Internal(_) => "M_UNKNOWN",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Matrix { kind, message } => write!(f, "{}: {message}", kind.errcode()),
            Self::Uiaa(_) => f.write_str("user-interactive authentication required"),
            Self::Internal(context) => write!(f, "internal error: {context}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Self::Internal(format!("database: {e}"))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::Internal(format!("json: {e}"))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Self::Internal(format!("io: {e}"))
    }
}
