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

/// Whether the viewer's answer accepted FEC: ULPFEC inside RED, as the
/// offer proposes it. Without both, webrtcbin sends no FEC at all.
pub fn accepts_ulpfec(answer: &str) -> bool {
    let has = |codec: &str| {
        answer.lines().any(|line| {
            line.strip_prefix("a=rtpmap:")
                .and_then(|rest| rest.split_once(' '))
                .is_some_and(|(_, encoding)| {
                    encoding
                        .trim()
                        .to_ascii_lowercase()
                        .starts_with(&format!("{codec}/"))
                })
        })
    };
    has("red") && has("ulpfec")
}

/// ICE servers in webrtcbin's URL forms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceUrls {
    /// `stun://host:port`; webrtcbin takes one.
    pub stun: Option<String>,
    /// `turn(s)://user:pass@host:port`.
    pub turn: Vec<String>,
    /// Addresses of the session's local TLS tunnels standing in for its
    /// `turns:` servers (see `turn_tls`): a relay candidate whose TURN
    /// server is one of them reaches its server over TLS.
    pub tls_tunnels: Vec<std::net::IpAddr>,
}

/// Percent-encodes all but RFC 3986's unreserved characters, for the
/// userinfo of a URL that GStreamer unescapes with `g_uri_unescape_*`
/// (which, unlike form decoding, leaves `+` alone: a space must be `%20`).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `host:port?query` of a TURN URL as webrtcbin accepts it: webrtcbin
/// refuses the whole URL for any query key but `transport`, and for a
/// transport other than lower-case `udp` or `tcp`. Other keys are dropped
/// and the transport lower-cased; any other transport value is kept, so
/// webrtcbin refuses it and the agent warns.
fn turn_address(rest: &str) -> String {
    let rest = rest.trim_start_matches("//");
    let Some((address, query)) = rest.split_once('?') else {
        return rest.to_string();
    };
    let transport = query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.eq_ignore_ascii_case("transport")
            .then(|| value.to_ascii_lowercase())
    });
    match transport {
        Some(transport) => format!("{address}?transport={transport}"),
        None => address.to_string(),
    }
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
                    turn_address(rest)
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
    fn an_answer_accepts_fec_only_with_red_and_ulpfec() {
        let both = "m=video 9 x 96 97 98\r\na=rtpmap:96 H264/90000\r\n\
            a=rtpmap:97 red/90000\r\na=rtpmap:98 ulpfec/90000\r\n";
        assert!(accepts_ulpfec(both));
        assert!(accepts_ulpfec(&both.replace("ulpfec", "ULPFEC")));
        assert!(!accepts_ulpfec(
            &both.replace("a=rtpmap:98 ulpfec/90000\r\n", "")
        ));
        assert!(!accepts_ulpfec(
            &both.replace("a=rtpmap:97 red/90000\r\n", "")
        ));
        assert!(!accepts_ulpfec(OFFER));
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

    #[test]
    fn turn_transports_and_credentials_reach_webrtcbin_intact() {
        let servers = vec![IceServer {
            urls: vec![
                "turn:10.213.0.1:3478?transport=udp".into(),
                "turn:10.213.0.1:3478?transport=TCP".into(),
                "turns:10.213.0.1:5349?transport=tcp".into(),
                "turns:turn.example".into(),
                "turn:[2001:db8::1]:3478?foo=bar&transport=udp".into(),
                "turn:turn.example?ttl=86400".into(),
                "turn:turn.example?transport=tls".into(),
            ],
            // A coturn REST-API username, a base64 HMAC and a space.
            username: Some("1700000000:cam 7".into()),
            credential: Some("a+b/c=~".into()),
        }];
        let user = "1700000000%3Acam%207:a%2Bb%2Fc%3D~";
        assert_eq!(
            ice_urls(&servers, &[], &[]).turn,
            [
                format!("turn://{user}@10.213.0.1:3478?transport=udp"),
                format!("turn://{user}@10.213.0.1:3478?transport=tcp"),
                format!("turns://{user}@10.213.0.1:5349?transport=tcp"),
                format!("turns://{user}@turn.example"),
                format!("turn://{user}@[2001:db8::1]:3478?transport=udp"),
                format!("turn://{user}@turn.example"),
                // Refused by webrtcbin, so the agent warns.
                format!("turn://{user}@turn.example?transport=tls"),
            ]
        );
    }
}
