//! The spool on real files, with real damage: torn writes, flipped bytes, empty and
//! foreign files, a full disk (a small tmpfs), a read-only directory, a held lock.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use super::format::{FRAME_OVERHEAD, HEADER_LEN, segment_name};
use super::*;

mod batch;
mod privacy;

/// One test at a time: a child process started by one test holds, until it execs, a
/// copy of every descriptor of this process, the lock of a spool another test has
/// just closed included, which that test would then find still locked.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("ga-spool-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        Dir(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn frame(n: u32) -> Vec<u8> {
    let mut f = format!("frame {n} ").into_bytes();
    f.resize(100 + (n % 50) as usize, b'x');
    f
}

/// Opens the spool in `dir`. A spool just dropped may still be locked for a moment: a
/// child another test forks meanwhile holds a copy of the lock's descriptor until it
/// execs (the descriptor is close-on-exec), so `Locked` is waited out, with a deadline.
fn open(dir: &Path) -> (Spool, Vec<SpoolNotice>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Spool::open(dir, 1 << 30, SpoolSync::Off) {
            Err(SpoolError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            result => return result.unwrap(),
        }
    }
}

/// Reads every unread frame: its bytes and whether it was inherited.
fn drain(spool: &mut Spool) -> Vec<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    while let Some(f) = spool.next_frame().unwrap() {
        out.push((f.bytes.to_vec(), f.inherited));
    }
    out
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

#[test]
fn frames_come_back_in_order_across_segments_and_a_reopen() {
    let _serial = serial();
    let dir = Dir::new("order");
    // A small limit makes small segments (64 KiB): a thousand frames span several.
    let (mut spool, notices) = Spool::open(&dir.0, 512 << 10, SpoolSync::Off).unwrap();
    assert!(notices.is_empty(), "{notices:?}");
    for n in 0..1000 {
        spool.append(&frame(n)).unwrap();
    }
    assert!(segments(&dir.0).len() > 1);
    assert_eq!((spool.frames(), spool.unread()), (1000, 1000));
    let first: Vec<_> = (0..10)
        .map(|_| spool.next_frame().unwrap().unwrap().bytes.to_vec())
        .collect();
    assert_eq!(first, (0..10).map(frame).collect::<Vec<_>>());
    spool.ack(10).unwrap();
    spool.sync().unwrap();
    drop(spool);
    let (mut spool, notices) = open(&dir.0);
    assert_eq!(
        notices,
        [SpoolNotice::Recovered {
            frames: 990,
            bytes: spool.bytes()
        }]
    );
    spool.append(&frame(1000)).unwrap();
    let got = drain(&mut spool);
    let want: Vec<_> = (10..=1000).map(|n| (frame(n), n < 1000)).collect();
    assert_eq!(
        got, want,
        "acknowledged frames are not sent again; new ones are own"
    );
    spool.ack(991).unwrap();
    assert_eq!((spool.frames(), spool.bytes()), (0, 0));
    // Delivered segments are deleted; only the tail being appended to stays.
    assert_eq!(segments(&dir.0).len(), 1);
}

#[test]
fn the_limit_refuses_a_frame_before_anything_is_written() {
    let _serial = serial();
    let dir = Dir::new("limit");
    let size = FRAME_OVERHEAD + frame(0).len() as u64;
    let (mut spool, _) = Spool::open(&dir.0, 3 * size, SpoolSync::Always).unwrap();
    for _ in 0..3 {
        spool.append(&frame(0)).unwrap();
    }
    assert!(matches!(
        spool.append(&frame(0)),
        Err(SpoolFault::Full { .. })
    ));
    assert_eq!(spool.frames(), 3);
    spool.next_frame().unwrap();
    spool.ack(1).unwrap();
    spool.append(&frame(0)).unwrap();
}

