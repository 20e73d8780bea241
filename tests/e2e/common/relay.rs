//! A TCP relay on a fixed loopback port in front of another address, that a
//! test can cut (the port refuses connections and every relayed connection
//! is closed, as when a database server stops) and restore, or freeze (new
//! connections are accepted and bytes are taken, but nothing passes either
//! way, as when a database server hangs) and thaw.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Relay {
    pub port: u16,
    to: SocketAddr,
    running: Option<Arc<AtomicBool>>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    frozen: Arc<AtomicBool>,
}

impl Relay {
    pub fn start(to: SocketAddr) -> Relay {
        let mut relay = Relay {
            port: super::free_port(),
            to,
            running: None,
            open: Arc::default(),
            frozen: Arc::default(),
        };
        relay.restore();
        relay
    }

    /// Listens again on the same port.
    pub fn restore(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("relay port");
        listener.set_nonblocking(true).expect("nonblocking");
        let running = Arc::new(AtomicBool::new(true));
        self.running = Some(running.clone());
        let (to, open, frozen) = (self.to, self.open.clone(), self.frozen.clone());
        std::thread::spawn(move || {
            while running.load(Ordering::Acquire) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let (open, frozen) = (open.clone(), frozen.clone());
                // Connected once thawed, on a thread of its own.
                std::thread::spawn(move || {
                    while frozen.load(Ordering::Acquire) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    let Ok(server) = TcpStream::connect(to) else {
                        return;
                    };
                    for stream in [&client, &server] {
                        if let Ok(s) = stream.try_clone() {
                            open.lock().expect("lock").push(s);
                        }
                    }
                    pipe(&client, &server, &frozen);
                    pipe(&server, &client, &frozen);
                });
            }
        });
    }

    /// Nothing passes any more, and no connection is closed.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::Release);
    }

    /// What was held passes, and what comes next.
    pub fn thaw(&self) {
        self.frozen.store(false, Ordering::Release);
    }

    /// Refuses new connections and closes every relayed one.
    pub fn cut(&mut self) {
        self.thaw();
        if let Some(running) = self.running.take() {
            running.store(false, Ordering::Release);
        }
        // The accept loop stops within one poll and drops the listener.
        std::thread::sleep(Duration::from_millis(50));
        for stream in self.open.lock().expect("lock").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Copies what `from` sends to `to`, on a thread of its own; while
/// `frozen`, holds it.
fn pipe(from: &TcpStream, to: &TcpStream, frozen: &Arc<AtomicBool>) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    let frozen = frozen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            while frozen.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(5));
            }
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
