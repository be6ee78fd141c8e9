//! The REST layer's one error type, rendered in the Nature API's error shape
//! `{"code": 400001, "message": "..."}` (HTTP status × 1000 + a sub-code).
//!
//! 5xx bodies say nothing internal: the cause is logged here, once, and the
//! client sees only "Internal Server Error".

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// Largest request body the API reads (the router's `DefaultBodyLimit`).
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// An error a handler returns; becomes a Nature-shaped JSON response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    sub_code: u32,
    message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    code: u32,
    message: &'a str,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            sub_code: 1,
            message: message.into(),
        }
    }

    /// 400 for input that is malformed or impossible for the target.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401; deliberately the same for missing, unknown, revoked and expired tokens.
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized")
    }

    /// 403 naming the scope the token lacks.
    pub fn forbidden(scope: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            format!("Forbidden: this token lacks the {scope} scope"),
        )
    }

    /// 403 with a reason (credentials that are not good for this).
    pub fn forbidden_because(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 404; also used for resources of other users, so existence never leaks.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not Found")
    }

    /// 405 for a known path with the wrong method.
    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
    }

    /// 409 for a request that conflicts with existing state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// 429 with Nature's 429001.
    pub fn too_many_requests() -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests")
    }

    /// 502 when the device reported that it could not carry a command out.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, message)
    }

    /// 504 when the device never confirmed a command.
    pub fn gateway_timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, message)
    }

    /// 413 for a body over [`BODY_LIMIT`].
    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body must be at most {} bytes", BODY_LIMIT),
        )
    }

    /// 503 when a dependency (the database) is unavailable.
    pub fn unavailable() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
    }

    /// 500; `cause` is logged, never sent.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message the client sees.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Nature's numeric code: status × 1000 + sub-code.
    pub fn code(&self) -> u32 {
        u32::from(self.status.as_u16()) * 1000 + self.sub_code
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        if database_unavailable(&e) {
            tracing::error!(error = %e, "database connection lost");
            return Self::unavailable();
        }
        Self::internal(format_args!("database: {e}"))
    }
}

/// Whether `e` says the database went away (restart, shutdown, lost
/// connection) rather than that the query was wrong: the client may retry.
pub fn database_unavailable(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    if e.is_closed() {
        return true;
    }
    e.code().is_some_and(|c| {
        c.code().starts_with("08")
            || *c == SqlState::ADMIN_SHUTDOWN
            || *c == SqlState::CRASH_SHUTDOWN
            || *c == SqlState::CANNOT_CONNECT_NOW
    })
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(e: axum::extract::rejection::BytesRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::payload_too_large();
        }
        Self::bad_request(format!("cannot read the request body: {e}"))
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        tracing::error!(error = %e, "no database connection");
        Self::unavailable()
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        match e {
            crate::db::DbError::Pool(e) => e.into(),
            crate::db::DbError::Query(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            code: self.code(),
            message: &self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;
