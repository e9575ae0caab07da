//! TLS settings shared by every client (load engine, admin client, dashboard,
//! `greenlight-rollout`): rustls with the `ring` crypto provider, roots from
//! the system store (rustls-native-certs) or a PEM file (`--cacert`), and an
//! explicit, loudly reported `--insecure`.
//!
//! Why ring: it builds in about 30 s on two cores with only a C compiler,
//! where aws-lc-rs builds a large C library (several minutes here, see the
//! README); on loopback AES-GCM both are bound by the same CPU instructions,
//! so the load generator loses nothing measurable.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;

/// The trust flags every binary takes (`--cacert`, `--insecure`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// PEM file of the CA certificate(s) to trust instead of the system store (a private CA).
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Do not verify server certificates (testing only; printed loudly and written in the report).
    #[arg(long)]
    pub insecure: bool,
}

impl TlsArgs {
    pub fn options(&self) -> TlsOptions {
        TlsOptions {
            cacert: self.cacert.clone(),
            insecure: self.insecure,
        }
    }
}

/// How a client decides whether to trust a server's certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Trust only the CA certificates in this PEM file (a private CA), like
    /// curl's `--cacert`; without it, the system store.
    pub cacert: Option<PathBuf>,
    /// Accept any certificate (no chain or name check). Reported loudly.
    pub insecure: bool,
}

/// The ALPN protocols the load engine offers, preferred first.
pub const ALPN_H2_AND_H1: &[&[u8]] = &[b"h2", b"http/1.1"];
/// The ALPN of clients that speak HTTP/1.1 only (the admin client).
pub const ALPN_H1: &[&[u8]] = &[b"http/1.1"];

/// Warning printed (and reported) whenever `--insecure` is in force.
pub const INSECURE_WARNING: &str =
    "WARNING: --insecure: server certificates are NOT verified; anyone on the path can impersonate the edge";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The roots named by `opts` (not needed with `insecure`).
fn roots(opts: &TlsOptions) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match &opts.cacert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("--cacert {}: {e}", path.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("--cacert {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "--cacert {}: no PEM certificate in the file",
                    path.display()
                ));
            }
            for c in certs {
                store
                    .add(c)
                    .map_err(|e| format!("--cacert {}: {e}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(
                    "no root certificates in the system store (install ca-certificates, or pass --cacert FILE)"
                        .into(),
                );
            }
        }
    }
    Ok(store)
}

/// A client configuration offering `alpn`; session resumption is on (the
/// rustls default in-memory cache), so reconnects to the same host resume
/// while the configuration is shared.
pub fn client_config(
    opts: &TlsOptions,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let mut config = if opts.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(roots(opts)?)
            .with_no_client_auth()
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The SNI / certificate name for `host` (a DNS name or an IP address).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_string())
        .map_err(|_| format!("{host:?} is not a valid TLS server name"))
}

/// Why a TLS handshake with `host` failed, in words (one line).
pub fn describe_error(host: &str, e: &std::io::Error) -> String {
    let reason = match rustls_cause(e) {
        Some(t) => return format!("TLS with {host}: {}", describe_rustls_error(t)),
        None => match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                "the connection closed during the TLS handshake (is it a TLS port?)".into()
            }
            _ => e.to_string(),
        },
    };
    format!("TLS with {host}: {reason}")
}

/// The rustls error behind `e`, looking through its causes and through
/// `io::Error`s wrapping other errors (whose `source()` skips a level).
pub fn rustls_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(t) = e.downcast_ref::<rustls::Error>() {
        return Some(t);
    }
    if let Some(inner) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        if let Some(t) = rustls_cause(inner) {
            return Some(t);
        }
    }
    e.source().and_then(rustls_cause)
}

/// A rustls error in words.
pub fn describe_rustls_error(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => describe_certificate_error(c),
        rustls::Error::NoApplicationProtocol => {
            "the server accepts none of the offered protocols (ALPN)".into()
        }
        rustls::Error::AlertReceived(a) => format!("the server refused the handshake ({a:?})"),
        other => other.to_string(),
    }
}

fn describe_certificate_error(c: &CertificateError) -> String {
    match c {
        CertificateError::UnknownIssuer => {
            "certificate not trusted (unknown issuer; pass --cacert FILE for a private CA)".into()
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "certificate is not valid for this host name (wrong host)".into()
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "certificate expired".into()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "certificate is not valid yet".into()
        }
        CertificateError::Revoked => "certificate revoked".into(),
        CertificateError::BadSignature => "certificate has a bad signature".into(),
        other => format!("certificate rejected ({other:?})"),
    }
}

/// `--insecure`: accepts any certificate chain and name, still checking that
/// the server holds the key it presents (handshake signatures).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// True for `localhost` and loopback addresses: where plain HTTP stays on
/// this machine.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.eq_ignore_ascii_case("localhost") || bare.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    bare.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "127.0.0.1",
            "127.9.9.9",
            "[::1]",
            "a.localhost",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "example.com",
            "10.0.0.1",
            "[2001:db8::1]",
            "localhost.example.com",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn cacert_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let opts = TlsOptions {
            cacert: Some(empty.clone()),
            insecure: false,
        };
        let e = client_config(&opts, ALPN_H1).unwrap_err();
        assert!(
            e.contains("empty.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
        let missing = TlsOptions {
            cacert: Some(dir.path().join("missing.pem")),
            insecure: false,
        };
        assert!(client_config(&missing, ALPN_H1)
            .unwrap_err()
            .contains("missing.pem"));
        let insecure = TlsOptions {
            cacert: None,
            insecure: true,
        };
        let c = client_config(&insecure, ALPN_H2_AND_H1).unwrap();
        assert_eq!(c.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    }
}