#[test]
fn a_torn_last_frame_is_cut_and_the_frames_before_it_kept() {
    let _serial = serial();
    let dir = Dir::new("torn");
    let (mut spool, _) = open(&dir.0);
    for n in 0..5 {
        spool.append(&frame(n)).unwrap();
    }
    drop(spool);
    let seg = segments(&dir.0).pop().unwrap();
    let len = fs::metadata(&seg).unwrap().len();
    // The last write stopped 7 bytes short.
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    let (mut spool, notices) = open(&dir.0);
    let last = FRAME_OVERHEAD + frame(4).len() as u64;
    assert!(
        notices.contains(&SpoolNotice::TornTail {
            path: seg.clone(),
            offset: len - last,
            bytes_cut: last - 7
        }),
        "{notices:?}"
    );
    assert_eq!(fs::metadata(&seg).unwrap().len(), len - last);
    let got: Vec<_> = drain(&mut spool).into_iter().map(|f| f.0).collect();
    assert_eq!(got, (0..4).map(frame).collect::<Vec<_>>());
}

#[test]
fn a_flipped_byte_sets_the_file_aside_and_keeps_the_good_frames() {
    let _serial = serial();
    let dir = Dir::new("flip");
    let (mut spool, _) = Spool::open(&dir.0, 512 << 10, SpoolSync::Off).unwrap();
    for n in 0..1000 {
        spool.append(&frame(n)).unwrap();
    }
    drop(spool);
    let segs = segments(&dir.0);
    assert!(segs.len() >= 2);
    // A byte in the payload of the first segment's third frame.
    let mut bytes = fs::read(&segs[0]).unwrap();
    let third = HEADER_LEN as usize + 2 * FRAME_OVERHEAD as usize + frame(0).len() + frame(1).len();
    bytes[third + FRAME_OVERHEAD as usize + 3] ^= 0x20;
    fs::write(&segs[0], &bytes).unwrap();
    let (mut spool, notices) = open(&dir.0);
    let aside = notices
        .iter()
        .find_map(|n| match n {
            SpoolNotice::SetAside {
                path,
                moved_to,
                reason,
            } => Some((path, moved_to, reason)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{notices:?}"));
    assert_eq!(aside.0, &segs[0]);
    assert!(
        aside.2.contains("checksum") && aside.2.contains(&format!("offset {third}")),
        "{}",
        aside.2
    );
    // Renamed, never deleted: the damaged bytes are all there.
    assert_eq!(fs::read(aside.1).unwrap(), bytes);
    let got: Vec<_> = drain(&mut spool).into_iter().map(|f| f.0).collect();
    assert_eq!(got[..2], [frame(0), frame(1)]);
    // The next segment's frames follow the two good ones.
    let second_first = got[2].clone();
    assert!((3..1000).any(|n| frame(n) == second_first));
    assert_eq!(got.last(), Some(&frame(999)));
}

#[test]
fn an_empty_segment_is_set_aside_and_a_foreign_file_left_alone() {
    let _serial = serial();
    let dir = Dir::new("empty");
    let (mut spool, _) = open(&dir.0);
    spool.append(&frame(1)).unwrap();
    drop(spool);
    let empty = dir.0.join(segment_name(1));
    fs::write(&empty, b"").unwrap();
    let foreign = dir.0.join("notes.txt");
    fs::write(&foreign, b"mine").unwrap();
    let (mut spool, notices) = open(&dir.0);
    assert!(
        notices.contains(&SpoolNotice::Foreign {
            path: foreign.clone()
        }),
        "{notices:?}"
    );
    assert!(
        notices
            .iter()
            .any(|n| matches!(n, SpoolNotice::SetAside { path, reason, .. }
            if path == &empty && reason.contains("empty"))),
        "{notices:?}"
    );
    assert!(!empty.exists());
    assert_eq!(fs::read(&foreign).unwrap(), b"mine");
    assert_eq!(drain(&mut spool).len(), 1);
}

#[test]
fn a_newer_format_is_refused_and_left_as_it_is() {
    let _serial = serial();
    let dir = Dir::new("newer");
    fs::create_dir_all(&dir.0).unwrap();
    let seg = dir.0.join(segment_name(FIRST_ID));
    let mut h = format::header();
    h[8] = 2;
    fs::write(&seg, h).unwrap();
    match Spool::open(&dir.0, 1 << 20, SpoolSync::Off) {
        Err(SpoolError::NewerVersion {
            path,
            found: 2,
            supported: 1,
        }) => assert_eq!(path, seg),
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert_eq!(fs::read(&seg).unwrap(), h);
}

#[test]
fn a_file_where_the_directory_should_be_is_named() {
    let _serial = serial();
    let dir = Dir::new("file");
    fs::write(&dir.0, b"x").unwrap();
    let e = Spool::open(&dir.0, 1 << 20, SpoolSync::Off)
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(&e, SpoolError::NotADirectory { path } if path == &dir.0),
        "{e:?}"
    );
    assert!(e.to_string().contains(&dir.0.display().to_string()));
    let _ = fs::remove_file(&dir.0);
}

#[test]
fn one_client_per_directory_in_this_process_or_another() {
    let _serial = serial();
    let dir = Dir::new("lock");
    let held = open(&dir.0);
    let e = Spool::open(&dir.0, 1 << 20, SpoolSync::Off)
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(&e, SpoolError::Locked { path } if path == &dir.0),
        "{e:?}"
    );
    assert!(e.to_string().contains("in use"), "{e}");
    drop(held);
    drop(open(&dir.0));
    // Another process holds it: flock(1) running a shell that waits for its stdin.
    let lock = dir.0.join("lock");
    let mut child = match Command::new("flock")
        .arg("-n")
        .arg(&lock)
        .args(["sh", "-c", "echo locked; read x"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!("this test needs flock(1) for a lock held by another process: {e}"),
    };
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    assert_eq!(line, "locked\n");
    let e = Spool::open(&dir.0, 1 << 20, SpoolSync::Off)
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(e, SpoolError::Locked { .. }), "{e:?}");
    drop(child.stdin.take());
    child.wait().unwrap();
    drop(open(&dir.0));
}

#[test]
fn a_read_only_directory_is_an_error_naming_it() {
    let _serial = serial();
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    if unsafe { libc::geteuid() } == 0 {
        // Root writes anywhere: use a read-only tmpfs instead, where we may mount.
        let dir = Dir::new("ro");
        fs::create_dir_all(&dir.0).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k,ro,mode=0700", "tmpfs"])
            .arg(&dir.0)
            .status();
        if !mounted.is_ok_and(|s| s.success()) {
            panic!("this test needs to mount a read-only tmpfs (root, mount(8))");
        }
        let e = Spool::open(&dir.0, 1 << 20, SpoolSync::Off)
            .map(|_| ())
            .unwrap_err();
        let _ = Command::new("umount").arg(&dir.0).status();
        assert!(
            matches!(&e, SpoolError::Io { path, .. } if path == &dir.0),
            "{e:?}"
        );
        assert!(e.to_string().contains("Read-only"), "{e}");
        return;
    }
    let dir = Dir::new("ro");
    fs::create_dir_all(&dir.0).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o555)).unwrap();
    let e = Spool::open(&dir.0, 1 << 20, SpoolSync::Off)
        .map(|_| ())
        .unwrap_err();
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o755)).unwrap();
    assert!(e.to_string().contains("ermission denied"), "{e}");
}

