//! Error types, one per boundary: connecting, topology, publishing, consuming.
//!
//! Where a broker client error is the cause, it is kept as the error's
//! [`source`](std::error::Error::source); the message names the entity with [`Entity`].

use std::fmt;
use std::sync::Arc;

use crate::registry::RegistryError;

/// The cause of a failure: an error of the broker client, kept for
/// [`std::error::Error::source`].
pub type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// The broker entity a [`TopologyError`] is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Entity {
    /// An exchange, by name.
    Exchange(String),
    /// A queue, by name.
    Queue(String),
    /// The binding of `queue` to `exchange` with `pattern`.
    Binding {
        /// The bound queue.
        queue: String,
        /// The exchange it is bound to.
        exchange: String,
        /// The binding pattern.
        pattern: String,
    },
    /// Everything a service declares for its queue: exchanges, queues, bindings.
    ServiceTopology {
        /// The service queue.
        queue: String,
    },
}

impl Entity {
    /// The binding of `queue` to `exchange` with `pattern`.
    #[cfg_attr(not(feature = "runtime"), allow(dead_code))]
    pub(crate) fn binding(queue: &str, exchange: &str, pattern: &crate::BindingPattern) -> Self {
        Self::Binding {
            queue: queue.to_owned(),
            exchange: exchange.to_owned(),
            pattern: pattern.to_string(),
        }
    }

    /// The queue this entity is or belongs to, if any.
    pub fn queue(&self) -> Option<&str> {
        match self {
            Self::Queue(queue) | Self::Binding { queue, .. } | Self::ServiceTopology { queue } => {
                Some(queue)
            }
            Self::Exchange(_) => None,
        }
    }

    /// The exchange this entity is or is bound to, if any.
    pub fn exchange(&self) -> Option<&str> {
        match self {
            Self::Exchange(exchange) | Self::Binding { exchange, .. } => Some(exchange),
            Self::Queue(_) | Self::ServiceTopology { .. } => None,
        }
    }

    /// Fails with [`TopologyError::NameTooLong`] when a name of the entity is longer than
    /// AMQP's [`SHORT_STRING_MAX`](crate::message::SHORT_STRING_MAX).
    #[cfg_attr(not(feature = "runtime"), allow(dead_code))]
    pub(crate) fn check_names(&self) -> Result<(), TopologyError> {
        let longest = [self.queue(), self.exchange()]
            .into_iter()
            .flatten()
            .map(str::len)
            .max()
            .unwrap_or(0);
        if longest > crate::message::SHORT_STRING_MAX {
            return Err(TopologyError::NameTooLong {
                entity: self.clone(),
                len: longest,
            });
        }
        Ok(())
    }

    /// [`Entity::check_names`], then fails with [`TopologyError::Refused`] where RabbitMQ
    /// refuses to declare the entity whatever exists: the default exchange (declared, or
    /// bound to), and names in the reserved `amq.` namespace other than the predeclared
    /// `amq.topic` exchange.
    #[cfg_attr(not(feature = "runtime"), allow(dead_code))]
    pub(crate) fn check_declarable(&self) -> Result<(), TopologyError> {
        self.check_names()?;
        let refused = |detail: String| {
            Err(TopologyError::Refused {
                entity: self.clone(),
                detail,
            })
        };
        match self {
            Self::Exchange(name) | Self::Binding { exchange: name, .. } if name.is_empty() => {
                refused("operation not permitted on the default exchange".into())
            }
            Self::Exchange(name) if name.starts_with("amq.") && name != "amq.topic" => refused(
                format!("exchange name '{name}' contains reserved prefix 'amq.*'"),
            ),
            Self::Queue(name) if name.starts_with("amq.") => refused(format!(
                "queue name '{name}' contains reserved prefix 'amq.*'"
            )),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exchange(name) => write!(f, "exchange `{name}`"),
            Self::Queue(name) => write!(f, "queue `{name}`"),
            Self::Binding {
                queue,
                exchange,
                pattern,
            } => write!(
                f,
                "binding of queue `{queue}` to exchange `{exchange}` with `{pattern}`"
            ),
            Self::ServiceTopology { queue } => write!(f, "the topology of queue `{queue}`"),
        }
    }
}

