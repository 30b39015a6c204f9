//! The delivered count follows a slow agent: writes blocked on its full socket do not
//! keep the writer from learning what it read, with or without a spool.

mod common;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use geneva_audit::Record;
use geneva_audit::agent::TestAgent;

/// The agent reads this many bytes a second.
const RATE: u64 = 100_000;
/// About 1 KiB a record, so the agent reads about 100 records a second.
fn big(n: u64) -> Record {
    record(n).custom("blob", "x".repeat(700))
}

/// Records the client may not have confirmed yet: one 64 KiB write's worth (at 1 KiB
/// a record, 64), and what the agent reads in a fraction of a second.
const SLACK: u64 = 64 + RATE / 1024 / 2;

fn trails_the_agent(spool: bool) {
    let dir = TempDir::new("delivered-count");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    agent.set_read_rate(Some(RATE));
    // A small send buffer, so that writes block on the full socket within a second.
    let mut builder = builder()
        .unix_socket(dir.socket())
        .send_buffer_size(Some(64 * 1024));
    if spool {
        builder = builder.spool(dir.0.join("spool"));
    }
    let client = Arc::new(builder.build().unwrap());
    let producer = {
        let client = Arc::clone(&client);
        thread::spawn(move || {
            for n in 0..900 {
                if client.send_timeout(big(n), PATIENCE).is_err() {
                    return;
                }
            }
        })
    };
    // Three looks, each after the agent has read a few seconds' worth more: each time,
    // within a second the client counts all but a write's worth of what it read.
    for read in [150usize, 300, 450] {
        agent.wait_for_frames(read, PATIENCE).unwrap();
        let seen = seqs(&agent.frames()).len() as u64;
        let caught_up = wait_until_within(Duration::from_secs(1), || {
            client.stats().delivered + SLACK >= seen
        });
        assert!(
            caught_up,
            "the agent had read {seen} records; a second later the client counted {} \
             delivered (spool: {spool})",
            client.stats().delivered
        );
    }
    agent.set_read_rate(None);
    producer.join().unwrap();
    let report = client.close(PATIENCE);
    assert_eq!(report.stats.delivered, 900);
}

#[test]
fn the_delivered_count_trails_a_slow_agent_by_a_write_at_most() {
    trails_the_agent(false);
}

#[test]
fn the_delivered_count_trails_a_slow_agent_by_a_write_at_most_with_a_spool() {
    trails_the_agent(true);
}
