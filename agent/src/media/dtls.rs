//! The DTLS identity of the agent: one ECDSA P-256 certificate, made once.
//!
//! GStreamer 1.22 would otherwise make an RSA-2048 certificate per session,
//! which is slow on small boards and rejected by peers that offer only
//! ECDHE-ECDSA suites (aiortc). The certificate goes into the `pem` property
//! of each DTLS decoder; the SDP fingerprint is ours to compute because
//! webrtcbin 1.22 hashes the whole PEM text instead of the certificate.

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
#[error("cannot create the DTLS certificate: {0}")]
pub struct DtlsError(String);

/// Certificate and key, and the SDP fingerprint that belongs to them.
#[derive(Clone)]
pub struct DtlsIdentity {
    pem: String,
    fingerprint: String,
}

impl std::fmt::Debug for DtlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The PEM holds the private key: never print it.
        f.debug_struct("DtlsIdentity")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl DtlsIdentity {
    pub fn generate() -> Result<Self, DtlsError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|err| DtlsError(err.to_string()))?;
        let params = rcgen::CertificateParams::new(vec!["camera-agent".to_string()])
            .map_err(|err| DtlsError(err.to_string()))?;
        let cert = params
            .self_signed(&key)
            .map_err(|err| DtlsError(err.to_string()))?;
        let fingerprint = fingerprint_of_der(cert.der());
        Ok(Self {
            pem: format!("{}{}", cert.pem(), key.serialize_pem()),
            fingerprint,
        })
    }

    /// Certificate followed by private key, as GStreamer's `pem` wants.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// `AB:CD:...`, the SHA-256 of the certificate's DER.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// SHA-256 of a DER certificate in SDP's colon-separated upper-case hex.
pub fn fingerprint_of_der(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_ecdsa_and_fingerprint_matches_the_der() {
        let identity = DtlsIdentity::generate().unwrap();
        assert!(identity.pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(identity.pem().contains("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(identity.fingerprint().len(), 32 * 3 - 1);
        // Recompute from the PEM's certificate block.
        let block: String = identity
            .pem()
            .lines()
            .skip(1)
            .take_while(|line| !line.starts_with("-----END"))
            .collect();
        let der = base64_decode(&block);
        assert_eq!(fingerprint_of_der(&der), identity.fingerprint());
        assert!(!format!("{identity:?}").contains("PRIVATE"));
    }

    fn base64_decode(text: &str) -> Vec<u8> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        let mut buffer = 0u32;
        let mut bits = 0;
        for byte in text.bytes().filter(|byte| *byte != b'=') {
            let value = ALPHABET.iter().position(|c| *c == byte).unwrap() as u32;
            buffer = (buffer << 6) | value;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((buffer >> bits) as u8);
                buffer &= (1 << bits) - 1;
            }
        }
        out
    }

    #[test]
    fn known_fingerprint() {
        assert_eq!(
            fingerprint_of_der(b"abc"),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }
}