/// A failure while opening a [`crate::Bus`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL scheme is neither `amqp`, `amqps` nor `memory`.
    #[error(
        "unsupported broker URL scheme `{scheme}`: use amqp://, amqps:// or memory:// (the default when AMQP_URL is unset)"
    )]
    UnsupportedScheme {
        /// The scheme found.
        scheme: String,
    },
    /// An `amqps://` URL was given but the crate was built without its `tls` feature.
    #[error(
        "`amqps://` needs TLS: enable the `tls` feature of event-manager (refusing to connect in plain text)"
    )]
    TlsNotEnabled,
    /// The TLS settings are unusable: an unreadable CA file, a CA file without certificates,
    /// or CA certificates given for a plain `amqp://` URL.
    #[error("TLS settings: {reason}")]
    Tls {
        /// What is wrong.
        reason: String,
    },
    /// The broker could not be reached or refused the connection. The URL in the message has
    /// its password removed.
    #[error("cannot connect to the broker at {url}: {reason}")]
    Broker {
        /// The broker URL, without password.
        url: String,
        /// What went wrong.
        reason: String,
        /// The broker client's error, when it cannot hold the password (a failed first
        /// connection names the URL, so only its scrubbed text is kept in `reason`).
        #[source]
        source: Option<Cause>,
    },
    /// The URL needs a transport this build of the crate leaves out (e.g. `amqp://` without
    /// the `amqp` feature).
    #[error(
        "`{scheme}://` needs the `{feature}` feature of event-manager, which this build leaves out"
    )]
    FeatureDisabled {
        /// The URL scheme.
        scheme: String,
        /// The cargo feature to enable.
        feature: &'static str,
    },
    /// A connection setting is unusable (e.g. an environment variable that does not parse).
    #[error("connection settings: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// The contracts linked into the binary contradict each other.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// A failure while declaring, binding or deleting exchanges and queues.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TopologyError {
    /// The entity exists with different settings (RabbitMQ `PRECONDITION_FAILED`). For a
    /// queue, the message says how to move it to its new declaration.
    #[error(
        "{entity} already exists with a different `{argument}`: {detail}; {}",
        mismatch_advice(entity, argument, detail)
    )]
    Mismatch {
        /// The entity, e.g. ``queue `billing_order` ``.
        entity: Entity,
        /// The differing argument, e.g. `x-message-ttl` or `durable`.
        argument: String,
        /// What the broker said.
        detail: String,
    },
    /// The entity does not exist.
    #[error("{entity} does not exist")]
    NotFound {
        /// The entity, e.g. ``exchange `order` ``.
        entity: Entity,
    },
    /// A name is longer than AMQP's
    /// [`SHORT_STRING_MAX`](crate::message::SHORT_STRING_MAX) bytes; nothing was sent (a
    /// shortened name would be another queue or exchange).
    #[error("{entity}: a name of {len} bytes; AMQP allows at most 255")]
    NameTooLong {
        /// The entity concerned.
        entity: Entity,
        /// The length of its longest name, in bytes.
        len: usize,
    },
    /// Any other refusal by the broker.
    #[error("{entity}: the broker refused the operation: {detail}")]
    Refused {
        /// The entity concerned.
        entity: Entity,
        /// What the broker said.
        detail: String,
    },
    /// The connection failed.
    #[error("{entity}: connection failure: {detail}")]
    Connection {
        /// The entity concerned.
        entity: Entity,
        /// What went wrong.
        detail: String,
        /// The broker client's error, when one is the cause.
        #[source]
        source: Option<Cause>,
    },
}

/// What to do about a [`TopologyError::Mismatch`]. A queue's type and arguments cannot change
/// in place: its messages have to move to a new queue, which `Service::migrate_queues` does.
fn mismatch_advice(entity: &Entity, argument: &str, detail: &str) -> String {
    let Entity::Queue(queue) = entity else {
        return "delete it or declare it with the same settings".to_owned();
    };
    // The service a dead-letter, retry, wait or temporary queue belongs to, and its namespace.
    let mut service = queue.as_str();
    for suffix in [".dlq", ".retried", ".migrating"] {
        service = service.strip_suffix(suffix).unwrap_or(service);
    }
    if let Some((base, wait)) = service.rsplit_once(".wait.")
        && wait.ends_with("ms")
    {
        service = base;
    }
    let service = match service.rsplit_once('.') {
        Some((namespace, service)) => format!("{service} --namespace {namespace}"),
        None => service.to_owned(),
    };
    let migrate = format!(
        "stop the service and run `Service::migrate_queues` or `event-manager queues migrate --service {service} --bind <exchange>=<pattern>...` (README: Running in production)"
    );
    match queue_types(detail).filter(|_| argument == "x-queue-type") {
        Some((declared, existing)) => {
            let keep = match existing {
                "classic" => {
                    ", or keep classic queues with `Service::queue_kind(QueueKind::Classic)`"
                }
                "quorum" => ", or keep quorum queues with `Service::queue_kind(QueueKind::Quorum)`",
                _ => "",
            };
            format!(
                "{entity} exists as a {existing} queue but the service declares a {declared} queue; a queue's type cannot change in place: {migrate}{keep}"
            )
        }
        // RabbitMQ names the first argument that differs, often not the type: a classic
        // service queue differs from its quorum declaration in its dead-letter exchange.
        None => format!(
            "{entity} was declared otherwise before (e.g. as a classic queue, where the service now declares a quorum queue); a queue's type and arguments cannot change in place: {migrate}, or, if it is a classic queue, keep classic queues with `Service::queue_kind(QueueKind::Classic)`"
        ),
    }
}