#[test]
fn a_full_disk_refuses_the_frame_and_leaves_every_frame_before_it_whole() {
    let _serial = serial();
    let dir = Dir::new("full");
    fs::create_dir_all(&dir.0).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs"])
        .arg(&dir.0)
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        panic!("this test needs to mount a small tmpfs (root, mount(8))");
    }
    let unmount = || {
        let _ = Command::new("umount").arg(&dir.0).status();
    };
    let result = std::panic::catch_unwind(|| {
        let (mut spool, _) = Spool::open(&dir.0, 1 << 30, SpoolSync::Always).unwrap();
        let mut n = 0;
        let error = loop {
            match spool.append(&frame(n)) {
                Ok(()) => n += 1,
                Err(e) => break e,
            }
            assert!(n < 1_000_000, "the disk never filled");
        };
        assert!(error.to_string().contains("disk is full"), "{error}");
        assert_eq!(spool.frames(), u64::from(n));
        drop(spool);
        let (mut spool, notices) = open(&dir.0);
        assert!(
            !notices.iter().any(|x| matches!(
                x,
                SpoolNotice::TornTail { .. } | SpoolNotice::SetAside { .. }
            )),
            "{notices:?}"
        );
        let got: Vec<_> = drain(&mut spool).into_iter().map(|f| f.0).collect();
        assert_eq!(got, (0..n).map(frame).collect::<Vec<_>>());
        n
    });
    unmount();
    let n = result.unwrap();
    eprintln!("the 256 KiB tmpfs took {n} frames");
}

