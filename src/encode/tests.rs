use std::net::{IpAddr, Ipv4Addr};

use strum::IntoEnumIterator;

use super::append::append_record;
use super::frame::{RecordFrame, append, encoded_len, fill};
use super::frame_buf::FrameBuf;
use super::ip::write_ip;
use super::out::{Count, Cursor, Out, copy_text};
use super::size_bound::{SLACK, record_bound};
use super::wire::{
    CATEGORY_NAMES, DESCRIPTION, HEAD_DP, IDENTITY_ENTRY, IDENTITY_TYPE_NAMES, NAME_ENTRY,
    OPERATION_CATEGORY_DESCRIPTION, OPERATION_RESULT, OPERATION_RESULT_FIELDS, OPERATION_TYPE,
    OPERATION_TYPE_FIELDS, OPTIONS, Padded,
};
use crate::kinds::{CallerIdentityType, OperationCategory, OperationResult, OperationType};
use crate::record::{Record, Text, Value};

/// The bytes `f` writes through a cursor.
fn written(f: impl FnOnce(&mut Cursor<'_>)) -> Vec<u8> {
    let mut v = vec![0u8; 1 << 19];
    let total = v.len();
    let mut c = Cursor { rest: &mut v[..] };
    f(&mut c);
    let left = c.rest.len();
    assert!(left > 0, "the cursor ran out of bytes");
    v.truncate(total - left);
    v
}

fn counted(f: impl FnOnce(&mut Count)) -> usize {
    let mut c = Count(0);
    f(&mut c);
    c.0
}

#[test]
fn constants_are_msgpack_strings() {
    let b = written(|c| c.str("OperationCategoryDescription"));
    assert_eq!(b, OPERATION_CATEGORY_DESCRIPTION);
    assert_eq!(&HEAD_DP[..12], b"\x93\xaaAsmAuditDP");
    assert_eq!(&OPTIONS, b"\x81\xaaTimeFormat\xa8DateTime");
    assert_eq!(&IDENTITY_ENTRY, b"\x82\xa8Identity");
    assert_eq!(&NAME_ENTRY, b"\x84\xa4Name");
}

#[test]
fn tables_hold_the_wire_names() {
    fn check<const W: usize>(p: &Padded<W>, prefix: &[u8], name: &str) {
        let mut expected = prefix.to_vec();
        rmp::encode::write_str(&mut expected, name).unwrap();
        assert_eq!(&p.bytes[..p.len], &expected[..], "{name}");
        assert!(p.bytes[p.len..].iter().all(|&b| b == 0));
    }
    for c in OperationCategory::iter() {
        check(&CATEGORY_NAMES[c as usize], b"", c.wire_name());
    }
    for t in CallerIdentityType::iter() {
        check(&IDENTITY_TYPE_NAMES[t as usize], b"", t.wire_name());
    }
    for t in OperationType::iter() {
        check(
            &OPERATION_TYPE_FIELDS[t as usize],
            &OPERATION_TYPE,
            t.wire_name(),
        );
    }
    for r in OperationResult::iter() {
        check(
            &OPERATION_RESULT_FIELDS[r as usize],
            &OPERATION_RESULT,
            r.wire_name(),
        );
    }
    check(&OPERATION_TYPE_FIELDS[0], &OPERATION_TYPE, "");
    check(&OPERATION_RESULT_FIELDS[0], &OPERATION_RESULT, "");
}

#[test]
fn counted_sizes_match_written_sizes_at_every_boundary() {
    for n in [0usize, 1, 15, 16, 31, 32, 255, 256, 65535, 65536, 70000] {
        let s = "x".repeat(n);
        assert_eq!(
            written(|c| c.str(&s)).len(),
            counted(|c| c.str(&s)),
            "str {n}"
        );
        assert_eq!(
            written(|c| c.key_str(&DESCRIPTION, &s)).len(),
            counted(|c| c.key_str(&DESCRIPTION, &s)),
            "key_str {n}"
        );
        assert_eq!(
            written(|c| c.bin(s.as_bytes())).len(),
            counted(|c| c.bin(s.as_bytes())),
            "bin {n}"
        );
        let w = written(|c| {
            c.array_len(n);
            c.map_len(n);
        });
        let cnt = counted(|c| {
            c.array_len(n);
            c.map_len(n);
        });
        assert_eq!(w.len(), cnt, "headers {n}");
    }
}

#[test]
fn direct_writes_match_rmp_at_every_boundary() {
    use rmp::encode as rmpe;
    for n in [0usize, 1, 15, 16, 31, 32, 255, 256, 65535, 65536, 70000] {
        let s = "y".repeat(n);
        let ours = written(|c| {
            c.str(&s);
            c.bin(s.as_bytes());
            c.array_len(n);
            c.map_len(n);
        });
        let mut theirs = Vec::new();
        rmpe::write_str(&mut theirs, &s).unwrap();
        rmpe::write_bin(&mut theirs, s.as_bytes()).unwrap();
        rmpe::write_array_len(&mut theirs, n as u32).unwrap();
        rmpe::write_map_len(&mut theirs, n as u32).unwrap();
        assert_eq!(ours, theirs, "length {n}");
        for (merged, key) in [
            (
                written(|c| c.key_str(&IDENTITY_ENTRY, &s)),
                &IDENTITY_ENTRY[..],
            ),
            (
                written(|c| c.key_str(&OPERATION_CATEGORY_DESCRIPTION, &s)),
                &OPERATION_CATEGORY_DESCRIPTION[..],
            ),
        ] {
            let mut apart = key.to_vec();
            rmpe::write_str(&mut apart, &s).unwrap();
            assert_eq!(merged, apart, "key_str {n}");
        }
    }
    for v in [0i64, 1, -1, 127, -33, i64::MIN, i64::MAX] {
        let ours = written(|c| {
            c.i64(v);
            c.u64(v as u64);
            c.f64(v as f64 / 3.0);
        });
        let mut theirs = Vec::new();
        rmpe::write_i64(&mut theirs, v).unwrap();
        rmpe::write_u64(&mut theirs, v as u64).unwrap();
        rmpe::write_f64(&mut theirs, v as f64 / 3.0).unwrap();
        assert_eq!(ours, theirs, "number {v}");
    }
    let ours = written(|c| {
        c.bool(true);
        c.bool(false);
        c.nil();
    });
    let mut theirs = Vec::new();
    rmpe::write_bool(&mut theirs, true).unwrap();
    rmpe::write_bool(&mut theirs, false).unwrap();
    rmpe::write_nil(&mut theirs).unwrap();
    assert_eq!(ours, theirs);
}

#[test]
fn text_is_copied_at_every_length() {
    let src: Vec<u8> = (0..=200u8).collect();
    for n in 0..=200 {
        let mut dst = vec![0xffu8; n];
        copy_text(&mut dst, &src[..n]);
        assert_eq!(dst, &src[..n], "length {n}");
    }
    // Lengths that differ copy nothing.
    let mut dst = [0xffu8; 3];
    copy_text(&mut dst, &src[..4]);
    assert_eq!(dst, [0xff; 3]);
}

#[test]
fn ipv4_fixstr_matches_display() {
    for o in 0..=255u8 {
        for ip in [
            Ipv4Addr::new(o, 0, 9, 10),
            Ipv4Addr::new(99, o, 100, 255),
            Ipv4Addr::new(203, 0, 113, o),
            Ipv4Addr::new(o, o, o, o),
        ] {
            let mut expected = Vec::new();
            rmp::encode::write_str(&mut expected, &ip.to_string()).unwrap();
            assert_eq!(written(|c| c.ipv4(ip)), expected, "{ip}");
            assert_eq!(counted(|c| c.ipv4(ip)), expected.len(), "{ip}");
        }
    }
}

#[test]
fn addresses_with_zones_are_one_string() {
    let v4 = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    let v6 = Some("fe80::1".parse().unwrap());
    for (ip, zone, text) in [
        (v4, "eth0", "192.0.2.1%eth0".to_owned()),
        (v6, "eth0", "fe80::1%eth0".to_owned()),
        (v6, "", "fe80::1".to_owned()),
        (None, "", String::new()),
        (
            v4,
            &"z".repeat(40)[..],
            format!("192.0.2.1%{}", "z".repeat(40)),
        ),
    ] {
        let mut expected = Vec::new();
        rmp::encode::write_str(&mut expected, &text).unwrap();
        assert_eq!(written(|c| write_ip(c, ip, zone)), expected, "{text}");
        assert_eq!(counted(|c| write_ip(c, ip, zone)), expected.len(), "{text}");
    }
}

fn sample_record() -> Record {
    Record::control_plane()
        .caller_ip(IpAddr::V4(Ipv4Addr::new(10, 1, 200, 3)))
        .add_caller_identity(CallerIdentityType::Upn, "alice@contoso.com", "user")
        .add_caller_identity(CallerIdentityType::System, "x".repeat(300), "d")
        .add_operation_category(OperationCategory::Euii)
        .add_operation_category(OperationCategory::ProvisioningManagement)
        .custom(
            "nested",
            vec![Value::from(1i64), Value::from(vec![Value::Nil])],
        )
        .custom("map", vec![(Text::from("k"), Value::from(&b"bytes"[..]))])
        .custom("f", 1.5f64)
        .add_target_resource("T", "n")
        .add_caller_access_level("Owner")
        .operation_access_level("Owner")
        .operation_name("Op")
        .caller_agent("agent")
        .operation_type(OperationType::Delete)
        .operation_result(OperationResult::Failure)
        .operation_result_description("y".repeat(70000))
}

#[test]
fn room_bounds_the_frame_with_its_slack() {
    let records = [
        sample_record(),
        Record::data_plane(),
        sample_record()
            .caller_ip("fe80::1".parse().unwrap())
            .caller_ip_zone("eth0"),
        sample_record().caller_ip_zone("z".repeat(100)),
    ];
    for r in &records {
        let exact = encoded_len("sid", r);
        assert!(record_bound("sid", r) >= exact + SLACK);
    }
}

#[test]
fn a_cut_frame_is_never_taken_for_whole_whatever_its_bytes() {
    // Custom data holding the options map: the frame has the bytes it ends with in
    // its middle. No bound short of the frame may pass for it.
    let r = Record::data_plane().custom("TimeFormat", "DateTime");
    let frame = RecordFrame {
        service_tree_id: "sid",
        ts: 7,
        record: &r,
    };
    let whole = encoded_len("sid", &r);
    let mut full = FrameBuf::default();
    assert!(fill(&mut full, whole, &frame));
    let bytes = full.as_slice().to_vec();
    let inner = bytes
        .windows(OPTIONS.len())
        .position(|w| w == OPTIONS)
        .map(|at| at + OPTIONS.len());
    assert!(
        inner.is_some_and(|at| at < whole),
        "the map is inside the frame"
    );
    for bound in 0..whole {
        let mut b = FrameBuf::default();
        assert!(!fill(&mut b, bound, &frame), "bound {bound} of {whole}");
        assert!(b.as_slice().is_empty());
    }
}

#[test]
fn appends_after_earlier_frames_and_survives_a_short_room() {
    let r = sample_record();
    let mut buf = FrameBuf::default();
    assert!(append_record(&mut buf, "sid", 7, &r));
    let one = buf.as_slice().to_vec();
    assert_eq!(one.len(), encoded_len("sid", &r));
    assert!(append_record(&mut buf, "sid", 7, &r));
    assert_eq!(buf.as_slice(), [&one[..], &one[..]].concat());

    // Too small a bound: the frame is written again into its counted size.
    let frame = RecordFrame {
        service_tree_id: "sid",
        ts: 7,
        record: &r,
    };
    for bound in [0, 1, 20, 21, 100, one.len() - 1, one.len(), one.len() + 1] {
        let mut short = FrameBuf::default();
        short.extend_from_slice(b"xy");
        assert!(append(&mut short, bound, &frame));
        assert_eq!(
            short.as_slice(),
            [&b"xy"[..], &one[..]].concat(),
            "bound {bound}"
        );
    }

    // Exactly the frame's size, or one byte less.
    let mut v = FrameBuf::default();
    v.extend_from_slice(b"xy");
    assert!(fill(&mut v, one.len(), &frame));
    assert_eq!(v.as_slice(), [&b"xy"[..], &one[..]].concat());
    for bound in [0, 20, 21, one.len() - 1] {
        let mut v = FrameBuf::default();
        v.extend_from_slice(b"xy");
        assert!(!fill(&mut v, bound, &frame), "bound {bound}");
        assert_eq!(v.as_slice(), b"xy");
    }
    // The same, over stale bytes that end like a frame: a buffer that held two
    // frames, cut back to "xy".
    for bound in [0, 20, 21, one.len() - 1] {
        let mut v = FrameBuf::default();
        v.extend_from_slice(b"xy");
        assert!(fill(&mut v, one.len(), &frame));
        assert!(fill(&mut v, one.len(), &frame));
        v.len = 2;
        assert!(!fill(&mut v, bound, &frame), "stale, bound {bound}");
        assert_eq!(v.as_slice(), b"xy");
        assert!(fill(&mut v, one.len() + 5, &frame), "stale, bound {bound}");
        assert_eq!(v.as_slice(), [&b"xy"[..], &one[..]].concat());
    }

    // A buffer whose spare capacity is the frame and one byte does not grow.
    let mut exact = FrameBuf::with_capacity(2 + one.len() + 1);
    exact.extend_from_slice(b"xy");
    let capacity = exact.bytes.capacity();
    assert!(append_record(&mut exact, "sid", 7, &r));
    assert_eq!(exact.as_slice(), [&b"xy"[..], &one[..]].concat());
    assert_eq!(exact.bytes.capacity(), capacity);
}
