//! [alarm-publish] A memory alarm while publishing (`set_vm_memory_high_watermark
//! 0.0000001`, later `0.4`), and [alarm-disk-publish] a disk alarm (`set_disk_free_limit
//! 1000000GB`, later `50MB`): the broker blocks publishing connections, so publishes must
//! fail with `Timeout` within the confirm timeout instead of hanging; after the alarm
//! clears, publishing works again, and every confirmed message is handled.

use std::sync::Arc;
use std::time::Duration;

use event_manager_examples::Order;

use event_manager::PublishError;

use crate::broker::Alarm;
use crate::report::{Ctx, Report, Res, Tally, secs};
use crate::scope::{
    Attempt, CONFIRM_TIMEOUT, PUBLISH_SLACK, Paced, Scope, Sent, kinds, only_promised_failures,
    record, stop_service,
};

const PERIOD: Duration = Duration::from_millis(20);
const BEFORE: Duration = Duration::from_secs(3);
const ALARM: Duration = Duration::from_secs(10);
const AFTER: Duration = Duration::from_secs(4);

pub async fn run(scope: Arc<Scope>, alarm: Alarm) -> Res<Report> {
    let tally = Tally::default();
    let consumer = scope.bus().await?;
    let publisher = scope.bus().await?;
    let mut service = scope.service(&consumer);
    service.on(Order::SUBMIT, record(&tally.handled));
    let running = service.start().await.ctx("starting the service")?;

    let limit = ALARM + Duration::from_secs(20);
    let publishing = Paced::start(&scope, &tally, &publisher, PERIOD, limit);
    tokio::time::sleep(BEFORE).await;
    let raised_at = scope.elapsed();
    let raised = scope.broker.raise_alarm(alarm).await;
    let active_at = scope.elapsed();
    tokio::time::sleep(ALARM).await;
    let cleared = scope.broker.clear_alarm(alarm).await;
    let cleared_at = scope.elapsed();
    tokio::time::sleep(AFTER).await;
    let attempts = publishing.finish().await?;
    let stuck = scope.settle(Duration::from_secs(30)).await?;
    let stopped = stop_service(running, Duration::from_secs(15)).await;

    let mut report = Report::new(&tally, stuck);
    report
        .fact("faults", 1)
        .fact("alarm", alarm.name())
        .fact("alarm_s", secs(cleared_at - active_at));
    judge(&mut report, &attempts, raised_at, cleared_at);
    for result in [raised, cleared, stopped] {
        if let Err(e) = result {
            report.problem(e);
        }
    }
    Ok(report)
}

fn judge(report: &mut Report, attempts: &[Attempt], raised_at: Duration, cleared_at: Duration) {
    let during: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.at >= raised_at && a.at < cleared_at)
        .collect();
    let settled_at = cleared_at + Duration::from_secs(1);
    let after: Vec<&Attempt> = attempts.iter().filter(|a| a.at >= settled_at).collect();
    let slowest = attempts.iter().map(|a| a.took).max().unwrap_or_default();
    let slow = attempts
        .iter()
        .filter(|a| a.took > CONFIRM_TIMEOUT + PUBLISH_SLACK)
        .count();
    report
        .fact("during_alarm", kinds(during.iter().copied()))
        .fact("after_alarm", kinds(after.iter().copied()))
        .fact("max_publish_s", secs(slowest));
    if slow > 0 {
        report.problem(format!(
            "{slow} publish(es) took longer than the confirm timeout ({CONFIRM_TIMEOUT:?}) + {PUBLISH_SLACK:?}; the longest {} s",
            secs(slowest)
        ));
    }
    // The alarm blocked publishing: publishes made during it fail, and with `Timeout` only.
    let timed_out = |a: &&Attempt| matches!(a.sent, Sent::Failed(PublishError::Timeout { .. }));
    if !during.iter().any(timed_out) {
        report.problem(format!(
            "no publish made during the alarm timed out: the alarm did not block publishing ({})",
            kinds(during.iter().copied())
        ));
    }
    only_promised_failures(report, attempts, "Timeout", |e| {
        matches!(e, PublishError::Timeout { .. })
    });
    if after.is_empty() || after.iter().any(|a| !a.confirmed()) {
        report.problem(format!(
            "publishing did not work after the alarm cleared: {}",
            kinds(after.iter().copied())
        ));
    }
}
