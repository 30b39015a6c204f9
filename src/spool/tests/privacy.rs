//! The spool keeps audit records private: a directory only its user can change, files
//! 0600 whatever the umask, and no symbolic link planted under a spool name followed.
//! Real files, real owners (the tests run as root, to `chown`), real child processes
//! for the umask (it is process-wide).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use super::super::format::{CURSOR_FILE, CURSOR_TMP, FOREIGN_MARK, LOCK_FILE, segment_name};
use super::*;

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn open_err(dir: &Path) -> SpoolError {
    match Spool::open(dir, 1 << 30, SpoolSync::Off) {
        Ok(_) => panic!("{} was opened", dir.display()),
        Err(e) => e,
    }
}

/// A file outside the spool that a planted link points to; it must stay as it is.
struct Victim {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl Victim {
    fn new(dir: &Dir, name: &str, bytes: &[u8]) -> Victim {
        let path = dir.0.join(name);
        fs::write(&path, bytes).unwrap();
        set_mode(&path, 0o644);
        Victim {
            path,
            bytes: bytes.to_vec(),
        }
    }

    fn assert_untouched(&self) {
        assert_eq!(
            fs::read(&self.path).unwrap(),
            self.bytes,
            "{}",
            self.path.display()
        );
        assert_eq!(mode(&self.path), 0o644);
    }
}

/// The spool in `dir/spool`, with the victims beside it in `dir`.
fn spool_in(dir: &Dir) -> PathBuf {
    fs::create_dir_all(&dir.0).unwrap();
    dir.0.join("spool")
}

/// The child side of the umask test: under the umask it is given, makes a spool whose
/// directory, lock, segments, cursor (through cursor.tmp) and a segment rewritten after
/// damage are all created by this process.
#[test]
#[ignore = "run by files_are_private_whatever_the_umask"]
fn umask_child() {
    let (Ok(dir), Ok(mask)) = (
        std::env::var("SPOOL_UMASK_DIR"),
        std::env::var("SPOOL_UMASK"),
    ) else {
        return;
    };
    let mask = u32::from_str_radix(&mask, 8).unwrap();
    // SAFETY: umask has no preconditions; this child process runs this test alone.
    #[allow(unsafe_code)]
    unsafe {
        libc::umask(mask as libc::mode_t);
    }
    let spool = PathBuf::from(dir).join("a/b/spool");
    let (mut s, _) = Spool::open(&spool, 1 << 30, SpoolSync::Off).unwrap();
    for n in 0..10 {
        s.append(&frame(n)).unwrap();
    }
    s.next_frame().unwrap();
    s.next_frame().unwrap();
    s.ack(1).unwrap();
    s.sync().unwrap();
    drop(s);
    // A flipped byte in the fifth frame: the segment is set aside and its good frames
    // written to a new file under its name.
    let seg = segments(&spool).pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    let fifth: usize = HEADER_LEN as usize
        + (0..4)
            .map(|n| FRAME_OVERHEAD as usize + frame(n).len())
            .sum::<usize>();
    bytes[fifth + FRAME_OVERHEAD as usize + 1] ^= 1;
    fs::write(&seg, &bytes).unwrap();
    let (_s, notices) = Spool::open(&spool, 1 << 30, SpoolSync::Off).unwrap();
    assert!(
        notices
            .iter()
            .any(|n| matches!(n, SpoolNotice::SetAside { .. })),
        "{notices:?}"
    );
    println!("made");
}

#[test]
fn files_are_private_whatever_the_umask() {
    let _serial = serial();
    for mask in ["022", "077", "000"] {
        let dir = Dir::new("umask");
        fs::create_dir_all(&dir.0).unwrap();
        set_mode(&dir.0, 0o755);
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "spool::tests::privacy::umask_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SPOOL_UMASK_DIR", &dir.0)
            .env("SPOOL_UMASK", mask)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("made"),
            "the child failed under umask {mask}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The directories it made, the spool's own and the missing parents alike.
        for d in ["a", "a/b", "a/b/spool"] {
            assert_eq!(mode(&dir.0.join(d)), 0o700, "{d} under umask {mask}");
        }
        let spool = dir.0.join("a/b/spool");
        let names: Vec<String> = fs::read_dir(&spool)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        for want in [LOCK_FILE, CURSOR_FILE, ".seg.corrupt-", ".seg"] {
            assert!(
                names.iter().any(|n| n == want || n.contains(want)),
                "no {want} among {names:?}"
            );
        }
        for name in &names {
            assert_eq!(mode(&spool.join(name)), 0o600, "{name} under umask {mask}");
        }
    }
}

