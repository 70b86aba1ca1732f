//! [outage] A broker outage longer than lapin's own retry budget (about 73 s):
//! `rabbitmqctl stop_app`, 80 s, `start_app`. An in-process service consumes throughout,
//! with 2 000 messages ready when the outage begins and more published after it: it must
//! consume everything once the broker is back (no zombie consumer). Publishes attempted during
//! the outage must fail within the confirm timeout. Separately, `billing_service` and
//! `order_service --metrics` (done publishing, serving its figures) with
//! `AMQP_GIVE_UP_AFTER=15s` must each exit non-zero within about 30 s of the outage's start,
//! so that a supervisor restarts them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use event_manager::{Bus, Delivery, PublishError};
use event_manager_examples::Order;

use crate::children::Child;
use crate::compat;
use crate::report::{Ctx, Report, Res, Tally, secs};
use crate::scope::{
    Attempt, CALM_PUBLISH_LIMIT, CONFIRM_TIMEOUT, PUBLISH_SLACK, Scope, Sent, kinds,
    only_promised_failures, stop_service, submit, wait_for_consumers,
};

const BEFORE: u64 = 2_000;
const AFTER: u64 = 2_000;
const OUTAGE: Duration = Duration::from_secs(80);
/// Publishes tried during the outage, one started every 2 s.
const DURING: u64 = 8;
const CHILD_GIVE_UP: &str = "15s";
const CHILD_EXIT_WITHIN: Duration = Duration::from_secs(30);

pub async fn run(scope: Arc<Scope>) -> Res<Report> {
    let tally = Tally::default();
    let consumer = scope.bus().await?;
    let publisher = scope.bus().await?;
    let slow = Arc::new(AtomicBool::new(true));
    let running = slow_service(&scope, &consumer, &tally, &slow)
        .start()
        .await
        .ctx("starting the service")?;
    let queue = scope.queue(&consumer);
    let mut child = start_billing(&scope, &consumer).await?;
    let mut metrics = start_order_metrics(&scope).await?;
    scope
        .publish_many(&tally, BEFORE, 200, CALM_PUBLISH_LIMIT, |i| {
            let id = format!("{}-b{i}", scope.token);
            (id.clone(), submit(&publisher, &id, i))
        })
        .await;
    let ready = event_manager::testing::transport(&consumer)
        .queue_len(&queue)
        .await
        .unwrap_or(0);

    let outage_began = Instant::now();
    scope.broker.stop_app().await?;
    let during = {
        let (scope, tally, bus) = (scope.clone(), tally.clone(), publisher.clone());
        tokio::spawn(async move { publish_during(&scope, &tally, &bus).await })
    };
    let child_exit = child.wait(CHILD_EXIT_WITHIN).await;
    let child_seconds = outage_began.elapsed();
    let metrics_exit = metrics
        .wait(CHILD_EXIT_WITHIN.saturating_sub(child_seconds))
        .await;
    let metrics_seconds = outage_began.elapsed();
    tokio::time::sleep(OUTAGE.saturating_sub(outage_began.elapsed())).await;
    scope.broker.start_app().await?;
    let back = Instant::now();
    slow.store(false, Ordering::SeqCst);
    let during = during.await.ctx("the outage publisher")?;

    let after_began = Instant::now();
    let after = scope
        .publish_many(&tally, AFTER, 200, Duration::from_secs(120), |i| {
            let id = format!("{}-a{i}", scope.token);
            (id.clone(), resend_until(publisher.clone(), id, i, back))
        })
        .await;
    let after_seconds = after_began.elapsed();
    // Queue statistics lag behind a restarted broker (a quorum queue can be listed empty for a
    // few seconds while it holds messages): wait for the messages themselves.
    let consuming_again = consuming_again(&running, back).await;
    let all_handled = all_handled(&tally, Duration::from_secs(60)).await;
    let stuck = scope.settle(Duration::from_secs(60)).await?;
    let stopped = stop_service(running, Duration::from_secs(15)).await;

    let mut report = Report::new(&tally, stuck);
    report
        .fact("faults", 1)
        .fact("outage_s", OUTAGE.as_secs())
        .fact("ready_at_outage", ready)
        .fact("during_outage", kinds(&during))
        .fact(
            "max_outage_publish_s",
            secs(during.iter().map(|a| a.took).max().unwrap_or_default()),
        )
        .fact("after_outage", kinds(&after))
        .fact("after_outage_publish_s", secs(after_seconds))
        .fact(
            "consuming_again_s",
            consuming_again.map_or_else(|| "never".to_owned(), secs),
        )
        .fact("all_handled_s", secs(all_handled.elapsed()));
    if consuming_again.is_none() {
        report.problem(format!(
            "the in-process service was not consuming {} s after the broker came back",
            CONSUMING_WITHIN.as_secs()
        ));
    }
    judge_during(&mut report, &during);
    judge_child(&mut report, "billing", &child, child_exit, child_seconds);
    judge_child(
        &mut report,
        "order_metrics",
        &metrics,
        metrics_exit,
        metrics_seconds,
    );
    if let Err(e) = stopped {
        report.problem(format!("the in-process service: {e}"));
    }
    Ok(report)
}

/// How soon after the broker is back the in-process service must consume again.
const CONSUMING_WITHIN: Duration = Duration::from_secs(60);

