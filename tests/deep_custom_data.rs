//! Custom data nests at most `MAX_CUSTOM_DEPTH` levels: a client refuses a higher limit,
//! a record nested to the limit is validated, measured, encoded, written as JSON and
//! back, sent to the test agent (which reads it) and dropped on threads with the default
//! 2 MiB stack, and a far deeper one is refused without overflowing the caller's stack.

mod common;

use common::*;
use geneva_audit::agent::TestAgent;
use geneva_audit::{
    BuildError, Encoder, MAX_CUSTOM_DEPTH, Record, SendError, ValidationError, Value, encoded_len,
    encoded_len_bound,
};

/// The stack Rust gives a spawned thread by default.
const DEFAULT_STACK: usize = 2 << 20;

/// A custom value `levels` deep, the depth of the record's custom data under it (a
/// scalar at the top is level 1), alternating maps and
/// arrays when `mixed`, else maps only. Built without recursion.
fn nested(levels: usize, mixed: bool) -> Value {
    // A typed JSON value at the bottom: the deepest line the JSON form writes.
    let mut v = Value::UInt(1);
    for level in 1..levels {
        v = if mixed && level % 2 == 0 {
            Value::Array(vec![Value::Nil, v])
        } else {
            Value::Map(vec![("k".into(), v)])
        };
    }
    v
}

fn deep_record(n: u64, levels: usize, mixed: bool) -> Record {
    record(n).custom("deep", nested(levels, mixed))
}

fn custom_depth(v: &rmpv::Value) -> usize {
    match v {
        rmpv::Value::Map(entries) => {
            1 + entries
                .iter()
                .map(|(_, v)| custom_depth(v))
                .max()
                .unwrap_or(0)
        }
        rmpv::Value::Array(items) => 1 + items.iter().map(custom_depth).max().unwrap_or(0),
        _ => 1,
    }
}

#[test]
fn a_limit_past_the_maximum_is_refused_at_build() {
    let err = builder()
        .max_custom_depth(MAX_CUSTOM_DEPTH + 1)
        .build()
        .err();
    assert!(
        matches!(err, Some(BuildError::Config(m)) if m.contains(&MAX_CUSTOM_DEPTH.to_string())),
        "{err:?}"
    );
    let err = builder().max_custom_depth(usize::MAX).build().err();
    assert!(matches!(err, Some(BuildError::Config(_))), "{err:?}");
    let dir = TempDir::new("depth-max-ok");
    let client = builder()
        .unix_socket(dir.socket())
        .max_custom_depth(MAX_CUSTOM_DEPTH)
        .build()
        .unwrap();
    client.close(PATIENCE);
}

#[test]
fn a_record_nested_to_the_maximum_is_handled_on_a_default_stack() {
    std::thread::Builder::new()
        .stack_size(DEFAULT_STACK)
        .spawn(|| {
            for mixed in [false, true] {
                let r = deep_record(0, MAX_CUSTOM_DEPTH, mixed);
                assert_eq!(r.validate_with_depth(MAX_CUSTOM_DEPTH), Ok(()));
                assert_eq!(
                    r.validate_with_depth(MAX_CUSTOM_DEPTH - 1),
                    Err(ValidationError::CustomDataTooDeep {
                        limit: MAX_CUSTOM_DEPTH - 1
                    })
                );
                let mut encoder = Encoder::new(STI).unwrap();
                let frame = encoder.encode(1, &r).to_vec();
                assert_eq!(encoded_len(STI, &r), frame.len());
                assert!(encoded_len_bound(STI, &r) >= frame.len());
                let line = geneva_audit::json::to_line(&r);
                let back = geneva_audit::json::parse_line(&line).expect("the line reads back");
                assert_eq!(back.record(), Some(&r));
                let copy = r.clone();
                assert_eq!(copy, r);
                drop(copy);
                drop(r);
            }
        })
        .unwrap()
        .join()
        .expect("no overflow");
}

#[test]
fn a_record_nested_to_the_maximum_reaches_the_agent() {
    let dir = TempDir::new("depth-max-send");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let client = builder()
        .unix_socket(dir.socket())
        .max_custom_depth(MAX_CUSTOM_DEPTH)
        .build()
        .unwrap();
    // From a thread with the default stack: validation and sizing run on the caller's.
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(DEFAULT_STACK)
            .spawn_scoped(s, || {
                client
                    .try_send(deep_record(0, MAX_CUSTOM_DEPTH, false))
                    .unwrap();
                client
                    .try_send(deep_record(1, MAX_CUSTOM_DEPTH, true))
                    .unwrap();
                let deeper = deep_record(2, MAX_CUSTOM_DEPTH + 1, false);
                match client.try_send(deeper) {
                    Err(SendError::Invalid(ValidationError::CustomDataTooDeep { limit }, r)) => {
                        assert_eq!(limit, MAX_CUSTOM_DEPTH);
                        drop(r);
                    }
                    other => panic!("{other:?}"),
                }
            })
            .unwrap()
            .join()
            .expect("no overflow");
    });
    client.flush(PATIENCE).unwrap();
    let frames = agent.wait_for_frames(3, PATIENCE).unwrap();
    let deep: Vec<usize> = frames
        .iter()
        .filter_map(|f| f.custom("deep").map(custom_depth))
        .collect();
    assert_eq!(deep, [MAX_CUSTOM_DEPTH, MAX_CUSTOM_DEPTH]);
    assert!(client.close(PATIENCE).clean);
}

#[test]
fn a_far_deeper_record_is_refused_without_overflowing() {
    let dir = TempDir::new("depth-far");
    let client = builder()
        .unix_socket(dir.socket())
        .max_custom_depth(MAX_CUSTOM_DEPTH)
        .build()
        .unwrap();
    let outcome = std::thread::Builder::new()
        .stack_size(DEFAULT_STACK)
        .spawn(move || {
            let r = deep_record(0, 200_000, true);
            // A limit past the maximum is the maximum.
            assert_eq!(
                r.validate_with_depth(usize::MAX),
                Err(ValidationError::CustomDataTooDeep {
                    limit: MAX_CUSTOM_DEPTH
                })
            );
            let back = match client.try_send(r) {
                Err(SendError::Invalid(ValidationError::CustomDataTooDeep { .. }, back)) => back,
                other => panic!("{:?}", other.map_err(|e| e.to_string())),
            };
            client.close(PATIENCE);
            // Dropping it would recurse 200,000 levels: leak it.
            std::mem::forget(back);
        })
        .unwrap()
        .join();
    assert!(outcome.is_ok());
}
