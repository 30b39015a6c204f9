//! The splitter and the frame decoder: bytes in, frames or typed errors out.

use std::io;

use proptest::prelude::*;
use rmpv::Value;

use super::read::READER_STACK;
use super::splitter::{Scan, Scanner};
use super::*;

fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let written = rmpv::encode::write_value(&mut out, value);
    assert!(written.is_ok());
    out
}

fn frame_value(tag: &str, ts: i64, body: Vec<(&str, Value)>) -> Value {
    Value::Array(vec![
        Value::from(tag),
        Value::Array(vec![Value::Array(vec![
            Value::from(ts),
            Value::Map(body.into_iter().map(|(k, v)| (Value::from(k), v)).collect()),
        ])]),
        Value::Map(vec![(Value::from("TimeFormat"), Value::from("DateTime"))]),
    ])
}

fn frame(n: i64) -> Vec<u8> {
    encode(&frame_value(
        "AsmAuditDP",
        n,
        vec![
            ("OperationName", Value::from(format!("op{n}"))),
            (
                "CustomData",
                Value::Map(vec![(Value::from("n"), Value::from(n))]),
            ),
        ],
    ))
}

fn ok_frames(results: Vec<Result<ReceivedFrame, FrameError>>) -> Vec<ReceivedFrame> {
    results
        .into_iter()
        .map(|r| match r {
            Ok(frame) => frame,
            Err(e) => panic!("unexpected error: {e}"),
        })
        .collect()
}

fn only_error(results: Vec<Result<ReceivedFrame, FrameError>>) -> FrameError {
    let mut errors: Vec<_> = results.into_iter().filter_map(Result::err).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors.remove(0)
}

#[test]
fn decodes_frames_in_one_push_and_byte_by_byte() {
    let stream: Vec<u8> = (0..3).flat_map(frame).collect();
    let mut whole = FrameSplitter::new(DEFAULT_MAX_FRAME_LEN);
    let at_once = ok_frames(whole.push(&stream));
    assert_eq!(at_once.len(), 3);
    assert_eq!(whole.buffered(), 0);

    let mut bytes = FrameSplitter::new(DEFAULT_MAX_FRAME_LEN);
    let mut one_by_one = Vec::new();
    for b in &stream {
        one_by_one.extend(ok_frames(bytes.push(std::slice::from_ref(b))));
    }
    assert_eq!(at_once, one_by_one);
    for (n, f) in (0..).zip(&at_once) {
        assert_eq!(f.tag, "AsmAuditDP");
        assert_eq!(f.ts, n);
        assert_eq!(f.body_str("OperationName"), Some(format!("op{n}").as_str()));
        assert_eq!(f.custom("n").and_then(Value::as_i64), Some(n));
        assert_eq!(f.option_str("TimeFormat"), Some("DateTime"));
        assert_eq!(f.body_keys(), ["OperationName", "CustomData"]);
        assert_eq!(f.raw, frame(n));
    }
    assert_eq!(at_once[1].offset, as_u64(frame(0).len()));
    assert!(bytes.finish().is_none());
}

#[test]
fn truncated_stream_is_reported_by_finish() {
    let bytes = frame(1);
    let mut splitter = FrameSplitter::for_connection(4, 1024);
    assert!(splitter.push(&bytes[..bytes.len() - 1]).is_empty());
    let error = splitter.finish().expect("a truncated frame");
    assert_eq!(error.kind, FrameErrorKind::Truncated);
    assert_eq!(error.connection, 4);
    assert!(
        splitter.push(&bytes).is_empty(),
        "failed splitters ignore input"
    );
}

#[test]
fn reserved_marker_is_malformed_with_its_offset() {
    let mut stream = frame(0);
    let first = as_u64(stream.len());
    stream.extend([0x93, 0xc1]);
    let mut splitter = FrameSplitter::new(1024);
    let results = splitter.push(&stream);
    assert_eq!(results.len(), 2);
    let error = only_error(results);
    assert_eq!(error.kind, FrameErrorKind::Malformed);
    assert_eq!(error.frame_offset, first);
    assert_eq!(error.offset, first + 1);
    assert!(splitter.is_failed());
    assert_eq!(splitter.buffered(), 0);
}

