//! A TCP relay on a fixed loopback port in front of another address, that a
//! test can cut (the port refuses connections and every relayed connection
//! is closed, as when a database server stops) and restore.

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
}

impl Relay {
    pub fn start(to: SocketAddr) -> Relay {
        let mut relay = Relay {
            port: super::free_port(),
            to,
            running: None,
            open: Arc::default(),
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
        let (to, open) = (self.to, self.open.clone());
        std::thread::spawn(move || {
            while running.load(Ordering::Acquire) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(to) else {
                    continue;
                };
                for stream in [&client, &server] {
                    if let Ok(s) = stream.try_clone() {
                        open.lock().expect("lock").push(s);
                    }
                }
                pipe(&client, &server);
                pipe(&server, &client);
            }
        });
    }

    /// Refuses new connections and closes every relayed one.
    pub fn cut(&mut self) {
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

/// Copies what `from` sends to `to`, on a thread of its own.
fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