#[test]
fn close_puts_older_frames_in_front() {
    let _serial = serial();
    let dir = Dir::new("front");
    let (mut spool, _) = open(&dir.0);
    spool.append(&frame(3)).unwrap();
    spool.append(&frame(4)).unwrap();
    let older = [frame(1), frame(2)];
    let (n, released) = spool
        .replace_lent(&mut older.iter().map(|f| (f.as_slice(), false)))
        .unwrap();
    assert!(released.is_none());
    assert_eq!((n, spool.frames()), (2, 4));
    spool.sync().unwrap();
    drop(spool);
    let (mut spool, _) = open(&dir.0);
    let got: Vec<_> = drain(&mut spool).into_iter().map(|f| f.0).collect();
    assert_eq!(got, (1..=4).map(frame).collect::<Vec<_>>());
}

/// At close (or once the agent is away) the outbox holds frames read from the spool and,
/// behind them, records: they go in front in that order, in place of the frames read,
/// are read next, and nothing delivered comes back (the cursor keeps the delivered
/// prefix of the segment behind the new one).
#[test]
fn close_replaces_the_frames_read_with_the_outbox_in_its_order() {
    let _serial = serial();
    let dir = Dir::new("replace");
    let (mut spool, _) = open(&dir.0);
    for n in 1..=6 {
        spool.append(&frame(n)).unwrap();
    }
    for _ in 0..4 {
        spool.next_frame().unwrap();
    }
    // 1 and 2 delivered; 3 and 4 lent to the outbox, which also holds record 100.
    spool.ack(2).unwrap();
    let outbox = [frame(3), frame(4), frame(100)];
    let (n, released) = spool
        .replace_lent(&mut outbox.iter().map(|f| (f.as_slice(), false)))
        .unwrap();
    assert!(released.is_none());
    // The outbox's frames are the next read, before the rest.
    assert_eq!((n, spool.frames(), spool.unread()), (3, 5, 5));
    let size = |ns: &[u32]| -> u64 {
        ns.iter()
            .map(|&n| FRAME_OVERHEAD + frame(n).len() as u64)
            .sum()
    };
    assert_eq!(spool.bytes(), size(&[3, 4, 100, 5, 6]));
    let read: Vec<_> = drain(&mut spool).into_iter().map(|f| f.0).collect();
    assert_eq!(read, [3, 4, 100, 5, 6].map(frame));
    spool.sync().unwrap();
    drop(spool);
    let (mut spool, _) = open(&dir.0);
    let got: Vec<_> = drain(&mut spool).into_iter().map(|f| f.0).collect();
    assert_eq!(got, [3, 4, 100, 5, 6].map(frame));
}

