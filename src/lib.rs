//! The example contracts shared by the example services and the integration tests: what a
//! company's `contracts` crate looks like.
//!
//! * `order.v1.submit` and `order.v1.chargeback` carry an [`Order`] (version 1.2.0).
//! * `order.v2.submit` carries an [`OrderSubmittedV2`] (version 2.0.0), which adds a currency
//!   to every order; [`Order`] upcasts into it.

use event_manager::{Event, Exchange};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The exchange of the order domain.
pub const ORDER: Exchange = Exchange::topic("order");

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderLine {
    /// The product's stock-keeping unit.
    pub sku: String,
    /// How many units.
    pub quantity: u32,
    /// Price of one unit, in cents.
    pub unit_price_cents: u64,
}

/// An order as it travels between services.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Event)]
#[event(exchange = ORDER, version = "1.2.0", events(submit, chargeback))]
pub struct Order {
    /// The order id, unique per order.
    pub id: u64,
    /// The customer who placed it.
    pub customer: String,
    /// What was ordered.
    pub lines: Vec<OrderLine>,
}

impl Order {
    /// A small order with one line, for examples and tests.
    pub fn sample(id: u64) -> Self {
        Self {
            id,
            customer: format!("customer-{}", id % 97),
            lines: vec![OrderLine {
                sku: format!("sku-{}", id % 13),
                quantity: 1 + (id % 5) as u32,
                unit_price_cents: 1_999,
            }],
        }
    }

    /// The total of the order, in cents.
    pub fn total_cents(&self) -> u64 {
        self.lines
            .iter()
            .map(|l| u64::from(l.quantity) * l.unit_price_cents)
            .sum()
    }
}

/// A submitted order, second major version: every order now names its currency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Event)]
#[event(exchange = ORDER, version = "2.0.0", events(submit))]
pub struct OrderSubmittedV2 {
    /// The order id, unique per order.
    pub id: u64,
    /// The customer who placed it.
    pub customer: String,
    /// What was ordered.
    pub lines: Vec<OrderLine>,
    /// ISO 4217 currency code of the prices.
    pub currency: String,
}

impl From<Order> for OrderSubmittedV2 {
    /// Orders of version 1 were all in euros.
    fn from(v1: Order) -> Self {
        Self {
            id: v1.id,
            customer: v1.customer,
            lines: v1.lines,
            currency: "EUR".to_owned(),
        }
    }
}

impl From<OrderSubmittedV2> for Order {
    /// Downcast for consumers that only know version 1 (drops the currency).
    fn from(v2: OrderSubmittedV2) -> Self {
        Self {
            id: v2.id,
            customer: v2.customer,
            lines: v2.lines,
        }
    }
}

/// The queues of the example services, shared by the services and by the order service,
/// which declares them so that orders published before a service first starts wait in its
/// queue.
pub mod services {
    use event_manager::{Bus, Service};

    use super::ORDER;

    /// Billing: queue `billing_order`, bound to `order.*.submit` (every major version).
    pub fn billing(bus: &Bus) -> Service {
        let mut service = bus.service("billing_order");
        service
            .bind(ORDER, "order.*.submit")
            .expect("a valid pattern");
        service
    }

    /// Logistics: queue `logistics_order`, bound to `order.#`.
    pub fn logistics(bus: &Bus) -> Service {
        let mut service = bus.service("logistics_order");
        service.bind(ORDER, "order.#").expect("a valid pattern");
        service
    }
}

/// What the example services share: their bus, command line, shutdown on signals and
/// counting distinct orders.
pub mod cli {
    use std::collections::HashSet;
    use std::io::Write;
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use event_manager::{Bus, ConnectError, ConsumeError, Delivery, EventDef, Service};
    use tokio::sync::Notify;

    use super::Order;

    /// The environment variable naming a namespace for every exchange and queue of the
    /// example services (`Bus::with_namespace`), so that test runs sharing one broker never
    /// see each other's events.
    pub const NAMESPACE_ENV: &str = "EVENT_MANAGER_NAMESPACE";

