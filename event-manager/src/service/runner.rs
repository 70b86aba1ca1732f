//! Running a service: start, the consume loop, the periodic topology refresh, shutdown.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use super::dispatch::handle;
use super::health::{HealthProbe, Status};
use super::subscriptions;
use super::{Route, Service};
use crate::error::{ConsumeError, Entity, TopologyError};
use crate::registry;
use crate::telemetry::metrics::{InFlight, ProcessMetrics};
use crate::topology::ServiceTopology;
use crate::transport::Subscription;

/// How long a shutdown waits for the broker to confirm the cancel of the subscription, at
/// most (and never longer than the grace period). Under a memory alarm RabbitMQ blocks the
/// connection and the cancel never leaves; the subscription is then closed by dropping it.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a service tries to consume anew after its subscription ended by itself.
const RESUBSCRIBE_ATTEMPTS: u32 = 5;
/// The pause between two of those tries.
const RESUBSCRIBE_PAUSE: Duration = Duration::from_secs(1);

/// The most deliveries the consume loop takes from its subscription in one go.
const BATCH: usize = 64;

/// How long one re-declaration of the topology may take before it is abandoned (and logged).
const REDECLARE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every message task of one service shares.
pub(super) struct Shared {
    pub(super) topology: ServiceTopology,
    pub(super) routes: BTreeMap<&'static str, Route>,
    pub(super) retry: super::RetryPolicy,
    pub(super) max_body_bytes: usize,
    /// Becomes `true` once the service stops taking messages (shutdown, or the subscription
    /// ended): a message held because it cannot be moved then goes back to the queue.
    pub(super) closing: watch::Receiver<bool>,
    /// One re-declaration of the topology at a time.
    redeclaring: tokio::sync::Mutex<()>,
    /// The metric handles per routing key with a callback.
    metrics: BTreeMap<&'static str, Arc<ProcessMetrics>>,
    /// Deliveries taken and not settled yet.
    pub(super) in_flight: InFlight,
    /// What [`HealthProbe`] reports.
    pub(super) status: Arc<Status>,
}

impl Shared {
    /// The metric handles of a delivery with routing key `key`; registered on the spot for a
    /// key without a callback (it is dead-lettered: a rare path).
    pub(super) fn metrics(&self, key: &str) -> Arc<ProcessMetrics> {
        match self.metrics.get(key) {
            Some(found) => found.clone(),
            None => Arc::new(ProcessMetrics::new(key, self.topology.queue())),
        }
    }

    /// Declares the service's topology again (a forward found a queue missing, or the
    /// periodic refresh), within [`REDECLARE_TIMEOUT`].
    pub(super) async fn redeclare(&self) -> Result<(), TopologyError> {
        let declare = async {
            let _one_at_a_time = self.redeclaring.lock().await;
            self.topology.declare().await
        };
        tokio::time::timeout(REDECLARE_TIMEOUT, declare)
            .await
            .unwrap_or_else(|_| {
                Err(TopologyError::Connection {
                    entity: Entity::ServiceTopology {
                        queue: self.topology.queue().to_owned(),
                    },
                    detail: format!("not declared within {REDECLARE_TIMEOUT:?}"),
                    source: None,
                })
            })
    }
}

/// The limits of one consume loop.
struct Limits {
    concurrency: usize,
    prefetch: u16,
    grace: Duration,
    topology_refresh: Duration,
}

/// A started service. Dropping it without [`RunningService::shutdown`] stops the consume loop
/// abruptly; unsettled messages then go back to the queue.
pub struct RunningService {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), ConsumeError>>,
    queue: String,
    probe: HealthProbe,
}

