//! The second test dockerd, which `scripts/test-tls-daemon.sh` starts behind mutual TLS on
//! 127.0.0.1, and the certificate directories made for it with openssl.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The TLS test daemon, as its start script announced it.
#[derive(Debug)]
pub struct TlsDaemon {
    /// `tcp://127.0.0.1:PORT`, TLS only (`--tlsverify`).
    pub host: String,
    /// Its unix socket, for setting up containers behind rt-cleanup's back.
    pub unix_host: String,
    /// The image containers are made from.
    pub image: String,
    /// The right CA and a client certificate of it (`DOCKER_CERT_PATH` of the good case).
    pub certs: PathBuf,
    /// The right CA, and a client certificate of another CA.
    pub certs_other_ca: PathBuf,
    /// The right CA only: no client certificate.
    pub certs_no_client_cert: PathBuf,
    /// Another CA as `ca.pem`, with the good client certificate.
    pub certs_wrong_ca: PathBuf,
    /// Its `--debug` request log.
    pub log: PathBuf,
}

/// The TLS test daemon; panics with what to do when there is none.
pub fn tls_daemon() -> &'static TlsDaemon {
    static DAEMON: OnceLock<TlsDaemon> = OnceLock::new();
    DAEMON.get_or_init(|| {
        let get = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!(
                    "no TLS Docker daemon for the TLS tests: {name} is not set. Run the tests \
                     with scripts/test.sh, or start the daemon with `eval \
                     \"$(scripts/test-tls-daemon.sh start)\"` (a private dockerd with \
                     --tlsverify and certificates made by openssl)."
                )
            })
        };
        TlsDaemon {
            host: get("RT_CLEANUP_TEST_TLS_HOST"),
            unix_host: get("RT_CLEANUP_TEST_TLS_UNIX_HOST"),
            image: std::env::var("RT_CLEANUP_TEST_IMAGE")
                .unwrap_or_else(|_| "rt-cleanup-test/busybox:1".to_owned()),
            certs: get("RT_CLEANUP_TEST_TLS_CERTS").into(),
            certs_other_ca: get("RT_CLEANUP_TEST_TLS_CERTS_OTHER_CA").into(),
            certs_no_client_cert: get("RT_CLEANUP_TEST_TLS_CERTS_NO_CLIENT_CERT").into(),
            certs_wrong_ca: get("RT_CLEANUP_TEST_TLS_CERTS_WRONG_CA").into(),
            log: get("RT_CLEANUP_TEST_TLS_LOG").into(),
        }
    })
}