#[test]
fn too_large_frames_are_refused_early() {
    // Declares a 1 GiB string: refused on the header alone.
    let mut splitter = FrameSplitter::new(1000);
    let error = only_error(splitter.push(&[0x93, 0xdb, 0x40, 0, 0, 0]));
    assert_eq!(error.kind, FrameErrorKind::TooLarge);

    // Exactly at the limit is fine, one byte over is not.
    let bytes = frame(7);
    let mut exact = FrameSplitter::new(bytes.len());
    assert_eq!(ok_frames(exact.push(&bytes)).len(), 1);
    let mut over = FrameSplitter::new(bytes.len() - 1);
    assert_eq!(only_error(over.push(&bytes)).kind, FrameErrorKind::TooLarge);

    // A huge array count is refused before its elements arrive.
    let mut splitter = FrameSplitter::new(1 << 20);
    let error = only_error(splitter.push(&[0x93, 0xa1, b'T', 0xdd, 0xff, 0xff, 0xff, 0xff]));
    assert_eq!(error.kind, FrameErrorKind::TooLarge);
}

#[test]
fn deep_nesting_is_malformed_not_a_stack_overflow() {
    let mut splitter = FrameSplitter::new(DEFAULT_MAX_FRAME_LEN);
    let error = only_error(splitter.push(&vec![0x91; 100_000]));
    assert_eq!(error.kind, FrameErrorKind::Malformed);
    assert!(error.detail.contains("nest"), "{error}");
}

/// `[ "T", [[1, {"a": [[[...nil...]]]}]], {} ]` with `depth` arrays around the nil.
fn nested(depth: usize) -> Vec<u8> {
    let mut bytes = b"\x93\xa1T\x91\x92\x01\x81\xa1a".to_vec();
    bytes.extend(std::iter::repeat_n(0x91, depth));
    bytes.extend([0xc0, 0x80]);
    bytes
}

#[test]
fn nesting_up_to_the_limit_decodes_on_a_default_stack() {
    // The envelope opens 5 levels (counting the frame itself); the rest is the body's.
    let deepest = MAX_NESTING - 5;
    let handle = std::thread::Builder::new()
        .stack_size(READER_STACK)
        .spawn(move || {
            let frame = decode_frame(&nested(deepest)).map(|f| f.ts);
            let too_deep = decode_frame(&nested(deepest + 1)).map_err(|e| e.kind);
            (frame, too_deep)
        })
        .expect("spawn");
    let (frame, too_deep) = handle.join().expect("no stack overflow");
    assert_eq!(frame, Ok(1));
    assert_eq!(too_deep, Err(FrameErrorKind::Malformed));
}

#[test]
fn wrong_shapes_are_described() {
    let cases: Vec<(Value, &str)> = vec![
        (Value::Array(vec![Value::from("T")]), "array of 3"),
        (
            Value::Array(vec![
                Value::from(1),
                Value::Array(vec![]),
                Value::Map(vec![]),
            ]),
            "tag must be a string",
        ),
        (
            Value::Array(vec![
                Value::from("T"),
                Value::Array(vec![]),
                Value::Map(vec![]),
            ]),
            "exactly 1 entry",
        ),
        (
            Value::Array(vec![
                Value::from("T"),
                Value::Array(vec![Value::Array(vec![
                    Value::from("x"),
                    Value::Map(vec![]),
                ])]),
                Value::Map(vec![]),
            ]),
            "time stamp must be an integer",
        ),
        (
            Value::Array(vec![
                Value::from("T"),
                Value::Array(vec![Value::Array(vec![
                    Value::from(u64::MAX),
                    Value::Map(vec![]),
                ])]),
                Value::Map(vec![]),
            ]),
            "does not fit",
        ),
        (
            Value::Array(vec![
                Value::from("T"),
                Value::Array(vec![Value::Array(vec![Value::from(1), Value::Nil])]),
                Value::Map(vec![]),
            ]),
            "record must be a map",
        ),
        (
            Value::Array(vec![
                Value::from("T"),
                Value::Array(vec![Value::Array(vec![
                    Value::from(1),
                    Value::Map(vec![(Value::from(1), Value::Nil)]),
                ])]),
                Value::Map(vec![]),
            ]),
            "keys must be strings",
        ),
        (
            frame_value("T", 1, vec![("a", Value::Nil), ("a", Value::Nil)]),
            "twice",
        ),
        (
            Value::Array(vec![
                Value::from("T"),
                Value::Array(vec![Value::Array(vec![Value::from(1), Value::Map(vec![])])]),
                Value::Nil,
            ]),
            "options must be a map",
        ),
    ];
    for (value, expected) in cases {
        let error = decode_frame(&encode(&value)).expect_err("a bad shape");
        assert_eq!(error.kind, FrameErrorKind::Shape, "{error}");
        assert!(
            error.detail.contains(expected),
            "{error} should say {expected}"
        );
    }
    // A string that is not UTF-8: [ "T", [[1, {"a": "\xff"}]], {} ].
    let error = decode_frame(b"\x93\xa1T\x91\x92\x01\x81\xa1a\xa1\xff\x80").expect_err("not UTF-8");
    assert_eq!(error.kind, FrameErrorKind::Shape, "{error}");
    assert!(
        error.detail.contains("frame[1][0][1].a is not valid UTF-8"),
        "{error}"
    );
    // Not an array at all: refused on the first byte.
    let mut splitter = FrameSplitter::new(1024);
    let error = only_error(splitter.push(b"GET / HTTP/1.1\r\n"));
    assert_eq!((error.kind, error.offset), (FrameErrorKind::Shape, 0));
}

