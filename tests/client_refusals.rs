//! Records the client refuses at once (invalid, too large), handing them back, and the
//! exact size check for records near the limit.

mod common;

use common::*;
use geneva_audit::agent::TestAgent;
use geneva_audit::{SendError, Transport, ValidationError};

#[test]
fn invalid_and_oversized_records_are_refused_and_nothing_is_sent() {
    let dir = TempDir::new("invalid");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let client = builder()
        .unix_socket(dir.socket())
        .max_frame_size(700)
        .build()
        .unwrap();
    let bad = record(1).operation_name("");
    match client.try_send(bad.clone()) {
        Err(SendError::Invalid(ValidationError::MissingOperationName, back)) => {
            assert_eq!(back, bad)
        }
        other => panic!("{other:?}"),
    }
    let big = record(2).custom("blob", "x".repeat(1000));
    match client.try_send(big.clone()) {
        Err(SendError::TooLarge {
            size,
            max: 700,
            record,
        }) => {
            assert!(size > 1000);
            assert_eq!(record, big);
        }
        other => panic!("{other:?}"),
    }
    // send_timeout refuses them the same way, at once.
    match client.send_timeout(bad.clone(), PATIENCE) {
        Err(SendError::Invalid(ValidationError::MissingOperationName, back)) => {
            assert_eq!(back, bad)
        }
        other => panic!("{other:?}"),
    }
    match client.send_timeout(big.clone(), PATIENCE) {
        Err(SendError::TooLarge { record, .. }) => assert_eq!(record, big),
        other => panic!("{other:?}"),
    }
    client.flush(PATIENCE).unwrap();
    client.close(PATIENCE);
    assert!(agent.frames().is_empty());
    let s = client.stats();
    assert_eq!(
        (s.refused_invalid, s.refused_too_large, s.accepted),
        (2, 2, 0)
    );
}

#[test]
fn a_record_over_the_cheap_bound_but_within_the_limit_is_sent_whole() {
    // The size check's cheap bound over-counts; a record between its exact size and
    // the bound is measured exactly, accepted, and written in exactly its size.
    let dir = TempDir::new("exact");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let r = record(7);
    let exact = geneva_audit::encoded_len(STI, &r);
    let bound = geneva_audit::encoded_len_bound(STI, &r);
    assert!(bound > exact, "bound {bound} exact {exact}");
    let client = builder()
        .unix_socket(dir.socket())
        .max_frame_size(exact)
        .build()
        .unwrap();
    client.try_send(r).unwrap();
    client.flush(PATIENCE).unwrap();
    let frames = agent.wait_for_frames(2, PATIENCE).unwrap();
    assert_eq!(seqs(&frames), vec![7]);
    let report = client.close(PATIENCE);
    assert_eq!(report.delivered, 1);
}

#[test]
fn a_refusal_debugs_as_its_kind_and_the_records_operation_not_its_every_field() {
    let client = builder()
        .transport(Transport::NoOp)
        .max_frame_size(700)
        .build()
        .unwrap();
    let big = record(2).custom("blob", "x".repeat(1000));
    let err = client.try_send(big).unwrap_err();
    let debug = format!("{err:?}");
    assert!(debug.starts_with("TooLarge { size: "), "{debug}");
    assert!(debug.contains("max: 700"), "{debug}");
    assert!(
        debug.contains(
            r#"record: Record { operation_name: "Operation2", operation_type: Some(Read), .. }"#
        ),
        "{debug}"
    );
    // Neither the custom data nor the caller's identity.
    assert!(!debug.contains("xxxx"), "{debug}");
    assert!(!debug.contains("alice"), "{debug}");
    let bad = record(1).operation_name("");
    let debug = format!("{:?}", client.try_send(bad).unwrap_err());
    assert_eq!(
        debug,
        r#"Invalid(MissingOperationName, Record { operation_name: "", operation_type: Some(Read), .. })"#
    );
    client.close(PATIENCE);
    let debug = format!("{:?}", client.try_send(record(3)).unwrap_err());
    assert_eq!(
        debug,
        r#"Closed(Record { operation_name: "Operation3", operation_type: Some(Read), .. })"#
    );
}
