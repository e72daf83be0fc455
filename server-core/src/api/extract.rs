//! Extractors: who is calling (`AuthedUser`), and JSON bodies and paths whose rejections
//! are Matrix errors.

use axum::{
    extract::{FromRequest, FromRequestParts, Request, rejection::BytesRejection},
    http::{header, request::Parts},
};
use serde::de::DeserializeOwned;

use crate::{
    error::{Error, ErrorKind},
    service::{Services, users::Session},
};

/// The authenticated caller: an access token from the `Authorization: Bearer` header (or
/// the deprecated `access_token` query parameter) that belongs to a live device.
pub struct AuthedUser(pub Session);

pub(crate) fn access_token(parts: &Parts) -> Option<String> {
    if let Some(value) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return value.strip_prefix("Bearer ").map(|t| t.trim().to_owned());
    }
    parts.uri.query().and_then(|query| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix("access_token=").map(str::to_owned))
    })
}

impl FromRequestParts<Services> for AuthedUser {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        services: &Services,
    ) -> Result<Self, Self::Rejection> {
        let token = access_token(parts)
            .ok_or_else(|| Error::new(ErrorKind::MissingToken, "An access token is required."))?;
        let session = services.users.authenticate(&token).await?;
        Ok(Self(session))
    }
}

/// An optional caller: no token is `None`, a token that is not valid is still an error.
impl axum::extract::OptionalFromRequestParts<Services> for AuthedUser {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        services: &Services,
    ) -> Result<Option<Self>, Self::Rejection> {
        match access_token(parts) {
            None => Ok(None),
            Some(token) => Ok(Some(Self(services.users.authenticate(&token).await?))),
        }
    }
}

/// A JSON body of type `T`: not JSON is `M_NOT_JSON`, the wrong shape `M_BAD_JSON`, too
/// big `M_TOO_LARGE`. An empty body reads as `{}`, as some clients send none.
pub struct JsonBody<T>(pub T);

/// The whole request body, within the router's size limit (`M_TOO_LARGE` beyond it).
pub(crate) async fn body_bytes<S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<axum::body::Bytes, Error> {
    axum::body::Bytes::from_request(req, state)
        .await
        .map_err(|e| match e {
            BytesRejection::FailedToBufferBody(_) => {
                Error::new(ErrorKind::TooLarge, "The request body is too large.")
            }
            other => Error::bad_json(other.body_text()),
        })
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|_| Error::new(ErrorKind::NotJson, "The request body is not valid JSON."))?;
        if !value.is_object() {
            return Err(Error::new(
                ErrorKind::NotJson,
                "The request body must be a JSON object.",
            ));
        }
        serde_json::from_value(value)
            .map(JsonBody)
            .map_err(|e| Error::bad_json(format!("The request body is invalid: {e}.")))
    }
}

/// Path parameters whose rejection is `M_INVALID_PARAM`.
pub struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathParams(p.0))
            .map_err(|e| Error::invalid_param(e.body_text()))
    }
}

/// Query parameters whose rejection is `M_INVALID_PARAM`.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| QueryParams(q.0))
            .map_err(|e| Error::invalid_param(e.body_text()))
    }
}
