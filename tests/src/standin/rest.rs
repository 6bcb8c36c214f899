//! The stand-in's REST plumbing: the contract's error body, the bearer
//! token, strict JSON bodies and RFC 3339 timestamps.

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub(super) fn error(status: StatusCode, code: &str, message: &str) -> ApiError {
    ApiError {
        status,
        code: code.into(),
        message: message.into(),
        state: None,
    }
}

/// An error body of the contract, small enough to return by value.
pub(super) struct ApiError {
    pub(super) status: StatusCode,
    pub(super) code: Box<str>,
    pub(super) message: Box<str>,
    /// The session state, for `invalid_state`.
    pub(super) state: Option<&'static str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": &*self.code, "message": &*self.message});
        if let Some(state) = self.state {
            body["state"] = json!(state);
        }
        (self.status, Json(body)).into_response()
    }
}

pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// Parses an optional JSON object body strictly.
pub(super) fn json_body(body: &str) -> Result<serde_json::Map<String, Value>, ApiError> {
    if body.trim().is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "body must be a JSON object",
        )),
    }
}

/// The socket middleware's refusal.
#[derive(Debug)]
pub(super) struct Unauthorized;

impl std::fmt::Display for Unauthorized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("unauthorized")
    }
}

/// A session as the REST API shows it.
pub(super) fn session_view(session: &super::Session) -> Value {
    json!({
        "sessionId": session.id,
        "state": session.state.as_str(),
        "cameraId": session.camera_id,
        "clientId": session.client_id,
    })
}

/// Now as RFC 3339 in UTC, for `requestedAt`.
pub(super) fn humantime_now() -> String {
    // RFC 3339 in UTC without pulling in a date crate.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let days = now.div_euclid(86_400);
    let secs = now.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_now_is_well_formed() {
        let now = humantime_now();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.ends_with('Z'));
        assert!(now.starts_with("20"), "{now}");
    }
}
