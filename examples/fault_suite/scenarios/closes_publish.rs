//! [closes-publish] The example services end to end under forced disconnects (what
//! `scripts/fault-test` checked): `order_service` publishes 20 000 orders, alternating
//! `order.v1.submit` and `order.v1.chargeback`, while `billing_service` (submits) and
//! `logistics_service` (everything) consume, and every broker connection is closed by force
//! five times, half a second apart, while the publisher runs. The publisher is paced
//! (`--rate`), so that the stream lasts at least eight seconds however fast the machine is and
//! every fault lands while it runs. The publisher must report every order confirmed, billing
//! must handle every submit and logistics every order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use event_manager_examples::services;

use crate::children::Child;
use crate::compat;
use crate::report::{Report, Res, Tally, secs};
use crate::scope::{Scope, wait_for_consumers};

const ORDERS: u64 = 20_000;
/// Orders per second: 20 000 take at least 8 s, longer than five faults take to inject (each
/// is half a second of sleep plus a `rabbitmqctl` run, about 1.2 s here).
const RATE: &str = "2500";
const CLOSES: usize = 5;
const GRACE: &str = "3s";

pub async fn run(scope: Arc<Scope>) -> Res<Report> {
    let bus = scope.bus().await?;
    let billing_queue = compat::queue_name(&bus, services::billing(&bus).queue());
    let logistics_queue = compat::queue_name(&bus, services::logistics(&bus).queue());
    scope.adopt_foreign_queue(&billing_queue);
    scope.adopt_foreign_queue(&logistics_queue);
    let args = ["--grace", GRACE];
    let mut billing = Child::consumer(&scope, "billing", "billing_service", &args, &[])?;
    let mut logistics = Child::consumer(&scope, "logistics", "logistics_service", &args, &[])?;
    wait_for_consumers(&billing_queue, 1, Duration::from_secs(20)).await?;
    wait_for_consumers(&logistics_queue, 1, Duration::from_secs(20)).await?;

    let count = ORDERS.to_string();
    let started = Instant::now();
    let mut orders = Child::publisher(
        &scope,
        "order",
        "order_service",
        &["--count", &count, "--rate", RATE],
    )?;
    let mut faults = 0;
    for fault in 1..=CLOSES {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if orders.exited().is_some() {
            break;
        }
        let reason = format!("fault-suite closes-publish {fault}");
        scope.broker.close_all_connections(&reason).await?;
        faults += 1;
    }
    let published = orders.wait(Duration::from_secs(120)).await;
    let publish_seconds = started.elapsed();
    let stuck = scope.settle(Duration::from_secs(60)).await?;
    billing.signal("TERM");
    logistics.signal("TERM");
    let exits = [
        billing.wait(Duration::from_secs(8)).await,
        logistics.wait(Duration::from_secs(8)).await,
    ];

    let tally = Tally::default();
    let all_confirmed = published.is_some_and(|s| s.success())
        && orders
            .output()
            .lines()
            .any(|l| l == format!("published {ORDERS}"));
    let (billed, shipped) = (billing.handled(), logistics.handled());
    for id in 0..ORDERS {
        let id = id.to_string();
        tally.published.insert(id.clone());
        if all_confirmed {
            tally.confirmed.insert(id.clone());
        }
        // A submit (even id) must reach both services, a chargeback only logistics.
        let is_submit = id.parse::<u64>().is_ok_and(|i| i.is_multiple_of(2));
        if shipped.contains(&id) && (!is_submit || billed.contains(&id)) {
            tally.handled.insert(id);
        }
    }
    let mut report = Report::new(&tally, stuck);
    report
        .fact("faults", faults)
        .fact("billing_handled", billed.len())
        .fact("logistics_handled", shipped.len())
        .fact("publish_s", secs(publish_seconds));
    if faults < 2 {
        report.problem("order_service finished before two faults could be injected");
    }
    if !all_confirmed {
        report.problem(format!(
            "order_service did not report all {ORDERS} orders confirmed ({published:?}): {}",
            orders.tail()
        ));
    }
    for (child, exit) in [(&billing, exits[0]), (&logistics, exits[1])] {
        if !exit.is_some_and(|s| s.success()) {
            report.problem(format!(
                "a consumer did not exit cleanly on SIGTERM ({exit:?}): {}",
                child.tail()
            ));
        }
    }
    Ok(report)
}
