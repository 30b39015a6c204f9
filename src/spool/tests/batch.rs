//! Appending a batch as one write per segment, and reading back a write's worth of
//! payloads into reused buffers: on real files, with a torn write, a flipped byte, the
//! limit, a full disk and a segment boundary in the middle of a batch; the writes counted
//! by the kernel (`/proc/thread-self/io`).

use std::fs;
use std::process::Command;

use super::super::format::segment_name;
use super::*;

/// Frames `from..to`, as a batch.
fn batch(from: u32, to: u32) -> Vec<Vec<u8>> {
    (from..to).map(frame).collect()
}

fn slices(frames: &[Vec<u8>]) -> impl Iterator<Item = &[u8]> {
    frames.iter().map(Vec::as_slice)
}

fn size(frames: &[Vec<u8>]) -> u64 {
    frames.iter().map(|f| FRAME_OVERHEAD + f.len() as u64).sum()
}

/// Write calls this thread has made (`write`, `pwrite` and their kin), from the kernel.
fn writes_by_this_thread() -> u64 {
    let io = fs::read_to_string("/proc/thread-self/io").unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("syscw: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

/// Reads everything back with `read_frames`, `max` bytes at a time, through the same
/// two buffers; returns the frames and, for each call, how many it read.
fn read_all(spool: &mut Spool, max: usize) -> (Vec<(Vec<u8>, bool)>, Vec<usize>) {
    let (mut payloads, mut reads) = (Vec::new(), Vec::new());
    let (mut out, mut calls) = (Vec::new(), Vec::new());
    loop {
        payloads.clear();
        reads.clear();
        let n = spool.read_frames(max, &mut payloads, &mut reads).unwrap();
        if n == 0 {
            break;
        }
        assert_eq!(reads.len(), n);
        let total: usize = reads.iter().map(|r| r.len).sum();
        assert_eq!(total, payloads.len());
        assert!(
            total <= max || n == 1,
            "{total} bytes in {n} frames over {max}"
        );
        let mut at = 0;
        for r in &reads {
            out.push((payloads[at..at + r.len].to_vec(), r.inherited));
            at += r.len;
        }
        calls.push(n);
    }
    (out, calls)
}

#[test]
fn a_batch_is_one_write_and_comes_back_a_write_at_a_time() {
    let _serial = serial();
    let dir = Dir::new("batch");
    let (mut spool, _) = open(&dir.0);
    let frames = batch(0, 300);
    let before = writes_by_this_thread();
    let appended = spool.append_frames(slices(&frames));
    // The new segment's header, then the batch: two writes for 300 frames.
    assert_eq!(writes_by_this_thread() - before, 2);
    assert_eq!(appended.frames, 300);
    assert!(appended.fault.is_none(), "{:?}", appended.fault);
    assert_eq!((spool.frames(), spool.unread()), (300, 300));
    assert_eq!(spool.bytes(), size(&frames));
    // The file is the header, then each frame with its prefix, back to back.
    let seg = segments(&dir.0).pop().unwrap();
    let bytes = fs::read(&seg).unwrap();
    let mut want = format::header().to_vec();
    for f in &frames {
        want.extend_from_slice(&format::frame_prefix(f));
        want.extend_from_slice(f);
    }
    assert_eq!(bytes, want);
    // 64 KiB at a time: whole frames, in order, own.
    let (got, calls) = read_all(&mut spool, 64 << 10);
    assert_eq!(
        got,
        frames
            .iter()
            .map(|f| (f.clone(), false))
            .collect::<Vec<_>>()
    );
    assert!(calls.len() < 300, "one frame per call: {calls:?}");
    // A small limit per call still gives one frame (a frame larger than it goes alone).
    spool.ack(300).unwrap();
    let big = vec![b'y'; 5000];
    let _ = spool.append_frames([big.as_slice(), &frame(1)]);
    let (got, calls) = read_all(&mut spool, 1000);
    assert_eq!(calls, [1, 1]);
    assert_eq!(got[0].0, big);
    // Acknowledged like frames read one at a time.
    spool.ack(2).unwrap();
    assert_eq!((spool.frames(), spool.bytes()), (0, 0));
}

#[test]
fn a_batch_crossing_a_segment_boundary_goes_on_in_the_next_segment() {
    let _serial = serial();
    let dir = Dir::new("batch-rollover");
    // 512 KiB of limit: segments of 64 KiB. The batch is about 100 KiB.
    let (mut spool, _) = Spool::open(&dir.0, 512 << 10, SpoolSync::Always).unwrap();
    let first = batch(0, 100);
    assert_eq!(spool.append_frames(slices(&first)).frames, 100);
    let second = batch(100, 800);
    let before = writes_by_this_thread();
    let appended = spool.append_frames(slices(&second));
    // One write in the first segment, the next segment's header, one write in it.
    assert_eq!(writes_by_this_thread() - before, 3);
    assert_eq!(appended.frames, 700);
    assert!(appended.fault.is_none());
    spool.commit().unwrap();
    let segs = segments(&dir.0);
    assert_eq!(segs.len(), 2, "{segs:?}");
    // The first segment was closed at the first frame boundary at or past 64 KiB.
    let len0 = fs::metadata(&segs[0]).unwrap().len();
    let mut at = HEADER_LEN;
    let mut crossed = None;
    for (n, f) in first.iter().chain(&second).enumerate() {
        at += FRAME_OVERHEAD + f.len() as u64;
        if at >= 64 << 10 {
            crossed = Some(n + 1);
            break;
        }
    }
    assert_eq!(len0, at, "the segment ends where a frame crossed 64 KiB");
    let crossed = crossed.unwrap();
    assert!(
        crossed > 100 && crossed < 800,
        "the boundary is inside the batch"
    );
    // Both parts whole on disk: a new client finds every frame, in order.
    drop(spool);
    let (mut spool, notices) = open(&dir.0);
    assert!(
        matches!(
            notices.as_slice(),
            [SpoolNotice::Recovered { frames: 800, .. }]
        ),
        "{notices:?}"
    );
    let (got, _) = read_all(&mut spool, 64 << 10);
    let want: Vec<_> = batch(0, 800).into_iter().map(|f| (f, true)).collect();
    assert_eq!(got, want, "inherited, in order, across the boundary");
    spool.ack(800).unwrap();
    assert_eq!(spool.frames(), 0);
}

#[test]
fn the_limit_takes_what_fits_and_says_so() {
    let _serial = serial();
    let dir = Dir::new("batch-limit");
    let frames = batch(0, 8);
    let limit = size(&frames[..5]);
    let (mut spool, _) = Spool::open(&dir.0, limit, SpoolSync::Off).unwrap();
    let appended = spool.append_frames(slices(&frames));
    assert_eq!(appended.frames, 5);
    assert!(
        matches!(appended.fault, Some(SpoolFault::Full { limit: l }) if l == limit),
        "{:?}",
        appended.fault
    );
    assert_eq!((spool.frames(), spool.bytes()), (5, limit));
    let seg = segments(&dir.0).pop().unwrap();
    assert_eq!(fs::metadata(&seg).unwrap().len(), HEADER_LEN + limit);
    // Full: nothing more goes in, not even a part.
    let refused = spool.append_frames(slices(&frames[5..]));
    assert_eq!(refused.frames, 0);
    assert!(matches!(refused.fault, Some(SpoolFault::Full { .. })));
    // Once some are delivered, the rest fit.
    let (got, _) = read_all(&mut spool, 64 << 10);
    assert_eq!(got.len(), 5);
    spool.ack(4).unwrap();
    assert_eq!(spool.append_frames(slices(&frames[5..])).frames, 3);
}

#[test]
fn a_full_disk_cuts_the_batch_back_to_what_was_counted() {
    let _serial = serial();
    let dir = Dir::new("batch-full");
    fs::create_dir_all(&dir.0).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs"])
        .arg(&dir.0)
        .status();
    assert!(
        mounted.is_ok_and(|s| s.success()),
        "this test mounts a small tmpfs: it runs as root"
    );
    let result = std::panic::catch_unwind(|| {
        let (mut spool, _) = Spool::open(&dir.0, 1 << 30, SpoolSync::Off).unwrap();
        let mut counted = 0u32;
        let fault = loop {
            let frames = batch(counted, counted + 97);
            let appended = spool.append_frames(slices(&frames));
            counted += appended.frames as u32;
            if let Some(fault) = appended.fault {
                break fault;
            }
            assert!(counted < 1_000_000, "the disk never filled");
        };
        assert!(fault.to_string().contains("disk is full"), "{fault}");
        assert_eq!(spool.frames(), u64::from(counted));
        // The failed write left nothing: the files hold exactly what was counted.
        let on_disk: u64 = segments(&dir.0)
            .iter()
            .map(|s| fs::metadata(s).unwrap().len() - HEADER_LEN)
            .sum();
        assert_eq!(on_disk, spool.bytes());
        drop(spool);
        let (mut spool, notices) = open(&dir.0);
        assert!(
            !notices.iter().any(|x| matches!(
                x,
                SpoolNotice::TornTail { .. } | SpoolNotice::SetAside { .. }
            )),
            "{notices:?}"
        );
        let (got, _) = read_all(&mut spool, 64 << 10);
        let got: Vec<_> = got.into_iter().map(|f| f.0).collect();
        assert_eq!(got, batch(0, counted));
        counted
    });
    let _ = Command::new("umount").arg(&dir.0).status();
    let counted = result.unwrap();
    assert!(counted > 0);
}

#[test]
fn a_batch_torn_by_a_crash_is_cut_to_its_last_whole_frame() {
    let _serial = serial();
    let dir = Dir::new("batch-torn");
    let (mut spool, _) = open(&dir.0);
    let frames = batch(0, 50);
    assert_eq!(spool.append_frames(slices(&frames)).frames, 50);
    drop(spool);
    // The process died in the middle of the write: the file ends inside frame 30.
    let seg = segments(&dir.0).pop().unwrap();
    let cut = HEADER_LEN + size(&frames[..30]) + 20;
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(cut)
        .unwrap();
    let (mut spool, notices) = open(&dir.0);
    assert!(
        notices.contains(&SpoolNotice::TornTail {
            path: seg.clone(),
            offset: HEADER_LEN + size(&frames[..30]),
            bytes_cut: 20,
        }),
        "{notices:?}"
    );
    let (got, _) = read_all(&mut spool, 64 << 10);
    assert_eq!(
        got.into_iter().map(|f| f.0).collect::<Vec<_>>(),
        batch(0, 30)
    );
    // Appending goes on behind them, in a segment of its own.
    assert_eq!(spool.append_frames(slices(&batch(50, 60))).frames, 10);
    let (got, _) = read_all(&mut spool, 64 << 10);
    assert_eq!(
        got.into_iter().map(|f| f.0).collect::<Vec<_>>(),
        batch(50, 60)
    );
}

#[test]
fn a_byte_flipped_on_disk_after_the_append_is_caught_when_read_back() {
    let _serial = serial();
    let dir = Dir::new("batch-flip");
    let (mut spool, _) = open(&dir.0);
    let frames = batch(0, 40);
    assert_eq!(spool.append_frames(slices(&frames)).frames, 40);
    // A byte of frame 25's payload changes under the open spool.
    let seg = segments(&dir.0).pop().unwrap();
    let offset = HEADER_LEN + size(&frames[..25]);
    let mut bytes = fs::read(&seg).unwrap();
    bytes[(offset + FRAME_OVERHEAD) as usize + 5] ^= 0x04;
    fs::write(&seg, &bytes).unwrap();
    let (mut payloads, mut reads) = (Vec::new(), Vec::new());
    // The frames before it come first...
    let n = spool
        .read_frames(64 << 10, &mut payloads, &mut reads)
        .unwrap();
    assert_eq!(n, 25);
    assert_eq!(payloads, frames[..25].concat());
    // ...then the damage, named, and nothing of it handed out.
    payloads.clear();
    reads.clear();
    let e = spool
        .read_frames(64 << 10, &mut payloads, &mut reads)
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(&seg.display().to_string())
            && text.contains("checksum")
            && text.contains(&format!("offset {offset}")),
        "{text}"
    );
    assert!(payloads.is_empty() && reads.is_empty());
    assert_eq!(spool.unread(), 15);
    // What was read is acknowledged as usual.
    spool.ack(25).unwrap();
    assert_eq!(spool.frames(), 15);
}

#[test]
fn reading_back_reuses_the_callers_buffers() {
    let _serial = serial();
    let dir = Dir::new("batch-reuse");
    // Segments of 64 KiB, so that delivered ones are deleted along the way.
    let (mut spool, _) = Spool::open(&dir.0, 512 << 10, SpoolSync::Off).unwrap();
    let (mut payloads, mut reads) = (Vec::with_capacity(70 << 10), Vec::with_capacity(1024));
    let (cap, reads_cap) = (payloads.capacity(), reads.capacity());
    for round in 0..20 {
        let frames = batch(round * 500, round * 500 + 500);
        assert_eq!(spool.append_frames(slices(&frames)).frames, 500);
        let mut got = 0;
        loop {
            payloads.clear();
            reads.clear();
            let n = spool
                .read_frames(64 << 10, &mut payloads, &mut reads)
                .unwrap();
            if n == 0 {
                break;
            }
            spool.ack(n as u64).unwrap();
            got += n;
        }
        assert_eq!(got, 500);
    }
    assert_eq!((payloads.capacity(), reads.capacity()), (cap, reads_cap));
    assert_eq!(spool.frames(), 0);
    // Delivered segments were deleted as they went.
    assert!(segments(&dir.0).len() <= 2);
    assert!(!dir.0.join(segment_name(FIRST_ID)).exists());
}
