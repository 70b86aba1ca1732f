//! [queue-full] The (quorum) service queue is length-limited with `reject-publish` while a
//! callback fails once per message and succeeds on its retry. Publishes the broker refuses
//! must be reported as errors, and every confirmed message must eventually be handled: the
//! retries must not depend on the full service queue taking them (a wait queue that
//! dead-letters into it drops them, at-most-once, or strands them, at-least-once on 3.10),
//! which is why they come back through the service's own retry queue.

use std::sync::Arc;
use std::time::Duration;

use event_manager::transport::QueueKind;
use event_manager::{Bus, Delivery, HandlerError, PublishError, RetryPolicy, Service};
use event_manager_examples::Order;

use crate::broker::{self, exact_pattern};
use crate::report::{Ctx, Ids, Report, Res, Tally, secs};
use crate::scope::{
    Attempt, CONFIRM_TIMEOUT, Drain, PUBLISH_SLACK, Paced, Scope, Sent, kinds,
    only_promised_failures, stop_service,
};

const MAX_LENGTH: u64 = 50;
/// Publishing lasts this long, keeping the queue at its limit.
const PUBLISH_FOR: Duration = Duration::from_secs(6);
const RETRY_DELAY: Duration = Duration::from_millis(300);

pub async fn run(scope: Arc<Scope>) -> Res<Report> {
    let tally = Tally::default();
    let consumer = scope.bus().await?;
    let publisher = scope.bus().await?;
    let failed_once = Ids::default();
    let running = failing_once(&scope, &consumer, &tally, &failed_once)
        .start()
        .await
        .ctx("starting the service")?;
    let queue = scope.queue(&consumer);
    let policy = format!("{}-queue-full", scope.token);
    let definition = format!(r#"{{"max-length":{MAX_LENGTH},"overflow":"reject-publish"}}"#);
    scope
        .broker
        .set_policy(&policy, &exact_pattern(&queue), &definition)
        .await?;
    let limit = Duration::from_secs(30);
    let publishing = Paced::start(
        &scope,
        &tally,
        &publisher,
        Duration::from_micros(500),
        limit,
    );
    tokio::time::sleep(PUBLISH_FOR).await;
    let attempts = publishing.finish().await?;
    scope.broker.clear_policy(&policy).await?;
    let stuck = scope.settle(Duration::from_secs(40)).await?;
    let parked: u64 = broker::queues(std::slice::from_ref(&scope.token))
        .await?
        .iter()
        .filter(|q| q.name.contains(".wait."))
        .map(broker::QueueStat::dead_letter_stage)
        .sum();
    let stopped = stop_service(running, Duration::from_secs(15)).await;
    let reader = scope.bus().await?;
    let mut drain = Drain::by_message_id(&tally.dead);
    drain.quiet = Duration::from_secs(1);
    let _ = scope
        .drain(&reader, &scope.dead_letter_queue(&consumer), drain)
        .await;

    let mut report = Report::new(&tally, stuck);
    report
        .fact("faults", 1)
        .fact("max_length", MAX_LENGTH)
        .fact("failed_once", failed_once.len())
        .fact("stuck_in_wait_queue_dead_letter_stage", parked);
    judge(&mut report, &attempts, parked);
    if let Err(e) = stopped {
        report.problem(e);
    }
    Ok(report)
}

/// The quorum service whose callback fails the first attempt of every message (recorded in
/// `failed`) and handles its retry.
fn failing_once(scope: &Scope, bus: &Bus, tally: &Tally, failed: &Ids) -> Service {
    let mut service = scope.service(bus);
    service
        .queue_kind(QueueKind::Quorum)
        .retry(RetryPolicy::new(5, vec![RETRY_DELAY]))
        .prefetch(16)
        .concurrency(8);
    let (handled, failed) = (tally.handled.clone(), failed.clone());
    service.on(Order::SUBMIT, move |_order: Order, delivery: Delivery| {
        let (handled, failed) = (handled.clone(), failed.clone());
        async move {
            if failed.insert(delivery.message_id().unwrap_or_default()) {
                return Err(HandlerError::retry("fails once, on purpose"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            handled.insert(delivery.message_id().unwrap_or_default());
            Ok(())
        }
    });
    service
}

fn judge(report: &mut Report, attempts: &[Attempt], parked: u64) {
    let refused = attempts
        .iter()
        .filter(|a| matches!(a.sent, Sent::Failed(_)))
        .count();
    let slowest = attempts.iter().map(|a| a.took).max().unwrap_or_default();
    report
        .fact("publishes", kinds(attempts))
        .fact("max_publish_s", secs(slowest));
    if parked > 0 {
        report.detail(format!(
            "{parked} retries sit in the wait queue's at-least-once dead-letter stage (in `messages`, neither ready nor unacknowledged): the full service queue rejected them, and RabbitMQ re-sends a rejected at-least-once dead letter only on its own timer (dead_letter_worker_publisher_confirm_timeout, 120 s by default), if at all"
        ));
    }
    if refused == 0 {
        report.problem("the length limit never refused a publish: the queue was never full");
    }
    // A refusal the re-sends did not get past is `Nacked`, nothing else.
    only_promised_failures(report, attempts, "Nacked", |e| {
        matches!(e, PublishError::Nacked { .. })
    });
    if slowest > CONFIRM_TIMEOUT + PUBLISH_SLACK {
        report.problem(format!(
            "a publish took {} s (confirm timeout {CONFIRM_TIMEOUT:?})",
            secs(slowest)
        ));
    }
}
