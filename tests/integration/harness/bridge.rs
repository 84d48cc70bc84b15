//! A TCP listener in front of the test daemon's Unix socket.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::daemon;
/// A TCP listener on loopback that forwards every connection to the test daemon's Unix socket,
/// so that `--docker-host tcp://…` can be tested against the real daemon.
pub struct TcpBridge {
    /// The loopback port.
    pub port: u16,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl TcpBridge {
    /// Starts forwarding to the test daemon (which must listen on a `unix://` socket).
    pub fn to_test_daemon() -> Self {
        let socket = PathBuf::from(
            daemon()
                .host
                .strip_prefix("unix://")
                .expect("the TCP test needs the test daemon on a unix:// socket"),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok((client, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    client.set_nonblocking(false).unwrap();
                    let upstream = UnixStream::connect(&socket).unwrap();
                    let (mut client_read, mut upstream_write) =
                        (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                    let (mut upstream_read, mut client_write) = (upstream, client);
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut client_read, &mut upstream_write);
                        let _ = upstream_write.shutdown(std::net::Shutdown::Write);
                    });
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut upstream_read, &mut client_write);
                        let _ = client_write.shutdown(std::net::Shutdown::Write);
                    });
                }
            })
        };
        Self {
            port,
            stop,
            acceptor: Some(acceptor),
        }
    }
}

impl Drop for TcpBridge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}
