//! Unit tests of the harness, with a paused clock (tokio's `test-util`, a dev-dependency of
//! this crate).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Harness, PublishFault, PublishOutcome};
use crate::envelope::DeadLetterKind;
use crate::service::{HandlerError, RetryPolicy};

use crate::test_probe::{PING, Probe};

#[tokio::test(start_paused = true)]
async fn a_30_second_backoff_takes_virtual_time_only() {
    let real = std::time::Instant::now();
    let harness = Harness::new();
    let attempts_seen = Arc::new(Mutex::new(Vec::new()));
    let mut service = harness.bus().service("slow_retry");
    service.retry(RetryPolicy::new(3, vec![Duration::from_secs(30)]));
    let seen = attempts_seen.clone();
    service.on(PING, move |_: Probe, delivery| {
        let seen = seen.clone();
        async move {
            seen.lock()
                .unwrap()
                .push((delivery.attempt(), tokio::time::Instant::now()));
            if delivery.attempt() < 3 {
                return Err(HandlerError::retry("not yet"));
            }
            Ok(())
        }
    });
    let running = service.start().await.unwrap();
    let began = tokio::time::Instant::now();
    harness.bus().publish(PING, &Probe { id: 1 }).await.unwrap();

    // Within 10 s nothing can settle: the retry waits 30 s.
    let pending = harness.idle(Duration::from_secs(10)).await.unwrap_err();
    let wait = pending
        .queue("slow_retry.wait.30000ms")
        .unwrap_or_else(|| panic!("{pending}"));
    assert_eq!(wait.ready, 1, "{pending}");
    harness.idle(Duration::from_secs(120)).await.unwrap();

    let seen = attempts_seen.lock().unwrap().clone();
    let attempts: Vec<u32> = seen.iter().map(|(a, _)| *a).collect();
    assert_eq!(attempts, [1, 2, 3]);
    for pair in seen.windows(2) {
        let gap = pair[1].1 - pair[0].1;
        assert!(gap >= Duration::from_secs(30), "{gap:?}");
        assert!(gap < Duration::from_secs(31), "{gap:?}");
    }
    assert!(began.elapsed() >= Duration::from_secs(60));
    let retries: Vec<(u32, Duration)> = harness
        .retries("slow_retry")
        .iter()
        .map(|r| (r.attempts(), r.delay()))
        .collect();
    assert_eq!(
        retries,
        [(1, Duration::from_secs(30)), (2, Duration::from_secs(30))]
    );
    assert!(harness.dead_letters("slow_retry").await.is_empty());
    running.shutdown().await.unwrap();
    assert!(
        real.elapsed() < Duration::from_secs(10),
        "{:?} of real time",
        real.elapsed()
    );
}

#[tokio::test]
async fn an_empty_harness_is_idle_at_once() {
    let harness = Harness::new();
    harness.idle(Duration::ZERO).await.unwrap();
    harness.idle(Duration::from_secs(1)).await.unwrap();
    assert!(harness.sent().is_empty());
    assert!(harness.published(PING).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_refused_dead_letter_is_held_and_moved_later() {
    let harness = Harness::new();
    let mut service = harness.bus().service("held");
    service.on(PING, |_: Probe, _| async {
        Err(HandlerError::permanent("refused by the test"))
    });
    let running = service.start().await.unwrap();
    harness.fail_next_forwards(3, PublishFault::Nack);
    harness.bus().publish(PING, &Probe { id: 2 }).await.unwrap();
    let began = tokio::time::Instant::now();
    harness.idle(Duration::from_secs(60)).await.unwrap();
    // Refused three times, tried again after 1 s, 2 s and 4 s.
    assert!(began.elapsed() >= Duration::from_secs(7));
    let dead = harness.dead_letters("held").await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].kind(), Some(DeadLetterKind::PermanentError));
    let refused = harness
        .sent()
        .iter()
        .filter(|s| s.outcome == PublishOutcome::Injected(PublishFault::Nack))
        .count();
    assert_eq!(refused, 3);
    running.shutdown().await.unwrap();
}
