//! The scenarios, in the order a full run takes them.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::broker::Alarm;
use crate::report::{Report, Res};
use crate::scope::Scope;

mod alarm_publish;
mod alarm_shutdown;
mod big_headers;
mod closes_publish;
mod dlq_deleted;
mod dlq_full;
mod exchange_deleted;
mod kill_consumer;
mod outage;
mod poison_closes;
mod queue_full;
mod unroutable_mix;

/// One scenario: its name for `--scenario`, what it does, how long it may take.
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    pub limit: Duration,
    pub run: fn(Arc<Scope>) -> BoxFuture<'static, Res<Report>>,
}

const fn scenario(
    name: &'static str,
    about: &'static str,
    limit_secs: u64,
    run: fn(Arc<Scope>) -> BoxFuture<'static, Res<Report>>,
) -> Scenario {
    Scenario {
        name,
        about,
        limit: Duration::from_secs(limit_secs),
        run,
    }
}

/// Every scenario.
pub fn all() -> Vec<Scenario> {
    vec![
        scenario(
            "outage",
            "stop_app for 80 s (beyond lapin's retry budget) under a consuming service",
            300,
            |s| Box::pin(outage::run(s)),
        ),
        scenario(
            "closes-publish",
            "order, billing and logistics services under 5 close_all_connections",
            150,
            |s| Box::pin(closes_publish::run(s)),
        ),
        scenario(
            "poison-closes",
            "5 close_all_connections while 50 000 poison messages are dead-lettered",
            180,
            |s| Box::pin(poison_closes::run(s)),
        ),
        scenario(
            "dlq-deleted",
            "the dead-letter queue deleted, then 3 and 100 poison messages",
            120,
            |s| Box::pin(dlq_deleted::run(s)),
        ),
        scenario(
            "dlq-full",
            "the dead-letter queue length-limited (reject-publish), 20 poison messages",
            120,
            |s| Box::pin(dlq_full::run(s)),
        ),
        scenario(
            "queue-full",
            "the quorum service queue length-limited while retries cycle through wait queues",
            150,
            |s| Box::pin(queue_full::run(s)),
        ),
        scenario(
            "alarm-publish",
            "a memory alarm while publishing",
            150,
            |s| Box::pin(alarm_publish::run(s, Alarm::Memory)),
        ),
        scenario(
            "alarm-disk-publish",
            "a disk alarm while publishing",
            150,
            |s| Box::pin(alarm_publish::run(s, Alarm::Disk)),
        ),
        scenario(
            "alarm-shutdown",
            "SIGTERM to billing_service while a memory alarm blocks its dead-lettering",
            150,
            |s| Box::pin(alarm_shutdown::run(s)),
        ),
        scenario(
            "kill-consumer",
            "one of two competing billing_service processes SIGKILLed mid-stream",
            150,
            |s| Box::pin(kill_consumer::run(s)),
        ),
        scenario(
            "unroutable-mix",
            "20 000 pipelined publishes, every 7th unroutable",
            120,
            |s| Box::pin(unroutable_mix::run(s)),
        ),
        scenario(
            "big-headers",
            "headers near frame_max, handled and dead-lettered",
            180,
            |s| Box::pin(big_headers::run(s)),
        ),
        scenario(
            "exchange-deleted",
            "the exchange deleted under a publisher at 200/s and a consuming service",
            120,
            |s| Box::pin(exchange_deleted::run(s)),
        ),
    ]
}
