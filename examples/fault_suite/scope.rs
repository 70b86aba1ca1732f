//! One scenario's world: its unique names, its buses, the services and messages it uses, how
//! it waits for the broker to settle, and the cleanup that runs whatever happened.

use event_manager::HandlerError;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_manager::message::{Bytes, Message, Properties};
use event_manager::{Bus, Delivery, PublishError, PublishOptions, RetryPolicy, Service};
use event_manager_examples::{ORDER, Order};
use futures_util::stream::FuturesUnordered;
use futures_util::{StreamExt, stream};

use crate::broker::{self, Broker};
use crate::compat;
use crate::report::{Ctx, Ids, Report, Res, Tally};

/// The confirm timeout of the suite's buses and child services.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);
/// How much longer than the confirm timeout a publish may take before it counts as hung.
pub const PUBLISH_SLACK: Duration = Duration::from_secs(3);
/// How long a publish may take when no fault is in the way.
pub const CALM_PUBLISH_LIMIT: Duration = Duration::from_secs(30);
/// The routing key the services are bound to (`order.*.submit`) and poison is sent with.
pub const SUBMIT_KEY: &str = "order.v1.submit";

/// How one publish ended.
#[derive(Debug)]
pub enum Sent {
    Confirmed,
    Failed(PublishError),
    /// No answer within the scenario's limit.
    Hung,
}

/// One publish: its id, outcome, when it started (since the scope began) and how long it took.
#[derive(Debug)]
pub struct Attempt {
    pub id: String,
    pub sent: Sent,
    pub at: Duration,
    pub took: Duration,
}

impl Attempt {
    pub fn confirmed(&self) -> bool {
        matches!(self.sent, Sent::Confirmed)
    }

    /// The error's variant name (`Timeout`, `Unroutable`, …), `Ok` or `Hung`.
    pub fn kind(&self) -> String {
        match &self.sent {
            Sent::Confirmed => "Ok".into(),
            Sent::Hung => "Hung".into(),
            Sent::Failed(e) => variant(e),
        }
    }
}

/// The variant name of an error, from its `Debug` form.
pub fn variant(error: &impl std::fmt::Debug) -> String {
    let text = format!("{error:?}");
    let end = text
        .find(|c: char| !c.is_alphanumeric() && c != '_')
        .unwrap_or(text.len());
    text[..end].to_owned()
}

/// Counts of each [`Attempt::kind`], as `Kind:N/Kind:N`.
pub fn kinds<'a>(attempts: impl IntoIterator<Item = &'a Attempt>) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for a in attempts {
        *counts.entry(a.kind()).or_insert(0u64) += 1;
    }
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{k}:{n}")).collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join("/")
    }
}

/// Adds a problem to `report` for the `attempts` that were neither confirmed nor failed with
/// the error the README promises for the fault (`expected`, as `promised` matches it): a
/// different error, or no answer, is a broken promise even when nothing is lost.
pub fn only_promised_failures<'a>(
    report: &mut Report,
    attempts: impl IntoIterator<Item = &'a Attempt>,
    expected: &str,
    promised: impl Fn(&PublishError) -> bool,
) {
    let otherwise: Vec<&Attempt> = attempts
        .into_iter()
        .filter(|a| match &a.sent {
            Sent::Confirmed => false,
            Sent::Failed(e) => !promised(e),
            Sent::Hung => true,
        })
        .collect();
    if !otherwise.is_empty() {
        report.problem(format!(
            "{} publish(es) ended otherwise than confirmed or with `{expected}`: {}",
            otherwise.len(),
            kinds(otherwise.iter().copied())
        ));
    }
}

/// A scenario's names, buses and cleanup.
pub struct Scope {
    /// `fs_<scenario>_<pid>`: the namespace of its buses and the base of its queue names,
    /// so everything it declares contains it.
    pub token: String,
    pub url: String,
    pub broker: Arc<Broker>,
    /// Where child services write their output and handled logs.
    pub dir: PathBuf,
    started: Instant,
    buses: Mutex<Vec<Bus>>,
    /// Service queues outside the token (a library without namespaced queues), deleted with
    /// their wait and dead-letter queues.
    foreign_queues: Mutex<Vec<String>>,
}

impl Scope {
    pub fn new(scenario: &'static str, url: &str, broker: Arc<Broker>, dir: PathBuf) -> Self {
        Self {
            token: format!("fs_{}_{}", scenario.replace('-', "_"), std::process::id()),
            url: url.to_owned(),
            broker,
            dir,
            started: Instant::now(),
            buses: Mutex::new(Vec::new()),
            foreign_queues: Mutex::new(Vec::new()),
        }
    }