impl std::fmt::Debug for RunningService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningService")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl RunningService {
    /// A handle on this service's health (connected, consuming, last error, last delivery),
    /// for a health endpoint: cheap to clone and usable from another task.
    ///
    /// ```
    /// # use event_manager::{Bus, Event, Exchange};
    /// # use schemars::JsonSchema;
    /// # use serde::{Deserialize, Serialize};
    /// # pub const SHOP: Exchange = Exchange::topic("shop_health_doc");
    /// # #[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Event)]
    /// # #[event(exchange = SHOP, version = "1.0.0", events(placed))]
    /// # pub struct Cart { pub id: u64 }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bus = Bus::in_memory();
    /// let mut service = bus.service("carts");
    /// service.on(Cart::PLACED, |_: Cart, _| async { Ok(()) });
    /// let running = service.start().await?;
    /// let probe = running.health_probe();
    /// assert!(probe.health().is_healthy());
    /// running.shutdown().await?;
    /// let health = probe.health();
    /// assert!(!health.consuming && !health.is_healthy());
    /// # Ok(())
    /// # }
    /// ```
    pub fn health_probe(&self) -> HealthProbe {
        self.probe.clone()
    }

    /// This service's health now; see [`RunningService::health_probe`].
    pub fn health(&self) -> super::Health {
        self.probe.health()
    }

    /// Stops taking messages and returns within the grace period of the service
    /// ([`Service::shutdown_grace`]): the cancel of the subscription and the running callbacks
    /// share it. Callbacks that finish in time are settled; whatever is unfinished then is
    /// dropped unsettled, and the broker delivers it again.
    pub async fn shutdown(self) -> Result<(), ConsumeError> {
        let _ = self.stop.send(true);
        self.stopped().await
    }

    /// Runs until `shutdown` resolves, then shuts down gracefully; returns early with an
    /// error if the subscription ends by itself. [`Service::run_until`] for a service started
    /// with [`Service::start`], e.g. to take its [`RunningService::health_probe`] first.
    pub async fn run_until(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ConsumeError> {
        tokio::select! {
            () = shutdown => self.shutdown().await,
            result = &mut self.task => flatten(&self.queue, result),
        }
    }

    /// Waits until the service stops by itself (its subscription ended for good).
    pub async fn stopped(self) -> Result<(), ConsumeError> {
        let result = self.task.await;
        flatten(&self.queue, result)
    }
}

fn flatten(
    queue: &str,
    result: Result<Result<(), ConsumeError>, tokio::task::JoinError>,
) -> Result<(), ConsumeError> {
    result.unwrap_or_else(|e| {
        Err(ConsumeError::Connection {
            queue: queue.to_owned(),
            detail: format!("the consume loop stopped abnormally: {e}"),
            source: None,
        })
    })
}

impl Service {
    /// Declares the topology and consumes until `shutdown` resolves, then shuts down
    /// gracefully. Returns early with an error if the subscription ends by itself.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ConsumeError> {
        self.start().await?.run_until(shutdown).await
    }

    /// Declares the queue, its bindings, wait and dead-letter queues, and starts consuming.
    pub async fn start(self) -> Result<RunningService, ConsumeError> {
        registry::validate()?;
        let topology = self.topology();
        if self.routes.is_empty() {
            return Err(ConsumeError::Config {
                queue: topology.queue().to_owned(),
                reason: "no callback is registered; add one with Service::on".into(),
            });
        }
        // Checked before anything is declared: a wait queue's name is the longest, and only
        // its declaration would fail otherwise, after the service queue's.
        let specs = topology.queue_specs();
        if let Some(long) = specs
            .iter()
            .find(|spec| spec.name.len() > crate::message::SHORT_STRING_MAX)
        {
            return Err(ConsumeError::Config {
                queue: topology.queue().to_owned(),
                reason: format!(
                    "its queue `{}` would be named with {} bytes, and AMQP allows at most 255: \
                     use a shorter service name or namespace",
                    long.name,
                    long.name.len()
                ),
            });
        }
        topology.declare().await?;
        let queue = topology.queue().to_owned();
        let subscription = subscriptions::subscribe(&topology, self.prefetch).await?;
        let (closing, closing_rx) = watch::channel(false);
        let metrics = self
            .routes
            .keys()
            .map(|&key| (key, Arc::new(ProcessMetrics::new(key, &queue))))
            .collect();
        let status = Arc::new(Status::default());
        status.set_consuming(true);
        let probe = HealthProbe {
            queue: queue.clone(),
            status: status.clone(),
            transport: topology.bus().transport().clone(),
        };
        let shared = Arc::new(Shared {
            in_flight: InFlight::new(&queue),
            topology,
            routes: self.routes,
            retry: self.retry,
            max_body_bytes: self.max_body_bytes,
            closing: closing_rx,
            redeclaring: tokio::sync::Mutex::new(()),
            metrics,
            status,
        });
        let limits = Limits {
            concurrency: self.concurrency,
            prefetch: self.prefetch,
            grace: self.shutdown_grace,
            topology_refresh: self.topology_refresh,
        };
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(consume_loop(shared, subscription, stopped, closing, limits));
        Ok(RunningService {
            stop,
            task,
            queue,
            probe,
        })
    }
}

