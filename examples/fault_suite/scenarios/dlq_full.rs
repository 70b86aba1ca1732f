//! [dlq-full] The service's dead-letter queue is length-limited by a policy
//! (`max-length` 1, `reject-publish`) and 20 undecodable messages arrive: the service must
//! hold what it cannot dead-letter, without a hot loop and without losing any. Once the policy
//! is cleared and the dead-letter queue drained as it fills, every message ends dead-lettered
//! and nothing is left behind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use event_manager::Bus;
use event_manager_examples::Order;

use crate::broker::{self, exact_pattern};
use crate::probe;
use crate::report::{Ctx, Report, Res, Tally, secs};
use crate::scope::{CALM_PUBLISH_LIMIT, Drain, Scope, poison, publish_raw, record, stop_service};

const POISON: u64 = 20;
/// How long the service must hold what it cannot dead-letter.
const HOLD: Duration = Duration::from_secs(6);
/// CPU time over [`HOLD`] above which holding counts as a hot loop.
const HOT_LOOP_CPU: Duration = Duration::from_millis(1500);

pub async fn run(scope: Arc<Scope>) -> Res<Report> {
    let tally = Tally::default();
    let bus = scope.bus().await?;
    let mut service = scope.service(&bus);
    // Quorum queues (the default). A quorum dead-letter queue that refused a move with
    // `reject-publish` was seen to go on refusing the publisher channel's moves after its
    // limit was lifted; the publisher opens a fresh channel after a refusal.
    service.on(Order::SUBMIT, record(&tally.handled));
    let running = service.start().await.ctx("starting the service")?;
    let dlq = scope.dead_letter_queue(&bus);
    let policy = format!("{}-dlq-full", scope.token);
    scope
        .broker
        .set_policy(
            &policy,
            &exact_pattern(&dlq),
            r#"{"max-length":1,"overflow":"reject-publish"}"#,
        )
        .await?;
    scope
        .publish_many(&tally, POISON, 20, CALM_PUBLISH_LIMIT, |i| {
            let id = format!("{}-p{i}", scope.token);
            let message = poison(&bus, &id);
            (id, publish_raw(&bus, message))
        })
        .await;
    let hold = Hold::observe(&scope, &bus).await?;

    scope.broker.clear_policy(&policy).await?;
    let fixed = Instant::now();
    let reader = scope.bus().await?;
    let mut drain = Drain::by_message_id(&tally.dead);
    drain.until = tally.confirmed.len();
    drain.quiet = Duration::from_secs(20);
    drain.limit = Duration::from_secs(45);
    let taken = scope.drain(&reader, &dlq, drain).await?;
    let fix_seconds = fixed.elapsed();
    let stuck = scope.settle(Duration::from_secs(10)).await?;
    let stopped = stop_service(running, Duration::from_secs(15)).await;

    let mut report = Report::new(&tally, stuck);
    hold.judge(&mut report, tally.confirmed.len() as u64);
    report
        .fact("dlq_messages", taken)
        .fact("seconds_after_fix", secs(fix_seconds));
    if let Err(e) = stopped {
        report.problem(e);
    }
    Ok(report)
}

/// What the service does while its dead-letter queue is full.
struct Hold {
    in_dlq: u64,
    held: u64,
    consumers: u64,
    cpu: Duration,
}

impl Hold {
    /// Waits [`HOLD`], measuring the CPU time spent, then counts where the messages are.
    async fn observe(scope: &Scope, bus: &Bus) -> Res<Self> {
        let (queue, dlq) = (scope.queue(bus), scope.dead_letter_queue(bus));
        let cpu_before = probe::cpu_time();
        tokio::time::sleep(HOLD).await;
        let cpu = probe::cpu_time().saturating_sub(cpu_before);
        let stats = broker::queues(std::slice::from_ref(&scope.token)).await?;
        let count = |dead: bool| -> u64 {
            stats
                .iter()
                .filter(|q| (q.name == dlq) == dead)
                .map(broker::QueueStat::held)
                .sum()
        };
        Ok(Self {
            in_dlq: count(true),
            held: count(false),
            consumers: stats
                .iter()
                .find(|q| q.name == queue)
                .map_or(0, |q| q.consumers),
            cpu,
        })
    }

    fn judge(&self, report: &mut Report, confirmed: u64) {
        let (in_dlq, held) = (self.in_dlq, self.held);
        report
            .fact("faults", 1)
            .fact("in_dlq_during_fault", in_dlq)
            .fact("held_during_fault", held)
            .fact("consumers_during_fault", self.consumers)
            .fact("hold_cpu_s", format!("{:.2}", self.cpu.as_secs_f64()));
        if in_dlq + held < confirmed {
            report.problem(format!(
                "while the dead-letter queue was full only {} of {confirmed} messages were accounted for ({in_dlq} in it, {held} held): the rest vanished",
                in_dlq + held
            ));
        }
        if self.cpu > HOT_LOOP_CPU {
            report.problem(format!(
                "holding cost {:.2} s of CPU in {HOLD:?}: a hot loop",
                self.cpu.as_secs_f64()
            ));
        }
    }
}