    /// Time since the scenario started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// A new connection in the scenario's namespace, publishing with [`CONFIRM_TIMEOUT`].
    pub async fn bus(&self) -> Res<Bus> {
        let bus = tokio::time::timeout(
            Duration::from_secs(30),
            compat::connect(&self.url, CONFIRM_TIMEOUT),
        )
        .await
        .ctx("connecting")?
        .ctx("connecting")?
        .with_namespace(self.token.clone());
        self.buses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(bus.clone());
        Ok(bus)
    }

    /// The scenario's service (queue named after the token) bound to `order.*.submit`, with
    /// fast retries (3 attempts, 200 ms then 400 ms apart). No callback yet.
    pub fn service(&self, bus: &Bus) -> Service {
        let mut service = bus.service(self.token.clone());
        service
            .bind(ORDER, "order.*.submit")
            .expect("a valid pattern");
        service.retry(fast_retry());
        service
    }

    /// The broker-side name of the scenario's service queue.
    pub fn queue(&self, bus: &Bus) -> String {
        compat::queue_name(bus, &self.token)
    }

    /// The broker-side name of the scenario's dead-letter queue.
    pub fn dead_letter_queue(&self, bus: &Bus) -> String {
        compat::dead_letter_queue(bus, &self.token)
    }

    /// Remembers a service queue that does not contain the token, for cleanup.
    pub fn adopt_foreign_queue(&self, queue: &str) {
        if !queue.contains(&self.token) {
            self.foreign_queues
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(queue.to_owned());
        }
    }

    /// Every name that marks a queue as this scenario's.
    pub fn needles(&self) -> Vec<String> {
        let mut needles = vec![self.token.clone()];
        needles.extend(
            self.foreign_queues
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned(),
        );
        needles
    }

    /// Runs one publish with a deadline and books it in `tally`.
    pub async fn attempt(
        &self,
        tally: &Tally,
        id: String,
        limit: Duration,
        publish: impl Future<Output = Result<(), PublishError>>,
    ) -> Attempt {
        tally.published.insert(id.clone());
        let at = self.elapsed();
        let began = Instant::now();
        let sent = match tokio::time::timeout(limit, publish).await {
            Ok(Ok(())) => {
                tally.confirmed.insert(id.clone());
                Sent::Confirmed
            }
            Ok(Err(e)) => Sent::Failed(e),
            Err(_) => Sent::Hung,
        };
        Attempt {
            id,
            sent,
            at,
            took: began.elapsed(),
        }
    }

    /// Publishes `n` messages, `in_flight` at a time; `make(i)` gives the id and the publish.
    pub async fn publish_many<F, Fut>(
        &self,
        tally: &Tally,
        n: u64,
        in_flight: usize,
        limit: Duration,
        make: F,
    ) -> Vec<Attempt>
    where
        F: Fn(u64) -> (String, Fut),
        Fut: Future<Output = Result<(), PublishError>>,
    {
        stream::iter(0..n)
            .map(|i| {
                let (id, publish) = make(i);
                self.attempt(tally, id, limit, publish)
            })
            .buffer_unordered(in_flight.max(1))
            .collect()
            .await
    }

