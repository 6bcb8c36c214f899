//! SDP text fixes and ICE server URLs: pure string work around webrtcbin.

use crate::control_plane::events::IceServer;

/// Replaces every `a=fingerprint:` line with the certificate's real SHA-256.
pub fn with_fingerprint(sdp: &str, fingerprint: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        if line.starts_with("a=fingerprint:") {
            out.push_str("a=fingerprint:sha-256 ");
            out.push_str(fingerprint);
            out.push_str("\r\n");
        } else {
            out.push_str(line);
        }
    }
    out
}

/// The `a=mid` of each m-line, in order: webrtcbin reports local candidates
/// by m-line index, signaling carries the mid too.
pub fn mids(sdp: &str) -> Vec<Option<String>> {
    let mut mids = Vec::new();
    for line in sdp.lines() {
        if line.starts_with("m=") {
            mids.push(None);
        } else if let Some(mid) = line.strip_prefix("a=mid:")
            && let Some(last) = mids.last_mut()
        {
            *last = Some(mid.trim().to_owned());
        }
    }
    mids
}

/// ICE servers in webrtcbin's URL forms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceUrls {
    /// `stun://host:port`; webrtcbin takes one.
    pub stun: Option<String>,
    /// `turn(s)://user:pass@host:port`.
    pub turn: Vec<String>,
}

fn percent_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Converts W3C-style ICE servers (`stun:host:port`, `turn:host:port?transport=udp`
/// with username and credential) and configured ones into webrtcbin URLs.
pub fn ice_urls(
    servers: &[IceServer],
    configured_stun: &[String],
    configured_turn: &[String],
) -> IceUrls {
    let mut urls = IceUrls::default();
    let mut stun_candidates: Vec<String> = Vec::new();
    for server in servers {
        for url in &server.urls {
            if let Some(rest) = url
                .strip_prefix("stun:")
                .or_else(|| url.strip_prefix("stuns:"))
            {
                stun_candidates.push(format!("stun://{}", rest.trim_start_matches("//")));
            } else if let Some((scheme, rest)) = url
                .strip_prefix("turn:")
                .map(|rest| ("turn", rest))
                .or_else(|| url.strip_prefix("turns:").map(|rest| ("turns", rest)))
            {
                let (Some(user), Some(credential)) = (&server.username, &server.credential) else {
                    continue;
                };
                urls.turn.push(format!(
                    "{scheme}://{}:{}@{}",
                    percent_encode(user),
                    percent_encode(credential),
                    rest.trim_start_matches("//")
                ));
            }
        }
    }
    for stun in configured_stun {
        let rest = stun.trim_start_matches("stun:").trim_start_matches("//");
        stun_candidates.push(format!("stun://{rest}"));
    }
    urls.turn.extend(configured_turn.iter().cloned());
    urls.stun = stun_candidates.into_iter().next();
    urls
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
        a=group:BUNDLE video0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
        a=fingerprint:sha-256 00:11\r\na=mid:video0\r\na=sendonly\r\n";

    #[test]
    fn fingerprint_lines_are_replaced_and_nothing_else() {
        let fixed = with_fingerprint(OFFER, "AA:BB");
        assert!(fixed.contains("a=fingerprint:sha-256 AA:BB\r\n"));
        assert!(!fixed.contains("00:11"));
        assert_eq!(fixed.replace("AA:BB", "00:11"), OFFER);
    }

    #[test]
    fn mids_by_m_line() {
        assert_eq!(mids(OFFER), [Some("video0".to_string())]);
        assert_eq!(
            mids("v=0\r\nm=audio 9 x 0\r\nm=video 9 x 96\r\na=mid:v\r\n"),
            [None, Some("v".into())]
        );
    }

    #[test]
    fn ice_server_urls() {
        let servers = vec![
            IceServer {
                urls: vec!["stun:stun.example:3478".into()],
                username: None,
                credential: None,
            },
            IceServer {
                urls: vec![
                    "turn:turn.example:3478?transport=udp".into(),
                    "turn:nocreds".into(),
                ],
                username: Some("u@x".into()),
                credential: Some("p:w".into()),
            },
            IceServer {
                urls: vec!["turn:ignored:1".into()],
                username: None,
                credential: None,
            },
        ];
        let urls = ice_urls(
            &servers,
            &["stun:local:1".into()],
            &["turn://a:b@c:1".into()],
        );
        assert_eq!(urls.stun.as_deref(), Some("stun://stun.example:3478"));
        assert_eq!(
            urls.turn,
            [
                "turn://u%40x:p%3Aw@turn.example:3478?transport=udp",
                "turn://u%40x:p%3Aw@nocreds",
                "turn://a:b@c:1"
            ]
        );
        let urls = ice_urls(&[], &["stun:local:1".into()], &[]);
        assert_eq!(urls.stun.as_deref(), Some("stun://local:1"));
        assert_eq!(ice_urls(&[], &[], &[]), IceUrls::default());
    }
}
