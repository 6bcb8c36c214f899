//! The browser viewer page (`tests/viewer/`) as the stand-in serves it under
//! `/viewer/`: plain files read from the repository at request time (edit,
//! reload, no rebuild), plus the Socket.IO client from the page's own
//! `node_modules` (`npm ci --prefix tests/viewer`, done by
//! `scripts/install-deps.sh`).
//!
//! Only a fixed list of files is served, so no request can name a path.

use std::path::PathBuf;

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// Where the page's files live.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("viewer")
}

/// (URL name, path under [`dir`], content type)
const FILES: [(&str, &str, &str); 5] = [
    ("", "index.html", "text/html; charset=utf-8"),
    ("viewer.js", "viewer.js", "text/javascript; charset=utf-8"),
    ("legacy.js", "legacy.js", "text/javascript; charset=utf-8"),
    ("viewer.css", "viewer.css", "text/css; charset=utf-8"),
    (
        "socket.io.min.js",
        "node_modules/socket.io-client/dist/socket.io.min.js",
        "text/javascript; charset=utf-8",
    ),
];

const NOT_INSTALLED: &str =
    "socket.io-client is not installed: run scripts/install-deps.sh (npm ci --prefix tests/viewer)";

/// Fails with a clear message when a file the page needs is missing (the
/// npm package, typically), so a browser test stops before it starts.
pub fn check_installed() -> anyhow::Result<()> {
    for (_, path, _) in FILES {
        let path = dir().join(path);
        if !path.is_file() {
            if path
                .components()
                .any(|part| part.as_os_str() == "node_modules")
            {
                anyhow::bail!("{NOT_INSTALLED} ({} missing)", path.display());
            }
            anyhow::bail!("viewer page file missing: {}", path.display());
        }
    }
    Ok(())
}

/// The routes, to merge into the stand-in's router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/viewer", get(|| async { Redirect::permanent("/viewer/") }))
        .route("/viewer/", get(|| file(String::new())))
        .route("/viewer/{name}", get(|Path(name): Path<String>| file(name)))
}

async fn file(name: String) -> Response {
    let Some((_, path, content_type)) = FILES.iter().find(|(url, _, _)| *url == name) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    match tokio::fs::read(dir().join(path)).await {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(_) if path.starts_with("node_modules") => {
            (StatusCode::INTERNAL_SERVER_ERROR, NOT_INSTALLED).into_response()
        }
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read {path}: {err}"),
        )
            .into_response(),
    }
}

/// The page's URL on a stand-in at `standin_url`. `ice_servers` is the
/// JSON array of `RTCIceServer`s for the page's own peer connection (None:
/// no ICE server at all); `relay_only` sets `iceTransportPolicy: "relay"`.
pub fn viewer_url(
    standin_url: &str,
    token: &str,
    camera: &str,
    ice_servers: Option<&serde_json::Value>,
    relay_only: bool,
) -> String {
    let mut url = url::Url::parse(standin_url)
        .and_then(|base| base.join("/viewer/"))
        .map_or_else(|_| format!("{standin_url}/viewer/"), String::from);
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("token", token)
        .append_pair("camera", camera);
    if let Some(ice) = ice_servers {
        query.append_pair("ice", &ice.to_string());
    }
    query.append_pair("policy", if relay_only { "relay" } else { "all" });
    url.push('?');
    url.push_str(&query.finish());
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_carries_every_parameter_encoded() {
        let ice = serde_json::json!([{"urls": ["turn:10.213.0.1:3478"], "username": "u", "credential": "p&q"}]);
        let url = viewer_url(
            "http://10.213.0.1:4000",
            "tok en",
            "cam-1",
            Some(&ice),
            true,
        );
        let parsed = url::Url::parse(&url).unwrap();
        assert_eq!(parsed.path(), "/viewer/");
        let pairs: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
        assert_eq!(pairs["token"], "tok en");
        assert_eq!(pairs["camera"], "cam-1");
        assert_eq!(pairs["policy"], "relay");
        let back: serde_json::Value = serde_json::from_str(&pairs["ice"]).unwrap();
        assert_eq!(back, ice);
    }

    #[test]
    fn without_ice_servers_the_url_has_none() {
        let url = viewer_url("http://127.0.0.1:1/", "t", "c", None, false);
        assert!(!url.contains("ice="), "{url}");
        assert!(url.ends_with("policy=all"), "{url}");
    }

    #[test]
    fn the_page_files_are_in_the_repository() {
        for (_, path, _) in FILES {
            if !path.starts_with("node_modules") {
                assert!(dir().join(path).is_file(), "{path}");
            }
        }
    }
}
