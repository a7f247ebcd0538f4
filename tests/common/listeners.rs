//! Real local listeners for health gates: a TCP port that accepts, and a small HTTP server
//! that answers 503 to its first requests, then 200 with a body. Both serve on a thread until
//! dropped.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Listener {
    pub address: String,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Accepts TCP connections and closes them.
    pub fn tcp() -> Listener {
        Self::serve(None)
    }

    /// Answers HTTP: `503` to the first `failures` requests, then `200` with body `ok`.
    pub fn http(failures: usize) -> Listener {
        Self::serve(Some(failures))
    }

    fn serve(http_failures: Option<usize>) -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopping) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let seen = count.fetch_add(1, Ordering::SeqCst);
                let Some(failures) = http_failures else {
                    continue;
                };
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut request = [0u8; 2048];
                let _ = stream.read(&mut request);
                let (status, body) = if seen < failures {
                    ("503 Service Unavailable", "starting")
                } else {
                    ("200 OK", "ok")
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Listener {
            address,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// Connections (TCP) or requests (HTTP) served so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Connections accepted once at least `count` were, or after a generous deadline: a TCP
    /// connection is complete (for the client) before this thread accepts it.
    pub fn accepted_at_least(&self, count: usize) -> usize {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while self.requests() < count && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.requests()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A loopback port where nothing listens.
pub fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}
