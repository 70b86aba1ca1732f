//! [kill-consumer] Two competing `billing_service` processes on one queue; one is SIGKILLed
//! mid-stream. Every order published must be handled by the survivor (duplicates allowed).

use std::sync::Arc;
use std::time::Duration;

use event_manager_examples::services;

use crate::children::Child;
use crate::compat;
use crate::report::{Ctx, Report, Res, Tally};
use crate::scope::{
    CALM_PUBLISH_LIMIT, Drain, Scope, order_id, submit, wait_for_consumers, wait_until,
};

const ORDERS: u64 = 20_000;
/// The first process is killed once this many orders were confirmed.
const KILL_AFTER: usize = 6_000;
const GRACE: &str = "3s";

pub async fn run(scope: Arc<Scope>) -> Res<Report> {
    let tally = Tally::default();
    let bus = scope.bus().await?;
    // The billing service's own topology, declared as its code does: orders wait in its queue.
    let billing = services::billing(&bus);
    billing.declare().await.ctx("declaring billing")?;
    let queue = compat::queue_name(&bus, billing.queue());
    scope.adopt_foreign_queue(&queue);
    let mut doomed = Child::consumer(&scope, "a", "billing_service", &["--grace", GRACE], &[])?;
    let mut survivor = Child::consumer(&scope, "b", "billing_service", &["--grace", GRACE], &[])?;
    wait_for_consumers(&queue, 2, Duration::from_secs(20)).await?;

    let publisher = {
        let (scope, tally, bus) = (scope.clone(), tally.clone(), bus.clone());
        tokio::spawn(async move {
            scope
                .publish_many(&tally, ORDERS, 500, CALM_PUBLISH_LIMIT, |i| {
                    (
                        i.to_string(),
                        submit(&bus, &format!("{}-o{i}", scope.token), i),
                    )
                })
                .await
        })
    };
    let mid_stream = wait_until(Duration::from_secs(60), || {
        tally.confirmed.len() >= KILL_AFTER
    })
    .await;
    doomed.signal("KILL");
    let killed_after = tally.confirmed.len();
    let killed = doomed.wait(Duration::from_secs(5)).await;
    let attempts = publisher.await.ctx("the publisher task")?;
    let stuck = scope.settle(Duration::from_secs(60)).await?;
    survivor.signal("TERM");
    let survivor_exit = survivor.wait(Duration::from_secs(3 + 5)).await;

    let (by_doomed, by_survivor) = (doomed.handled(), survivor.handled());
    for id in by_doomed.iter().chain(&by_survivor) {
        tally.handled.insert(id.clone());
    }
    let reader = scope.bus().await?;
    let mut drain = Drain::by_message_id(&tally.dead);
    drain.key = order_id;
    drain.quiet = Duration::from_secs(1);
    let dead_letters = scope
        .drain(
            &reader,
            &compat::dead_letter_queue(&bus, billing.queue()),
            drain,
        )
        .await
        .unwrap_or(0);

    let mut report = Report::new(&tally, stuck);
    report
        .fact("faults", 1)
        .fact("killed_after", killed_after)
        .fact("handled_by_killed", by_doomed.len())
        .fact("handled_by_survivor", by_survivor.len())
        .fact(
            "duplicates",
            by_doomed.len() + by_survivor.len() - tally.handled.len(),
        )
        .fact("dlq_messages", dead_letters)
        .fact(
            "refused",
            attempts.iter().filter(|a| !a.confirmed()).count(),
        );
    if !mid_stream || killed_after >= ORDERS as usize {
        report.problem("the kill did not happen mid-stream");
    }
    if killed.is_none() {
        report.problem("the SIGKILLed process did not exit");
    }
    judge_survivor(&mut report, &survivor, survivor_exit);
    Ok(report)
}

fn judge_survivor(report: &mut Report, survivor: &Child, exit: Option<std::process::ExitStatus>) {
    match exit {
        Some(status) if status.success() => {}
        Some(status) => {
            report.problem(format!(
                "the survivor exited with {status} on SIGTERM: {}",
                survivor.tail()
            ));
        }
        None => {
            report.problem(format!(
                "the survivor did not exit within {GRACE} + 5 s of SIGTERM"
            ));
        }
    }
}
