//! Running a service: topology, the consume loop, per-message outcome, shutdown.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::StreamExt;
use futures_util::future::try_join_all;
use futures_util::stream::FuturesUnordered;
use tokio::sync::watch;
use tracing::Instrument;

use super::handler::Delivery;
use super::retry::{dead_letter_queue_name, wait_queue_name};
use super::{Route, Service};
use crate::bus::Bus;
use crate::envelope;
use crate::error::ConsumeError;
use crate::message::Message;
use crate::registry;
use crate::routing::BindingPattern;
use crate::transport::{DeadLetterTarget, Incoming, QueueSpec, Subscription};

/// What every message task of one service shares.
struct Shared {
    bus: Bus,
    queue: String,
    dead_letter_queue: String,
    routes: BTreeMap<&'static str, Route>,
    retry: super::RetryPolicy,
    max_body_bytes: usize,
}

/// A started service. Dropping it without [`RunningService::shutdown`] stops the consume loop
/// abruptly; unsettled messages then go back to the queue.
pub struct RunningService {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), ConsumeError>>,
    queue: String,
}

impl std::fmt::Debug for RunningService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningService")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl RunningService {
    /// Stops taking messages, lets running callbacks finish (within the grace period), then
    /// closes the subscription.
    pub async fn shutdown(self) -> Result<(), ConsumeError> {
        let _ = self.stop.send(true);
        self.stopped().await
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
        let mut running = self.start().await?;
        tokio::select! {
            () = shutdown => running.shutdown().await,
            result = &mut running.task => flatten(&running.queue, result),
        }
    }

    /// Declares the queue, its bindings, wait and dead-letter queues, and starts consuming.
    pub async fn start(self) -> Result<RunningService, ConsumeError> {
        registry::validate()?;
        if self.routes.is_empty() {
            return Err(ConsumeError::Config {
                queue: self.queue,
                reason: "no callback is registered; add one with Service::on".into(),
            });
        }
        self.declare().await?;
        let transport = self.bus.transport().clone();
        let subscription = transport.subscribe(&self.queue, self.prefetch).await?;
        let shared = Arc::new(Shared {
            bus: self.bus.clone(),
            dead_letter_queue: dead_letter_queue_name(&self.queue),
            queue: self.queue.clone(),
            routes: self.routes,
            retry: self.retry,
            max_body_bytes: self.max_body_bytes,
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(consume_loop(
            shared,
            subscription,
            stopped,
            self.concurrency,
            self.shutdown_grace,
        ));
        Ok(RunningService {
            stop,
            task,
            queue: self.queue,
        })
    }

    /// Every binding to declare: the explicit ones, and an exact one for each callback no
    /// explicit pattern covers.
    fn all_bindings(&self) -> Vec<(crate::Exchange, BindingPattern)> {
        let mut all = self.bindings.clone();
        for (key, route) in &self.routes {
            let covered = self
                .bindings
                .iter()
                .any(|(e, p)| *e == route.exchange && p.matches(key));
            if !covered && let Ok(key) = crate::RoutingKey::parse(key) {
                all.push((route.exchange, BindingPattern::exact(&key)));
            }
        }
        all
    }

    /// Declares the service's queue, bindings, wait and dead-letter queues without consuming.
    /// A publisher can call it for the services it knows about, so that events published
    /// before those services first start are kept in their queues instead of being
    /// unroutable. Declaring is idempotent.
    pub async fn declare(&self) -> Result<(), ConsumeError> {
        let transport = self.bus.transport();
        let mut queue = QueueSpec::durable(&self.queue);
        queue.kind = self.queue_kind;
        transport.declare_queue(&queue).await?;
        transport
            .declare_queue(&QueueSpec::durable(dead_letter_queue_name(&self.queue)))
            .await?;
        for delay in self.retry.distinct_delays() {
            let mut wait = QueueSpec::durable(wait_queue_name(&self.queue, delay));
            wait.message_ttl = Some(delay);
            wait.dead_letter = Some(DeadLetterTarget {
                exchange: String::new(),
                routing_key: Some(self.queue.clone()),
            });
            transport.declare_queue(&wait).await?;
        }
        for (exchange, pattern) in self.all_bindings() {
            self.bus.declare_exchange(exchange).await?;
            transport
                .bind(&self.queue, &self.bus.exchange_name(exchange), &pattern)
                .await?;
        }
        Ok(())
    }
}

/// Pulls deliveries and handles up to `concurrency` of them at once. The callbacks run as
/// futures of this task (no task per message): cheap, and a panic is caught per message.
async fn consume_loop(
    shared: Arc<Shared>,
    mut subscription: Box<dyn Subscription>,
    mut stop: watch::Receiver<bool>,
    concurrency: usize,
    grace: Duration,
) -> Result<(), ConsumeError> {
    let mut in_flight = FuturesUnordered::new();
    let mut spare = None;
    let mut ended = false;
    {
        let stopped = stop.wait_for(|s| *s);
        tokio::pin!(stopped);
        loop {
            let next = tokio::select! {
                biased;
                _ = &mut stopped => break,
                Some(()) = in_flight.next(), if !in_flight.is_empty() => continue,
                next = std::future::poll_fn(|cx| subscription.poll_next(cx)),
                    if in_flight.len() < concurrency => next,
            };
            let Some(incoming) = next else {
                ended = true;
                break;
            };
            // Most callbacks finish without waiting: run the message to its first pause here
            // and keep only unfinished ones in the set. The box of a message that finished
            // holds the next one.
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
    }
    subscription.cancel().await;
    let drained =
        tokio::time::timeout(grace, async { while in_flight.next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            queue = %shared.queue,
            remaining = in_flight.len(),
            "shutdown grace period over; unfinished messages go back to the queue"
        );
    }
    // Unsettled deliveries go back to the queue when dropped with the subscription.
    drop(in_flight);
    drop(subscription);
    if ended && !*stop.borrow() {
        return Err(ConsumeError::Connection {
            queue: shared.queue.clone(),
            detail: "the subscription ended (queue deleted or connection lost for good)".into(),
        });
    }
    Ok(())
}

/// How one message ends.
enum Outcome {
    Handled,
    Retry(String),
    DeadLetter(String),
}

async fn handle(shared: &Shared, incoming: Incoming) {
    let message = incoming.message.clone();
    let span = tracing::debug_span!(
        "handle",
        queue = %shared.queue,
        routing_key = %message.routing_key,
        message_id = message.properties.message_id.as_deref().unwrap_or("")
    );
    async move {
        let (outcome, attempts) = run_callbacks(shared, &message, incoming.redelivered).await;
        settle(shared, incoming, &message, outcome, attempts).await;
    }
    .instrument(span)
    .await;
}

/// Runs the callbacks for `message`; returns the outcome and the attempt number.
async fn run_callbacks(
    shared: &Shared,
    message: &Arc<Message>,
    redelivered: bool,
) -> (Outcome, u32) {
    if message.body.len() > shared.max_body_bytes {
        let reason = format!(
            "body of {} bytes exceeds the limit of {} bytes",
            message.body.len(),
            shared.max_body_bytes
        );
        return (Outcome::DeadLetter(reason), 1);
    }
    let received = match envelope::read(message) {
        Ok(r) => r,
        Err(e) => return (Outcome::DeadLetter(e.to_string()), 1),
    };
    let attempt = received.attempts.saturating_add(1);
    if let Some(preferred) = preferred_copy(shared, &received)
        && preferred != received.routing_key
    {
        tracing::debug!(%preferred, "another major of this event is handled instead; skipping this copy");
        return (Outcome::Handled, attempt);
    }
    let Some(route) = shared.routes.get(received.routing_key) else {
        return (
            Outcome::DeadLetter(no_route_reason(shared, received.routing_key)),
            attempt,
        );
    };
    let delivery = Delivery {
        message: message.clone(),
        version: received.version,
        attempt,
        redelivered,
    };
    let result = match route.handlers.as_slice() {
        [only] => match only(&message.body, delivery) {
            Ok(f) => AssertUnwindSafe(f).catch_unwind().await,
            Err(reason) => return (Outcome::DeadLetter(reason), attempt),
        },
        handlers => {
            let mut futures = Vec::with_capacity(handlers.len());
            for handler in handlers {
                match handler(&message.body, delivery.clone()) {
                    Ok(f) => futures.push(f),
                    Err(reason) => return (Outcome::DeadLetter(reason), attempt),
                }
            }
            AssertUnwindSafe(try_join_all(futures).map(|r| r.map(drop)))
                .catch_unwind()
                .await
        }
    };
    let outcome = match result {
        Ok(Ok(())) => Outcome::Handled,
        Ok(Err(e)) if e.is_permanent() => Outcome::DeadLetter(format!("permanent error: {e}")),
        Ok(Err(e)) => Outcome::Retry(e.to_string()),
        Err(panic) => Outcome::Retry(format!("callback panicked: {}", panic_text(&*panic))),
    };
    (outcome, attempt)
}

/// For an event published in several majors at once: the copy this service handles, the one
/// with the highest major among those it has callbacks for.
fn preferred_copy<'m>(shared: &Shared, received: &envelope::Received<'m>) -> Option<&'m str> {
    envelope::copies(received.published_as?)
        .filter(|key| shared.routes.contains_key(key))
        .max_by_key(|key| crate::routing::major_from_key(key))
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

fn no_route_reason(shared: &Shared, key: &str) -> String {
    let words: Vec<&str> = key.split('.').collect();
    if let [exchange, _, event] = words.as_slice() {
        let accepted: Vec<&str> = shared
            .routes
            .keys()
            .copied()
            .filter(|k| {
                let w: Vec<&str> = k.split('.').collect();
                w.len() == 3 && w[0] == *exchange && w[2] == *event
            })
            .collect();
        if !accepted.is_empty() {
            return format!(
                "unsupported version: `{key}` has no callback in this service, which accepts {}",
                accepted.join(", ")
            );
        }
    }
    format!("no callback for routing key `{key}`")
}

async fn settle(
    shared: &Shared,
    incoming: Incoming,
    message: &Message,
    outcome: Outcome,
    attempt: u32,
) {
    let forward = match outcome {
        Outcome::Handled => None,
        Outcome::Retry(reason) => match shared.retry.delay_before(attempt + 1) {
            Some(delay) => {
                tracing::info!(attempt, ?delay, %reason, "callback failed; will retry");
                let wait = wait_queue_name(&shared.queue, delay);
                Some(envelope::to_retry(message, &wait, attempt))
            }
            None => {
                let reason = format!("gave up after {attempt} attempt(s): {reason}");
                tracing::warn!(%reason, "dead-lettering");
                Some(dead_letter(shared, message, attempt, &reason))
            }
        },
        Outcome::DeadLetter(reason) => {
            tracing::warn!(%reason, "dead-lettering");
            Some(dead_letter(shared, message, attempt, &reason))
        }
    };
    if let Some(forward) = forward
        && let Err(source) = shared.bus.transport().publish(forward).await
    {
        let error = ConsumeError::Forward {
            queue: shared.queue.clone(),
            source,
        };
        tracing::error!(%error, "message left for redelivery");
        // Leave it to the broker, not too fast: a failing forward must not become a hot loop.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let _ = incoming.reject(true).await;
        return;
    }
    if let Err(error) = incoming.ack().await {
        tracing::warn!(%error, "ack failed; the broker will deliver the message again");
    }
}

fn dead_letter(shared: &Shared, message: &Message, attempts: u32, reason: &str) -> Message {
    envelope::to_dead_letter(
        message,
        &shared.dead_letter_queue,
        &shared.queue,
        attempts,
        reason,
    )
}
