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

    use event_manager::{Bus, ConnectError, Delivery, EventDef, Service};
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
        /// Serve `/metrics` (Prometheus text) and `/health` (200 or 503) on this address,
        /// e.g. `127.0.0.1:9464`.
        #[arg(long)]
        pub metrics: Option<std::net::SocketAddr>,
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

    /// Resolves with the reason once `bus`'s transport has given up for good
    /// ([`event_manager::Bus::failure`]): a process that only publishes (or serves its
    /// metrics) learns it here and exits, rather than live on without a broker.
    pub async fn transport_gave_up(bus: &event_manager::Bus) -> String {
        loop {
            if let Some(reason) = bus.failure() {
                return reason;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
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
        run(service, &done, args.metrics).await?;
        let handled = seen.lock().unwrap_or_else(|p| p.into_inner()).ids.len();
        Ok(handled)
    }

    /// Runs `service` until `done` or a signal; with `metrics`, serves its metrics and health
    /// there meanwhile (the recorder must have been installed with [`observe::install`]
    /// before the service's bus published anything).
    ///
    /// [`observe::install`]: crate::observe::install
    async fn run(
        service: Service,
        done: &Notify,
        metrics: Option<std::net::SocketAddr>,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let handle = metrics.map(|_| crate::observe::install()).transpose()?;
        let running = service.start().await?;
        if let (Some(addr), Some(handle)) = (metrics, handle) {
            let probe = crate::observe::Probe::Service(running.health_probe());
            let bound = crate::observe::serve(addr, handle, probe).await?;
            eprintln!("metrics and health on http://{bound}");
        }
        let stop = async {
            tokio::select! {
                () = done.notified() => {}
                () = shutdown_signal() => {}
            }
        };
        Ok(running.run_until(stop).await?)
    }
}

/// `--metrics ADDR` of the example services: Prometheus text on `/metrics` and the service's
/// health on `/health` (200 when healthy, else 503), on a small HTTP endpoint.
pub mod observe {
    use std::net::SocketAddr;

    /// Logs the library's events to standard error, filtered by `RUST_LOG` (`warn` when it
    /// is not set), e.g. `RUST_LOG=event_manager=info`.
    pub fn log_to_stderr() {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        // A subscriber set up by the program already wins.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .try_init();
    }
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use event_manager::{Bus, HealthProbe};
    use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// What `/health` reports.
    #[derive(Clone)]
    pub enum Probe {
        /// A consuming service: healthy while connected and consuming.
        Service(HealthProbe),
        /// A publisher: healthy while its bus is connected.
        Bus(Bus),
    }

    impl Probe {
        /// Healthy or not, and the JSON body of `/health`.
        fn report(&self) -> (bool, String) {
            match self {
                Self::Service(probe) => {
                    let h = probe.health();
                    let body = serde_json::json!({
                        "healthy": h.is_healthy(),
                        "queue": h.queue,
                        "connected": h.connected,
                        "consuming": h.consuming,
                        "last_error": h.last_error,
                        "last_delivery_unix_ms": h.last_delivery
                            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                            .map(|d| d.as_millis() as u64),
                    });
                    (h.is_healthy(), body.to_string())
                }
                Self::Bus(bus) => {
                    let up = bus.is_connected();
                    let body = serde_json::json!({ "healthy": up, "connected": up });
                    (up, body.to_string())
                }
            }
        }
    }

    /// Installs the Prometheus recorder as the process's `metrics` recorder, once; later
    /// calls return the same handle. Call it before connecting: a connection and a service
    /// register their metrics when they start.
    pub fn install() -> Result<PrometheusHandle, Box<dyn std::error::Error>> {
        static INSTALLED: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
        if let Some(handle) = INSTALLED.get() {
            return Ok(handle.clone());
        }
        // Histograms with buckets (not summaries), so that dashboards can aggregate
        // latencies across instances: from 100 µs to 10 s.
        let handle = PrometheusBuilder::new()
            .set_buckets(&[
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0,
            ])?
            .install_recorder()?;
        let handle = INSTALLED.get_or_init(|| handle).clone();
        event_manager::telemetry::metrics::describe();
        let upkeep = handle.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                upkeep.run_upkeep();
            }
        });
        Ok(handle)
    }

    /// Serves `/metrics` and `/health` on `addr` until the process ends; returns the address
    /// bound (port 0 picks a free one).
    pub async fn serve(
        addr: SocketAddr,
        metrics: PrometheusHandle,
        probe: Probe,
    ) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let shared = Arc::new((metrics, probe));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(5),
                        answer(stream, &shared.0, &shared.1),
                    )
                    .await;
                });
            }
        });
        Ok(bound)
    }

    /// Reads one request (its head) and answers it, closing the connection.
    async fn answer(
        mut stream: TcpStream,
        metrics: &PrometheusHandle,
        probe: &Probe,
    ) -> std::io::Result<()> {
        let mut head = Vec::with_capacity(512);
        let mut buf = [0u8; 512];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let line = String::from_utf8_lossy(&head);
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (status, content_type, body) = match (method, path) {
            ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
            ("GET", "/health") => {
                let (healthy, body) = probe.report();
                let status = if healthy {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                (status, "application/json", body)
            }
            ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_owned()),
            _ => (
                "405 Method Not Allowed",
                "text/plain",
                "only GET\n".to_owned(),
            ),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    }
}
