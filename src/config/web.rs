//! The web-config file of the Prometheus exporter toolkit (`--web.config.file`), so that a
//! Prometheus user reuses the file they know:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt        # PEM, the chain; paths relative to this file
//!   key_file: server.key         # PEM, PKCS#8, PKCS#1 or SEC1
//!   client_auth_type: RequireAndVerifyClientCert   # or NoClientCert (default)
//!   client_ca_file: ca.crt       # required with RequireAndVerifyClientCert
//!   min_version: TLS12           # or TLS13
//! basic_auth_users:
//!   prometheus: $2y$10$...       # bcrypt hashes (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! Read once at start. Keys of the toolkit that losswatch does not implement
//! (`http_server_config`, `cipher_suites`, `curve_preferences`, `client_allowed_sans`, …) are
//! refused with their name rather than ignored, so a setting is never silently dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use std::str::FromStr;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    pub tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    pub basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum ClientAuth {
    #[default]
    NoClientCert,
    RequireAndVerifyClientCert,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum TlsVersion {
    #[default]
    TLS12,
    TLS13,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    #[serde(default)]
    pub client_auth_type: ClientAuth,
    pub client_ca_file: Option<PathBuf>,
    #[serde(default)]
    pub min_version: TlsVersion,
}

#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("cannot read web config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("web config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

impl WebConfig {
    /// Reads and checks the file; relative paths in it are taken from the file's folder.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let parse = |message: String| WebConfigError::Parse {
            path: path.to_owned(),
            message,
        };
        let mut cfg = WebConfig::parse(&text).map_err(parse)?;
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        if let Some(tls) = &mut cfg.tls_server_config {
            for p in [&mut tls.cert_file, &mut tls.key_file] {
                *p = dir.join(&*p);
            }
            if let Some(ca) = &mut tls.client_ca_file {
                *ca = dir.join(&*ca);
            }
        }
        Ok(cfg)
    }

    /// Parses the YAML text and checks it; the message names the key at fault.
    pub fn parse(text: &str) -> Result<WebConfig, String> {
        // An empty file is a valid web config: nothing protected, as with the toolkit.
        if text.trim().is_empty() {
            return Ok(WebConfig::default());
        }
        let cfg: WebConfig = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        if let Some(tls) = &cfg.tls_server_config {
            if tls.client_auth_type == ClientAuth::RequireAndVerifyClientCert
                && tls.client_ca_file.is_none()
            {
                return Err("tls_server_config.client_ca_file: required when client_auth_type is RequireAndVerifyClientCert".into());
            }
        }
        for (user, hash) in &cfg.basic_auth_users {
            if bcrypt::HashParts::from_str(hash).is_err() {
                return Err(format!(
                    "basic_auth_users.{user}: expected a bcrypt hash ($2y$…), got something else"
                ));
            }
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_toolkit_format_parses() {
        let c = WebConfig::parse(
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  min_version: TLS13\nbasic_auth_users:\n  prom: $2y$04$D1hH2N5S6/n8S3pNn3a8e.Hkq3Ps6Z0dEbRrQtW0ih8s3JZQyWOyi\n",
        )
        .unwrap();
        let tls = c.tls_server_config.unwrap();
        assert_eq!(tls.cert_file, PathBuf::from("a.crt"));
        assert_eq!(tls.min_version, TlsVersion::TLS13);
        assert_eq!(tls.client_auth_type, ClientAuth::NoClientCert);
        assert!(c.basic_auth_users.contains_key("prom"));
        assert!(WebConfig::parse("").unwrap().tls_server_config.is_none());
    }

    #[test]
    fn what_is_not_implemented_is_refused_by_name() {
        let e = WebConfig::parse("http_server_config:\n  http2: false\n").unwrap_err();
        assert!(e.contains("http_server_config"), "{e}");
        let e = WebConfig::parse(
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [x]\n",
        )
        .unwrap_err();
        assert!(e.contains("cipher_suites"), "{e}");
        let e = WebConfig::parse("basic_auth_users:\n  prom: plaintext\n").unwrap_err();
        assert!(e.contains("basic_auth_users.prom"), "{e}");
        let e = WebConfig::parse(
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n",
        )
        .unwrap_err();
        assert!(e.contains("client_ca_file"), "{e}");
    }

    #[test]
    fn relative_paths_are_taken_from_the_file_folder() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("web.yml");
        std::fs::write(
            &f,
            "tls_server_config:\n  cert_file: a.crt\n  key_file: /abs/a.key\n",
        )
        .unwrap();
        let c = WebConfig::load(&f).unwrap();
        let tls = c.tls_server_config.unwrap();
        assert_eq!(tls.cert_file, dir.path().join("a.crt"));
        assert_eq!(tls.key_file, PathBuf::from("/abs/a.key"));
    }
}
