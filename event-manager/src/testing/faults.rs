//! Faults the harness injects: failed publishes and forwards, a dropped connection, delayed
//! deliveries.

use std::time::Duration;

use super::{Harness, PublishFault};

impl Harness {
    /// Makes the next `n` publishes of events (to a named exchange: what [`Bus::publish`](crate::Bus::publish) and
    /// callbacks publish) fail with `fault`; the messages reach no queue. The services' own
    /// moves to wait and dead-letter queues are not affected: see
    /// [`Harness::fail_next_forwards`]. Calls add up: faults queue behind earlier ones.
    ///
    /// ```standalone_crate
    /// # use event_manager::testing::{Harness, PublishFault, PublishOutcome};
    /// # use event_manager::{Event, Exchange, PublishError};
    /// # use schemars::JsonSchema;
    /// # use serde::{Deserialize, Serialize};
    /// # pub const ORDER: Exchange = Exchange::topic("order");
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Event)]
    /// # #[event(exchange = ORDER, version = "1.0.0", events(submit))]
    /// # pub struct Order { pub id: u64 }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let harness = Harness::new();
    /// let mut billing = harness.bus().service("billing_order");
    /// billing.bind(ORDER, "order.*.submit")?;
    /// billing.declare().await?; // its queue takes the orders
    /// harness.fail_next_publishes(1, PublishFault::Nack);
    /// harness.fail_next_publishes(1, PublishFault::Unroutable);
    /// let bus = harness.bus();
    /// assert!(matches!(Order { id: 1 }.submit(bus).await, Err(PublishError::Nacked { .. })));
    /// assert!(matches!(Order { id: 1 }.submit(bus).await, Err(PublishError::Unroutable { .. })));
    /// Order { id: 1 }.submit(bus).await?; // the faults are used up
    ///
    /// let outcomes: Vec<PublishOutcome> = harness.sent().into_iter().map(|s| s.outcome).collect();
    /// assert_eq!(outcomes, [
    ///     PublishOutcome::Injected(PublishFault::Nack),
    ///     PublishOutcome::Injected(PublishFault::Unroutable),
    ///     PublishOutcome::Routed,
    /// ]);
    /// assert_eq!(harness.published(Order::SUBMIT).len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn fail_next_publishes(&self, n: usize, fault: PublishFault) {
        self.state.fail_next(n, fault, false);
    }

    /// Makes the next `n` moves of messages to wait and dead-letter queues (and replays of
    /// dead letters: every publish to the default exchange) fail with `fault`. A service holds
    /// such a message unacknowledged and tries the move again after 1 s, 2 s, 4 s …; under a
    /// paused clock those pauses pass at once.
    ///
    /// ```standalone_crate
    /// # use std::time::Duration;
    /// # use event_manager::testing::{Harness, PublishFault, PublishOutcome};
    /// # use event_manager::{Event, Exchange, HandlerError};
    /// # use schemars::JsonSchema;
    /// # use serde::{Deserialize, Serialize};
    /// # pub const ORDER: Exchange = Exchange::topic("order");
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Event)]
    /// # #[event(exchange = ORDER, version = "1.0.0", events(submit))]
    /// # pub struct Order { pub id: u64 }
    /// #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let harness = Harness::new();
    /// let mut billing = harness.bus().service("billing_order");
    /// billing.on(Order::SUBMIT, |_: Order, _| async { Err(HandlerError::permanent("no")) });
    /// let running = billing.start().await?;
    /// harness.fail_next_forwards(2, PublishFault::Nack); // a dead-letter queue refusing
    ///
    /// Order { id: 1 }.submit(harness.bus()).await?;
    /// harness.idle(Duration::from_secs(60)).await?; // held, tried again after 1 s and 2 s
    /// assert_eq!(harness.dead_letters("billing_order").await.len(), 1);
    /// let refused = harness
    ///     .sent()
    ///     .iter()
    ///     .filter(|s| s.outcome == PublishOutcome::Injected(PublishFault::Nack))
    ///     .count();
    /// assert_eq!(refused, 2);
    /// running.shutdown().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn fail_next_forwards(&self, n: usize, fault: PublishFault) {
        self.state.fail_next(n, fault, true);
    }

    /// Drops the connection, as a broker restart or a network failure would, and restores
    /// it at once: every subscription ends (its service consumes anew, as it does after a
    /// reconnect), and every delivery not settled yet goes back to its queue, marked
    /// redelivered ([`Delivery::redelivered`]), while the callback handling it runs on; its
    /// acknowledgement then fails. The message is handled twice, with the same message id: the
    /// way to test that callbacks are idempotent. Returns how many subscriptions ended.
    ///
    /// ```standalone_crate
    /// # use std::sync::{Arc, Mutex};
    /// # use std::time::Duration;
    /// # use event_manager::testing::Harness;
    /// # use event_manager::{Event, Exchange};
    /// # use schemars::JsonSchema;
    /// # use serde::{Deserialize, Serialize};
    /// # pub const ORDER: Exchange = Exchange::topic("order");
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Event)]
    /// # #[event(exchange = ORDER, version = "1.0.0", events(submit))]
    /// # pub struct Order { pub id: u64 }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let harness = Harness::new();
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let mut billing = harness.bus().service("billing_order");
    /// let log = seen.clone();
    /// billing.on(Order::SUBMIT, move |_: Order, delivery| {
    ///     let log = log.clone();
    ///     async move {
    ///         log.lock().unwrap().push(delivery.redelivered());
    ///         if !delivery.redelivered() {
    ///             // The connection drops meanwhile.
    ///             tokio::time::sleep(Duration::from_millis(50)).await;
    ///         }
    ///         Ok(())
    ///     }
    /// });
    /// let running = billing.start().await?;
    /// Order { id: 1 }.submit(harness.bus()).await?;
    /// tokio::time::sleep(Duration::from_millis(10)).await;
    /// assert_eq!(harness.drop_connection(), 2); // the service queue and its retry queue
    /// harness.idle(Duration::from_secs(5)).await?;
    /// assert_eq!(*seen.lock().unwrap(), [false, true]); // handled again, as a redelivery
    /// running.shutdown().await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// [`Delivery::redelivered`]: crate::Delivery::redelivered
    pub fn drop_connection(&self) -> usize {
        self.state.drop_connection()
    }

    /// Holds every delivery back for `delay` (tokio time) before its consumer gets it, from
    /// now on; [`Duration::ZERO`] ends it. [`Harness::idle`] waits for held deliveries.
    ///
    /// ```standalone_crate
    /// # use std::time::Duration;
    /// # use event_manager::testing::Harness;
    /// # use event_manager::{Event, Exchange};
    /// # use schemars::JsonSchema;
    /// # use serde::{Deserialize, Serialize};
    /// # pub const ORDER: Exchange = Exchange::topic("order");
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Event)]
    /// # #[event(exchange = ORDER, version = "1.0.0", events(submit))]
    /// # pub struct Order { pub id: u64 }
    /// #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let harness = Harness::new();
    /// let mut billing = harness.bus().service("billing_order");
    /// billing.on(Order::SUBMIT, |_: Order, _| async { Ok(()) });
    /// let running = billing.start().await?;
    /// harness.delay_deliveries(Duration::from_secs(10));
    ///
    /// let began = tokio::time::Instant::now();
    /// Order { id: 1 }.submit(harness.bus()).await?;
    /// assert!(harness.idle(Duration::from_secs(5)).await.is_err()); // still held
    /// harness.idle(Duration::from_secs(10)).await?;
    /// assert!(began.elapsed() >= Duration::from_secs(10));
    /// running.shutdown().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn delay_deliveries(&self, delay: Duration) {
        self.state.set_delay(delay);
    }
}