/// The queue types an `x-queue-type` mismatch names, declared then existing: in RabbitMQ's
/// words (`received the value 'quorum' of type 'longstr' but current is none`) or in the
/// in-memory broker's (`declared Quorum but exists Classic`).
fn queue_types(detail: &str) -> Option<(&'static str, &'static str)> {
    let (declared, existing) = match detail.split_once(" but current is ") {
        Some((received, current)) => (received.rsplit_once("received ")?.1, current),
        None => {
            let (declared, existing) = detail.split_once(" but exists ")?;
            (declared.strip_prefix("declared ")?, existing)
        }
    };
    Some((queue_type(declared)?, queue_type(existing)?))
}

/// `classic`, `quorum` or `stream`, from `none` (no type: classic), `the value 'quorum' of
/// type 'longstr'` or `Quorum`.
fn queue_type(text: &str) -> Option<&'static str> {
    let text = text.trim();
    let word = match text.strip_prefix("the value '") {
        Some(quoted) => quoted.split('\'').next()?,
        None => text.split_whitespace().next()?,
    };
    match word.to_ascii_lowercase().as_str() {
        "none" | "classic" => Some("classic"),
        "quorum" => Some("quorum"),
        "stream" => Some("stream"),
        _ => None,
    }
}

/// A failure to publish. When `publish` returns `Ok`, the broker has confirmed the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The payload could not be serialized to JSON.
    #[error("cannot encode the payload of {routing_key} as JSON: {source}")]
    Encode {
        /// The routing key of the event.
        routing_key: String,
        /// The serde error.
        source: serde_json::Error,
    },
    /// No queue is bound to receive the message; it was returned by the broker (AMQP 312
    /// NO_ROUTE) instead of being dropped.
    #[error(
        "unroutable: no queue is bound to exchange `{exchange}` for routing key `{routing_key}`"
    )]
    Unroutable {
        /// The exchange published to.
        exchange: String,
        /// The routing key used.
        routing_key: String,
    },
    /// The broker refused to take responsibility for the message (negative confirm), each
    /// time it was sent: a refused message is sent again, with the same message id, for up
    /// to 15 s and within the confirm timeout (a quorum queue refuses publishes while its
    /// leader moves) before this error.
    #[error("the broker did not confirm the message to `{exchange}` with key `{routing_key}`")]
    Nacked {
        /// The exchange published to.
        exchange: String,
        /// The routing key used.
        routing_key: String,
    },
    /// No confirm arrived within the confirm timeout (e.g. the broker blocks publishers
    /// during a memory alarm, or the connection is down). The message may still reach the
    /// broker later: a retry can duplicate it, with the same message id if reused.
    #[error("no confirm for the message to `{exchange}` with key `{routing_key}` within {after:?}")]
    Timeout {
        /// The exchange published to.
        exchange: String,
        /// The routing key used.
        routing_key: String,
        /// The confirm timeout.
        after: std::time::Duration,
    },
    /// The message's `expiration` property is not a number of milliseconds (ASCII digits, at
    /// most `u32::MAX`): RabbitMQ would close the channel (`PRECONDITION_FAILED - invalid
    /// expiration`). Nothing was sent.
    #[error(
        "the expiration `{expiration}` of the message to `{exchange}` with key `{routing_key}` is not a number of milliseconds"
    )]
    InvalidExpiration {
        /// The exchange published to.
        exchange: String,
        /// The routing key used.
        routing_key: String,
        /// The expiration given.
        expiration: String,
    },
    /// The message's properties and headers do not fit in one AMQP frame (`frame_max` of the
    /// connection, 128 KiB by default on RabbitMQ); the broker would close the connection.
    /// Nothing was sent.
    #[error(
        "the headers of the message to `{exchange}` with key `{routing_key}` take {size} bytes, more than the broker's frame limit of {limit} bytes"
    )]
    HeadersTooLarge {
        /// The exchange published to.
        exchange: String,
        /// The routing key used.
        routing_key: String,
        /// The size of the header frame.
        size: usize,
        /// The largest header frame the connection takes.
        limit: usize,
    },
    /// A text that AMQP carries as a short string (the exchange, the routing key, the
    /// message or correlation id, a header name…) is longer than
    /// [`SHORT_STRING_MAX`](crate::message::SHORT_STRING_MAX) bytes. Nothing was sent: the
    /// broker cannot take it, and a shortened id or name would be another one.
    #[error(
        "the {field} of the message to `{exchange}` with key `{routing_key}` is {len} bytes long; AMQP allows at most 255"
    )]
    TooLong {
        /// The exchange published to.
        exchange: String,
        /// The routing key used.
        routing_key: String,
        /// What is too long: `message id`, `header name `…``, ….
        field: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A header table ([`HeaderValue::Table`](crate::message::HeaderValue::Table)) names an
    /// entry twice. An AMQP field table holds each name once, so RabbitMQ would get one of
    /// the two values and the other would be lost; nothing was sent.
    #[error(
        "a header table of the message to `{exchange}` with key `{routing_key}` names `{name}` twice"
    )]
    DuplicateHeader {
        /// The exchange published to.
        exchange: String,
        /// The routing key used.
        routing_key: String,
        /// The name given twice.
        name: String,
    },
    /// The exchange could not be declared.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// The connection failed and the message could not be re-sent.
    #[error("publish to `{exchange}` with key `{routing_key}` failed: {detail}")]
    Connection {
        /// The exchange published to.
        exchange: String,
        /// The routing key used.
        routing_key: String,
        /// What went wrong.
        detail: String,
        /// The broker client's error, when one is the cause.
        #[source]
        source: Option<Cause>,
    },
}

