//! `event-manager queues …`: list, read, replay, migrate and delete a service's queues.

use std::fmt;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Subcommand};
use event_manager::bus::AMQP_URL_ENV;
use event_manager::envelope::DEAD_LETTER_KIND_HEADER;
use event_manager::service::DEFAULT_DELIVERY_LIMIT;
use event_manager::topology::{DeadLetter, Migrated, ServiceQueues};
use event_manager::transport::QueueKind;
use event_manager::transport::urls::{redact, scrub};
use event_manager::{
    BindingPattern, Bus, ConnectError, ConsumeError, Entity, Exchange, RetryPolicy, Service,
    TopologyError,
};
use serde_json::{Value, json};

use super::say;

/// Exit status of an operational failure (broker unreachable, queue missing).
const FAILURE: u8 = 1;
/// Exit status of a usage error.
const USAGE: u8 = 2;

#[derive(Debug, Subcommand)]
pub(crate) enum QueuesCommand {
    /// List the service's queues, each with the number of messages it holds ready.
    ///
    /// One line per queue: the service queue, its retried queue, its dead-letter queue,
    /// then one wait queue per retry delay (see --retry-delays).
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Show the messages of the service's dead-letter queue, without removing them.
    ///
    /// One tab-separated line per dead letter: message id, original routing key, kind,
    /// attempts, failed-at, reason ("-" when absent). With --json, one JSON object per
    /// line, with the body. The messages read are put back, marked redelivered.
    DeadLetters {
        #[command(flatten)]
        target: Target,
        /// Show at most this many.
        #[arg(long, default_value_t = 20, value_name = "N")]
        limit: usize,
        /// One JSON object per line, with the body ("body" when it is JSON, "body_text"
        /// otherwise).
        #[arg(long)]
        json: bool,
    },
    /// Move dead letters back to the service queue, each with a fresh set of attempts.
    ///
    /// Only the messages in the dead-letter queue when the replay starts are moved; each
    /// leaves it once the broker confirmed its re-publication.
    Replay {
        #[command(flatten)]
        target: Target,
        /// Move at most this many (default: all of them).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Recreate the service's queues that exist with another type or other arguments than
    /// the service declares (e.g. classic queues, where it now declares quorum queues),
    /// without losing a message.
    ///
    /// Stop every consumer of the service first; publishers may go on. Each such queue is
    /// emptied into a temporary `<queue>.migrating` (the service queue's bindings, given
    /// with --bind, are switched over to it first), recreated, bound and refilled. Prints
    /// one line per recreated queue. Running it again finishes an interrupted migration,
    /// and does nothing once every queue is as the service declares it.
    Migrate {
        #[command(flatten)]
        target: Target,
        /// A binding of the service queue: the exchange as named in the code (namespaced
        /// by --namespace) and a topic pattern, e.g. order=order.*.submit. Repeat it for
        /// every binding of the service, the exact ones its callbacks make included.
        #[arg(long = "bind", value_name = "EXCHANGE=PATTERN", required = true)]
        bindings: Vec<Binding>,
        /// Recreate them as classic queues (`Service::queue_kind(QueueKind::Classic)`)
        /// rather than quorum queues, the default.
        #[arg(long)]
        classic: bool,
        /// The delivery limit of the service's quorum queues (`Service::delivery_limit`).
        #[arg(long, value_name = "N", default_value_t = DEFAULT_DELIVERY_LIMIT)]
        delivery_limit: u32,
    },
    /// Delete every queue of the service, with the messages they hold.
    ///
    /// For decommissioning a service: a running instance fails once its queue is gone.
    /// Refuses (exit 2) without --yes.
    Delete {
        #[command(flatten)]
        target: Target,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
}

impl QueuesCommand {
    fn target(&self) -> &Target {
        match self {
            Self::List { target }
            | Self::DeadLetters { target, .. }
            | Self::Replay { target, .. }
            | Self::Migrate { target, .. }
            | Self::Delete { target, .. } => target,
        }
    }
}

/// Which service's queues, on which broker.
#[derive(Args)]
pub(crate) struct Target {
    /// The service, as named in the code (`bus.service("billing_order")`), without the
    /// namespace.
    #[arg(long, value_name = "NAME", value_parser = non_empty)]
    service: String,
    /// The namespace of the bus (`Bus::with_namespace`), if any: queues are then named
    /// `<namespace>.<service>…`.
    #[arg(long, value_name = "NS", value_parser = non_empty)]
    namespace: Option<String>,
    /// The broker URL, e.g. amqp://user:password@host:5672/%2f (default: the AMQP_URL
    /// environment variable). AMQP_CA_FILE, AMQP_GIVE_UP_AFTER and AMQP_CONFIRM_TIMEOUT
    /// are honoured as by the library.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// The service's retry delays, which name its wait queues: e.g. 1s,5s,30s,2m, or
    /// `none` for a service without retries [default: the library's, 1s,5s,30s,2m].
    #[arg(long, value_name = "DELAYS")]
    retry_delays: Option<RetryDelays>,
}

/// Never shows the password of the URL.
impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("service", &self.service)
            .field("namespace", &self.namespace)
            .field("url", &self.url.as_deref().map(redact))
            .field("retry_delays", &self.retry_delays)
            .finish()
    }
}

