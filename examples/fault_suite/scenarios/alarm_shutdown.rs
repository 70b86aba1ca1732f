//! [alarm-shutdown] A memory alarm during shutdown: a `billing_service` process is
//! dead-lettering 200 undecodable messages when the alarm blocks its connection; SIGTERM must
//! make it exit within its grace period + 5 s instead of waiting for the alarm to clear. Once
//! the alarm is cleared a new instance dead-letters whatever is left: nothing is lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use event_manager_examples::services;

use crate::broker;
use crate::children::Child;
use crate::compat;
use crate::report::{Ctx, Report, Res, Tally, secs};
use crate::scope::{CALM_PUBLISH_LIMIT, Drain, Scope, poison, publish_raw, wait_for_consumers};

const POISON: u64 = 200;
const GRACE: Duration = Duration::from_secs(3);

pub async fn run(scope: Arc<Scope>) -> Res<Report> {
    let tally = Tally::default();
    let bus = scope.bus().await?;
    let billing = services::billing(&bus);
    billing.declare().await.ctx("declaring billing")?;
    let queue = compat::queue_name(&bus, billing.queue());
    scope.adopt_foreign_queue(&queue);
    scope
        .publish_many(&tally, POISON, 100, CALM_PUBLISH_LIMIT, |i| {
            let id = format!("{}-p{i}", scope.token);
            let message = poison(&bus, &id);
            (id, publish_raw(&bus, message))
        })
        .await;
    let grace = format!("{}s", GRACE.as_secs());
    let args = ["--grace", grace.as_str()];

    scope.broker.raise_memory_alarm().await?;
    let mut first = Child::consumer(&scope, "first", "billing_service", &args, &[])?;
    wait_for_consumers(&queue, 1, Duration::from_secs(20)).await?;
    // Let it take the messages and block on dead-lettering them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held_by_child = broker::queue(&queue).await?.map_or(0, |q| q.unacked);
    first.signal("TERM");
    let signalled = Instant::now();
    let exit = first.wait(GRACE + Duration::from_secs(5)).await;
    let exit_seconds = signalled.elapsed();
    if exit.is_none() {
        first.signal("KILL");
        first.wait(Duration::from_secs(5)).await;
    }
    scope.broker.clear_memory_alarm().await?;

    let mut second = Child::consumer(&scope, "second", "billing_service", &args, &[])?;
    let stuck = scope.settle(Duration::from_secs(30)).await?;
    second.signal("TERM");
    let second_exit = second.wait(GRACE + Duration::from_secs(5)).await;
    let reader = scope.bus().await?;
    let taken = scope
        .drain(
            &reader,
            &compat::dead_letter_queue(&bus, billing.queue()),
            Drain::by_message_id(&tally.dead),
        )
        .await?;

    let mut report = Report::new(&tally, stuck);
    report
        .fact("faults", 1)
        .fact("held_by_first", held_by_child)
        .fact("grace_s", GRACE.as_secs())
        .fact(
            "first_exit",
            exit.map_or_else(|| "none".to_owned(), |s| s.to_string()),
        )
        .fact("first_exit_s", secs(exit_seconds))
        .fact("dlq_messages", taken);
    if held_by_child == 0 {
        report.problem("the first instance held no message when it was signalled: the alarm did not catch it mid-work");
    }
    match exit {
        None => report.problem(format!(
            "the first instance did not exit within its grace period ({GRACE:?}) + 5 s of SIGTERM during the alarm (killed): {}",
            first.tail()
        )),
        Some(status) if !status.success() => report.problem(format!(
            "the first instance exited with {status} on SIGTERM during the alarm, not 0: {}",
            first.tail()
        )),
        Some(_) => &mut report,
    };
    if !second_exit.is_some_and(|s| s.success()) {
        report.problem(format!(
            "the second instance did not exit cleanly on SIGTERM ({second_exit:?}): {}",
            second.tail()
        ));
    }
    Ok(report)
}
