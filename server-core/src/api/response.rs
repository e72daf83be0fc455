//! How errors become HTTP responses: the one place that maps errcodes to status codes
//! (spec: client-server-api/_index.md, "Standard error response") and logs internal errors.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::error::{Error, ErrorKind};

/// The HTTP status for an error kind.
pub fn status_of(kind: &ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Forbidden
        | ErrorKind::UserDeactivated
        | ErrorKind::GuestAccessForbidden
        | ErrorKind::WrongRoomKeysVersion { .. } => StatusCode::FORBIDDEN,
        ErrorKind::UnknownToken { .. } | ErrorKind::MissingToken | ErrorKind::Unauthorized => {
            StatusCode::UNAUTHORIZED
        }
        ErrorKind::NotFound | ErrorKind::Unrecognized => StatusCode::NOT_FOUND,
        ErrorKind::LimitExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::RemoteTooLarge => StatusCode::BAD_GATEWAY,
        ErrorKind::Conflict | ErrorKind::CannotOverwriteMedia => StatusCode::CONFLICT,
        // spec: authed-content-repo.yaml, the `notYetUploaded` response is a 504.
        ErrorKind::NotYetUploaded => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::BadGateway => StatusCode::BAD_GATEWAY,
        ErrorKind::BadJson
        | ErrorKind::NotJson
        | ErrorKind::Unknown
        | ErrorKind::UserInUse
        | ErrorKind::InvalidUsername
        | ErrorKind::RoomInUse
        | ErrorKind::InvalidParam
        | ErrorKind::MissingParam
        | ErrorKind::UnsupportedRoomVersion
        | ErrorKind::InvalidRoomState
        | ErrorKind::IncompatibleRoomVersion { .. }
        | ErrorKind::UnableToAuthoriseJoin
        | ErrorKind::UnableToGrantJoin
        | ErrorKind::Exclusive
        | ErrorKind::InvalidSignature
        | ErrorKind::WeakPassword => StatusCode::BAD_REQUEST,
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::Matrix { kind, message } => {
                let mut body = json!({ "errcode": kind.errcode(), "error": message });
                match &kind {
                    ErrorKind::LimitExceeded { retry_after_ms } => {
                        body["retry_after_ms"] = json!(retry_after_ms)
                    }
                    ErrorKind::UnknownToken { soft_logout } => {
                        body["soft_logout"] = json!(soft_logout)
                    }
                    ErrorKind::WrongRoomKeysVersion { current_version } => {
                        body["current_version"] = json!(current_version)
                    }
                    ErrorKind::IncompatibleRoomVersion { room_version } => {
                        body["room_version"] = json!(room_version)
                    }
                    _ => {}
                }
                (status_of(&kind), Json(body)).into_response()
            }
            Error::Uiaa(body) => (StatusCode::UNAUTHORIZED, Json(body)).into_response(),
            Error::Internal(context) => {
                tracing::error!(error = %context, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({ "errcode": "M_UNKNOWN", "error": "Internal server error." })),
                )
                    .into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errcodes_map_to_the_statuses_the_spec_gives() {
        assert_eq!(status_of(&ErrorKind::Forbidden), StatusCode::FORBIDDEN);
        assert_eq!(
            status_of(&ErrorKind::UnknownToken { soft_logout: false }),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status_of(&ErrorKind::MissingToken),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status_of(&ErrorKind::LimitExceeded { retry_after_ms: 1 }),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(status_of(&ErrorKind::NotJson), StatusCode::BAD_REQUEST);
        assert_eq!(
            status_of(&ErrorKind::TooLarge),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(status_of(&ErrorKind::Unrecognized), StatusCode::NOT_FOUND);
        assert_eq!(
            status_of(&ErrorKind::NotYetUploaded),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            status_of(&ErrorKind::CannotOverwriteMedia),
            StatusCode::CONFLICT
        );
        assert_eq!(Error::internal("x").errcode(), "M_UNKNOWN");
    }
}