    /// The bus of an example service: `Bus::from_env` (so `AMQP_URL`, `AMQP_CA_FILE`,
    /// `AMQP_GIVE_UP_AFTER` and `AMQP_CONFIRM_TIMEOUT` apply), publishing as `app_id`, in the
    /// namespace named by `EVENT_MANAGER_NAMESPACE` when it is set.
    pub async fn bus_from_env(app_id: &'static str) -> Result<Bus, ConnectError> {
        let bus = Bus::from_env().await?.with_app_id(app_id);
        Ok(match std::env::var(NAMESPACE_ENV) {
            Ok(ns) if !ns.trim().is_empty() => bus.with_namespace(ns.trim()),
            _ => bus,
        })
    }

    /// The command line of a consuming example service.
    #[derive(Debug, Clone, clap::Args)]
    pub struct RunArgs {
        /// Exit after this many distinct orders (default: run until a signal).
        #[arg(long, default_value_t = usize::MAX)]
        pub expect: usize,
        /// How long shutdown waits for running callbacks, e.g. `3s` or `500ms` (default: the
        /// library's, 30 s).
        #[arg(long, value_parser = parse_duration)]
        pub grace: Option<Duration>,
        /// Append the id of every distinct order handled to this file, one per line, before
        /// the message is acknowledged (for fault tests counting across processes).
        #[arg(long)]
        pub handled_log: Option<PathBuf>,
    }

    /// Parses `3s`, `250ms`, `2m` or a plain number of seconds (`1.5`).
    pub fn parse_duration(text: &str) -> Result<Duration, String> {
        let text = text.trim();
        let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
            Some(at) => text.split_at(at),
            None => (text, "s"),
        };
        let value: f64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a duration such as `3s` or `500ms`"))?;
        let seconds = match unit.trim() {
            "ms" => value / 1000.0,
            "s" => value,
            "m" => value * 60.0,
            other => {
                return Err(format!(
                    "unknown unit `{other}` in `{text}`: use ms, s or m"
                ));
            }
        };
        Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
    }

    /// Resolves on Ctrl-C or SIGTERM.
    pub async fn shutdown_signal() {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }

    /// The distinct orders seen, and where to log each new one.
    struct Seen {
        ids: HashSet<u64>,
        log: Option<std::fs::File>,
    }

    impl Seen {
        /// Records `id`; true when it is new. A new id is written to the log (one `write`
        /// per id, so a killed process loses none it reported) before the callback returns.
        fn insert(&mut self, id: u64) -> std::io::Result<bool> {
            if !self.ids.insert(id) {
                return Ok(false);
            }
            if let Some(log) = &mut self.log {
                log.write_all(format!("{id}\n").as_bytes())?;
            }
            Ok(true)
        }
    }

    /// Runs `service` with one callback per event in `events` that records distinct order
    /// ids, until `args.expect` distinct orders were handled or a shutdown signal arrives.
    /// Returns the number of distinct orders handled.
    pub async fn count_distinct_orders(
        mut service: Service,
        events: &[EventDef<Order>],
        args: &RunArgs,
    ) -> Result<usize, Box<dyn std::error::Error>> {
        let log = match &args.handled_log {
            Some(path) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
            None => None,
        };
        let seen = Arc::new(Mutex::new(Seen {
            ids: HashSet::new(),
            log,
        }));
        let done = Arc::new(Notify::new());
        let expect = args.expect;
        for &event in events {
            let (seen, done) = (seen.clone(), done.clone());
            service.on(event, move |order: Order, _ctx: Delivery| {
                let (seen, done) = (seen.clone(), done.clone());
                async move {
                    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                    if seen.insert(order.id)? && seen.ids.len() >= expect {
                        done.notify_one();
                    }
                    Ok(())
                }
            });
        }
        service.prefetch(500).concurrency(64);
        if let Some(grace) = args.grace {
            service.shutdown_grace(grace);
        }
        run(service, &done).await?;
        let handled = seen.lock().unwrap_or_else(|p| p.into_inner()).ids.len();
        Ok(handled)
    }

    async fn run(service: Service, done: &Notify) -> Result<(), ConsumeError> {
        service
            .run_until(async {
                tokio::select! {
                    () = done.notified() => {}
                    () = shutdown_signal() => {}
                }
            })
            .await
    }
}