#[test]
fn close_finding_no_room_for_the_outbox_changes_nothing() {
    let _serial = serial();
    let dir = Dir::new("replace-full");
    let one = FRAME_OVERHEAD + frame(1).len() as u64;
    let (mut spool, _) = Spool::open(&dir.0, 3 * one, SpoolSync::Off).unwrap();
    for _ in 1..=3 {
        spool.append(&frame(1)).unwrap();
    }
    spool.next_frame().unwrap();
    // The frame read and a record: one frame more than the limit leaves room for.
    let outbox = [frame(1), frame(1)];
    let refused = spool.replace_lent(&mut outbox.iter().map(|f| (f.as_slice(), false)));
    assert!(
        matches!(refused, Err(SpoolFault::Full { .. })),
        "{refused:?}"
    );
    assert_eq!((spool.frames(), spool.bytes()), (3, 3 * one));
    assert_eq!(segments(&dir.0).len(), 1);
    // The frame read alone fits in its own place.
    let (n, _) = spool
        .replace_lent(&mut outbox[..1].iter().map(|f| (f.as_slice(), false)))
        .unwrap();
    assert_eq!((n, spool.frames(), spool.bytes()), (1, 3, 3 * one));
}

#[test]
fn the_cursor_waits_for_the_policy_and_a_crash_costs_duplicates_only() {
    let _serial = serial();
    let dir = Dir::new("cursor");
    let (mut spool, _) =
        Spool::open(&dir.0, 1 << 30, SpoolSync::Every(Duration::from_secs(3600))).unwrap();
    for n in 0..10 {
        spool.append(&frame(n)).unwrap();
    }
    for _ in 0..4 {
        spool.next_frame().unwrap();
    }
    spool.ack(4).unwrap();
    // Not yet due: a crash now sends the four again.
    spool.tick(Instant::now()).unwrap();
    drop(spool);
    let (mut spool, _) = open(&dir.0);
    assert_eq!(drain(&mut spool).len(), 10);
}

#[test]
fn a_cursor_holds_entries_and_checks_out_whole() {
    use super::format::{cursor_bytes, read_cursor};
    let one = cursor_bytes(&[(7, 116)]);
    // One entry is the 20 bytes of the first format: id, offset, checksum.
    assert_eq!(one.len(), 20);
    assert_eq!(read_cursor(&one), [(7, 116)]);
    let two = cursor_bytes(&[(6, 300), (7, 116)]);
    assert_eq!(read_cursor(&two), [(6, 300), (7, 116)]);
    let mut flipped = two.clone();
    flipped[9] ^= 1;
    assert!(read_cursor(&flipped).is_empty());
    assert!(read_cursor(&two[..two.len() - 1]).is_empty());
    assert!(read_cursor(&two[4..]).is_empty());
    assert!(read_cursor(&cursor_bytes(&[])).is_empty());
    assert!(read_cursor(&[]).is_empty());
}

/// Frames put in front keep whether an earlier client left them: the next client's
/// counts (delivered or replayed) depend on it.
#[test]
fn frames_put_in_front_keep_whether_an_earlier_client_left_them() {
    let _serial = serial();
    let dir = Dir::new("front-inherited");
    {
        let (mut spool, _) = open(&dir.0);
        spool.append(&frame(1)).unwrap();
        spool.append(&frame(2)).unwrap();
        spool.sync().unwrap();
    }
    let (mut spool, _) = open(&dir.0);
    spool.next_frame().unwrap();
    spool.append(&frame(3)).unwrap();
    let outbox = [(frame(1), true), (frame(100), false)];
    spool
        .replace_lent(&mut outbox.iter().map(|(f, i)| (f.as_slice(), *i)))
        .unwrap();
    assert_eq!(
        drain(&mut spool),
        vec![
            (frame(1), true),
            (frame(100), false),
            (frame(2), true),
            (frame(3), false)
        ]
    );
}