/// Pulls deliveries and handles up to `concurrency` of them at once. The callbacks run as
/// futures of this task (no task per message): cheap, and a panic is caught per message. The
/// periodic topology refresh runs here too, beside the deliveries, never blocking them; so do
/// the cancel of a subscription that ended by itself and the attempts to consume anew.
async fn consume_loop(
    shared: Arc<Shared>,
    subscription: Box<dyn Subscription>,
    mut stop: watch::Receiver<bool>,
    closing: watch::Sender<bool>,
    limits: Limits,
) -> Result<(), ConsumeError> {
    let _reports_the_end = ReportsTheEnd(shared.status.clone());
    let mut in_flight = FuturesUnordered::new();
    let mut spare = None;
    let mut check: Option<BoxFuture<'static, ()>> = None;
    // `None` while consuming anew (`resubscribing`).
    let mut subscription = Some(subscription);
    let mut resubscribing: Option<BoxFuture<'static, Result<Box<dyn Subscription>, String>>> = None;
    // Ended subscriptions being cancelled, then kept: deliveries in flight still settle on
    // their channels.
    let mut cancelling = FuturesUnordered::new();
    let mut retired: Vec<Box<dyn Subscription>> = Vec::new();
    let mut failure = None;
    let mut ticker = refresh_ticker(limits.topology_refresh);
    let mut batch = Vec::with_capacity(BATCH.min(limits.concurrency));
    let ended = {
        let stopped = stop.wait_for(|s| *s);
        tokio::pin!(stopped);
        loop {
            let room = limits
                .concurrency
                .saturating_sub(in_flight.len())
                .min(BATCH);
            let ended = tokio::select! {
                biased;
                _ = &mut stopped => break false,
                Some(()) = in_flight.next(), if !in_flight.is_empty() => continue,
                Some(old) = cancelling.next(), if !cancelling.is_empty() => {
                    retired.push(old);
                    continue;
                }
                fresh = async { resubscribing.as_mut().expect("guarded by is_some").await },
                    if resubscribing.is_some() => {
                    resubscribing = None;
                    match fresh {
                        Ok(fresh) => {
                            shared.status.set_consuming(true);
                            subscription = Some(fresh);
                            continue;
                        }
                        Err(reason) => {
                            failure = Some(reason);
                            break true;
                        }
                    }
                }
                () = async { check.as_mut().expect("guarded by is_some").await }, if check.is_some() => {
                    check = None;
                    continue;
                }
                _ = ticker.tick(), if check.is_none() => {
                    check = Some(topology_refresh(shared.clone()));
                    continue;
                }
                ended = std::future::poll_fn(|cx| {
                    let current = subscription.as_deref_mut().expect("guarded by is_some");
                    take_batch(current, cx, &mut batch, room)
                }), if room > 0 && subscription.is_some() => ended,
            };
            for incoming in batch.drain(..) {
                // Most callbacks finish without waiting: run the message to its first pause
                // here and keep only unfinished ones in the set. The box of a message that
                // finished holds the next one.
                let mut message = match spare.take() {
                    Some(mut done) => {
                        Pin::set(&mut done, handle(&shared, incoming));
                        done
                    }
                    None => Box::pin(handle(&shared, incoming)),
                };
                if futures_util::poll!(message.as_mut()).is_pending() {
                    in_flight.push(message);
                } else {
                    spare = Some(message);
                }
            }
            if ended && let Some(old) = subscription.take() {
                // The broker cancelled a consumer (its queue was deleted) or the connection
                // is given up: cancel what is left of the subscription (the consumer of the
                // other queue would go on taking messages nobody reads), declare the
                // topology again and consume anew, or fail the run.
                shared.status.set_consuming(false);
                let reason = old.end_reason();
                cancelling.push(cancel_ended(old));
                resubscribing = Some(Box::pin(resubscribe(
                    shared.clone(),
                    reason,
                    limits.prefetch,
                )));
            }
        }
    };
    drop(check);
    drop(resubscribing);
    shared.status.set_consuming(false);
    if let Some(reason) = &failure {
        shared.status.error(reason.clone());
    }
    let _ = closing.send(true);
    let ended_ones = Retired {
        cancelling,
        retired,
    };
    wind_down(&shared, subscription, in_flight, ended_ones, limits.grace).await;
    // A stop asked for after the failure (a signal during the wind-down) does not hide it.
    if ended {
        return Err(ConsumeError::Connection {
            queue: shared.topology.queue().to_owned(),
            detail: failure.unwrap_or_else(|| {
                "the subscription ended (queue deleted or connection lost for good)".into()
            }),
            source: None,
        });
    }
    Ok(())
}

