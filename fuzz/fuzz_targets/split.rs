//! Feeds an arbitrary byte stream, cut into arbitrary chunks, to the test agent's
//! `FrameSplitter` with a small frame cap. It must never panic; after every push it holds
//! no more than the cap (an unfinished frame that outgrows the cap is refused); frames
//! come out in stream order, each within the cap; at most one error ends the stream and
//! nothing comes out after it; and how the stream is cut changes nothing: the frames and
//! the error are those of the whole stream pushed at once.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use geneva_audit::agent::{FrameError, FrameSplitter, ReceivedFrame};
use libfuzzer_sys::fuzz_target;

#[derive(Debug)]
struct Input {
    cap: usize,
    chunks: Vec<Vec<u8>>,
}

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        // Small caps, so the fuzzer reaches them: 1..=1024 bytes.
        let cap = usize::from(u.int_in_range(1u16..=1024)?);
        let mut chunks = Vec::new();
        while !u.is_empty() {
            let len = usize::from(u.int_in_range(0u8..=64)?);
            let len = len.min(u.len());
            chunks.push(u.bytes(len)?.to_vec());
        }
        Ok(Input { cap, chunks })
    }
}

type Out = Vec<Result<ReceivedFrame, FrameError>>;

fn check(out: &Out, cap: usize, last_offset: &mut Option<u64>, failed: &mut bool) {
    for result in out {
        assert!(!*failed, "output after an error");
        match result {
            Ok(frame) => {
                assert!(
                    frame.raw.len() <= cap,
                    "a frame of {} > cap {cap}",
                    frame.raw.len()
                );
                assert!(!frame.raw.is_empty());
                if let Some(prev) = *last_offset {
                    assert!(frame.offset > prev, "frames out of order");
                }
                *last_offset = Some(frame.offset);
            }
            Err(error) => {
                assert!(error.offset >= error.frame_offset);
                *failed = true;
            }
        }
    }
}

/// What must not depend on the cutting: the frames' bytes and offsets, and the error's
/// kind and where its frame starts.
fn summary(out: &Out) -> Vec<Result<(u64, Vec<u8>), (geneva_audit::agent::FrameErrorKind, u64)>> {
    out.iter()
        .map(|r| match r {
            Ok(f) => Ok((f.offset, f.raw.clone())),
            Err(e) => Err((e.kind, e.frame_offset)),
        })
        .collect()
}

fuzz_target!(|input: Input| {
    let cap = input.cap;
    let mut splitter = FrameSplitter::new(cap);
    let mut all: Out = Vec::new();
    let (mut last_offset, mut failed) = (None, false);
    for chunk in &input.chunks {
        let out = splitter.push(chunk);
        check(&out, cap, &mut last_offset, &mut failed);
        assert!(
            splitter.buffered() <= cap,
            "holds {} bytes after a push, cap {cap}",
            splitter.buffered()
        );
        assert_eq!(splitter.is_failed(), failed);
        all.extend(out);
    }
    let tail = splitter.finish();
    assert!(splitter.is_failed());
    assert_eq!(splitter.buffered(), 0);
    assert!(splitter.push(b"\x93").is_empty(), "output after finish");

    // The same stream in one piece.
    let stream: Vec<u8> = input.chunks.concat();
    let mut whole = FrameSplitter::new(cap);
    let once = whole.push(&stream);
    let once_tail = whole.finish();
    assert_eq!(
        summary(&all),
        summary(&once),
        "the cutting changed the result"
    );
    assert_eq!(
        tail.map(|e| (e.kind, e.frame_offset)),
        once_tail.map(|e| (e.kind, e.frame_offset))
    );
});
