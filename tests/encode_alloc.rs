//! Heap use of building, validating, measuring and encoding records, counted by a global
//! allocator. Only the test's own thread is counted (a thread-local switch), so the test
//! harness and other tests running in parallel do not disturb the figures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::borrow::Cow;
use std::cell::Cell;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use geneva_audit::{
    CallerIdentityType, Encoder, Heartbeat, OperationCategory, OperationResult, OperationType,
    Record, TargetResource, Text, Value, encoded_len,
};

struct Counting;

thread_local! {
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static BLOCKS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the allocator may run while thread-locals are being torn down.
    let _ = ACTIVE.try_with(|active| {
        if active.get() {
            let _ = BLOCKS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarding the caller's layout to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: `ptr` and `layout` came from `System` through this allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns how many heap blocks it allocated or reallocated on this thread.
fn counted<R>(f: impl FnOnce() -> R) -> (u64, R) {
    BLOCKS.with(|n| n.set(0));
    ACTIVE.with(|a| a.set(true));
    let r = f();
    ACTIVE.with(|a| a.set(false));
    (BLOCKS.with(Cell::get), r)
}

const SID: &str = "e6c9fcb1-7f08-4c1d-9e7a-123456789abc";
const TS: i64 = 1_700_000_000;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const WORDS: &[&str] = &[
    "alice@contoso.com",
    "Contributor",
    "Reader",
    "Owner",
    "SubscriptionId",
    "ResourceGroup",
    "Ресурс",
    "管理者 👤",
    "4bb12743-2418-427f-92ae-96a11a4044fe",
    "/subscriptions/4bb12743-2418-427f-92ae-96a11a4044fe/resourceGroups/IFxAudit",
];

/// Static or owned, short or long (crossing the str8/str16/str32 boundaries; the 64 KiB
/// ones rarely, to keep the set's memory modest).
fn text(rng: &mut Rng) -> Text {
    match rng.below(2000) {
        0..=999 => Text::Borrowed(WORDS[rng.below(WORDS.len())]),
        1000..=1799 => Text::Owned(format!("{}-{}", WORDS[rng.below(WORDS.len())], rng.next())),
        1800..=1949 => Text::Owned("é".repeat(rng.below(400) + 1)),
        1950..=1998 => Text::Owned("x".repeat([31, 32, 255, 256][rng.below(4)])),
        _ => Text::Owned("x".repeat([65535, 65536][rng.below(2)])),
    }
}

fn value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth >= 3 { 7 } else { 9 }) {
        0 => Value::Nil,
        1 => Value::Bool(rng.next() & 1 == 1),
        2 => Value::Int(rng.next() as i64),
        3 => Value::UInt(rng.next()),
        4 => Value::Float(rng.next() as f64 / 7.0),
        5 => Value::Str(text(rng)),
        6 => match rng.below(2) {
            0 => Value::Bytes(Cow::Borrowed(b"\x00\x01\x02\xff")),
            _ => Value::Bytes(Cow::Owned(vec![9; rng.below(300)])),
        },
        7 => Value::Array((0..rng.below(5)).map(|_| value(rng, depth + 1)).collect()),
        _ => Value::Map(
            (0..rng.below(5))
                .map(|i| (Text::Owned(format!("k{i}")), value(rng, depth + 1)))
                .collect(),
        ),
    }
}

/// The record of README's example, built as it is there.
fn readme_record() -> Record {
    Record::data_plane()
        .caller_ip(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 42)))
        .add_caller_identity(
            CallerIdentityType::Upn,
            "alice@contoso.com",
            "signed-in user",
        )
        .add_operation_category(OperationCategory::ResourceManagement)
        .add_target_resource("SubscriptionId", "4bb12743-2418-427f-92ae-96a11a4044fe")
        .add_caller_access_level("Contributor")
        .operation_access_level("Contributor")
        .operation_name("ListStorageAccounts")
        .caller_agent("azure-cli/2.61.0")
        .operation_type(OperationType::Read)
        .operation_result(OperationResult::Success)
}

/// The same record as [`sample_built_entry_by_entry`] from static data only: static text
/// and static slices (the pipeline bench's record).
#[path = "../benches/support/bench_record.rs"]
mod bench_record;
use bench_record::{
    bench_record as sample_from_static_data, bench_record_built as sample_built_entry_by_entry,
};