/// Marks the service as not consuming when the consume loop ends, a panic included (the
/// health probe would otherwise go on reporting a dead loop as consuming).
struct ReportsTheEnd(Arc<Status>);

impl Drop for ReportsTheEnd {
    fn drop(&mut self) {
        self.0.set_consuming(false);
        if std::thread::panicking() {
            self.0
                .error("the consume loop panicked; the service stopped consuming");
        }
    }
}

/// The subscriptions that ended by themselves: kept while deliveries taken from them are in
/// flight, since those settle on their channels.
struct Retired {
    /// Being cancelled ([`cancel_ended`]).
    cancelling: FuturesUnordered<BoxFuture<'static, Box<dyn Subscription>>>,
    /// Cancelled.
    retired: Vec<Box<dyn Subscription>>,
}

/// Cancels a subscription that ended by itself (what is left of it: the consumer of the
/// other queue), within [`CANCEL_TIMEOUT`], and hands it back to be kept while deliveries
/// taken from it are in flight.
fn cancel_ended(mut old: Box<dyn Subscription>) -> BoxFuture<'static, Box<dyn Subscription>> {
    Box::pin(async move {
        if tokio::time::timeout(CANCEL_TIMEOUT, old.cancel())
            .await
            .is_err()
        {
            tracing::warn!("cancelling an ended subscription got no answer in time");
        }
        old
    })
}

/// Takes the deliveries ready now, at most `room` of them, into `batch`: the consume loop
/// looks at its shutdown signal and refresh timer once per batch, not once per message.
/// Ready with `true` once the subscription ended (after what it delivered before), pending
/// while nothing is ready.
fn take_batch(
    subscription: &mut dyn Subscription,
    cx: &mut std::task::Context<'_>,
    batch: &mut Vec<crate::transport::Incoming>,
    room: usize,
) -> std::task::Poll<bool> {
    use std::task::Poll;
    while batch.len() < room {
        match subscription.poll_next(cx) {
            Poll::Ready(Some(incoming)) => batch.push(incoming),
            Poll::Ready(None) => return Poll::Ready(true),
            Poll::Pending => break,
        }
    }
    if batch.is_empty() {
        Poll::Pending
    } else {
        Poll::Ready(false)
    }
}