    /// Starts a publish every `period` until `stop` is set, and returns every attempt once
    /// all have ended; `make(i)` gives the id and the publish.
    pub async fn publish_paced<F, Fut>(
        &self,
        tally: &Tally,
        period: Duration,
        stop: &AtomicBool,
        limit: Duration,
        make: F,
    ) -> Vec<Attempt>
    where
        F: Fn(u64) -> (String, Fut),
        Fut: Future<Output = Result<(), PublishError>>,
    {
        let mut pending = FuturesUnordered::new();
        let mut done = Vec::new();
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next = 0;
        loop {
            let stopping = stop.load(Ordering::SeqCst);
            if stopping && pending.is_empty() {
                return done;
            }
            tokio::select! {
                _ = tick.tick(), if !stopping => {
                    let (id, publish) = make(next);
                    next += 1;
                    pending.push(self.attempt(tally, id, limit, publish));
                }
                Some(attempt) = pending.next(), if !pending.is_empty() => done.push(attempt),
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }

    /// Waits until the scenario's queues (dead-letter queues aside) hold no message, ready or
    /// unacknowledged, at two polls in a row, or `limit` passes. Returns what they still hold.
    pub async fn settle(&self, limit: Duration) -> Res<u64> {
        let deadline = Instant::now() + limit;
        let mut empty_polls = 0;
        loop {
            let held: u64 = broker::queues(&self.needles())
                .await?
                .iter()
                .filter(|q| !q.name.ends_with(".dlq"))
                .map(broker::QueueStat::held)
                .sum();
            empty_polls = if held == 0 { empty_polls + 1 } else { 0 };
            if empty_polls >= 2 || Instant::now() >= deadline {
                return Ok(held);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Consumes `queue` (acknowledging), adding `key(message)` of each to `into`, until `into`
    /// holds `until` ids, nothing arrives for `quiet`, or `limit` passes. Returns the number
    /// of messages taken (duplicates included).
    pub async fn drain(&self, bus: &Bus, queue: &str, drain: Drain<'_>) -> Res<u64> {
        let deadline = Instant::now() + drain.limit;
        let mut subscription = event_manager::testing::transport(bus)
            .subscribe(queue, 1000)
            .await
            .ctx(&format!("consuming {queue}"))?;
        // Acknowledgements run side by side with receiving: awaiting each in turn costs a
        // round trip (or an ack batch interval) per message.
        let mut acks = FuturesUnordered::new();
        let mut taken = 0;
        while drain.into.len() < drain.until {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let next = tokio::time::timeout(drain.quiet.min(left), subscription.next());
            tokio::select! {
                Some(_) = acks.next(), if !acks.is_empty() => {}
                got = next => match got {
                    Ok(Some(incoming)) => {
                        if let Some(id) = (drain.key)(&incoming.message) {
                            drain.into.insert(id);
                        }
                        taken += 1;
                        acks.push(incoming.ack());
                    }
                    Ok(None) | Err(_) => break,
                },
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while acks.next().await.is_some() {}
        })
        .await;
        let _ = tokio::time::timeout(Duration::from_secs(5), subscription.cancel()).await;
        Ok(taken)
    }

    /// Restores the broker, closes the scenario's buses and deletes its queues and exchanges.
    /// Returns what could not be done.
    pub async fn cleanup(&self) -> Vec<String> {
        let mut failures = self.broker.restore_async().await;
        let buses = std::mem::take(&mut *self.buses.lock().unwrap_or_else(|p| p.into_inner()));
        for bus in buses {
            let _ = tokio::time::timeout(Duration::from_secs(5), bus.close()).await;
        }
        match tokio::time::timeout(
            Duration::from_secs(30),
            compat::connect(&self.url, CONFIRM_TIMEOUT),
        )
        .await
        {
            Ok(Ok(bus)) => {
                failures.extend(self.delete_everything(&bus).await);
                let _ = tokio::time::timeout(Duration::from_secs(5), bus.close()).await;
            }
            Ok(Err(e)) => failures.push(format!("cleanup: connecting: {e}")),
            Err(_) => failures.push("cleanup: connecting timed out".into()),
        }
        failures
    }

    async fn delete_everything(&self, bus: &Bus) -> Vec<String> {
        let mut failures = Vec::new();
        let limit = Duration::from_secs(10);
        let foreign = self
            .foreign_queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for queue in &foreign {
            let deleting = compat::delete_service(bus, queue);
            if let Err(e) = tokio::time::timeout(limit, deleting).await.ctx("timed out") {
                failures.push(format!("cleanup: queue {queue}: {e}"));
            }
        }
        let (queues, exchanges) = tokio::join!(
            broker::queues(std::slice::from_ref(&self.token)),
            broker::exchanges(&self.token)
        );
        match queues {
            Ok(queues) => {
                for q in queues {
                    let deleting = event_manager::testing::transport(bus).delete_queue(&q.name);
                    match tokio::time::timeout(limit, deleting).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => failures.push(format!("cleanup: {e}")),
                        Err(_) => failures.push(format!("cleanup: deleting {} timed out", q.name)),
                    }
                }
            }
            Err(e) => failures.push(format!("cleanup: {e}")),
        }
        match exchanges {
            Ok(exchanges) => {
                for name in exchanges {
                    let deleting = event_manager::testing::transport(bus).delete_exchange(&name);
                    if let Err(e) = tokio::time::timeout(limit, deleting).await.ctx("timed out") {
                        failures.push(format!("cleanup: exchange {name}: {e}"));
                    }
                }
            }
            Err(e) => failures.push(format!("cleanup: {e}")),
        }
        failures
    }
}

/// Orders published every period by a task of their own until [`Paced::finish`].
pub struct Paced {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Attempt>>,
}

impl Paced {
    /// Starts publishing order `i` with id `<token>-m<i>` on `bus` every `period`, each
    /// publish allowed `limit`.
    pub fn start(
        scope: &Arc<Scope>,
        tally: &Tally,
        bus: &Bus,
        period: Duration,
        limit: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (scope, tally, bus, flag) = (scope.clone(), tally.clone(), bus.clone(), stop.clone());
        let task = tokio::spawn(async move {
            scope
                .publish_paced(&tally, period, &flag, limit, |i| {
                    let id = format!("{}-m{i}", scope.token);
                    let publish = submit(&bus, &id, i);
                    (id, publish)
                })
                .await
        });
        Self { stop, task }
    }

    /// Stops publishing and returns every attempt, sorted by start time, once all ended.
    pub async fn finish(self) -> Res<Vec<Attempt>> {
        self.stop.store(true, Ordering::SeqCst);
        let mut attempts = self.task.await.ctx("the publisher task")?;
        attempts.sort_by_key(|a| a.at);
        Ok(attempts)
    }
}

/// What [`Scope::drain`] collects and when it stops.
pub struct Drain<'a> {
    pub key: fn(&Message) -> Option<String>,
    pub into: &'a Ids,
    pub until: usize,
    pub quiet: Duration,
    pub limit: Duration,
}

impl<'a> Drain<'a> {
    /// Every message, keyed by message id, until nothing arrives for 2 s (at most 60 s).
    pub fn by_message_id(into: &'a Ids) -> Self {
        Self {
            key: message_id,
            into,
            until: usize::MAX,
            quiet: Duration::from_secs(2),
            limit: Duration::from_secs(60),
        }
    }
}

/// The message id of a message.
pub fn message_id(message: &Message) -> Option<String> {
    message.properties.message_id.clone()
}

/// The order id in the body of a message, when it holds an [`Order`].
pub fn order_id(message: &Message) -> Option<String> {
    serde_json::from_slice::<Order>(&message.body)
        .ok()
        .map(|o| o.id.to_string())
}

/// The retry policy of the scenario's services: 3 attempts, 200 ms then 400 ms apart.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy::new(
        3,
        vec![Duration::from_millis(200), Duration::from_millis(400)],
    )
}

/// A callback recording the message id of every order it sees in `handled`.
pub fn record(
    handled: &Ids,
) -> impl Fn(Order, Delivery) -> std::future::Ready<Result<(), HandlerError>> + Send + Sync + 'static
{
    let handled = handled.clone();
    move |_order, delivery| {
        handled.insert(delivery.message_id().unwrap_or_default());
        std::future::ready(Ok(()))
    }
}

/// Publishes order `order` as `order.v1.submit` with message id `id`.
pub fn submit(
    bus: &Bus,
    id: &str,
    order: u64,
) -> impl Future<Output = Result<(), PublishError>> + use<> {
    let bus = bus.clone();
    let options = PublishOptions {
        message_id: Some(id.to_owned()),
        ..PublishOptions::default()
    };
    async move {
        bus.publish_with(Order::SUBMIT, &Order::sample(order), &options)
            .await
            .map(drop)
    }
}

/// An undecodable message with id `id`, routed like an `order.v1.submit`.
pub fn poison(bus: &Bus, id: &str) -> Message {
    Message {
        exchange: bus.topology().exchange_name(ORDER).into(),
        routing_key: SUBMIT_KEY.into(),
        body: Bytes::from_static(b"not json"),
        properties: Properties {
            content_type: Some("application/json".into()),
            message_id: Some(id.to_owned()),
            persistent: true,
            ..Properties::default()
        },
    }
}

/// Publishes `message` through the raw transport.
pub fn publish_raw(
    bus: &Bus,
    message: Message,
) -> impl Future<Output = Result<(), PublishError>> + use<> {
    let bus = bus.clone();
    async move {
        event_manager::testing::transport(&bus)
            .publish(message)
            .await
    }
}

/// Waits until `queue` holds at least `n` ready messages (a missing queue holds none), at
/// most `limit`; how long it took, if it did.
pub async fn wait_for_len(bus: &Bus, queue: &str, n: u64, limit: Duration) -> Option<Duration> {
    let began = Instant::now();
    while began.elapsed() < limit {
        let len = tokio::time::timeout(
            Duration::from_secs(5),
            event_manager::testing::transport(bus).queue_len(queue),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0);
        if len >= n {
            return Some(began.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Waits until `queue` has `n` consumers, at most `limit`.
pub async fn wait_for_consumers(queue: &str, n: u64, limit: Duration) -> Res<()> {
    let began = Instant::now();
    loop {
        let consumers = broker::queue(queue).await?.map_or(0, |q| q.consumers);
        if consumers >= n {
            return Ok(());
        }
        if began.elapsed() >= limit {
            return Err(format!(
                "{queue} has {consumers} consumer(s), not {n}, {limit:?} after the services started"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Shuts `running` down within `limit`; the error says how it ended otherwise (a run that had
/// already failed reports its error here).
pub async fn stop_service(running: event_manager::RunningService, limit: Duration) -> Res<()> {
    match tokio::time::timeout(limit, running.shutdown()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("the service's run failed: {e}")),
        Err(_) => Err(format!("the service did not shut down within {limit:?}")),
    }
}

/// Waits until `done()` holds, polling every 100 ms, at most `limit`. True when it held.
pub async fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}