impl Target {
    /// The broker URL: --url, else `AMQP_URL`.
    fn url(&self) -> Option<String> {
        self.url
            .clone()
            .or_else(|| std::env::var(AMQP_URL_ENV).ok())
            .map(|url| url.trim().to_owned())
            .filter(|url| !url.is_empty())
    }

    /// The retry policy whose delays name the wait queues.
    fn policy(&self) -> RetryPolicy {
        self.retry_delays
            .as_ref()
            .map_or_else(RetryPolicy::default, RetryDelays::policy)
    }
}

fn non_empty(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(text.to_owned())
    }
}

/// `--retry-delays`: comma-separated durations, or `none`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RetryDelays(Vec<Duration>);

impl FromStr for RetryDelays {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("none") {
            return Ok(Self(Vec::new()));
        }
        text.split(',')
            .map(str::trim)
            .map(|part| {
                if part.is_empty() {
                    return Err(
                        "empty delay: expected durations such as 1s,5s,30s,2m, or `none`"
                            .to_owned(),
                    );
                }
                humantime::parse_duration(part)
                    .map_err(|e| format!("`{part}` is not a duration such as 30s or 2m: {e}"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// `--bind EXCHANGE=PATTERN`: a binding of the service queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Binding {
    exchange: String,
    pattern: BindingPattern,
}

impl FromStr for Binding {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let Some((exchange, pattern)) = text.split_once('=') else {
            return Err("expected EXCHANGE=PATTERN, e.g. order=order.*.submit".to_owned());
        };
        let exchange = exchange.trim();
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if exchange.is_empty() || !exchange.chars().all(word) {
            return Err(format!(
                "`{exchange}` is not an exchange name as in the code: one word of A-Z a-z 0-9 _ -"
            ));
        }
        let pattern = BindingPattern::parse(pattern.trim()).map_err(|e| e.to_string())?;
        Ok(Self {
            exchange: exchange.to_owned(),
            pattern,
        })
    }
}

impl Binding {
    /// Binds `service` with it.
    fn apply(&self, service: &mut Service) -> Result<(), String> {
        // An exchange of the code is a `&'static str`; the few of one command live as long.
        let name: &'static str = Box::leak(self.exchange.clone().into_boxed_str());
        service
            .bind(Exchange::topic(name), self.pattern.as_str())
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

impl RetryDelays {
    /// A policy using every delay: one attempt more than there are delays.
    fn policy(&self) -> RetryPolicy {
        if self.0.is_empty() {
            return RetryPolicy::no_retry();
        }
        let attempts = u32::try_from(self.0.len() + 1).unwrap_or(u32::MAX);
        RetryPolicy::new(attempts, self.0.clone())
    }
}

/// Runs one `queues` subcommand on a current-thread runtime of its own.
pub(crate) fn run(command: QueuesCommand) -> ExitCode {
    if let QueuesCommand::Delete { target, yes: false } = &command {
        eprintln!(
            "error: `queues delete` deletes every queue of service `{}` with the messages they hold; pass --yes to confirm",
            target.service
        );
        return ExitCode::from(USAGE);
    }
    let Some(url) = command.target().url() else {
        eprintln!(
            "error: no broker URL: pass --url or set the {AMQP_URL_ENV} environment variable"
        );
        return ExitCode::from(USAGE);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(FAILURE);
        }
    };
    match runtime.block_on(execute(&command, &url)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", scrub(&error, &url));
            ExitCode::from(FAILURE)
        }
    }
}

async fn execute(command: &QueuesCommand, url: &str) -> Result<(), String> {
    let target = command.target();
    if url.starts_with("memory://") {
        eprintln!("note: memory:// is a new, empty in-memory broker private to this process");
    }
    let bus = connect(url).await.map_err(|e| e.to_string())?;
    let bus = match &target.namespace {
        Some(namespace) => bus.with_namespace(namespace.as_str()),
        None => bus,
    };
    let mut service = bus.service(target.service.as_str());
    service.retry(target.policy());
    let queues = service.queues();
    let outcome = match command {
        QueuesCommand::Migrate {
            bindings,
            classic,
            delivery_limit,
            ..
        } => {
            service.delivery_limit(*delivery_limit);
            if *classic {
                service.queue_kind(QueueKind::Classic);
            }
            match bindings.iter().try_for_each(|b| b.apply(&mut service)) {
                Ok(()) => migrate(&service, &target.service).await,
                Err(error) => Err(error),
            }
        }
        QueuesCommand::List { .. } => list(&queues).await,
        QueuesCommand::DeadLetters { limit, json, .. } => {
            dead_letters(&queues, *limit, *json).await
        }
        QueuesCommand::Replay { limit, .. } => replay(&queues, *limit).await,
        QueuesCommand::Delete { .. } => delete(&queues, &target.service).await,
    };
    bus.close().await;
    outcome
}

#[cfg(feature = "amqp")]
async fn connect(url: &str) -> Result<Bus, ConnectError> {
    let options = event_manager::transport::AmqpOptions::from_env()?;
    Bus::connect_with(url, &options).await
}

#[cfg(not(feature = "amqp"))]
async fn connect(url: &str) -> Result<Bus, ConnectError> {
    Bus::connect(url).await
}

async fn list(queues: &ServiceQueues) -> Result<(), String> {
    let lengths = queues
        .lengths()
        .await
        .map_err(|e| topology_failure(&e, queues))?;
    let width = lengths
        .iter()
        .map(|(name, _)| name.len())
        .max()
        .unwrap_or(0);
    for (name, ready) in lengths {
        say(&format!("{name:<width$}  {ready}"));
    }
    Ok(())
}

async fn dead_letters(queues: &ServiceQueues, limit: usize, json: bool) -> Result<(), String> {
    let letters = queues
        .dead_letters(limit)
        .await
        .map_err(|e| consume_failure(&e, queues))?;
    if letters.is_empty() {
        eprintln!("no dead letters in `{}`", queues.dead_letter_queue());
    }
    for letter in &letters {
        say(&if json {
            json_line(letter)
        } else {
            text_line(letter)
        });
    }
    Ok(())
}

async fn replay(queues: &ServiceQueues, limit: Option<usize>) -> Result<(), String> {
    let moved = queues
        .replay_dead_letters(limit.unwrap_or(usize::MAX))
        .await
        .map_err(|e| consume_failure(&e, queues))?;
    say(&format!(
        "replayed {moved} dead letter(s) to `{}`",
        queues.queue()
    ));
    Ok(())
}

async fn migrate(service: &Service, name: &str) -> Result<(), String> {
    let queues = service.queues();
    let migrated = service
        .migrate_queues()
        .await
        .map_err(|e| consume_failure(&e, &queues))?;
    if migrated.is_empty() {
        // Nothing to move is fine, unless there is no such service at all.
        if let Err(error) = queues.lengths().await {
            match error {
                TopologyError::NotFound {
                    entity: Entity::Queue(queue),
                } if queue == queues.queue() => {
                    return Err(format!(
                        "queue `{queue}` does not exist: no service `{name}` to migrate (check --service and --namespace)"
                    ));
                }
                _ => {}
            }
        }
        say(&format!(
            "nothing to migrate: the queues of `{}` are declared as the service declares them",
            queues.queue()
        ));
    }
    for Migrated {
        queue,
        argument,
        moved,
        ..
    } in &migrated
    {
        let why = argument.as_ref().map_or_else(
            || "an interrupted migration finished".to_owned(),
            |argument| format!("`{argument}` differed"),
        );
        say(&format!(
            "migrated {queue}: moved {moved} message(s) ({why})"
        ));
    }
    Ok(())
}

async fn delete(queues: &ServiceQueues, service: &str) -> Result<(), String> {
    // A typo in --service or --namespace must not pass for a successful deletion.
    match queues.lengths().await {
        Ok(_) => {}
        Err(TopologyError::NotFound {
            entity: Entity::Queue(name),
        }) if name == queues.queue() => {
            return Err(format!(
                "queue `{name}` does not exist: no service `{service}` to delete (check --service and --namespace)"
            ));
        }
        Err(TopologyError::NotFound {
            entity: Entity::Queue(name),
        }) => eprintln!(
            "note: queue `{name}` does not exist; if the service retries with other delays than --retry-delays, its wait queues are left behind"
        ),
        Err(error) => return Err(topology_failure(&error, queues)),
    }
    queues
        .delete()
        .await
        .map_err(|e| topology_failure(&e, queues))?;
    for name in queues.names() {
        say(&format!("deleted {name}"));
    }
    Ok(())
}

/// The kind of a dead letter: a known one, else the raw header.
fn kind(letter: &DeadLetter) -> Option<String> {
    letter
        .kind()
        .map(|kind| kind.as_str().to_owned())
        .or_else(|| {
            letter
                .message()
                .properties
                .headers
                .get_str(DEAD_LETTER_KIND_HEADER)
                .map(str::to_owned)
        })
}

/// Message id, original routing key, kind, attempts, failed-at, reason; tab-separated.
fn text_line(letter: &DeadLetter) -> String {
    let field = |value: Option<&str>| match value {
        Some(text) if !text.is_empty() => text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect(),
        _ => "-".to_owned(),
    };
    [
        field(letter.message_id()),
        field(Some(letter.routing_key())),
        field(kind(letter).as_deref()),
        letter.attempts().to_string(),
        field(letter.failed_at()),
        field(letter.reason()),
    ]
    .join("\t")
}

/// One JSON object, with the body as JSON when it is JSON, as text otherwise.
fn json_line(letter: &DeadLetter) -> String {
    let mut object = json!({
        "message_id": letter.message_id(),
        "routing_key": letter.routing_key(),
        "exchange": letter.exchange(),
        "kind": kind(letter),
        "attempts": letter.attempts(),
        "failed_at": letter.failed_at(),
        "reason": letter.reason(),
    });
    let body = &letter.message().body;
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => object["body"] = value,
        Err(_) => object["body_text"] = Value::from(String::from_utf8_lossy(body)),
    }
    object.to_string()
}

/// The error, with a hint when one of the service's queues is missing.
fn topology_failure(error: &TopologyError, queues: &ServiceQueues) -> String {
    let hint = match error {
        TopologyError::NotFound {
            entity: Entity::Queue(name),
        } if queues.wait_queues().contains(&name.as_str()) => {
            " (the service may retry with other delays: pass them with --retry-delays, e.g. 1s,5s,30s,2m, or `none`)"
        }
        TopologyError::NotFound {
            entity: Entity::Queue(_),
        } => " (check --service and --namespace; the service creates its queues when it starts)",
        _ => "",
    };
    format!("{error}{hint}")
}

fn consume_failure(error: &ConsumeError, queues: &ServiceQueues) -> String {
    match error {
        ConsumeError::Topology(error) => topology_failure(error, queues),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_name_the_wait_queues() {
        let delays: RetryDelays = " 200ms, 1s ,2m".parse().unwrap();
        let bus = Bus::in_memory().with_namespace("ns");
        let mut service = bus.service("billing");
        service.retry(delays.policy());
        assert_eq!(
            service.queues().wait_queues(),
            [
                "ns.billing.wait.200ms",
                "ns.billing.wait.1000ms",
                "ns.billing.wait.120000ms"
            ]
        );
        service.retry("none".parse::<RetryDelays>().unwrap().policy());
        assert!(service.queues().wait_queues().is_empty());
        assert!("1s,,2s".parse::<RetryDelays>().is_err());
        assert!("soon".parse::<RetryDelays>().is_err());
        assert!("".parse::<RetryDelays>().is_err());
    }
}
