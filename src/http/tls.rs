//! TLS for the endpoints (rustls): the server certificate and key of the web config, and,
//! with `RequireAndVerifyClientCert`, client certificates checked against its CA.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::web::{ClientAuth, TlsServerConfig, TlsVersion};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls_server_config.{key}: cannot read {path}: {message}")]
    Pem {
        key: &'static str,
        path: String,
        message: String,
    },
    #[error("tls_server_config: {0}")]
    Rustls(String),
}

fn certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |message: String| TlsError::Pem {
        key,
        path: path.display().to_string(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// The acceptor for `tls`. The private key is read here and held by rustls only.
pub fn acceptor(tls: &TlsServerConfig) -> Result<TlsAcceptor, TlsError> {
    let chain = certs("cert_file", &tls.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_file).map_err(|e| TlsError::Pem {
        key: "key_file",
        path: tls.key_file.display().to_string(),
        // The error names the PEM problem, never the key's bytes.
        message: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match tls.min_version {
        TlsVersion::TLS12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::TLS13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match (tls.client_auth_type, &tls.client_ca_file) {
        (ClientAuth::RequireAndVerifyClientCert, Some(ca)) => {
            let mut roots = RootCertStore::empty();
            for c in certs("client_ca_file", ca)? {
                roots
                    .add(c)
                    .map_err(|e| TlsError::Rustls(format!("client_ca_file: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Rustls(format!("client_ca_file: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Rustls(format!("cert_file/key_file: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
