//! The ordering of the ack path, without a broker: every completion order against a model of
//! RabbitMQ's unacknowledged deliveries.

use super::*;

fn ack(tag: u64) -> Frame {
    Frame::Ack {
        tag,
        multiple: true,
    }
}

fn single(tag: u64) -> Frame {
    Frame::Ack {
        tag,
        multiple: false,
    }
}

fn reject(tag: u64, requeue: bool) -> Frame {
    Frame::Reject { tag, requeue }
}

/// A ledger with deliveries `1..=n` registered, flushing only when asked.
fn ledger(n: u64) -> Ledger {
    let mut ledger = Ledger::new(u16::MAX);
    for tag in 1..=n {
        assert_eq!(ledger.register(tag), 0);
    }
    ledger
}

fn flush(ledger: &mut Ledger, now: Instant) -> Vec<Frame> {
    let mut out = Vec::new();
    ledger.flush(now, false, &mut out);
    out
}

/// Replays `frames` the way RabbitMQ applies them to the unacknowledged deliveries
/// `1..=n`, failing as it would (`unknown delivery tag`); returns how each tag ended.
fn broker(n: u64, frames: &[Frame]) -> Vec<Option<Frame>> {
    let mut settled: Vec<Option<Frame>> = vec![None; n as usize + 1];
    for &frame in frames {
        let (tag, multiple) = match frame {
            Frame::Ack { tag, multiple } => (tag, multiple),
            Frame::Reject { tag, .. } | Frame::HandBack { tag } => (tag, false),
        };
        assert!(
            settled[tag as usize].is_none(),
            "PRECONDITION_FAILED - unknown delivery tag {tag} in {frames:?}"
        );
        if multiple {
            for t in 1..=tag {
                if settled[t as usize].is_none() {
                    settled[t as usize] = Some(single(t));
                }
            }
        } else {
            settled[tag as usize] = Some(match frame {
                Frame::Ack { .. } => single(tag),
                reject => reject,
            });
        }
    }
    settled
}

#[test]
fn in_order_completion_is_one_multiple_ack() {
    let mut l = ledger(5);
    let now = Instant::now();
    for tag in 1..=5 {
        l.finish(0, tag, Outcome::Ack).unwrap();
    }
    assert_eq!(flush(&mut l, now), [ack(5)]);
    assert!(!l.has_unsent());
    assert_eq!(flush(&mut l, now), []);
}

#[test]
fn out_of_order_completion_acks_only_the_contiguous_run() {
    let mut l = ledger(6);
    let now = Instant::now();
    for tag in [2, 4, 1, 6] {
        l.finish(0, tag, Outcome::Ack).unwrap();
    }
    // 3 is still being handled: nothing after it may be covered.
    assert_eq!(flush(&mut l, now), [ack(2)]);
    l.finish(0, 3, Outcome::Ack).unwrap();
    assert_eq!(flush(&mut l, now), [ack(4)]);
    l.finish(0, 5, Outcome::Ack).unwrap();
    assert_eq!(flush(&mut l, now), [ack(6)]);
}

#[test]
fn a_reject_in_the_middle_splits_the_run() {
    let mut l = ledger(6);
    let now = Instant::now();
    l.finish(0, 1, Outcome::Ack).unwrap();
    l.finish(0, 2, Outcome::Ack).unwrap();
    l.finish(0, 3, Outcome::Reject { requeue: true }).unwrap();
    l.finish(0, 4, Outcome::Ack).unwrap();
    l.finish(0, 5, Outcome::Reject { requeue: false }).unwrap();
    l.finish(0, 6, Outcome::Reject { requeue: false }).unwrap();
    let frames = flush(&mut l, now);
    assert_eq!(
        frames,
        [
            ack(2),
            reject(3, true),
            ack(4),
            reject(5, false),
            reject(6, false)
        ]
    );
    let settled = broker(6, &frames);
    assert_eq!(settled[3], Some(reject(3, true)));
    assert_eq!(settled[1], Some(single(1)));
}