/// After the subscription ended by itself: declares the topology again and subscribes anew,
/// a few times a second apart, or says why it cannot.
async fn resubscribe(
    shared: Arc<Shared>,
    ended: Option<String>,
    prefetch: u16,
) -> Result<Box<dyn Subscription>, String> {
    let queue = shared.topology.queue();
    let ended = ended.unwrap_or_else(|| "the subscription ended".to_owned());
    tracing::warn!(%queue, reason = %ended, "consuming stopped; declaring the topology again and consuming anew");
    let mut last = ended.clone();
    for attempt in 1..=RESUBSCRIBE_ATTEMPTS {
        let subscribed = async {
            shared.redeclare().await?;
            subscriptions::subscribe(&shared.topology, prefetch).await
        };
        match subscribed.await {
            Ok(fresh) => {
                tracing::info!(%queue, attempt, "consuming again");
                return Ok(fresh);
            }
            Err(error) => {
                tracing::warn!(%queue, attempt, %error, "consuming anew failed");
                shared
                    .status
                    .error(format!("consuming anew failed: {error}"));
                last = error.to_string();
            }
        }
        tokio::time::sleep(RESUBSCRIBE_PAUSE).await;
    }
    Err(format!(
        "{ended}; consuming anew failed {RESUBSCRIBE_ATTEMPTS} times, last: {last}"
    ))
}

/// The timer of the periodic topology refresh, first firing one `every` from now.
fn refresh_ticker(every: Duration) -> tokio::time::Interval {
    // At most a year apart: a longer period only risks overflowing the timer.
    let every = every.min(crate::LONGEST_WAIT);
    let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker
}

/// Cancels the subscription and lets the running messages finish, both within `grace`: the
/// cancel has its own, shorter deadline ([`CANCEL_TIMEOUT`]) and the messages keep running
/// meanwhile. What is unfinished at the end is dropped unsettled, with the subscriptions: the
/// broker delivers it again. The subscriptions that ended earlier finish their cancels
/// meanwhile, and are closed last.
async fn wind_down<F: std::future::Future<Output = ()>>(
    shared: &Shared,
    subscription: Option<Box<dyn Subscription>>,
    mut in_flight: FuturesUnordered<F>,
    mut ended: Retired,
    grace: Duration,
) {
    let queue = shared.topology.queue();
    let deadline = Instant::now() + grace;
    let cancel_deadline = Instant::now() + grace.min(CANCEL_TIMEOUT);
    let cancel = async {
        let mut subscription = subscription?;
        if tokio::time::timeout_at(cancel_deadline, subscription.cancel())
            .await
            .is_err()
        {
            tracing::warn!(%queue, "the broker did not confirm the cancel in time; closing the subscription");
        }
        Some(subscription)
    };
    let drain = tokio::time::timeout_at(deadline, async {
        while in_flight.next().await.is_some() {}
    });
    let cancelled = tokio::time::timeout_at(cancel_deadline, async {
        while let Some(old) = ended.cancelling.next().await {
            ended.retired.push(old);
        }
    });
    let (subscription, drained, _) = tokio::join!(cancel, drain, cancelled);
    if drained.is_err() {
        tracing::warn!(
            %queue,
            remaining = in_flight.len(),
            "shutdown grace period over; unfinished messages go back to the queue"
        );
    }
    // Unsettled deliveries go back to the queue when dropped with the subscription.
    drop(in_flight);
    drop(subscription);
    drop(ended);
}

/// One periodic re-declaration of the topology, with a deadline; a failure is logged only.
fn topology_refresh(shared: Arc<Shared>) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let queue = shared.topology.queue();
        match shared.redeclare().await {
            Ok(()) => tracing::trace!(%queue, "topology declared again"),
            Err(error) => {
                tracing::warn!(%queue, %error, "declaring the topology again failed");
                shared
                    .status
                    .error(format!("declaring the topology again failed: {error}"));
            }
        }
    })
}
