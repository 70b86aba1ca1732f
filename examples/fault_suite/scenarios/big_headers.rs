//! [big-headers] Headers near `frame_max` (RabbitMQ's default, 131 072 bytes: a message's
//! properties must fit in one frame). Messages whose headers total 100 KiB, 125 KiB, just
//! under the limit, exactly at it, 130 KiB and 200 KiB, each once as a valid order (to be
//! handled) and once as poison (to be dead-lettered, which adds headers). Expected: no
//! connection is killed, a message too large is refused at publish with a typed error, every
//! accepted one is handled or dead-lettered, nothing is left behind.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_manager::message::{Bytes, Message, Properties};
use event_manager::{Bus, PublishError};
use event_manager_examples::{ORDER, Order};

use crate::probe;
use crate::report::{Ctx, Report, Res, Tally, secs};
use crate::scope::{
    Attempt, CONFIRM_TIMEOUT, Drain, PUBLISH_SLACK, SUBMIT_KEY, Scope, Sent, publish_raw, record,
    stop_service,
};

/// RabbitMQ's default `frame_max`, which the local broker runs with.
const FRAME_MAX: usize = 131_072;
const CONTENT_TYPE: &str = "application/json";
const PAD: &str = "pad";

/// One message of the scenario.
struct Case {
    id: String,
    pad: usize,
    poison: bool,
}

impl Case {
    /// The size of the content-header frame that carries this message's properties: frame
    /// header and end (8), class, weight, body size and flags (14), content type, message id,
    /// delivery mode, and the header table (length, then name, type, length and value).
    fn header_frame(&self) -> usize {
        8 + 14
            + (1 + CONTENT_TYPE.len())
            + (1 + self.id.len())
            + 1
            + 4
            + (1 + PAD.len() + 1 + 4)
            + self.pad
    }

    fn fits(&self) -> bool {
        self.header_frame() <= FRAME_MAX
    }

    fn message(&self, bus: &Bus, order: u64) -> Message {
        let body = if self.poison {
            Bytes::from_static(b"not json")
        } else {
            Bytes::from(serde_json::to_vec(&Order::sample(order)).unwrap_or_default())
        };
        let mut properties = Properties {
            content_type: Some(CONTENT_TYPE.into()),
            message_id: Some(self.id.clone()),
            persistent: true,
            ..Properties::default()
        };
        properties.headers.insert(PAD, "p".repeat(self.pad));
        Message {
            exchange: bus.topology().exchange_name(ORDER).into(),
            routing_key: SUBMIT_KEY.into(),
            body,
            properties,
        }
    }
}

/// The cases: each size once valid, once poison. The id length is the same for all.
fn cases(token: &str) -> Vec<Case> {
    let id = |i: usize| format!("{token}-h{i:02}");
    let fixed = Case {
        id: id(0),
        pad: 0,
        poison: false,
    }
    .header_frame();
    let sizes = [
        100 * 1024,
        125 * 1024,
        FRAME_MAX - fixed - 100,
        FRAME_MAX - fixed,
        130 * 1024,
        200 * 1024,
    ];
    let mut all = Vec::new();
    for pad in sizes {
        for poison in [false, true] {
            all.push(Case {
                id: id(all.len()),
                pad,
                poison,
            });
        }
    }
    all
}

pub async fn run(scope: Arc<Scope>) -> Res<Report> {
    let tally = Tally::default();
    let publisher = scope.bus().await?;
    let consumer = scope.bus().await?;
    let reader = scope.bus().await?;
    let mut service = scope.service(&consumer);
    service.on(Order::SUBMIT, record(&tally.handled));
    let running = service.start().await.ctx("starting the service")?;
    let port = probe::broker_port(&scope.url);
    let initial = probe::broker_connections(port);
    let (seen, stop) = watch_connections(port);

    let cases = cases(&scope.token);
    let mut attempts = Vec::new();
    for (order, case) in cases.iter().enumerate() {
        let message = case.message(&publisher, order as u64);
        let limit = CONFIRM_TIMEOUT + PUBLISH_SLACK + Duration::from_secs(7);
        let publish = publish_raw(&publisher, message);
        attempts.push(scope.attempt(&tally, case.id.clone(), limit, publish).await);
    }
    let stuck = scope.settle(Duration::from_secs(20)).await?;
    let stopped = stop_service(running, Duration::from_secs(15)).await;
    let mut drain = Drain::by_message_id(&tally.dead);
    drain.quiet = Duration::from_secs(1);
    let _ = scope
        .drain(&reader, &scope.dead_letter_queue(&consumer), drain)
        .await;
    stop.store(true, Ordering::SeqCst);
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let replaced = seen.difference(&initial).count();

    let mut report = Report::new(&tally, stuck);
    report
        .fact("cases", cases.len())
        .fact(
            "refused",
            attempts.iter().filter(|a| !a.confirmed()).count(),
        )
        .fact("connections_replaced", replaced);
    judge(&mut report, &tally, &cases, &attempts);
    if replaced > 0 {
        report.problem(format!(
            "{replaced} broker connection(s) of this process were killed and replaced during the scenario"
        ));
    }
    if let Err(e) = stopped {
        report.problem(e);
    }
    Ok(report)
}

/// Checks each case against what should have happened to it and writes one detail line per
/// case.
fn judge(report: &mut Report, tally: &Tally, cases: &[Case], attempts: &[Attempt]) {
    for (case, attempt) in cases.iter().zip(attempts) {
        let outcome = if tally.handled.contains(&case.id) {
            "handled"
        } else if tally.dead.contains(&case.id) {
            "dead-lettered"
        } else {
            "neither"
        };
        let publish = match &attempt.sent {
            Sent::Confirmed => "Ok".to_owned(),
            Sent::Hung => "no answer".to_owned(),
            Sent::Failed(e) => format!("{}: {e}", crate::scope::variant(e)),
        };
        let what = if case.poison { "poison" } else { "order" };
        report.detail(format!(
            "{} {what}: headers {} B, header frame {} B ({}): publish {publish} in {} s; {outcome}",
            case.id,
            case.pad,
            case.header_frame(),
            if case.fits() { "fits" } else { "too large" },
            secs(attempt.took)
        ));
        let typed_refusal = matches!(
            &attempt.sent,
            Sent::Failed(PublishError::HeadersTooLarge { .. })
        );
        if !case.fits() && !typed_refusal {
            report.problem(format!(
                "{} ({} B of headers, too large for one frame) was not refused with `HeadersTooLarge` at publish: {publish}",
                case.id, case.pad
            ));
        }
        if case.fits() && !attempt.confirmed() {
            report.problem(format!(
                "{} ({} B of headers, fits in one frame) was not accepted: {publish}",
                case.id, case.pad
            ));
        }
    }
}

/// Samples this process's connections to the broker every 20 ms until `stop` is set;
/// returns every local port seen.
fn watch_connections(port: u16) -> (Arc<Mutex<BTreeSet<u16>>>, Arc<AtomicBool>) {
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (s, st) = (seen.clone(), stop.clone());
    tokio::spawn(async move {
        while !st.load(Ordering::SeqCst) {
            let now = probe::broker_connections(port);
            s.lock().unwrap_or_else(|p| p.into_inner()).extend(now);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    (seen, stop)
}
