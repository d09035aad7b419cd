//! How a device reaches its relay: HTTPS and WSS with rustls (`ring`
//! provider), the relay's certificate verified against the system's trusted
//! roots, or against one CA pinned at enrolment for a private deployment.
//! Plain `http://` and `ws://` are refused except to a loopback address
//! (a relay on the same machine, as in development and tests): enrolment
//! tokens and everything the relay sees would otherwise cross the network in
//! clear.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// Why the relay cannot be reached safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// `http://` or `ws://` to a host that is not this machine.
    #[error("refusing plain {scheme}:// to {host}: use https:// (plain HTTP is only for a relay on this machine)")]
    Insecure {
        /// `http` or `ws`.
        scheme: String,
        /// The host named.
        host: String,
    },
    /// Not a URL the client speaks.
    #[error("the relay address {0:?} is not an https:// (or loopback http://) URL")]
    BadUrl(String),
    /// The pinned CA is not a PEM certificate.
    #[error("the relay CA is not a PEM certificate: {0}")]
    BadCa(String),
    /// Neither a pinned CA nor any system root to verify the relay with.
    #[error("no trusted roots to verify the relay with: pin its CA (--server-ca)")]
    NoRoots,
}

/// Checks that `url` may be used: `https`/`wss` anywhere, `http`/`ws` only
/// to a loopback host (`localhost`, 127.0.0.0/8, `::1`).
pub fn check_url(url: &str) -> Result<(), TransportError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| TransportError::BadUrl(url.to_owned()))?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        return Err(TransportError::BadUrl(url.to_owned()));
    }
    match scheme.as_str() {
        "https" | "wss" => Ok(()),
        "http" | "ws" if is_loopback(host) => Ok(()),
        "http" | "ws" => Err(TransportError::Insecure {
            scheme,
            host: host.to_owned(),
        }),
        _ => Err(TransportError::BadUrl(url.to_owned())),
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The TLS configuration for the relay: only the CA in `pinned_ca` (PEM)
/// when given, otherwise the system's trusted roots.
pub fn tls_config(pinned_ca: Option<&str>) -> Result<Arc<ClientConfig>, TransportError> {
    let mut roots = RootCertStore::empty();
    match pinned_ca {
        Some(pem) => {
            let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TransportError::BadCa(e.to_string()))?;
            if certs.is_empty() {
                return Err(TransportError::BadCa("no CERTIFICATE block".into()));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| TransportError::BadCa(e.to_string()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::debug!(error = %e, "a system root could not be read");
            }
            let (_added, _ignored) = roots.add_parsable_certificates(found.certs);
        }
    }
    if roots.is_empty() {
        return Err(TransportError::NoRoots);
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An HTTP client for the relay at `url`, verifying it as [`tls_config`]
/// does.
pub fn http_client(url: &str, pinned_ca: Option<&str>) -> Result<reqwest::Client, TransportError> {
    check_url(url)?;
    let mut builder = reqwest::Client::builder().https_only(!is_plain(url));
    if !is_plain(url) {
        let config = Arc::unwrap_or_clone(tls_config(pinned_ca)?);
        builder = builder.use_preconfigured_tls(config);
    }
    builder
        .build()
        .map_err(|e| TransportError::BadCa(format!("building the HTTP client: {e}")))
}

/// The WebSocket connector for the relay at `url` (`None`: plain loopback).
pub fn ws_connector(
    url: &str,
    pinned_ca: Option<&str>,
) -> Result<Option<tokio_tungstenite::Connector>, TransportError> {
    check_url(url)?;
    if is_plain(url) {
        return Ok(Some(tokio_tungstenite::Connector::Plain));
    }
    Ok(Some(tokio_tungstenite::Connector::Rustls(tls_config(
        pinned_ca,
    )?)))
}

fn is_plain(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("ws://")
}

/// A readable account of why a TLS connection failed, from an error's
/// chain (e.g. "invalid peer certificate: UnknownIssuer"), if it was TLS.
pub fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // An `io::Error`'s `source` skips the error it wraps (hyper-rustls
        // wraps tokio-rustls's, which wraps rustls's): look inside instead.
        next = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_refused_except_to_loopback() {
        for ok in [
            "https://relay.nhs.example",
            "wss://relay.nhs.example:443/v1/ws",
            "http://127.0.0.1:7171",
            "http://127.8.9.10:7171/",
            "http://localhost:7171",
            "ws://[::1]:7171/v1/ws",
            "HTTP://LOCALHOST",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for (bad, host) in [
            ("http://relay.nhs.example", "relay.nhs.example"),
            ("http://10.0.0.5:7171", "10.0.0.5"),
            ("ws://[2001:db8::1]:7171", "2001:db8::1"),
            ("http://localhost.evil.example", "localhost.evil.example"),
            ("http://127.0.0.1@evil.example/", "evil.example"),
        ] {
            assert_eq!(
                check_url(bad),
                Err(TransportError::Insecure {
                    scheme: bad.split(':').next().expect("scheme").to_owned(),
                    host: host.to_owned(),
                }),
                "{bad}"
            );
        }
        for bad in ["relay.nhs.example", "ftp://relay", "https://", "http:///x"] {
            assert!(
                matches!(check_url(bad), Err(TransportError::BadUrl(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_pinned_ca_must_be_a_certificate() {
        assert!(matches!(
            tls_config(Some("not a certificate")),
            Err(TransportError::BadCa(_))
        ));
        // Made once with `openssl req -x509 -newkey ed25519`: any
        // well-formed certificate will do as a root.
        let ca = include_str!("../tests/fixtures/tls-ca.pem");
        assert!(tls_config(Some(ca)).is_ok());
    }
}
