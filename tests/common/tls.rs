//! TLS in front of a plain-TCP broker: test certificates made with `openssl`, and `stunnel`
//! terminating TLS (optionally requiring client certificates) and forwarding to the broker.
//!
//! Tansu 0.6.0 does not serve TLS itself (see SECURITY.md), so the broker advertises the
//! terminator's address and every connection a client makes, the bootstrap one and those to
//! the brokers the metadata names, goes through the terminator.
//!
//! The tools come from `scripts/install-tls-tools.sh` (the test command runs it). A test that
//! cannot find them fails with that hint; it is never skipped.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tansu::tail;

const HINT: &str = "run scripts/install-tls-tools.sh (scripts/test.sh does)";

/// Files of a test PKI, all in one directory.
pub struct Certs {
    /// The CA that signs the server and client certificates.
    pub ca: PathBuf,
    /// A second CA, unrelated to the first.
    pub other_ca: PathBuf,
    /// For 127.0.0.1 and localhost (subjectAltName IP and DNS), signed by `ca`.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A client certificate signed by `ca`, for mutual TLS.
    pub client_cert: PathBuf,
    /// The client key, encrypted (PKCS#8, AES-256) with [`Certs::client_key_password`].
    pub client_key: PathBuf,
    pub client_key_password: String,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}): {HINT}"));
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Certs {
    /// Makes a CA, a server and a client certificate it signs, and an unrelated CA in `dir`.
    pub fn make(dir: &Path) -> Certs {
        let days = "2";
        for (name, cn) in [("ca", "losswatch test CA"), ("other-ca", "unrelated CA")] {
            openssl(
                dir,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    days,
                    "-subj",
                    &format!("/CN={cn}"),
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.crt"),
                ],
            );
        }
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        for (name, cn) in [("server", "127.0.0.1"), ("client", "losswatch")] {
            openssl(
                dir,
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    &format!("/CN={cn}"),
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.csr"),
                ],
            );
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{name}.csr"),
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    days,
                    "-extfile",
                    &format!("{name}.ext"),
                    "-out",
                    &format!("{name}.crt"),
                ],
            );
        }
        let password = "client-key-pw-Rt52";
        openssl(
            dir,
            &[
                "pkcs8",
                "-topk8",
                "-v2",
                "aes-256-cbc",
                "-in",
                "client.key",
                "-out",
                "client-encrypted.key",
                "-passout",
                &format!("pass:{password}"),
            ],
        );
        Certs {
            ca: dir.join("ca.crt"),
            other_ca: dir.join("other-ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client-encrypted.key"),
            client_key_password: password.into(),
        }
    }
}

/// The stunnel binary: `$LOSSWATCH_STUNNEL`, then `stunnel4` or `stunnel` on `PATH`.
pub fn stunnel_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("LOSSWATCH_STUNNEL") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["stunnel4", "stunnel"] {
        if let Some(dir) = std::env::split_paths(&path).find(|d| d.join(name).is_file()) {
            return dir.join(name);
        }
    }
    panic!("stunnel is not installed: {HINT}, or point LOSSWATCH_STUNNEL at the binary");
}

/// A TLS terminator: stunnel on `127.0.0.1:port`, forwarding plain TCP to
/// `127.0.0.1:upstream`. Killed by PID when the handle drops.
pub struct Terminator {
    pub port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Terminator {
    /// With `client_ca`, the terminator requires a client certificate that CA signed (mutual
    /// TLS); without, any client may connect.
    pub fn start(
        dir: &Path,
        port: u16,
        upstream: u16,
        certs: &Certs,
        client_ca: Option<&Path>,
    ) -> Terminator {
        let conf = dir.join("stunnel.conf");
        let mut text = format!(
            "foreground = yes\npid =\ndebug = info\n[kafka]\naccept = 127.0.0.1:{port}\n\
             connect = 127.0.0.1:{upstream}\ncert = {}\nkey = {}\n",
            certs.server_cert.display(),
            certs.server_key.display()
        );
        if let Some(ca) = client_ca {
            text.push_str(&format!(
                "CAfile = {}\nverifyChain = yes\nrequireCert = yes\n",
                ca.display()
            ));
        }
        std::fs::write(&conf, text).unwrap();
        let log = dir.join("stunnel.log");
        let mut t = Terminator {
            port,
            child: None,
            log,
        };
        t.spawn(&conf);
        t
    }

    fn spawn(&mut self, conf: &Path) {
        let bin = stunnel_binary();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut child = Command::new(&bin)
            .arg(conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({e}): {HINT}", bin.display()));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("stunnel exited at start ({status}):\n{}", tail(&self.log));
            }
            assert!(
                Instant::now() < deadline,
                "stunnel did not listen on {} within 20 s:\n{}",
                self.port,
                tail(&self.log)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// Stops the terminator: from then on nothing listens on its port.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Terminator {
    fn drop(&mut self) {
        self.stop();
    }
}
