//! One long run of the pipeline, for comparing settings in separate processes (the
//! criterion bench interleaves short rounds in one process instead).
//!
//! A producer sends the pipeline bench's `bench_record` to a client on a Unix socket,
//! and a reader thread drains the socket into a 64 KiB buffer, as an agent would. The
//! program prints records per second, how often the producer met a full queue, and each
//! thread's CPU time per record (Linux `/proc` schedstat).
//!
//! ```sh
//! cargo run --release --example pipeline_probe -- [RECORDS] [--send-buffer BYTES|kernel] [--retry|--limit]
//! ```
//!
//! By default the producer waits for room in `send_timeout` when `try_send` finds the
//! queue full; `--retry` makes it yield and call `try_send` again instead. `--limit`
//! measures the socket's limit instead of the client, as the pipeline bench does: the
//! record's frame, pre-encoded, written by one thread in 64 KiB writes.

use std::error::Error;
use std::io::Read;
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use geneva_audit::{Client, SendError};

#[path = "../benches/support/bench_record.rs"]
mod bench_record;

fn main() -> Result<(), Box<dyn Error>> {
    let mut records: u64 = 2_000_000;
    let mut send_buffer: Option<Option<usize>> = None;
    let mut retry = false;
    let mut limit = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--retry" => retry = true,
            "--limit" => limit = true,
            "--send-buffer" => {
                let value = args.next().ok_or("--send-buffer needs a value")?;
                send_buffer = Some(match value.as_str() {
                    "kernel" => None,
                    bytes => Some(bytes.parse()?),
                });
            }
            n => records = n.parse()?,
        }
    }

    if limit && retry {
        return Err("--limit has no producer: --retry does not apply".into());
    }

    let dir = std::env::temp_dir().join(format!("geneva-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("agent.sock");
    let listener = UnixListener::bind(&path)?;
    let reader = std::thread::Builder::new().name("reader".into()).spawn(
        move || -> std::io::Result<(u64, u64)> {
            let (mut stream, _) = listener.accept()?;
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0u64;
            loop {
                match stream.read(&mut buf)? {
                    0 => return Ok((total, own_cpu())),
                    n => total += n as u64,
                }
            }
        },
    )?;

    if limit {
        return socket_limit(records, &path, send_buffer, reader, &dir);
    }

    let mut builder = Client::builder("e6c9fcb1-7f08-4c1d-9e7a-123456789abc")
        .unix_socket(&path)
        .wait_for_connection(true);
    if let Some(bytes) = send_buffer {
        builder = builder.send_buffer_size(bytes);
    }
    let client = builder.build()?;
    let template = bench_record::bench_record();

    let start = Instant::now();
    let mut full = 0u64;
    for _ in 0..records {
        let mut record = template.clone();
        loop {
            match client.try_send(record) {
                Ok(()) => break,
                Err(SendError::QueueFull(back)) => {
                    full += 1;
                    if retry {
                        record = back;
                        std::thread::yield_now();
                    } else {
                        client.send_timeout(back, Duration::from_secs(60))?;
                        break;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    client.flush(Duration::from_secs(60))?;
    let elapsed = start.elapsed();
    let cpu = thread_cpu();
    let report = client.close(Duration::from_secs(10));
    let (read, _) = reader.join().map_err(|_| "the reader panicked")??;
    if read != report.stats.bytes_written {
        return Err(format!("read {read} bytes of {}", report.stats.bytes_written).into());
    }

    println!(
        "{records} records in {elapsed:.3?}: {:.0} records/s; the producer met a full queue \
         {full} times ({})",
        records as f64 / elapsed.as_secs_f64(),
        if retry {
            "yield and retry"
        } else {
            "wait in send_timeout"
        },
    );
    for (name, ns) in cpu {
        println!(
            "  {name}: {:.0} ns of CPU per record",
            ns as f64 / records as f64
        );
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// The socket's limit, as the pipeline bench measures it: the bench record's frame,
/// pre-encoded, written by one thread in 64 KiB writes (with the client's send buffer).
fn socket_limit(
    records: u64,
    path: &std::path::Path,
    send_buffer: Option<Option<usize>>,
    reader: std::thread::JoinHandle<std::io::Result<(u64, u64)>>,
    dir: &std::path::Path,
) -> Result<(), Box<dyn Error>> {
    use std::io::Write;
    let sid = "e6c9fcb1-7f08-4c1d-9e7a-123456789abc";
    let mut encoder = geneva_audit::Encoder::new(sid)?;
    let frame = encoder.encode(0, &bench_record::bench_record()).to_vec();
    let per_chunk = (64 * 1024) / frame.len();
    if per_chunk == 0 {
        return Err(format!("a {}-byte frame does not fit a 64 KiB write", frame.len()).into());
    }
    let chunk = frame.repeat(per_chunk);
    let mut stream = std::os::unix::net::UnixStream::connect(path)?;
    let size = send_buffer.unwrap_or(Some(1 << 20));
    if let Some(size) = size {
        socket2::SockRef::from(&stream).set_send_buffer_size(size)?;
    }
    let start = Instant::now();
    let writer = std::thread::Builder::new()
        .name("limit-writer".into())
        .spawn(move || -> std::io::Result<u64> {
            let mut left = records;
            while left > 0 {
                let n = left.min(per_chunk as u64);
                stream.write_all(&chunk[..n as usize * frame.len()])?;
                left -= n;
            }
            Ok(own_cpu())
        })?;
    let writer_cpu = writer.join().map_err(|_| "the writer panicked")??;
    let elapsed = start.elapsed();
    let (read, reader_cpu) = reader.join().map_err(|_| "the reader panicked")??;
    println!(
        "{records} pre-encoded frames in {elapsed:.3?}: {:.0} frames/s ({read} bytes)",
        records as f64 / elapsed.as_secs_f64()
    );
    for (name, ns) in [("writer", writer_cpu), ("reader", reader_cpu)] {
        println!(
            "  {name}: {:.0} ns of CPU per frame",
            ns as f64 / records as f64
        );
    }
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

/// The calling thread's CPU time so far, in ns (0 where /proc has none).
fn own_cpu() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Each live thread's name and CPU time so far, in ns (empty where /proc has none).
fn thread_cpu() -> Vec<(String, u64)> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let ns = std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok());
        if let Some(ns) = ns {
            out.push((name.trim().to_owned(), ns));
        }
    }
    out
}
