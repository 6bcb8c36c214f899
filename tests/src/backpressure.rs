//! Back-pressure for the stand-in control plane: on a test's word it
//! answers the websocket upgrade, or the REST API, with 503 or 429 and a
//! `Retry-After` (seconds, an HTTP date, or none), as an overloaded server
//! behind a load balancer would. Every request to those paths is recorded
//! with its arrival time, refused or not, so a test can check when the
//! agent came back.
//!
//! The stand-in installs one [`Gate`] in front of all its routes
//! ([`crate::standin::StandIn::gate`]); it lets everything through until
//! [`Gate::refuse`] is called.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Which part of the API a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The Socket.IO path (the websocket upgrade).
    Socket,
    /// `/api/...`.
    Rest,
}

impl Route {
    fn of(path: &str) -> Option<Self> {
        if path.starts_with("/socket.io") {
            Some(Route::Socket)
        } else if path.starts_with("/api/") {
            Some(Route::Rest)
        } else {
            None
        }
    }
}

/// How to refuse, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 503 or 429.
    pub status: u16,
    /// The `Retry-After` header as sent, if any.
    pub retry_after: Option<String>,
    pub route: Route,
    /// Refuse this many requests, then let everything through again;
    /// `None`: until [`Gate::open`].
    pub count: Option<usize>,
}

impl Refusal {
    /// The socket upgrade answered 503 with `Retry-After: seconds`.
    pub fn socket_busy(seconds: u64) -> Self {
        Self {
            status: 503,
            retry_after: Some(seconds.to_string()),
            route: Route::Socket,
            count: None,
        }
    }

    /// Only the next `count` requests.
    pub fn times(self, count: usize) -> Self {
        Self {
            count: Some(count),
            ..self
        }
    }
}

/// One request on a gated route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub at: Instant,
    /// Wall-clock time, for comparing with an HTTP-date `Retry-After`.
    pub wall: SystemTime,
    pub route: Route,
    pub refused: bool,
    /// Tells devices apart: a hash of the `Authorization` header (the
    /// token itself is not kept), 0 without one.
    pub client: u64,
}

#[derive(Default)]
struct Inner {
    refusal: Option<Refusal>,
    arrivals: Vec<Arrival>,
}

/// The switch and the record.
#[derive(Default)]
pub struct Gate {
    state: Mutex<Inner>,
    arrived: Notify,
}

impl Gate {
    fn state(&self) -> MutexGuard<'_, Inner> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Starts refusing (replacing any earlier refusal).
    pub fn refuse(&self, refusal: Refusal) {
        self.state().refusal = Some(refusal);
    }

    /// Lets everything through again.
    pub fn open(&self) {
        self.state().refusal = None;
    }

    /// Every request on a gated route so far, in order of arrival.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.state().arrivals.clone()
    }

    /// Waits until `check` holds for the arrivals; false on timeout.
    pub async fn wait_for(&self, limit: Duration, check: impl Fn(&[Arrival]) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.arrived.notified();
            if check(&self.arrivals()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return check(&self.arrivals());
            }
        }
    }

    /// Records the arrival; the refusal to answer with, if any.
    fn arrive(&self, route: Route, client: u64) -> Option<Refusal> {
        let mut state = self.state();
        let refusal = state
            .refusal
            .as_mut()
            .filter(|refusal| refusal.route == route)
            .map(|refusal| {
                if let Some(count) = refusal.count.as_mut() {
                    *count = count.saturating_sub(1);
                }
                refusal.clone()
            });
        if state
            .refusal
            .as_ref()
            .is_some_and(|refusal| refusal.count == Some(0))
        {
            state.refusal = None;
        }
        state.arrivals.push(Arrival {
            at: Instant::now(),
            wall: SystemTime::now(),
            route,
            refused: refusal.is_some(),
            client,
        });
        drop(state);
        self.arrived.notify_waiters();
        refusal
    }
}

/// The middleware: refuses or passes each request on a gated route.
pub async fn gate(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    let Some(route) = Route::of(request.uri().path()) else {
        return next.run(request).await;
    };
    let client = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|value| {
            use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
            BuildHasherDefault::<DefaultHasher>::default().hash_one(value.as_bytes())
        })
        .unwrap_or(0);
    let Some(refusal) = gate.arrive(route, client) else {
        return next.run(request).await;
    };
    let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let code = if status == StatusCode::TOO_MANY_REQUESTS {
        "rate_limited"
    } else {
        "unavailable"
    };
    let body = json!({"error": code, "message": "the control plane is busy; retry later"});
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(value) = refusal
        .retry_after
        .as_deref()
        .and_then(|value| HeaderValue::from_str(value).ok())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counted_refusal_ends_by_itself_and_every_arrival_is_kept() {
        let gate = Gate::default();
        gate.refuse(Refusal::socket_busy(3).times(2));
        assert!(gate.arrive(Route::Rest, 1).is_none(), "only the socket");
        assert!(gate.arrive(Route::Socket, 1).is_some());
        assert!(gate.arrive(Route::Socket, 1).is_some());
        assert!(gate.arrive(Route::Socket, 1).is_none());
        let refused: Vec<bool> = gate.arrivals().iter().map(|a| a.refused).collect();
        assert_eq!(refused, [false, true, true, false]);
        assert_eq!(Route::of("/socket.io/"), Some(Route::Socket));
        assert_eq!(Route::of("/api/v1/devices/me"), Some(Route::Rest));
        assert_eq!(Route::of("/viewer"), None);
    }
}