#[test]
fn a_reject_first_is_sent_alone() {
    let mut l = ledger(3);
    l.finish(0, 1, Outcome::Reject { requeue: true }).unwrap();
    l.finish(0, 2, Outcome::Ack).unwrap();
    assert_eq!(flush(&mut l, Instant::now()), [reject(1, true), ack(2)]);
}

#[test]
fn a_held_delivery_holds_back_the_rest_only_for_a_while() {
    let mut l = ledger(5);
    let start = Instant::now();
    for tag in [1, 3, 4] {
        l.finish(0, tag, Outcome::Ack).unwrap();
    }
    l.finish(0, 5, Outcome::Reject { requeue: false }).unwrap();
    assert_eq!(flush(&mut l, start), [ack(1)]);
    assert_eq!(flush(&mut l, start + STRAGGLER_AFTER / 2), []);
    // 2 is still held: what finished behind it goes one by one.
    let frames = flush(&mut l, start + STRAGGLER_AFTER);
    assert_eq!(frames, [single(3), single(4), reject(5, false)]);
    assert!(!l.has_unsent());
    // Later ones too, while 2 blocks.
    l.register(6);
    l.finish(0, 6, Outcome::Ack).unwrap();
    assert_eq!(
        flush(&mut l, start + STRAGGLER_AFTER * 2),
        [single(6)],
        "still blocked by 2"
    );
    // Once 2 is done, the run moves over what was sent alone, with `multiple` again.
    l.register(7);
    l.finish(0, 7, Outcome::Ack).unwrap();
    l.finish(0, 2, Outcome::Ack).unwrap();
    let rest = flush(&mut l, start + STRAGGLER_AFTER * 2);
    assert_eq!(rest, [ack(7)]);
    let all: Vec<Frame> = [ack(1), single(3), single(4), reject(5, false), single(6)]
        .into_iter()
        .chain(rest)
        .collect();
    let settled = broker(7, &all);
    assert!(settled[1..].iter().all(Option::is_some), "{settled:?}");
    assert_eq!(settled[5], Some(reject(5, false)));
}

#[test]
fn the_final_flush_settles_everything_finished() {
    let mut l = ledger(4);
    l.finish(0, 1, Outcome::Ack).unwrap();
    l.finish(0, 3, Outcome::Ack).unwrap();
    l.finish(0, 4, Outcome::Reject { requeue: true }).unwrap();
    let mut out = Vec::new();
    l.flush(Instant::now(), true, &mut out);
    // 2 is unfinished: it stays unacknowledged and goes back to the queue on close.
    assert_eq!(out, [ack(1), single(3), reject(4, true)]);
    let settled = broker(4, &out);
    assert_eq!(settled[2], None);
}

#[test]
fn every_completion_order_settles_each_tag_exactly_once() {
    // Every permutation of 6 deliveries, flushing after each completion: the frames the
    // broker sees never name a settled tag, and every tag ends as it was settled.
    fn permutations(items: &mut Vec<u64>, k: usize, out: &mut Vec<Vec<u64>>) {
        if k == items.len() {
            out.push(items.clone());
            return;
        }
        for i in k..items.len() {
            items.swap(k, i);
            permutations(items, k + 1, out);
            items.swap(k, i);
        }
    }
    let mut orders = Vec::new();
    permutations(&mut (1..=6).collect(), 0, &mut orders);
    let start = Instant::now();
    for (n, order) in orders.iter().enumerate() {
        let mut l = ledger(6);
        let mut frames = Vec::new();
        for (step, &tag) in order.iter().enumerate() {
            let outcome = if tag % 3 == 0 {
                Outcome::Reject { requeue: tag == 3 }
            } else {
                Outcome::Ack
            };
            l.finish(0, tag, outcome).unwrap();
            // Some runs let stragglers go one by one, some not.
            let now = start + STRAGGLER_AFTER * (step as u32 * (n as u32 % 2));
            l.flush(now, false, &mut frames);
        }
        l.flush(start, true, &mut frames);
        let settled = broker(6, &frames);
        for tag in 1..=6u64 {
            let expected = match tag {
                3 => reject(3, true),
                6 => reject(6, false),
                t => single(t),
            };
            assert_eq!(
                settled[tag as usize],
                Some(expected),
                "{order:?}: {frames:?}"
            );
        }
    }
}

