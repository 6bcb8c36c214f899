//! The control plane's REST API (contract section 2): one HTTP client with
//! timeouts, the bearer token on every call, and typed errors.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::reconnect::{Outcome, parse_retry_after};
use crate::config::Secret;

#[derive(Debug, thiserror::Error)]
pub enum RestError {
    #[error("the control plane refused the device token (401 unauthorized)")]
    Unauthorized,
    #[error("forbidden: {message}")]
    Forbidden { message: String },
    #[error("not found: {message}")]
    NotFound { message: String },
    #[error("session is in state {state:?}, which does not allow this")]
    InvalidState { state: String },
    #[error("conflict {code}: {message}")]
    Conflict { code: String, message: String },
    #[error("rate limited; retry after {retry_after:?}")]
    RateLimited { retry_after: Option<Duration> },
    /// A 5xx; a 503 may carry the server's `Retry-After`.
    #[error("server error {status}: {message}")]
    Server {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("bad request: {message}")]
    BadRequest { message: String },
    #[error("unexpected status {status}: {message}")]
    Unexpected { status: u16, message: String },
    #[error("request to the control plane failed: {0}")]
    Transport(String),
    #[error("control plane answered with an unexpected body: {0}")]
    BadBody(String),
}

impl RestError {
    /// What this error means to a caller that retries (the login loop):
    /// 429, and 503 with or without `Retry-After`, are back-pressure; a
    /// refused token has its own ladder; everything else is a failed attempt.
    pub fn retry_outcome(&self) -> Outcome {
        match self {
            RestError::Unauthorized => Outcome::AuthRejected,
            RestError::RateLimited { retry_after }
            | RestError::Server {
                status: 503,
                retry_after,
                ..
            } => Outcome::Refused {
                retry_after: *retry_after,
            },
            _ => Outcome::Failed,
        }
    }
}

/// `GET /api/v1/devices/me`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct DeviceInfo {
    pub id: String,
    pub role: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// A session as the REST API reports it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub session_id: String,
    pub state: String,
    #[serde(default)]
    pub camera_id: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    state: Option<String>,
}

#[derive(Clone)]
pub struct RestClient {
    http: reqwest::Client,
    base: url::Url,
    token: Secret,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient")
            .field("base", &self.base.as_str())
            .finish()
    }
}

impl RestClient {
    pub fn new(
        base: url::Url,
        token: Secret,
        timeout: Duration,
        roots: &super::tls::ExtraRoots,
    ) -> Result<Self, RestError> {
        let mut builder = reqwest::Client::builder();
        for certificate in roots.certificates() {
            let certificate = reqwest::Certificate::from_der(certificate)
                .map_err(|err| RestError::Transport(format!("ca_file: {err}")))?;
            builder = builder.add_root_certificate(certificate);
        }
        let http = builder
            .https_only(base.scheme() == "https")
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("camera-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| RestError::Transport(err.to_string()))?;
        Ok(Self { http, base, token })
    }

    fn url(&self, path: &str) -> Result<url::Url, RestError> {
        self.base
            .join(path)
            .map_err(|err| RestError::Transport(format!("bad URL path {path}: {err}")))
    }

    fn session_path(session_id: &str, suffix: &str) -> String {
        // Session ids come from the server; percent-encode so an odd id can
        // never change the path.
        let encoded: String = url::form_urlencoded::byte_serialize(session_id.as_bytes()).collect();
        format!("api/v1/streams/{encoded}{suffix}")
    }

    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, RestError> {
        let response = request
            .bearer_auth(self.token.expose())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            // without_url: the URL carries no secret, but keep errors short.
            .map_err(|err| RestError::Transport(err.without_url().to_string()))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, std::time::SystemTime::now()));
        let body = response
            .bytes()
            .await
            .map_err(|err| RestError::Transport(err.without_url().to_string()))?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|err| RestError::BadBody(err.to_string()));
        }
        let error: ErrorBody = serde_json::from_slice(&body).unwrap_or(ErrorBody {
            error: String::new(),
            message: String::from_utf8_lossy(&body).chars().take(200).collect(),
            state: None,
        });
        Err(match (status.as_u16(), error.error.as_str()) {
            (400, _) => RestError::BadRequest {
                message: error.message,
            },
            (401, _) => RestError::Unauthorized,
            (403, _) => RestError::Forbidden {
                message: error.message,
            },
            (404, _) => RestError::NotFound {
                message: error.message,
            },
            (409, "invalid_state") => RestError::InvalidState {
                state: error.state.unwrap_or_default(),
            },
            (409, _) => RestError::Conflict {
                code: error.error,
                message: error.message,
            },
            (429, _) => RestError::RateLimited { retry_after },
            (status @ 500..=599, _) => RestError::Server {
                status,
                message: error.message,
                retry_after,
            },
            (status, _) => RestError::Unexpected {
                status,
                message: error.message,
            },
        })
    }

    /// Who am I ("login").
    pub async fn me(&self) -> Result<DeviceInfo, RestError> {
        self.call(self.http.get(self.url("api/v1/devices/me")?))
            .await
    }

    pub async fn accept(&self, session_id: &str) -> Result<SessionInfo, RestError> {
        let url = self.url(&Self::session_path(session_id, "/accept"))?;
        self.call(self.http.post(url).json(&json!({}))).await
    }

    pub async fn end(&self, session_id: &str, reason: &str) -> Result<SessionInfo, RestError> {
        let url = self.url(&Self::session_path(session_id, "/end"))?;
        self.call(self.http.post(url).json(&json!({ "reason": reason })))
            .await
    }

    pub async fn session(&self, session_id: &str) -> Result<SessionInfo, RestError> {
        let url = self.url(&Self::session_path(session_id, ""))?;
        self.call(self.http.get(url)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_cannot_escape_the_path() {
        assert_eq!(
            RestClient::session_path("s-1", "/accept"),
            "api/v1/streams/s-1/accept"
        );
        assert_eq!(
            RestClient::session_path("../../devices/me", ""),
            "api/v1/streams/..%2F..%2Fdevices%2Fme"
        );
    }

    #[test]
    fn back_pressure_is_told_apart_from_failures() {
        let after = Some(Duration::from_secs(10));
        let server = |status, retry_after| RestError::Server {
            status,
            message: String::new(),
            retry_after,
        };
        let cases = [
            (RestError::Unauthorized, Outcome::AuthRejected),
            (
                RestError::RateLimited { retry_after: after },
                Outcome::Refused { retry_after: after },
            ),
            (
                RestError::RateLimited { retry_after: None },
                Outcome::Refused { retry_after: None },
            ),
            (server(503, after), Outcome::Refused { retry_after: after }),
            (server(503, None), Outcome::Refused { retry_after: None }),
            (server(500, after), Outcome::Failed),
            (RestError::Transport("refused".into()), Outcome::Failed),
        ];
        for (error, outcome) in cases {
            assert_eq!(error.retry_outcome(), outcome, "{error:?}");
        }
    }

    #[test]
    fn debug_never_shows_the_token() {
        let client = RestClient::new(
            url::Url::parse("http://127.0.0.1:1/").unwrap(),
            Secret::new("tok-very-secret".into()),
            Duration::from_secs(1),
            &Default::default(),
        )
        .unwrap();
        assert!(!format!("{client:?}").contains("tok-very-secret"));
    }
}
