//! Why a daemon could not be reached, in an operator's words: a unix socket that is missing,
//! refused or not permitted for this user (named, with the socket's owner and group); a TCP port
//! where nothing listens; a TLS handshake that failed, and why; a TLS port spoken to in plain
//! HTTP. hyper's own description of these ("client error (Connect)") names none of them.

use std::error::Error as StdError;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use bollard::errors::Error as BollardError;
use nix::unistd::{Gid, Group, Uid, User};

use super::{tls, DockerError};
use crate::config::DockerHost;

/// The error of exit 69 for a ping that failed with `error`.
pub(super) fn ping_failure(host: &DockerHost, error: &BollardError) -> DockerError {
    let host_text = host.to_string();
    if let BollardError::DockerResponseServerError {
        status_code,
        message,
    } = error
    {
        // Go's TLS server answers a plain HTTP request with this 400 instead of a handshake.
        if *status_code == 400 && message.contains("HTTP request to an HTTPS server") {
            return DockerError::TlsRequired { host: host_text };
        }
        return DockerError::PingRefused {
            host: host_text,
            reason: format!("it answered {status_code}: {}", message.trim()),
        };
    }
    if let (Some(tls_error), DockerHost::Tls { files, .. }) = (tls::find_rustls_error(error), host)
    {
        return DockerError::Tls {
            host: host_text,
            reason: tls::explain(tls_error, files),
        };
    }
    let io = io_error_kind(error);
    if let (Some(ErrorKind::UnexpectedEof), DockerHost::Tls { address, .. }) = (io, host) {
        return DockerError::Tls {
            host: host_text,
            reason: format!(
                "{address} closed the connection during the TLS handshake: it does not speak \
                 TLS on this port (plain HTTP?); use the daemon's TLS port, or drop --tlsverify"
            ),
        };
    }
    let reason = match host {
        DockerHost::Unix(socket) => unix_socket_problem(socket, io, error),
        DockerHost::Tcp(address) | DockerHost::Tls { address, .. } => {
            tcp_problem(address, io, error)
        }
    };
    DockerError::Ping {
        host: host_text,
        reason,
    }
}

/// A failed call described in one line: the chain of causes, without bollard's and hyper's
/// wrappers, which say only that the client failed.
pub(super) fn describe(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(error) = current {
        let text = error.to_string();
        let text = text
            .strip_prefix("Error in the hyper legacy client: ")
            .unwrap_or(&text)
            .to_owned();
        // An io::Error repeats its inner error's text; a wrapper often repeats its source's.
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        current = error.source();
    }
    parts.join(": ")
}

fn unix_socket_problem(socket: &Path, io: Option<ErrorKind>, error: &BollardError) -> String {
    let path = socket.display();
    let user = current_user();
    let metadata = match std::fs::metadata(socket) {
        Ok(metadata) => metadata,
        Err(stat) if stat.kind() == ErrorKind::NotFound => {
            return format!(
                "the socket {path} does not exist; is the daemon (dockerd, or podman system \
                 service) running? Set --docker-host or DOCKER_HOST to its socket"
            );
        }
        Err(stat) if stat.kind() == ErrorKind::PermissionDenied => {
            return format!(
                "permission denied: user {user} may not reach the socket {path}, a directory on \
                 its path is closed to it; run as a user who may, or open the directory"
            );
        }
        Err(stat) => return format!("cannot look at the socket {path}: {stat}"),
    };
    if !metadata.file_type().is_socket() {
        return format!(
            "{path} is not a socket; set --docker-host or DOCKER_HOST to the daemon's socket"
        );
    }
    match io {
        Some(ErrorKind::PermissionDenied) => {
            let owner = user_name(Uid::from_raw(metadata.uid()));
            let group = group_name(Gid::from_raw(metadata.gid()));
            format!(
                "permission denied: user {user} may not use the socket {path} (owner {owner}, \
                 group {group}, mode {:04o}); add {} to the group {group}, or run as a user who \
                 may use it",
                metadata.permissions().mode() & 0o7777,
                user.name
            )
        }
        Some(ErrorKind::ConnectionRefused) => format!(
            "connection refused: nothing listens on the socket {path}, the daemon that made it \
             has stopped; start it again"
        ),
        _ => format!("the socket {path}: {}", describe(error)),
    }
}

fn tcp_problem(address: &str, io: Option<ErrorKind>, error: &BollardError) -> String {
    match io {
        Some(ErrorKind::ConnectionRefused) => format!(
            "connection refused: nothing listens on {address}; is the daemon running and \
             listening there (dockerd -H tcp://…)?"
        ),
        _ => format!("cannot connect to {address}: {}", describe(error)),
    }
}

/// The kind of the innermost `io::Error` in the chain: hyper-rustls wraps the one that says what
/// happened ("tls handshake eof", `UnexpectedEof`) in another of kind `Other`.
fn io_error_kind(error: &(dyn StdError + 'static)) -> Option<ErrorKind> {
    if let Some(io) = error.downcast_ref::<std::io::Error>() {
        let inner = io.get_ref().and_then(|inner| io_error_kind(inner));
        return inner.or(Some(io.kind()));
    }
    error.source().and_then(io_error_kind)
}

/// This process's user, for messages: its name and uid.
struct CurrentUser {
    name: String,
    uid: Uid,
}

impl std::fmt::Display for CurrentUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (uid {})", self.name, self.uid)
    }
}

fn current_user() -> CurrentUser {
    let uid = Uid::effective();
    CurrentUser {
        name: user_name(uid),
        uid,
    }
}

/// A user's name from the user database (NSS), else the number.
fn user_name(uid: Uid) -> String {
    User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |user| user.name)
}

/// A group's name from the group database (NSS), else the number.
fn group_name(gid: Gid) -> String {
    Group::from_gid(gid)
        .ok()
        .flatten()
        .map_or_else(|| gid.to_string(), |group| group.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_socket_is_named_as_missing() {
        let reason = unix_socket_problem(
            Path::new("/nonexistent/docker.sock"),
            Some(ErrorKind::NotFound),
            &BollardError::RequestTimeoutError,
        );
        assert!(
            reason.starts_with("the socket /nonexistent/docker.sock does not exist"),
            "{reason}"
        );
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_named() {
        let file = tempfile::NamedTempFile::new().expect("a temp file can be made");
        let reason = unix_socket_problem(
            file.path(),
            Some(ErrorKind::ConnectionRefused),
            &BollardError::RequestTimeoutError,
        );
        assert!(reason.contains("is not a socket"), "{reason}");
    }

    #[test]
    fn a_refused_socket_says_the_daemon_stopped() {
        let dir = tempfile::tempdir().expect("a temp dir can be made");
        let path = dir.path().join("docker.sock");
        // A socket file that nothing listens on any more: a daemon that died.
        drop(std::os::unix::net::UnixListener::bind(&path).expect("a socket can be bound"));
        let reason = unix_socket_problem(
            &path,
            Some(ErrorKind::ConnectionRefused),
            &BollardError::RequestTimeoutError,
        );
        assert!(reason.contains("nothing listens on the socket"), "{reason}");
    }

    #[test]
    fn a_plain_http_answer_from_a_tls_port_asks_for_tls() {
        let error = BollardError::DockerResponseServerError {
            status_code: 400,
            message: "Client sent an HTTP request to an HTTPS server.\n".into(),
        };
        let failure = ping_failure(&DockerHost::Tcp("127.0.0.1:2376".into()), &error);
        assert!(
            matches!(failure, DockerError::TlsRequired { .. }),
            "{failure}"
        );
        assert!(failure.to_string().contains("DOCKER_TLS_VERIFY=1"));
    }
}
