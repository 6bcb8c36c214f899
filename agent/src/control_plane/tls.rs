//! TLS trust for the control plane: the public web PKI (webpki roots) plus,
//! optionally, the certificates of `control_plane.ca_file` (a private CA).
//! Certificates are always verified; there is no switch to turn that off.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("config key `control_plane.ca_file`: cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config key `control_plane.ca_file`: {path} holds no PEM certificate")]
    Empty { path: PathBuf },
    #[error("config key `control_plane.ca_file`: {path}: {reason}")]
    Bad { path: PathBuf, reason: String },
}

/// Extra trusted roots, shared by the REST client and the socket.
#[derive(Debug, Clone, Default)]
pub struct ExtraRoots {
    certificates: Vec<CertificateDer<'static>>,
}

impl ExtraRoots {
    /// Loads every certificate of a PEM file.
    pub fn load(path: &Path) -> Result<Self, TlsError> {
        let pem = std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })?;
        let certificates = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| TlsError::Bad {
                path: path.to_owned(),
                reason: format!("{err:?}"),
            })?;
        if certificates.is_empty() {
            return Err(TlsError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(Self { certificates })
    }

    /// Loads `ca_file` if configured.
    pub fn from_setting(ca_file: Option<&Path>) -> Result<Self, TlsError> {
        ca_file
            .map(Self::load)
            .transpose()
            .map(Option::unwrap_or_default)
    }

    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certificates
    }

    /// The rustls client configuration for the websocket.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for certificate in &self.certificates {
            roots
                .add(certificate.clone())
                .map_err(|err| TlsError::Bad {
                    path: PathBuf::from("<ca_file>"),
                    reason: err.to_string(),
                })?;
        }
        Ok(Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_errors_name_the_key_and_path() {
        let dir = std::env::temp_dir().join(format!("ca-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = ExtraRoots::load(&dir.join("missing.pem"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("control_plane.ca_file"), "{missing}");
        assert!(missing.contains("missing.pem"), "{missing}");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = ExtraRoots::load(&empty).unwrap_err().to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["ca.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let good = dir.join("good.pem");
        std::fs::write(&good, cert.pem()).unwrap();
        let roots = ExtraRoots::load(&good).unwrap();
        assert_eq!(roots.certificates().len(), 1);
        assert!(roots.client_config().is_ok());
        assert!(
            ExtraRoots::from_setting(None)
                .unwrap()
                .certificates()
                .is_empty()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