#[test]
fn recovery_starts_a_new_generation() {
    let mut l = ledger(3);
    l.finish(0, 1, Outcome::Ack).unwrap();
    l.reset();
    // Tags restart at 1 on the recovered channel.
    assert_eq!(l.register(1), 1);
    assert_eq!(l.register(2), 1);
    assert_eq!(
        l.finish(0, 2, Outcome::Ack),
        Err(Stale),
        "a delivery of before"
    );
    let mut out = Vec::new();
    l.flush(Instant::now(), true, &mut out);
    assert_eq!(out, [], "nothing of the old generation is ever sent");
    l.finish(1, 1, Outcome::Ack).unwrap();
    assert_eq!(flush(&mut l, Instant::now()), [ack(1)]);
}

#[test]
fn restarted_tags_are_a_new_generation_too() {
    let mut l = ledger(3);
    l.finish(0, 1, Outcome::Ack).unwrap();
    assert_eq!(l.register(1), 1, "tag 1 again: the channel recovered");
    assert_eq!(l.finish(0, 2, Outcome::Ack), Err(Stale));
    l.finish(1, 1, Outcome::Ack).unwrap();
    assert_eq!(flush(&mut l, Instant::now()), [ack(1)]);
}

#[test]
fn skipped_tags_are_never_covered() {
    let mut l = ledger(2);
    l.register(5);
    for tag in [1, 2, 5] {
        l.finish(0, tag, Outcome::Ack).unwrap();
    }
    let start = Instant::now();
    assert_eq!(flush(&mut l, start), [ack(2)]);
    assert_eq!(flush(&mut l, start + STRAGGLER_AFTER), [single(5)]);
}

#[test]
fn settling_twice_or_an_unknown_tag_is_refused() {
    let mut l = ledger(2);
    l.finish(0, 1, Outcome::Ack).unwrap();
    assert_eq!(l.finish(0, 1, Outcome::Ack), Err(Stale));
    assert_eq!(l.finish(0, 9, Outcome::Ack), Err(Stale));
    flush(&mut l, Instant::now());
    assert_eq!(l.finish(0, 1, Outcome::Ack), Err(Stale));
}

#[test]
fn batches_follow_the_prefetch() {
    assert_eq!(Ledger::new(1000).batch, 100);
    assert_eq!(Ledger::new(100).batch, 25);
    assert_eq!(Ledger::new(1).batch, 1);
    assert_eq!(Ledger::new(0).batch, 100);
    let mut l = Ledger::new(8);
    for tag in 1..=2 {
        l.register(tag);
    }
    assert_eq!(l.finish(0, 1, Outcome::Ack), Ok(false));
    assert_eq!(l.finish(0, 2, Outcome::Ack), Ok(true));
}

/// A delivery handed back unprocessed leaves as `basic.nack` (which RabbitMQ 4.3 does not
/// count against a quorum queue's delivery limit), in its place in the run.
#[test]
fn a_delivery_handed_back_is_a_nack_in_its_place() {
    let mut l = ledger(3);
    let now = Instant::now();
    l.finish(0, 1, Outcome::Ack).unwrap();
    l.finish(0, 2, Outcome::HandBack).unwrap();
    l.finish(0, 3, Outcome::Ack).unwrap();
    let frames = flush(&mut l, now);
    assert_eq!(frames, [ack(1), Frame::HandBack { tag: 2 }, ack(3)]);
    assert_eq!(
        broker(3, &frames),
        [
            None,
            Some(single(1)),
            Some(Frame::HandBack { tag: 2 }),
            Some(single(3))
        ]
    );
}
