//! [poison-closes] Five forced `rabbitmqctl close_all_connections` while a service
//! dead-letters 50 000 undecodable messages: every one must end in the dead-letter queue
//! (counted by distinct message id; duplicates are allowed, a missing one is lost).

use std::sync::Arc;
use std::time::{Duration, Instant};

use event_manager_examples::Order;

use crate::broker;
use crate::report::{Ctx, Report, Res, Tally, secs};
use crate::scope::{
    CALM_PUBLISH_LIMIT, Drain, Scope, kinds, poison, publish_raw, record, stop_service, wait_until,
};

const POISON: u64 = 50_000;
const CLOSES: usize = 5;
/// The faults begin once this many poison messages were confirmed.
const FAULTS_AFTER: usize = 10_000;

pub async fn run(scope: Arc<Scope>) -> Res<Report> {
    let tally = Tally::default();
    let bus = scope.bus().await?;
    let mut service = scope.service(&bus);
    service.on(Order::SUBMIT, record(&tally.handled));
    // Many forwards in flight: each waits for its confirm.
    service.prefetch(1000).concurrency(512);
    let started = Instant::now();
    let running = service.start().await.ctx("starting the service")?;
    // The poison is published while the service dead-letters it: the faults hit both.
    let publisher = {
        let (scope, tally, bus) = (scope.clone(), tally.clone(), bus.clone());
        tokio::spawn(async move {
            scope
                .publish_many(&tally, POISON, 1000, CALM_PUBLISH_LIMIT, |i| {
                    let id = format!("{}-p{i}", scope.token);
                    let message = poison(&bus, &id);
                    (id, publish_raw(&bus, message))
                })
                .await
        })
    };
    wait_until(Duration::from_secs(60), || {
        tally.confirmed.len() >= FAULTS_AFTER
    })
    .await;
    let queue = scope.queue(&bus);
    // What the service still had to do when the last fault hit it.
    let mut held_at_last_fault = 0;
    for fault in 1..=CLOSES {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if fault == CLOSES {
            held_at_last_fault = broker::queue(&queue).await?.map_or(0, |q| q.held());
        }
        scope
            .broker
            .close_all_connections(&format!("fault-suite poison-closes {fault}"))
            .await?;
    }
    let attempts = publisher.await.ctx("the publisher task")?;
    let publish_seconds = started.elapsed();
    let stuck = scope.settle(Duration::from_secs(90)).await?;
    let dead_letter_seconds = started.elapsed();
    let stopped = stop_service(running, Duration::from_secs(15)).await;
    let reader = scope.bus().await?;
    let draining = Instant::now();
    let taken = scope
        .drain(
            &reader,
            &scope.dead_letter_queue(&bus),
            Drain::by_message_id(&tally.dead),
        )
        .await?;
    let mut report = Report::new(&tally, stuck);
    report
        .fact("faults", CLOSES)
        .fact("held_at_last_fault", held_at_last_fault)
        .fact("dlq_messages", taken)
        .fact("publishes", kinds(&attempts))
        .fact("publish_s", secs(publish_seconds))
        .fact("dead_letter_s", secs(dead_letter_seconds))
        .fact("drain_s", secs(draining.elapsed()));
    if held_at_last_fault == 0 {
        report.problem(
            "the service had dead-lettered everything before the last fault: the faults did not hit the work",
        );
    }
    // A publish interrupted by a close is re-sent on the new connection: every one is
    // confirmed in the end.
    let unconfirmed = attempts.iter().filter(|a| !a.confirmed()).count();
    if unconfirmed > 0 {
        report.problem(format!(
            "{unconfirmed} publish(es) were not confirmed across the closes ({})",
            kinds(&attempts)
        ));
    }
    if let Err(e) = stopped {
        report.problem(e);
    }
    Ok(report)
}
