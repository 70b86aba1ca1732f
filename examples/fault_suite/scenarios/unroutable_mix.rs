//! [unroutable-mix] One bus, 20 000 confirmed publishes with 1 000 in flight, every 7th to an
//! event no queue is bound to (`order.v1.chargeback`; the service binds `order.*.submit`).
//! Every routable publish must return `Ok` and reach the bound queue; every unroutable one
//! must return `PublishError::Unroutable`. lapin pairs returns with confirms by position, so
//! a library that trusts it misreports a few in each direction.

use std::sync::Arc;
use std::time::{Duration, Instant};

use event_manager::{PublishError, PublishOptions};
use event_manager_examples::Order;

use crate::report::{Ctx, Report, Res, Tally, secs};
use crate::scope::{CALM_PUBLISH_LIMIT, Scope, Sent, kinds, record, stop_service, submit};

const PUBLISHES: u64 = 20_000;
const IN_FLIGHT: usize = 1_000;

fn unroutable(i: u64) -> bool {
    i.is_multiple_of(7)
}

pub async fn run(scope: Arc<Scope>) -> Res<Report> {
    let tally = Tally::default();
    let bus = scope.bus().await?;
    let mut service = scope.service(&bus);
    service.on(Order::SUBMIT, record(&tally.handled));
    service.prefetch(1000).concurrency(64);
    let running = service.start().await.ctx("starting the service")?;
    let started = Instant::now();
    let attempts = scope
        .publish_many(&tally, PUBLISHES, IN_FLIGHT, CALM_PUBLISH_LIMIT, |i| {
            let id = format!("{}-m{i}", scope.token);
            let publish = if unroutable(i) {
                let bus = bus.clone();
                let options = PublishOptions {
                    message_id: Some(id.clone()),
                    ..PublishOptions::default()
                };
                futures_util::future::Either::Left(async move {
                    bus.publish_with(Order::CHARGEBACK, &Order::sample(i), &options)
                        .await
                        .map(drop)
                })
            } else {
                futures_util::future::Either::Right(submit(&bus, &id, i))
            };
            (id, publish)
        })
        .await;
    let seconds = started.elapsed();
    let stuck = scope.settle(Duration::from_secs(30)).await?;
    let stopped = stop_service(running, Duration::from_secs(15)).await;

    let index = |id: &str| {
        id.rsplit_once("-m")
            .and_then(|(_, i)| i.parse::<u64>().ok())
    };
    let (routable, unroutables): (Vec<_>, Vec<_>) = attempts
        .iter()
        .partition(|a| index(&a.id).is_some_and(|i| !unroutable(i)));
    let routable_misreported = routable.iter().filter(|a| !a.confirmed()).count();
    let unroutable_misreported = unroutables
        .iter()
        .filter(|a| !matches!(a.sent, Sent::Failed(PublishError::Unroutable { .. })))
        .count();
    let misdelivered = unroutables
        .iter()
        .filter(|a| tally.handled.contains(&a.id))
        .count();

    let mut report = Report::new(&tally, stuck);
    report
        .fact("misreported", routable_misreported + unroutable_misreported)
        .fact("routable_not_ok", routable_misreported)
        .fact("unroutable_not_unroutable", unroutable_misreported)
        .fact("misdelivered", misdelivered)
        .fact("routable", kinds(routable.iter().copied()))
        .fact("unroutable", kinds(unroutables.iter().copied()))
        .fact("publish_s", secs(seconds));
    if routable_misreported + unroutable_misreported > 0 {
        report.problem(format!(
            "{routable_misreported} routable publish(es) did not return Ok and {unroutable_misreported} unroutable one(s) did not return Unroutable"
        ));
    }
    if misdelivered > 0 {
        report.problem(format!(
            "{misdelivered} unroutable publish(es) reached the service"
        ));
    }
    if let Err(e) = stopped {
        report.problem(e);
    }
    Ok(report)
}
