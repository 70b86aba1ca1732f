//! [dlq-deleted] The service's dead-letter queue is deleted by an operator
//! (`rabbitmqctl delete_queue`), then 3 (and, after a second deletion, 100) undecodable
//! messages arrive: the service must re-declare its dead-letter queue and every one must be
//! there within a few seconds, none left unacknowledged or cycling.

use std::sync::Arc;
use std::time::Duration;

use event_manager::Bus;
use event_manager_examples::Order;

use crate::report::{Ctx, Report, Res, Tally, secs};
use crate::scope::{
    CALM_PUBLISH_LIMIT, Drain, Scope, kinds, poison, publish_raw, record, stop_service,
    wait_for_len,
};

/// How long the dead letters may take to arrive after each deletion.
const WITHIN: Duration = Duration::from_secs(10);

pub async fn run(scope: Arc<Scope>) -> Res<Report> {
    let tally = Tally::default();
    let bus = scope.bus().await?;
    let mut service = scope.service(&bus);
    service.on(Order::SUBMIT, record(&tally.handled));
    let running = service.start().await.ctx("starting the service")?;
    let reader = scope.bus().await?;
    let dlq = scope.dead_letter_queue(&bus);
    let mut rounds = Vec::new();
    let mut missing = 0;
    for (round, n) in [(1, 3), (2, 100)] {
        if !scope.broker.delete_queue(&dlq).await? {
            missing += 1;
        }
        rounds.push(deleted_round(&scope, &tally, &bus, &reader, &dlq, round, n).await?);
    }
    let stuck = scope.settle(Duration::from_secs(10)).await?;
    let stopped = stop_service(running, Duration::from_secs(15)).await;
    // Late arrivals still count as dead-lettered (but the round above said how late).
    let mut drain = Drain::by_message_id(&tally.dead);
    drain.quiet = Duration::from_secs(1);
    let _ = scope.drain(&reader, &dlq, drain).await;
    let mut report = Report::new(&tally, stuck);
    report.fact("faults", 2);
    if missing > 0 {
        report.problem(format!(
            "{dlq} was still missing when it was to be deleted again: the service never re-declared it"
        ));
    }
    for (round, n, took, publishes) in &rounds {
        let arrived = took.map_or_else(|| "never".to_owned(), |t| format!("{}s", secs(t)));
        report
            .fact(&format!("round{round}_publishes"), publishes)
            .fact(&format!("round{round}_dead_letters_after"), arrived);
        if took.is_none() {
            report.problem(format!(
                "round {round}: the {n} dead letters were not all in {dlq} within {WITHIN:?} of publishing"
            ));
        }
    }
    if let Err(e) = stopped {
        report.problem(e);
    }
    Ok(report)
}

/// Publishes `n` poison messages into the service (whose dead-letter queue was just deleted)
/// and waits for them in the dead-letter queue; returns the round, `n`, how long it took and
/// how the publishes ended.
async fn deleted_round(
    scope: &Scope,
    tally: &Tally,
    bus: &Bus,
    reader: &Bus,
    dlq: &str,
    round: u32,
    n: u64,
) -> Res<(u32, u64, Option<Duration>, String)> {
    let attempts = scope
        .publish_many(tally, n, 100, CALM_PUBLISH_LIMIT, |i| {
            let id = format!("{}-r{round}-p{i}", scope.token);
            let message = poison(bus, &id);
            (id, publish_raw(bus, message))
        })
        .await;
    let confirmed = attempts.iter().filter(|a| a.confirmed()).count() as u64;
    let took = wait_for_len(reader, dlq, confirmed, WITHIN).await;
    if took.is_some() {
        let mut drain = Drain::by_message_id(&tally.dead);
        drain.quiet = Duration::from_secs(1);
        drain.limit = Duration::from_secs(10);
        scope.drain(reader, dlq, drain).await?;
    }
    Ok((round, n, took, kinds(&attempts)))
}
