//! `CloseReport::written_unconfirmed`: of the records `close` hands back, those written to
//! a slow agent's socket and not seen read by the deadline are the ones the agent may
//! still read.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use geneva_audit::Record;
use geneva_audit::agent::TestAgent;

const RECORDS: u64 = 600;

fn big(n: u64) -> Record {
    record(n).custom("blob", "x".repeat(700))
}

#[test]
fn close_counts_the_handed_back_records_a_slow_agent_may_still_read() {
    let dir = TempDir::new("close-written");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    agent.set_read_rate(Some(100_000));
    let client = Arc::new(
        builder()
            .unix_socket(dir.socket())
            .send_buffer_size(Some(64 * 1024))
            .build()
            .unwrap(),
    );
    let producer = {
        let client = Arc::clone(&client);
        thread::spawn(move || {
            for n in 0..RECORDS {
                client.send_timeout(big(n), PATIENCE).unwrap();
            }
        })
    };
    producer.join().unwrap();
    agent.wait_for_frames(50, PATIENCE).unwrap();
    // The deadline falls while the socket holds records the agent has not read.
    let report = client.close(Duration::from_millis(300));
    let handed_back: HashSet<u64> = report
        .unsent
        .iter()
        .map(|r| {
            let name = r.get_operation_name();
            name.strip_prefix("Operation").unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(
        report.stats.delivered + handed_back.len() as u64,
        RECORDS,
        "every record is delivered or handed back"
    );
    assert!(report.written_unconfirmed > 0, "{report:?}");
    // The agent, alive, reads what the kernel still holds for it.
    agent.set_read_rate(None);
    agent
        .wait_for("the connection read to its end", PATIENCE, |s| {
            s.open_connections == 0
        })
        .unwrap();
    let arrived_after: usize = seqs(&agent.frames())
        .into_iter()
        .filter(|s| handed_back.contains(s))
        .count();
    assert_eq!(
        arrived_after as u64, report.written_unconfirmed,
        "the handed-back records that reached the agent after close are exactly the \
         written ones"
    );
}