/// A failure to set up or run a consuming [`crate::Service`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumeError {
    /// The queue, its bindings or its retry and dead-letter queues could not be declared.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// The contracts linked into the binary contradict each other.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The service is set up in a way that cannot work.
    #[error("service `{queue}`: {reason}")]
    Config {
        /// The service queue.
        queue: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The subscription to the queue failed.
    #[error("consuming from queue `{queue}` failed: {detail}")]
    Connection {
        /// The service queue.
        queue: String,
        /// What went wrong.
        detail: String,
        /// The broker client's error, when one is the cause.
        #[source]
        source: Option<Cause>,
    },
    /// A retry or dead letter could not be published, so the message was left unacknowledged
    /// for the broker to deliver again.
    #[error(
        "queue `{queue}`: could not move a message to its retry or dead-letter queue: {source}"
    )]
    Forward {
        /// The service queue.
        queue: String,
        /// The publish failure (boxed: it is the largest error of the crate).
        source: Box<PublishError>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mismatch(queue: &str, argument: &str, detail: &str) -> String {
        TopologyError::Mismatch {
            entity: Entity::Queue(queue.to_owned()),
            argument: argument.to_owned(),
            detail: detail.to_owned(),
        }
        .to_string()
    }

    #[test]
    fn a_queue_of_another_type_is_told_how_to_migrate() {
        let rabbitmq = mismatch(
            "billing",
            "x-queue-type",
            "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'billing' in vhost '/': received the value 'quorum' of type 'longstr' but current is none",
        );
        let memory = mismatch(
            "billing",
            "x-queue-type",
            "declared Quorum but exists Classic",
        );
        for text in [rabbitmq, memory] {
            assert!(
                text.contains(
                    "queue `billing` exists as a classic queue but the service declares a quorum queue; a queue's type cannot change in place: stop the service and run `Service::migrate_queues` or `event-manager queues migrate --service billing --bind <exchange>=<pattern>...` (README: Running in production), or keep classic queues with `Service::queue_kind(QueueKind::Classic)`"
                ),
                "{text}"
            );
        }
        let back = mismatch(
            "billing",
            "x-queue-type",
            "declared Classic but exists Quorum",
        );
        assert!(back.contains("exists as a quorum queue"), "{back}");
        assert!(back.contains("QueueKind::Quorum"), "{back}");
    }

    #[test]
    fn other_queue_arguments_name_the_migration_and_the_service() {
        let text = mismatch(
            "t1.billing.wait.1000ms",
            "x-dead-letter-exchange",
            "PRECONDITION_FAILED - inequivalent arg 'x-dead-letter-exchange' for queue 't1.billing.wait.1000ms' in vhost '/': received the value '' of type 'longstr' but current is none",
        );
        assert!(text.contains("cannot change in place"), "{text}");
        assert!(
            text.contains("queues migrate --service billing --namespace t1 --bind"),
            "{text}"
        );
        let exchange = TopologyError::Mismatch {
            entity: Entity::Exchange("order".into()),
            argument: "durable".into(),
            detail: "declared true but exists false".into(),
        };
        assert!(
            exchange
                .to_string()
                .ends_with("delete it or declare it with the same settings"),
            "{exchange}"
        );
    }
}
