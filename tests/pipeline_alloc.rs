//! Zero allocation end to end: 100,000 static records through `try_send` (half of them
//! waiting for room in `send_timeout` when the queue is full), the queue, the writer, the
//! encoder and a real Unix socket, counted by a global allocator.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Read;
use std::os::unix::net::UnixListener;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use geneva_audit::{
    CallerIdentity, CallerIdentityType, Client, OperationCategory, OperationResult, OperationType,
    Record, SendError, TargetResource, Text, Value,
};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// The reader stops reading while this is set.
static PAUSED: AtomicBool = AtomicBool::new(false);
/// Where the first counted allocation was made, so a failure says where to look.
static FIRST: Mutex<Option<String>> = Mutex::new(None);

thread_local! {
    /// Set while this thread records a backtrace, whose own allocations are not counted.
    static RECORDING: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if !COUNTING.load(Ordering::Relaxed) || RECORDING.with(Cell::get) {
        return;
    }
    if ALLOCATIONS.fetch_add(1, Ordering::Relaxed) == 0 {
        RECORDING.with(|r| r.set(true));
        let trace = format!(
            "{:?}\n{}",
            std::thread::current().name(),
            std::backtrace::Backtrace::force_capture()
        );
        if let Ok(mut first) = FIRST.lock() {
            first.get_or_insert(trace);
        }
        RECORDING.with(|r| r.set(false));
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarding the caller's layout to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarding a pointer and layout that came from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

static IDENTITIES: [CallerIdentity; 2] = [
    CallerIdentity::from_static(CallerIdentityType::Upn, "alice@contoso.com", "primary user"),
    CallerIdentity::from_static(
        CallerIdentityType::ObjectId,
        "0b0c2d6a-5a8e-4f4e-9d2b-1f7e8c3a4b5d",
        "AAD object id",
    ),
];
static TARGETS: [TargetResource; 1] = [TargetResource::from_static(
    "SubscriptionId",
    "4bb12743-2418-427f-92ae-96a11a4044fe",
)];
static LEVELS: [Text; 2] = [Text::Borrowed("Contributor"), Text::Borrowed("Reader")];
static CUSTOM: [(Text, Value); 2] = [
    (Text::Borrowed("retries"), Value::Int(3)),
    (Text::Borrowed("dryRun"), Value::Bool(false)),
];

/// A typical record built only from static data: static text and static slices for its
/// collections, so building it (and cloning it) allocates nothing.
fn static_record(n: u64) -> Record {
    Record::data_plane()
        .caller_ip(std::net::IpAddr::from([203, 0, 113, (n % 200) as u8 + 1]))
        .caller_identities_from(&IDENTITIES[..])
        .add_operation_category(OperationCategory::ResourceManagement)
        .add_operation_category(OperationCategory::Authentication)
        .target_resources_from(&TARGETS[..])
        .caller_access_levels_from(&LEVELS[..])
        .custom_data_from(&CUSTOM[..])
        .operation_access_level("Contributor")
        .operation_name("ListStorageAccounts")
        .caller_agent("azure-cli/2.61.0")
        .operation_type(OperationType::Read)
        .operation_result(OperationResult::Success)
}

/// Sends records `from..from + count` with `try_send`; on `QueueFull` the producer
/// either yields and tries again or, with `wait`, hands the record to `send_timeout`.
fn send_all(client: &Client, from: u64, count: u64, wait: bool) {
    for n in from..from + count {
        let mut record = static_record(n);
        loop {
            match client.try_send(record) {
                Ok(()) => break,
                Err(SendError::QueueFull(back)) if wait => {
                    client
                        .send_timeout(back, Duration::from_secs(60))
                        .unwrap_or_else(|e| panic!("refused: {e}"));
                    break;
                }
                Err(SendError::QueueFull(back)) => {
                    record = back;
                    std::thread::yield_now();
                }
                Err(e) => panic!("refused: {e}"),
            }
        }
    }
}

fn wait_written(client: &Client, target: u64) {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut pause = common::Pause::new();
    while client.stats().written < target {
        assert!(Instant::now() < deadline, "timed out: {:?}", client.stats());
        pause.next();
    }
}

#[test]
fn steady_state_pipeline_allocates_nothing() {
    let dir = std::env::temp_dir().join(format!("geneva-alloc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("agent.sock");
    let listener = UnixListener::bind(&path).unwrap();
    // A reader that drains the socket into a fixed buffer: it allocates nothing itself.
    let reader = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            while PAUSED.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n as u64,
            }
        }
    });
    // The reader accepts one connection only, and pauses in warm-up for as long as a
    // busy machine makes it: the writer must not give that connection up meanwhile.
    let client = Client::builder("e6c9fcb1-7f08-4c1d-9e7a-123456789abc")
        .write_timeout(Duration::from_secs(600))
        .unix_socket(&path)
        .build()
        .unwrap();

    // Warm-up: connection, heartbeat, buffers and queue slots reach their working size,
    // and the producer has waited for room at least once.
    send_all(&client, 0, 20_000, false);
    send_all(&client, 20_000, 20_000, true);
    wait_written(&client, 40_000);
    // The reader stops until the socket and the queue are full: the outbox then holds
    // the most frames it ever can (all the kernel holds unread, and a write's worth),
    // and its slots are grown once here rather than at a new peak while counting.
    PAUSED.store(true, Ordering::SeqCst);
    let mut n = 40_000;
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut pause = common::Pause::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "never filled: {:?}",
            client.stats()
        );
        match client.try_send(static_record(n)) {
            Ok(()) => n += 1,
            // Full, and the kernel shows the writer blocked in a write to the paused
            // reader: it is stuck on the socket (and cannot take from the queue).
            Err(SendError::QueueFull(_)) if common::writer_blocked_writing_to(&path) => {
                break;
            }
            Err(SendError::QueueFull(_)) => pause.next(),
            Err(e) => panic!("refused: {e}"),
        }
    }
    PAUSED.store(false, Ordering::SeqCst);
    let warm = n;
    wait_written(&client, warm);

    // Measured: building each record, try_send, waiting for room in send_timeout, the
    // queue, the writer, the encoder and the socket writes.
    ALLOCATIONS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    send_all(&client, warm, 50_000, false);
    let full_before = client.stats().refused_full;
    send_all(&client, warm + 50_000, 50_000, true);
    // Each `QueueFull` in this phase was followed by a wait in `send_timeout`.
    let waits = client.stats().refused_full - full_before;
    wait_written(&client, warm + 100_000);
    COUNTING.store(false, Ordering::SeqCst);
    let allocations = ALLOCATIONS.load(Ordering::SeqCst);

    let report = client.close(Duration::from_secs(5));
    assert_eq!(report.stats.written, warm + 100_000);
    assert!(report.unsent.is_empty());
    let bytes = reader.join().unwrap();
    assert_eq!(bytes, report.stats.bytes_written);
    println!(
        "allocations for 100,000 records built and sent in steady state: {allocations} \
         (the second 50,000 met a full queue and waited for room {waits} times)"
    );
    assert!(
        waits > 0,
        "the producer never had to wait: the test proves less than it says"
    );
    let first = FIRST.lock().map(|f| f.clone()).unwrap_or_default();
    assert_eq!(
        allocations,
        0,
        "the steady-state pipeline allocated; the first, on thread {}",
        first.unwrap_or_default()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
