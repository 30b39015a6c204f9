//! The independent reader the benches measure against: it accepts one connection and
//! reads it 64 KiB at a time, discarding (no decoding), until end of file.

use std::io::Read;
use std::os::unix::net::UnixListener;
use std::thread::{self, JoinHandle};

/// The reader's buffer: one 64 KiB read, as an agent makes.
pub const CHUNK: usize = 64 * 1024;

/// Spawns the reader on `listener`; the thread returns the bytes it read.
pub fn spawn_reader(listener: UnixListener, name: &str) -> JoinHandle<u64> {
    thread::Builder::new()
        .name(format!("rd-{name}"))
        .spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut buf = vec![0u8; CHUNK];
            let mut total = 0u64;
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => return total,
                    Ok(n) => total += n as u64,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => return total,
                }
            }
        })
        .expect("spawn reader")
}
