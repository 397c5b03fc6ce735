//! TLS for PostgreSQL with libpq's `sslmode` meanings, on rustls (no OpenSSL).
//!
//! | `sslmode` | encrypted | server authenticated |
//! |---|---|---|
//! | `disable` | no | no |
//! | `prefer` (default) | when the server offers it | no |
//! | `require` | yes | no (as libpq without a root certificate) |
//! | `verify-ca` | yes | certificate chain |
//! | `verify-full` | yes | certificate chain and host name |
//!
//! Trusted roots: the PEM file named by `sslrootcert`, else the system's
//! certificate store. `sslmode` and `sslrootcert` are read here and removed
//! from the URL before tokio-postgres sees it (it knows neither `verify-*`
//! nor `sslrootcert`).

use std::sync::Arc;

use airlock_driver::{DriverError, ErrorKind};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// The URL without `sslmode`/`sslrootcert`, and what they said.
pub(crate) struct TlsParams {
    pub url: String,
    pub mode: SslMode,
    pub root_cert: Option<String>,
}

/// Leaves the URL out: it may hold a password.
impl std::fmt::Debug for TlsParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsParams")
            .field("mode", &self.mode)
            .field("root_cert", &self.root_cert)
            .finish_non_exhaustive()
    }
}

fn config_error(message: String) -> DriverError {
    DriverError::new(ErrorKind::Connection, message)
}

/// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL.
pub(crate) fn split_params(url: &str) -> Result<TlsParams, DriverError> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, query),
        None => (url, ""),
    };
    let mut mode = SslMode::Prefer;
    let mut root_cert = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => {
                mode = match value {
                    "disable" => SslMode::Disable,
                    "allow" | "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    other => {
                        return Err(config_error(format!(
                            "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                        )));
                    }
                }
            }
            "sslrootcert" => {
                let decoded = percent_decode(value);
                root_cert = Some(decoded);
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    Ok(TlsParams { url, mode, root_cert })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(root_cert: Option<&str>) -> Result<RootCertStore, DriverError> {
    let mut store = RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let pem =
                std::fs::read(path).map_err(|e| config_error(format!("sslrootcert={path}: cannot read it: {e}")))?;
            let mut found = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| config_error(format!("sslrootcert={path}: not a PEM certificate: {e}")))?;
                store.add(cert).map_err(|e| config_error(format!("sslrootcert={path}: {e}")))?;
                found += 1;
            }
            if found == 0 {
                return Err(config_error(format!("sslrootcert={path}: no certificate in it")));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = store.add(cert);
            }
            if store.is_empty() {
                return Err(config_error(
                    "no trusted root certificates: the system has none installed; name one with sslrootcert=PATH"
                        .to_owned(),
                ));
            }
        }
    }
    Ok(store)
}

/// The rustls configuration for a mode that encrypts.
pub(crate) fn client_config(mode: SslMode, root_cert: Option<&str>) -> Result<ClientConfig, DriverError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(format!("TLS setup: {e}")))?;
    let config = match mode {
        SslMode::VerifyFull => builder.with_root_certificates(roots(root_cert)?).with_no_client_auth(),
        SslMode::VerifyCa => {
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots(root_cert)?), provider())
                .build()
                .map_err(|e| config_error(format!("TLS setup: {e}")))?;
            builder.dangerous().with_custom_certificate_verifier(Arc::new(ChainOnly { inner })).with_no_client_auth()
        }
        SslMode::Disable | SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly { provider: provider() }))
            .with_no_client_auth(),
    };
    Ok(config)
}

/// `prefer`/`require`: encrypt, do not authenticate the server (libpq's
/// behaviour without a root certificate). Signatures are still checked, so
/// the handshake itself is sound.
#[derive(Debug)]
struct EncryptOnly {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the host name may differ.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_ssl_parameters_out_of_the_url() {
        let p = split_params("postgres://u@h/db?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem")
            .unwrap();
        assert_eq!(p.mode, SslMode::VerifyFull);
        assert_eq!(p.root_cert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(p.url, "postgres://u@h/db?application_name=x");
        let p = split_params("postgres://u@h/db").unwrap();
        assert_eq!(p.mode, SslMode::Prefer);
        assert_eq!(p.url, "postgres://u@h/db");
        let e = split_params("postgres://u@h/db?sslmode=strict").unwrap_err();
        assert!(e.message.contains("sslmode=strict is not one of"), "{}", e.message);
        assert_eq!(percent_decode("%é%4"), "%é%4", "never panics on odd input");
    }
}