/// 10,000 valid records of every shape: static templates, records built entry by entry
/// from static and owned text, few and many entries, nested custom data, long strings.
fn varied_records() -> Vec<Record> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..10_000)
        .map(|i| {
            if i % 10 == 0 {
                return sample_from_static_data().caller_ip(IpAddr::V4(Ipv4Addr::new(
                    10,
                    0,
                    (i / 256 % 256) as u8,
                    (i % 256) as u8,
                )));
            }
            let ip = if rng.below(3) == 0 {
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16 + 1))
            } else {
                IpAddr::V4(Ipv4Addr::new(203, 0, 113, (i % 250) as u8 + 1))
            };
            let mut r = if i % 2 == 0 {
                Record::data_plane()
            } else {
                Record::control_plane()
            }
            .caller_ip(ip)
            .operation_access_level(text(&mut rng))
            .operation_name(text(&mut rng))
            .caller_agent(text(&mut rng))
            .operation_type(OperationType::from_repr(rng.below(4) as u8 + 1).expect("1..=4"))
            .operation_result(OperationResult::Failure)
            .operation_result_description(text(&mut rng))
            .operation_category_description(text(&mut rng));
            if ip.is_ipv6() && rng.below(4) == 0 {
                r = r.caller_ip_zone("eth0");
            }
            for _ in 0..rng.below(6) + 1 {
                let kind = CallerIdentityType::from_repr(rng.below(14) as u8 + 1).expect("1..=14");
                r = r.add_caller_identity(kind, text(&mut rng), text(&mut rng));
            }
            for _ in 0..rng.below(5) + 1 {
                let c = OperationCategory::from_repr(rng.below(19) as u8 + 1).expect("1..=19");
                r = r.add_operation_category(c);
            }
            for _ in 0..rng.below(6) + 1 {
                r = r.add_target(
                    TargetResource::new(text(&mut rng), text(&mut rng))
                        .cluster(text(&mut rng))
                        .region(text(&mut rng)),
                );
            }
            for _ in 0..rng.below(6) + 1 {
                r = r.add_caller_access_level(text(&mut rng));
            }
            for k in 0..rng.below(6) {
                r = r.custom(format!("key{k}"), value(&mut rng, 1));
            }
            r
        })
        .collect()
}

#[test]
fn the_counter_counts() {
    let (n, v) = counted(|| black_box(vec![1u8; 10]));
    assert_eq!(n, 1);
    let (n, _) = counted(|| {
        let mut v = v;
        v.reserve(1000);
        black_box(v)
    });
    assert_eq!(n, 1, "a reallocation counts");
    let (n, _) = counted(|| black_box(1 + 1));
    assert_eq!(n, 0);
}

#[test]
fn encoding_allocates_nothing_once_the_buffer_fits_the_largest_frame() {
    let records = varied_records();
    for r in &records {
        r.validate().expect("generated records are valid");
    }
    let mut encoder = Encoder::new(SID).expect("valid id");
    let largest = records
        .iter()
        .max_by_key(|r| encoder.encoded_len(r))
        .expect("records");
    let largest_len = encoder.encoded_len(largest);
    assert!(largest_len > 65_536, "the set includes a str32 frame");

    // Warm-up: the one frame that makes the buffer grow.
    let (warm_up, _) = counted(|| encoder.encode(TS, largest).len());
    assert!(
        warm_up > 0,
        "the buffer had to grow for {largest_len} bytes"
    );

    let heartbeat = Heartbeat::current(SID, "UnixDomainSocket");
    let (blocks, total) = counted(|| {
        let mut total = 0usize;
        for (i, r) in records.iter().enumerate() {
            total += black_box(encoder.encode(TS + i as i64, r)).len();
        }
        total += encoder.encode_heartbeat(TS, &heartbeat).len();
        total += encoder.encode_diagnostic(TS).len();
        total
    });
    assert_eq!(
        blocks, 0,
        "heap blocks while encoding 10,000 records ({total} bytes)"
    );
    println!(
        "encoded 10,000 records, {total} bytes, largest frame {largest_len} bytes: \
         {warm_up} heap block(s) in the warm-up, {blocks} after"
    );
}

#[test]
fn measuring_and_validating_allocate_nothing() {
    let records = varied_records();
    let (blocks, total) = counted(|| {
        let mut total = 0usize;
        for r in &records {
            total += encoded_len(SID, black_box(r));
            assert!(r.validate().is_ok());
        }
        total
    });
    assert!(total > 0);
    assert_eq!(
        blocks, 0,
        "heap blocks in encoded_len + validate over 10,000 records"
    );
}

#[test]
fn a_record_from_static_data_costs_nothing_to_build_or_clone() {
    let (readme, readme_built) = counted(readme_record);
    readme_built.validate().expect("valid");
    let (entry_by_entry, built) = counted(sample_built_entry_by_entry);
    let (from_static, templated) = counted(sample_from_static_data);
    let (cloned, copy) = counted(|| templated.clone());
    println!(
        "README example record: {readme} heap blocks built with the builder from &'static \
         str; golden bench_record: {entry_by_entry} built entry by entry from &'static str, \
         {from_static} from static data, {cloned} to clone that"
    );
    assert_eq!(
        from_static, 0,
        "a record built only from static data allocates nothing"
    );
    assert_eq!(cloned, 0, "cloning a static record allocates nothing");
    // Entry by entry: one block per non-empty collection (identities, targets, access
    // levels, custom data), none for the text.
    assert!(
        readme <= 3,
        "{readme} heap blocks to build README's example"
    );
    assert!(
        entry_by_entry <= 4,
        "{entry_by_entry} heap blocks to build the sample entry by entry"
    );

    // Both ways build the same record, and the one golden describes.
    built.validate().expect("valid");
    assert_eq!(built, templated);
    assert_eq!(copy, templated);
    let mut encoder = Encoder::new(SID).expect("valid id");
    let frame = encoder.encode(TS, &templated).to_vec();
    assert_eq!(encoder.encode(TS, &built), &frame[..]);
    assert_eq!(frame.len(), 1016, "golden's bench_record frame size");
}
