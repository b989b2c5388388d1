//! Test certificates made with the `openssl` command (a CA, and server and
//! client certificates it signs, or self-signed ones it does not), and HTTPS
//! requests made with `curl`: real TLS peers, not the library under test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{require_program, run_bounded};

/// A certificate authority in a folder; issues certificates into it.
pub struct Pki {
    pub dir: PathBuf,
}

/// A certificate and its key, as PEM files.
#[derive(Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(args: &[&str], dir: &Path) {
    let exe = require_program("openssl", "openssl");
    let out = run_bounded(
        Command::new(exe).args(args).current_dir(dir),
        Duration::from_secs(30),
    )
    .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}{}",
        out.stdout,
        out.stderr
    );
}

impl Pki {
    /// A new CA (`<name>.crt`, `<name>.key`) in `dir`.
    pub fn new(dir: &Path, name: &str) -> Pki {
        let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &crt,
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
            dir,
        );
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    pub fn ca_cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.crt"))
    }

    /// A certificate for `cn` with `sans` (`IP:127.0.0.1`, `DNS:x`), signed
    /// by the CA `ca`, good for server and client use.
    pub fn issue(&self, ca: &str, cn: &str, sans: &[&str]) -> Issued {
        let ext = self.dir.join(format!("{cn}.ext"));
        std::fs::write(
            &ext,
            format!(
                "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName={}\n",
                sans.join(",")
            ),
        )
        .expect("write extensions");
        let (csr, crt, key) = (
            format!("{cn}.csr"),
            format!("{cn}.crt"),
            format!("{cn}.key"),
        );
        openssl(
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={cn}"),
            ],
            &self.dir,
        );
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &format!("{ca}.crt"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &format!("{cn}.ext"),
            ],
            &self.dir,
        );
        Issued {
            cert: self.dir.join(crt),
            key: self.dir.join(key),
        }
    }
}

/// What curl got: the status (0: no HTTP answer), headers and body, or the
/// error curl printed.
pub struct CurlAnswer {
    pub status: u16,
    pub headers: String,
    pub body: String,
    pub error: String,
}

/// An HTTPS (or HTTP) request with curl: `args` are curl options
/// (`--cacert`, `-u`, `--cert`, ...); 10 s at most.
pub fn curl(url: &str, args: &[&str]) -> CurlAnswer {
    let exe = require_program("curl", "curl");
    let dir = tempfile::tempdir().expect("tempdir");
    let headers = dir.path().join("headers");
    let body = dir.path().join("body");
    let out = run_bounded(
        Command::new(exe)
            .args(["-sS", "--max-time", "10", "-o"])
            .arg(&body)
            .arg("-D")
            .arg(&headers)
            .args(["-w", "%{http_code}"])
            .args(args)
            .arg(url),
        Duration::from_secs(15),
    )
    .expect("curl runs");
    CurlAnswer {
        status: out.stdout.trim().parse().unwrap_or(0),
        headers: std::fs::read_to_string(&headers).unwrap_or_default(),
        body: std::fs::read_to_string(&body).unwrap_or_default(),
        error: out.stderr,
    }
}