/// How long after `back` the service was connected and consuming again, if it was within
/// [`CONSUMING_WITHIN`].
async fn consuming_again(
    running: &event_manager::RunningService,
    back: Instant,
) -> Option<Duration> {
    while back.elapsed() < CONSUMING_WITHIN {
        if running.health().is_healthy() {
            return Some(back.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Waits until every confirmed message was handled, or `limit` passed; returns when it began.
async fn all_handled(tally: &Tally, limit: Duration) -> Instant {
    let began = Instant::now();
    while began.elapsed() < limit && !tally.lost().is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    began
}

/// The service: slow while `slow` is set (50 ms per message, 4 at a time) so that messages
/// are still ready when the outage begins; fast once the broker is back.
fn slow_service(
    scope: &Scope,
    bus: &Bus,
    tally: &Tally,
    slow: &Arc<AtomicBool>,
) -> event_manager::Service {
    let mut service = scope.service(bus);
    let (handled, slow) = (tally.handled.clone(), slow.clone());
    service.prefetch(8).concurrency(4);
    service.on(Order::SUBMIT, move |_order: Order, delivery: Delivery| {
        let handled = handled.clone();
        let pause = slow.load(Ordering::SeqCst);
        async move {
            if pause {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            handled.insert(delivery.message_id().unwrap_or_default());
            Ok(())
        }
    });
    service
}

/// `billing_service` giving up after [`CHILD_GIVE_UP`], in a namespace of its own (it only
/// needs to be connected and consuming).
async fn start_billing(scope: &Scope, bus: &Bus) -> Res<Child> {
    let namespace = format!("{}-billing", scope.token);
    let queue = compat::queue_name(&bus.with_namespace(namespace.clone()), "billing_order");
    scope.adopt_foreign_queue(&queue);
    let env = [
        ("AMQP_GIVE_UP_AFTER", CHILD_GIVE_UP),
        ("EVENT_MANAGER_NAMESPACE", namespace.as_str()),
    ];
    let child = Child::consumer(
        scope,
        "billing",
        "billing_service",
        &["--grace", "3s"],
        &env,
    )?;
    wait_for_consumers(&queue, 1, Duration::from_secs(20)).await?;
    Ok(child)
}

/// `order_service --metrics` giving up after [`CHILD_GIVE_UP`], in a namespace of its own,
/// once it has published its (no) orders and serves its figures.
async fn start_order_metrics(scope: &Scope) -> Res<Child> {
    let namespace = format!("{}-orders", scope.token);
    let env = [
        ("AMQP_GIVE_UP_AFTER", CHILD_GIVE_UP),
        ("EVENT_MANAGER_NAMESPACE", namespace.as_str()),
    ];
    let child = Child::publisher_with(
        scope,
        "order_metrics",
        "order_service",
        &["--count", "0", "--metrics", "127.0.0.1:0"],
        &env,
    )?;
    let began = Instant::now();
    while !child.output().contains("published 0") {
        if began.elapsed() > Duration::from_secs(20) {
            return Err(format!(
                "order_service --metrics did not start: {}",
                child.tail()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(child)
}

/// One publish started every 2 s while the broker is down, each running on its own.
async fn publish_during(scope: &Scope, tally: &Tally, bus: &Bus) -> Vec<Attempt> {
    let pending = (0..DURING).map(|i| async move {
        tokio::time::sleep(Duration::from_secs(2) * u32::try_from(i).unwrap_or(u32::MAX)).await;
        let id = format!("{}-d{i}", scope.token);
        let publish = submit(bus, &id, 100_000 + i);
        scope
            .attempt(tally, id, Duration::from_secs(60), publish)
            .await
    });
    futures_util::future::join_all(pending).await
}

/// Publishes order `order` with id `id`, re-sending (same id) after failures for up to 60 s
/// after the broker came back.
async fn resend_until(bus: Bus, id: String, order: u64, back: Instant) -> Result<(), PublishError> {
    loop {
        match submit(&bus, &id, order).await {
            Ok(()) => return Ok(()),
            Err(e) if back.elapsed() > Duration::from_secs(60) => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

fn judge_during(report: &mut Report, during: &[Attempt]) {
    let limit = CONFIRM_TIMEOUT + PUBLISH_SLACK;
    let slow: Vec<&Attempt> = during.iter().filter(|a| a.took > limit).collect();
    if !slow.is_empty() {
        let longest = slow.iter().map(|a| a.took).max().unwrap_or_default();
        report.problem(format!(
            "{} publish(es) during the outage took longer than the confirm timeout ({CONFIRM_TIMEOUT:?}) + {PUBLISH_SLACK:?}; the longest {} s ({})",
            slow.len(),
            secs(longest),
            kinds(slow.iter().copied())
        ));
    }
    if during.iter().any(|a| matches!(a.sent, Sent::Confirmed)) {
        report.problem("a publish was reported confirmed while the broker was down");
    }
    // The README's promise: a publish to a broker that is down fails with `Timeout`.
    only_promised_failures(report, during, "Timeout", |e| {
        matches!(e, PublishError::Timeout { .. })
    });
}

fn judge_child(
    report: &mut Report,
    label: &str,
    child: &Child,
    exit: Option<std::process::ExitStatus>,
    seconds: Duration,
) {
    match exit {
        Some(status) => {
            report
                .fact(&format!("{label}_exit"), status)
                .fact(&format!("{label}_exit_s"), secs(seconds));
            if status.success() {
                report.problem(format!(
                    "{label} exited 0 during the outage: a supervisor would not restart it"
                ));
            }
        }
        None => {
            report.fact(&format!("{label}_exit"), "none");
            report.problem(format!(
                "{label} (AMQP_GIVE_UP_AFTER={CHILD_GIVE_UP}) was still running {} s into the outage: {}",
                secs(seconds),
                child.tail()
            ));
        }
    }
}
