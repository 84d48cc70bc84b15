//! A proxy that holds chosen requests on their way to the daemon.

use std::io::{Read, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::daemon;
/// A proxy on its own Unix socket in front of a daemon's socket that holds every request whose
/// bytes contain a needle (e.g. `DELETE ` or `/containers/json`) until [`Gate::open`]. A test
/// points rt-cleanup at [`Gate::host`], waits with [`Gate::wait_held`] until the pass reached
/// that request, acts (a signal, a change of the state file, a frozen daemon), then opens it:
/// the exact point of the pass, every time, instead of a race against a timer.
pub struct Gate {
    path: PathBuf,
    shared: Arc<GateShared>,
    acceptor: Option<JoinHandle<()>>,
}

struct GateShared {
    needle: Vec<u8>,
    open: Mutex<bool>,
    opened: Condvar,
    held: Mutex<usize>,
    held_changed: Condvar,
    stop: AtomicBool,
    requests: Mutex<Vec<String>>,
}

impl Gate {
    /// A closed gate in front of the daemon listening on `upstream` (a socket path).
    pub fn new(upstream: &Path, needle: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = PathBuf::from(format!(
            "/tmp/rtc-g-{}-{}.sock",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("the gate's socket binds");
        listener.set_nonblocking(true).unwrap();
        let shared = Arc::new(GateShared {
            needle: needle.as_bytes().to_vec(),
            open: Mutex::new(false),
            opened: Condvar::new(),
            held: Mutex::new(0),
            held_changed: Condvar::new(),
            stop: AtomicBool::new(false),
            requests: Mutex::new(Vec::new()),
        });
        let upstream = upstream.to_owned();
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                while !shared.stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            client.set_nonblocking(false).unwrap();
                            Gate::serve(client, &upstream, &shared);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Self {
            path,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// A gate in front of the shared test daemon.
    pub fn in_front_of_test_daemon(needle: &str) -> Self {
        let socket = daemon()
            .host
            .strip_prefix("unix://")
            .expect("the gate needs the test daemon on a unix socket")
            .to_owned();
        Self::new(Path::new(&socket), needle)
    }

    fn serve(client: UnixStream, upstream: &Path, shared: &Arc<GateShared>) {
        // A daemon that is gone (killed) refuses the connection: the client's connection is
        // simply closed, as a dead daemon's would be.
        let Ok(server) = UnixStream::connect(upstream) else {
            return;
        };
        let (mut client_reader, mut server_writer) = (client.try_clone().unwrap(), server);
        let (mut server_reader, mut client_writer) = (server_writer.try_clone().unwrap(), client);
        let shared = Arc::clone(shared);
        std::thread::spawn(move || {
            let mut buffer = vec![0_u8; 65_536];
            loop {
                let n = match client_reader.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let chunk = &buffer[..n];
                if let Some(line) = chunk.split(|b| *b == b'\n').next() {
                    if line.windows(6).any(|w| w == b" HTTP/") {
                        let line = String::from_utf8_lossy(line).trim().to_owned();
                        shared.requests.lock().unwrap().push(line);
                    }
                }
                if chunk
                    .windows(shared.needle.len())
                    .any(|w| w == shared.needle)
                {
                    let mut open = shared.open.lock().unwrap();
                    if !*open {
                        *shared.held.lock().unwrap() += 1;
                        shared.held_changed.notify_all();
                        while !*open {
                            open = shared.opened.wait(open).unwrap();
                        }
                    }
                }
                if server_writer.write_all(chunk).is_err() {
                    break;
                }
            }
            let _ = server_writer.shutdown(std::net::Shutdown::Write);
        });
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut server_reader, &mut client_writer);
            let _ = client_writer.shutdown(std::net::Shutdown::Both);
        });
    }

    /// `unix:///…`, for `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Waits until at least `count` requests are held; false after `timeout`.
    pub fn wait_held(&self, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut held = self.shared.held.lock().unwrap();
        while *held < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            held = self.shared.held_changed.wait_timeout(held, left).unwrap().0;
        }
        true
    }

    /// How many requests have been held so far.
    pub fn held(&self) -> usize {
        *self.shared.held.lock().unwrap()
    }

    /// Lets every held request and every later one through.
    pub fn open(&self) {
        *self.shared.open.lock().unwrap() = true;
        self.shared.opened.notify_all();
    }

    /// The request lines that went through the gate so far.
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().unwrap().clone()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}
