//! TLS to a remote daemon, with rustls: the client configuration made from the Docker CLI's three
//! files, and the explanation of a failed handshake in an operator's words.
//!
//! The daemon's certificate must chain to the CA of `ca.pem` and only to it (no system roots, as
//! with the Docker CLI, whose `--tlscacert` pool is exclusive) and must name the address in
//! `DOCKER_HOST`; the client certificate is presented when `cert.pem` and `key.pem` exist. No
//! verification is ever skipped. bollard's own `ssl` transport is not used: it trusts the system
//! roots and keeps no connection alive.

use std::error::Error as StdError;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::config::TlsFiles;

/// The rustls configuration for `files`. An error names the file at fault and says what to do.
pub(super) fn client_config(files: &TlsFiles) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(&files.ca, "the CA certificate")? {
        roots.add(certificate).map_err(|error| {
            format!(
                "{} is not a usable CA certificate ({error}); point DOCKER_CERT_PATH or \
                 --tlscacert at the CA that signed the daemon's certificate",
                files.ca.display()
            )
        })?;
    }
    // An explicit provider: no process-wide default has to be installed, and there is no panic
    // should another crate bring a second provider into the build.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("the TLS library cannot be set up: {error}"))?
        .with_root_certificates(roots);
    if !files.cert.exists() && !files.key.exists() {
        // As the Docker CLI: without a client certificate the handshake is still tried, for a
        // daemon that verifies none; one started with --tlsverify refuses it, and the message
        // then says that no certificate was presented (see `explain`).
        return Ok(builder.with_no_client_auth());
    }
    let chain = read_certificates(&files.cert, "the client certificate")?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|error| {
        format!(
            "cannot read the client key {}: {error}; it must be the PEM private key of {}",
            files.key.display(),
            files.cert.display()
        )
    })?;
    builder.with_client_auth_cert(chain, key).map_err(|error| {
        format!(
            "the client certificate {} and key {} cannot be used together: {error}",
            files.cert.display(),
            files.key.display()
        )
    })
}

fn read_certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let unreadable = |error: &dyn std::fmt::Display| {
        format!(
            "cannot read {what} {}: {error}; put it there, or point DOCKER_CERT_PATH (or the \
             --tlscacert, --tlscert and --tlskey options) at the files",
            path.display()
        )
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| unreadable(&error))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| unreadable(&error))?;
    if certificates.is_empty() {
        return Err(format!(
            "{what} {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certificates)
}

/// The rustls error behind a client error, wherever it is nested: hyper-rustls wraps it in an
/// `io::Error` (at times one inside another), which `source()` does not walk into, since an
/// `io::Error`'s source is its inner error's source, not the inner error itself.
pub(super) fn find_rustls_error<'a>(
    error: &'a (dyn StdError + 'static),
) -> Option<&'a rustls::Error> {
    if let Some(tls) = error.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    if let Some(inner) = error
        .downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::get_ref)
    {
        if let Some(found) = find_rustls_error(inner) {
            return Some(found);
        }
    }
    error.source().and_then(find_rustls_error)
}

/// What a failed handshake means and what to do, for the message of exit 69.
pub(super) fn explain(error: &rustls::Error, files: &TlsFiles) -> String {
    use rustls::{AlertDescription as Alert, CertificateError as Certificate, Error};
    match error {
        Error::InvalidCertificate(Certificate::UnknownIssuer | Certificate::BadSignature) => {
            format!(
                "the daemon's certificate is not signed by the CA of {}; point DOCKER_CERT_PATH \
                 (or --tlscacert) at the CA that signed it",
                files.ca.display()
            )
        }
        Error::InvalidCertificate(
            Certificate::NotValidForName | Certificate::NotValidForNameContext { .. },
        ) => "the daemon's certificate does not name the address of DOCKER_HOST; use the \
              name or IP address its subjectAltName holds"
            .to_owned(),
        Error::InvalidCertificate(Certificate::Expired | Certificate::ExpiredContext { .. }) => {
            "the daemon's certificate has expired; renew it".to_owned()
        }
        Error::InvalidCertificate(
            Certificate::NotValidYet | Certificate::NotValidYetContext { .. },
        ) => "the daemon's certificate is not valid yet; check this host's clock".to_owned(),
        Error::InvalidCertificate(other) => format!("the daemon's certificate is refused: {other}"),
        Error::AlertReceived(
            Alert::BadCertificate
            | Alert::CertificateRequired
            | Alert::UnknownCA
            | Alert::CertificateUnknown
            | Alert::AccessDenied,
        ) => {
            if files.cert.exists() {
                format!(
                    "the daemon refused the client certificate {}: it is not signed by a CA the \
                     daemon trusts (its --tlscacert), or not for client use; use a certificate \
                     of that CA",
                    files.cert.display()
                )
            } else {
                format!(
                    "the daemon requires a client certificate and none was presented: {} does \
                     not exist; put the client certificate and its key (key.pem) there",
                    files.cert.display()
                )
            }
        }
        Error::InvalidMessage(_) => "the daemon does not speak TLS on this port (plain HTTP?); \
                                     use the daemon's TLS port, or drop --tlsverify"
            .to_owned(),
        other => format!("the TLS handshake failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> TlsFiles {
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }

    #[test]
    fn a_missing_ca_names_the_file_and_what_to_do() {
        let dir = tempfile::tempdir().expect("a temp dir can be made");
        let error = client_config(&files(dir.path())).unwrap_err();
        assert!(error.contains("ca.pem"), "{error}");
        assert!(error.contains("DOCKER_CERT_PATH"), "{error}");
    }

    #[test]
    fn a_file_without_certificates_is_named() {
        let dir = tempfile::tempdir().expect("a temp dir can be made");
        std::fs::write(dir.path().join("ca.pem"), "not pem").expect("the temp dir is writable");
        let error = client_config(&files(dir.path())).unwrap_err();
        assert!(error.contains("holds no PEM certificate"), "{error}");
    }

    #[test]
    fn a_refused_client_certificate_says_whether_there_was_one() {
        let dir = tempfile::tempdir().expect("a temp dir can be made");
        let files = files(dir.path());
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate);
        assert!(explain(&alert, &files).contains("none was presented"));
        std::fs::write(&files.cert, "x").expect("the temp dir is writable");
        assert!(explain(&alert, &files).contains("refused the client certificate"));
    }

    #[test]
    fn a_rustls_error_is_found_inside_nested_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let nested = std::io::Error::other(std::io::Error::other(tls));
        assert!(matches!(
            find_rustls_error(&nested),
            Some(rustls::Error::InvalidCertificate(_))
        ));
    }
}
