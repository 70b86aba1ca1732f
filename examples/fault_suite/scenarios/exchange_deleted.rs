//! [exchange-deleted] The exchange is deleted (through the library's transport) while a
//! publisher publishes at about 200/s for 10 s and a service (topology check every 500 ms)
//! consumes. Publishes after the deletion may fail with a clear error, but within a few
//! seconds the publisher must recover (the library re-declares the exchange, the service its
//! binding), and every confirmed message must be handled.

use std::sync::Arc;
use std::time::Duration;

use event_manager::PublishError;
use event_manager_examples::{ORDER, Order};

use crate::compat;
use crate::report::{Ctx, Report, Res, Tally, secs};
use crate::scope::{
    Attempt, CONFIRM_TIMEOUT, PUBLISH_SLACK, Paced, Scope, kinds, only_promised_failures, record,
    stop_service,
};

const PERIOD: Duration = Duration::from_millis(5);
const RUN: Duration = Duration::from_secs(10);
const DELETE_AFTER: Duration = Duration::from_secs(3);
const RECOVER_WITHIN: Duration = Duration::from_secs(5);

pub async fn run(scope: Arc<Scope>) -> Res<Report> {
    let tally = Tally::default();
    let consumer = scope.bus().await?;
    let publisher = scope.bus().await?;
    let mut service = scope.service(&consumer);
    service.on(Order::SUBMIT, record(&tally.handled));
    compat::topology_refresh(&mut service, Duration::from_millis(500));
    let running = service.start().await.ctx("starting the service")?;

    let publishing = Paced::start(&scope, &tally, &publisher, PERIOD, Duration::from_secs(30));
    let began = scope.elapsed();
    tokio::time::sleep(DELETE_AFTER).await;
    let deleted_at = scope.elapsed();
    event_manager::testing::transport(&publisher)
        .delete_exchange(&publisher.topology().exchange_name(ORDER))
        .await
        .ctx("deleting the exchange")?;
    tokio::time::sleep(RUN.saturating_sub(scope.elapsed() - began)).await;
    let attempts = publishing.finish().await?;
    let stuck = scope.settle(Duration::from_secs(20)).await?;
    let stopped = stop_service(running, Duration::from_secs(15)).await;

    let mut report = Report::new(&tally, stuck);
    judge(&mut report, &attempts, deleted_at);
    if let Err(e) = stopped {
        report.problem(e);
    }
    Ok(report)
}

/// Recovery: the start of the first publish after which every later one was confirmed.
fn judge(report: &mut Report, attempts: &[Attempt], deleted_at: Duration) {
    let (before, after): (Vec<&Attempt>, Vec<&Attempt>) =
        attempts.iter().partition(|a| a.at < deleted_at);
    let last_failure = after.iter().rposition(|a| !a.confirmed());
    let recovery = match last_failure {
        None => Some(Duration::ZERO),
        Some(i) => after.get(i + 1).map(|a| a.at.saturating_sub(deleted_at)),
    };
    let slowest = attempts.iter().map(|a| a.took).max().unwrap_or_default();
    report
        .fact("faults", 1)
        .fact("before_delete", kinds(before.iter().copied()))
        .fact("after_delete", kinds(after.iter().copied()))
        .fact(
            "recovery_s",
            recovery.map_or_else(|| "never".to_owned(), secs),
        )
        .fact("max_publish_s", secs(slowest));
    match recovery {
        None => {
            let failed = after.iter().filter(|a| !a.confirmed()).count();
            let example = after
                .iter()
                .rev()
                .find(|a| !a.confirmed())
                .map(|a| format!("{:?}", a.sent))
                .unwrap_or_default();
            report.problem(format!(
                "the publisher never recovered after the exchange was deleted: {failed} of {} later publishes failed, the last with {example}",
                after.len()
            ));
        }
        Some(r) if r > RECOVER_WITHIN => {
            report.problem(format!(
                "the publisher took {} s to recover (more than {RECOVER_WITHIN:?})",
                secs(r)
            ));
        }
        Some(_) => {}
    }
    if before.iter().any(|a| !a.confirmed()) {
        report.problem(format!(
            "publishes failed before the fault: {}",
            kinds(before.iter().copied())
        ));
    }
    // Until the bindings are back, a publish is told `Unroutable`; never another failure.
    only_promised_failures(report, after.iter().copied(), "Unroutable", |e| {
        matches!(e, PublishError::Unroutable { .. })
    });
    if slowest > CONFIRM_TIMEOUT + PUBLISH_SLACK {
        report.problem(format!(
            "a publish took {} s (confirm timeout {CONFIRM_TIMEOUT:?})",
            secs(slowest)
        ));
    }
}