#[test]
fn a_directory_others_can_write_to_is_refused_and_left_as_it_is() {
    let _serial = serial();
    for (mode_bits, who) in [
        (0o777, "every user"),
        (0o1777, "every user"),
        (0o770, "its group"),
    ] {
        let dir = Dir::new("open-dir");
        fs::create_dir_all(&dir.0).unwrap();
        set_mode(&dir.0, mode_bits);
        let e = open_err(&dir.0);
        match &e {
            SpoolError::NotPrivate {
                path, owner, mode, ..
            } => {
                assert_eq!((path, *owner, *mode), (&dir.0, 0, mode_bits));
            }
            other => panic!("{other:?}"),
        }
        let text = e.to_string();
        for part in [
            format!("the spool directory {}", dir.0.display()),
            format!("mode {mode_bits:04o}"),
            format!("can be written by {who}"),
            format!("chmod 0700 {}", dir.0.display()),
            "not used and left as it is".to_owned(),
        ] {
            assert!(text.contains(&part), "{part:?} not in {text}");
        }
        // Neither changed nor used.
        assert_eq!(mode(&dir.0), mode_bits);
        assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 0);
    }
}

#[test]
fn a_directory_of_another_user_is_refused_naming_its_owner() {
    let _serial = serial();
    assert_eq!(
        files::effective_uid(),
        0,
        "this test runs as root, to give the directory to another user"
    );
    let dir = Dir::new("other-owner");
    fs::create_dir_all(&dir.0).unwrap();
    set_mode(&dir.0, 0o700);
    std::os::unix::fs::chown(&dir.0, Some(65534), Some(65534)).unwrap();
    let e = open_err(&dir.0);
    assert!(
        matches!(
            &e,
            SpoolError::NotPrivate {
                owner: 65534,
                mode: 0o700,
                euid: 0,
                ..
            }
        ),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.contains("is owned by uid 65534, not uid 0")
            && text.contains(&format!("chown 0 {}", dir.0.display())),
        "{text}"
    );
    assert_eq!(fs::metadata(&dir.0).unwrap().uid(), 65534);
    assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 0);
}

#[test]
fn a_group_readable_directory_the_operator_chose_is_used_as_it_is() {
    let _serial = serial();
    let dir = Dir::new("group-readable");
    fs::create_dir_all(&dir.0).unwrap();
    set_mode(&dir.0, 0o750);
    let (mut spool, _) = open(&dir.0);
    spool.append(&frame(1)).unwrap();
    assert_eq!(mode(&dir.0), 0o750);
    assert_eq!(drain(&mut spool).len(), 1);
}