#[test]
fn decode_frame_wants_exactly_one_frame() {
    let one = frame(1);
    assert!(decode_frame(&one).is_ok());
    let mut two = one.clone();
    two.extend(frame(2));
    assert_eq!(
        decode_frame(&two).map_err(|e| e.kind),
        Err(FrameErrorKind::Shape)
    );
    assert_eq!(
        decode_frame(&one[..3]).map_err(|e| e.kind),
        Err(FrameErrorKind::Truncated)
    );
    assert_eq!(
        decode_frame(&[]).map_err(|e| e.kind),
        Err(FrameErrorKind::Truncated)
    );
}

/// The scanner's verdict on arbitrary bytes matches rmpv's.
fn scanner_agrees_with_rmpv(bytes: &[u8]) {
    let mut scanner = Scanner::new();
    // Skip the frame-must-be-an-array rule by scanning inside a 1-element array.
    let mut wrapped = vec![0x91];
    wrapped.extend_from_slice(bytes);
    let verdict = scanner.advance(&wrapped, usize::MAX);
    let mut reader = bytes;
    let decoded = rmpv::decode::read_value_with_max_depth(&mut reader, usize::MAX);
    match verdict {
        Scan::Complete(len) => {
            assert!(decoded.is_ok(), "scanner: complete, rmpv: {decoded:?}");
            assert_eq!(len - 1, bytes.len() - reader.len());
        }
        Scan::Incomplete => {
            let kind = decoded.as_ref().map_err(rmpv::decode::Error::kind);
            assert_eq!(
                kind.err(),
                Some(io::ErrorKind::UnexpectedEof),
                "{decoded:?}"
            );
        }
        Scan::Error { kind, .. } => {
            assert_eq!(kind, FrameErrorKind::Malformed);
            // rmpv reads 0xc1 as nil; the scanner is stricter. Deep nesting needs
            // more than the bytes proptest makes.
            assert!(bytes.contains(&0xc1));
        }
    }
}

proptest! {
    #[test]
    fn scanner_matches_rmpv_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        scanner_agrees_with_rmpv(&bytes);
    }

    #[test]
    fn scanner_matches_rmpv_on_cut_frames(n in any::<i64>(), cut in 0usize..200) {
        let bytes = frame(n);
        scanner_agrees_with_rmpv(&bytes[..cut.min(bytes.len())]);
    }

    #[test]
    fn any_chunking_gives_the_same_frames(
        count in 1i64..5,
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let stream: Vec<u8> = (0..count).flat_map(frame).collect();
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len())).collect();
        cuts.push(stream.len());
        cuts.sort_unstable();
        let mut splitter = FrameSplitter::new(DEFAULT_MAX_FRAME_LEN);
        let mut frames = Vec::new();
        let mut start = 0;
        for cut in cuts {
            frames.extend(ok_frames(splitter.push(&stream[start..cut])));
            start = cut;
        }
        let ts: Vec<i64> = frames.iter().map(|f| f.ts).collect();
        prop_assert_eq!(ts, (0..count).collect::<Vec<_>>());
        prop_assert!(splitter.finish().is_none());
    }

    #[test]
    fn garbage_never_panics_and_stays_bounded(
        pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
    ) {
        let mut splitter = FrameSplitter::new(512);
        let mut errors = 0;
        for piece in &pieces {
            for result in splitter.push(piece) {
                errors += usize::from(result.is_err());
            }
            prop_assert!(splitter.buffered() <= 512);
        }
        errors += usize::from(splitter.finish().is_some());
        prop_assert!(errors <= 1);
    }
}
