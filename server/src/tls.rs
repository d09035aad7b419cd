//! TLS for everything the relay serves (HTTP and WebSocket alike), with
//! rustls and its `ring` provider.
//!
//! The certificate chain and key are read from PEM files named in the
//! configuration. [`Tls::reload`] reads them again (the binary does it on
//! `SIGHUP`), so a renewed certificate is served without a restart: each new
//! handshake takes the certificate current at that moment, open connections
//! keep theirs. A reload that fails (a missing file, a key that does not
//! match the certificate) changes nothing and says why.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use prometheus_client::metrics::gauge::Gauge;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Why the TLS certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file could not be read or holds no certificate.
    #[error("reading the TLS certificate {path}: {reason}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The key file could not be read or holds no private key.
    #[error("reading the TLS key {path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The key is not the certificate's.
    #[error("the TLS key {key} does not match the certificate {certificate}")]
    Mismatch {
        /// The certificate file.
        certificate: PathBuf,
        /// The key file.
        key: PathBuf,
    },
}

/// The relay's TLS settings: where its certificate and key are, and the
/// pair it serves now.
pub struct Tls {
    certificate: PathBuf,
    key: PathBuf,
    current: Arc<Current>,
    acceptor: TlsAcceptor,
    /// When the certificate served now expires (seconds since 1970), shared
    /// with the metric that reports it.
    expiry: Gauge,
}

/// A certificate that expires within this many seconds is warned about at
/// every load (an expired relay certificate cuts every device off).
pub const EXPIRY_WARNING_SECS: i64 = 14 * 24 * 3600;

/// The certificate served to new handshakes.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Tls {
    /// Reads the certificate chain (PEM, leaf first) and its private key
    /// (PEM: PKCS#8, PKCS#1 or SEC1).
    pub fn load(certificate: &Path, key: &Path) -> Result<Self, TlsError> {
        let (pair, not_after) = read_pair(certificate, key)?;
        let expiry = Gauge::default();
        expiry.set(not_after);
        let current = Arc::new(Current(RwLock::new(Arc::new(pair))));
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        // The relay speaks HTTP/1.1 only (WebSocket upgrades are HTTP/1.1).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            certificate: certificate.to_owned(),
            key: key.to_owned(),
            current,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            expiry,
        })
    }

    /// When the certificate served now expires (seconds since 1970).
    pub fn expiry(&self) -> i64 {
        self.expiry.get()
    }

    /// Reports the expiry through `gauge` (a metric) from now on.
    pub fn report_expiry(&mut self, gauge: Gauge) {
        gauge.set(self.expiry.get());
        self.expiry = gauge;
    }

    /// Reads the certificate and key again; new handshakes get them. On an
    /// error the pair served so far stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let (pair, not_after) = read_pair(&self.certificate, &self.key)?;
        *self
            .current
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(pair);
        self.expiry.set(not_after);
        Ok(())
    }

    /// The acceptor for new connections.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }
}

/// The pair, and when its certificate expires (seconds since 1970). Warns
/// if that is in less than [`EXPIRY_WARNING_SECS`].
fn read_pair(certificate: &Path, key: &Path) -> Result<(CertifiedKey, i64), TlsError> {
    let cert_error = |reason: String| TlsError::Certificate {
        path: certificate.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(certificate)
        .map_err(|e| cert_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_error("no CERTIFICATE block".into()));
    }
    let key_error = |reason: String| TlsError::Key {
        path: key.to_owned(),
        reason,
    };
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| key_error(e.to_string()))?;
    let signing = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| key_error(e.to_string()))?;
    let not_after = x509_parser::parse_x509_certificate(&chain[0])
        .map_err(|e| cert_error(format!("the leaf certificate does not parse: {e}")))?
        .1
        .validity()
        .not_after
        .timestamp();
    let pair = CertifiedKey::new(chain, signing);
    pair.keys_match().map_err(|_| TlsError::Mismatch {
        certificate: certificate.to_owned(),
        key: key.to_owned(),
    })?;
    let left = not_after - crate::unix_now() as i64;
    if left < EXPIRY_WARNING_SECS {
        tracing::warn!(
            days_left = left / 86_400,
            "the TLS certificate expires soon (or has): replace it and send SIGHUP"
        );
    }
    Ok((pair, not_after))
}