#[test]
fn a_link_planted_as_a_segment_is_set_aside_unfollowed() {
    let _serial = serial();
    let dir = Dir::new("link-segment");
    let spool = spool_in(&dir);
    let (mut s, _) = open(&spool);
    for n in 0..3 {
        s.append(&frame(n)).unwrap();
    }
    drop(s);
    // The link points to a real segment of records that are not this spool's: followed,
    // they would be sent.
    let seg = segments(&spool).pop().unwrap();
    let victim = Victim::new(&dir, "victim.seg", &fs::read(&seg).unwrap());
    let planted = spool.join(segment_name(FIRST_ID + 7));
    symlink(&victim.path, &planted).unwrap();
    // And a FIFO under a segment's name: reading it would wait for a writer forever.
    let fifo = spool.join(segment_name(FIRST_ID + 8));
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo failed");
    let (mut s, notices) = open(&spool);
    for (path, found) in [(&planted, "a symbolic link"), (&fifo, "a FIFO")] {
        let moved_to = notices
            .iter()
            .find_map(|n| match n {
                SpoolNotice::NotAFile {
                    path: p,
                    found: f,
                    moved_to,
                } if p == path && *f == found => Some(moved_to.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no notice for {}: {notices:?}", path.display()));
        assert!(
            moved_to.to_string_lossy().contains(FOREIGN_MARK),
            "{moved_to:?}"
        );
        assert!(
            fs::symlink_metadata(path).is_err(),
            "{} is still there",
            path.display()
        );
        assert!(!fs::symlink_metadata(&moved_to).unwrap().is_file());
    }
    let text = notices
        .iter()
        .find(|n| matches!(n, SpoolNotice::NotAFile { .. }))
        .unwrap()
        .to_string();
    assert!(text.contains("not a regular file: not followed"), "{text}");
    assert_eq!(
        drain(&mut s).into_iter().map(|f| f.0).collect::<Vec<_>>(),
        (0..3).map(frame).collect::<Vec<_>>(),
        "only the spool's own frames"
    );
    // New segments take the names freed; the victim is never written.
    for n in 3..2000 {
        s.append(&frame(n)).unwrap();
    }
    s.sync().unwrap();
    victim.assert_untouched();
    // A later open tells the moved link as a foreign file, and leaves it.
    drop(s);
    let (_s, notices) = open(&spool);
    assert_eq!(
        notices
            .iter()
            .filter(|n| matches!(n, SpoolNotice::Foreign { .. }))
            .count(),
        2,
        "{notices:?}"
    );
    victim.assert_untouched();
}

#[test]
fn a_link_planted_as_the_cursor_is_not_followed_nor_written_through() {
    let _serial = serial();
    let dir = Dir::new("link-cursor");
    let spool = spool_in(&dir);
    let (mut s, _) = open(&spool);
    for n in 0..4 {
        s.append(&frame(n)).unwrap();
    }
    drop(s);
    let victim = Victim::new(&dir, "victim", b"precious");
    symlink(&victim.path, spool.join(CURSOR_FILE)).unwrap();
    let (mut s, notices) = open(&spool);
    assert!(
        notices.iter().any(
            |n| matches!(n, SpoolNotice::NotAFile { path, found: "a symbolic link", .. }
            if path == &spool.join(CURSOR_FILE))
        ),
        "{notices:?}"
    );
    // A cursor written now is a file of its own.
    s.next_frame().unwrap();
    s.ack(1).unwrap();
    s.sync().unwrap();
    let cursor = spool.join(CURSOR_FILE);
    assert!(fs::symlink_metadata(&cursor).unwrap().is_file());
    assert_eq!(mode(&cursor), 0o600);
    victim.assert_untouched();
    drop(s);
    let (mut s, _) = open(&spool);
    assert_eq!(drain(&mut s).len(), 3, "the new cursor is read");
}

#[test]
fn a_link_planted_as_the_cursors_temporary_file_is_replaced_not_followed() {
    let _serial = serial();
    let dir = Dir::new("link-cursor-tmp");
    let spool = spool_in(&dir);
    let (mut s, _) = open(&spool);
    for n in 0..4 {
        s.append(&frame(n)).unwrap();
    }
    let victim = Victim::new(&dir, "victim", b"precious");
    let tmp = spool.join(CURSOR_TMP);
    // Planted while the spool drains: the next cursor write goes around it.
    symlink(&victim.path, &tmp).unwrap();
    s.next_frame().unwrap();
    s.ack(1).unwrap();
    s.sync().unwrap();
    victim.assert_untouched();
    assert!(fs::symlink_metadata(&tmp).is_err(), "renamed to the cursor");
    let cursor = spool.join(CURSOR_FILE);
    assert!(fs::symlink_metadata(&cursor).unwrap().is_file());
    assert_eq!(mode(&cursor), 0o600);
    // And one planted pointing nowhere does not make a file where it points.
    let nowhere = dir.0.join("nowhere");
    symlink(&nowhere, &tmp).unwrap();
    s.next_frame().unwrap();
    s.ack(1).unwrap();
    s.sync().unwrap();
    assert!(fs::symlink_metadata(&nowhere).is_err());
    victim.assert_untouched();
}

#[test]
fn a_link_planted_as_the_lock_is_refused_unfollowed() {
    let _serial = serial();
    let dir = Dir::new("link-lock");
    let spool = spool_in(&dir);
    drop(open(&spool));
    let lock = spool.join(LOCK_FILE);
    fs::remove_file(&lock).unwrap();
    let victim = Victim::new(&dir, "victim", b"precious");
    symlink(&victim.path, &lock).unwrap();
    let e = open_err(&spool);
    assert!(
        matches!(&e, SpoolError::NotAFile { path, found: "a symbolic link" } if path == &lock),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.contains(&lock.display().to_string()) && text.contains("not followed"),
        "{text}"
    );
    victim.assert_untouched();
    // A dangling one does not create the file it names.
    fs::remove_file(&lock).unwrap();
    let nowhere = dir.0.join("nowhere");
    symlink(&nowhere, &lock).unwrap();
    assert!(matches!(open_err(&spool), SpoolError::NotAFile { .. }));
    assert!(fs::symlink_metadata(&nowhere).is_err());
}
