//! The service tree id is a UUID: the client takes any textual form, refuses what is not
//! a UUID (or is the nil one) when it is built, and sends the canonical form in records
//! and heartbeats alike.

mod common;

use common::*;
use geneva_audit::agent::TestAgent;
use geneva_audit::{BuildError, Client, ValidationError};

#[test]
fn any_textual_form_is_sent_canonical_in_records_and_heartbeats() {
    let dir = TempDir::new("sti-canonical");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let client = Client::builder("{E6C9FCB1-7F08-4C1D-9E7A-123456789ABC}")
        .unix_socket(dir.socket())
        .build()
        .unwrap();
    client.try_send(record(0)).unwrap();
    client.flush(PATIENCE).unwrap();
    let frames = agent.wait_for_frames(2, PATIENCE).unwrap();
    assert_eq!(frames[0].tag, "AsmAuditDP");
    assert_eq!(frames[0].body_str("env_ikey"), Some(STI));
    assert_eq!(frames[1].tag, "AsmAuditHB");
    assert_eq!(frames[1].body_str("AsmAuditServiceId"), Some(STI));
    assert!(client.close(PATIENCE).clean);
}

#[test]
fn what_is_not_a_uuid_is_refused_by_build_naming_the_rule() {
    let err = |id: &str| match Client::builder(id.to_owned()).build() {
        Err(BuildError::ServiceTreeId(e)) => e,
        Err(other) => panic!("{id:?}: {other}"),
        Ok(_) => panic!("{id:?} was accepted"),
    };
    assert_eq!(err(""), ValidationError::MissingServiceTreeId);
    assert_eq!(
        err("00000000-0000-0000-0000-000000000000"),
        ValidationError::NilServiceTreeId
    );
    match err("my-service") {
        ValidationError::ServiceTreeIdNotUuid { value, .. } => assert_eq!(value, "my-service"),
        other => panic!("{other:?}"),
    }
    let text = Client::builder("my-service")
        .build()
        .err()
        .map(|e| e.to_string());
    assert!(
        text.as_deref()
            .is_some_and(|t| t.starts_with(r#"service tree ID "my-service" is not a UUID"#)),
        "{text:?}"
    );
}
