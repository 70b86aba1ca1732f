//! The AsyncAPI 3.0.0 document describing a set of contracts and the queues consuming them.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::contract::{EventContract, Exchange};
use crate::envelope::{
    CONTENT_TYPE, PUBLISHED_AS_HEADER, TRACEPARENT_HEADER, VERSION_HEADER, cloud_events, schema_id,
};
use crate::registry;
use crate::routing::BindingPattern;

use super::json_schema::{VERSION_KEYWORD, json_schema, schema_file_name};

/// The AsyncAPI specification version of the exported document.
pub const ASYNCAPI_VERSION: &str = "3.0.0";
/// The version of the AsyncAPI AMQP bindings used in the document.
pub const AMQP_BINDING_VERSION: &str = "0.3.0";
/// The file name of the exported AsyncAPI document.
pub const ASYNCAPI_FILE: &str = "asyncapi.json";
/// The extension of a receive operation naming the consuming queue (`billing_order`).
pub const QUEUE_EXTENSION: &str = "x-queue";
/// The extension of a receive operation carrying the queue's binding pattern, wildcards
/// included (`order.*.submit`).
pub const BINDING_PATTERN_EXTENSION: &str = "x-binding-pattern";

/// The W3C `traceparent` format: version, trace id, parent id and flags in lowercase hex.
const TRACEPARENT_PATTERN: &str = "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$";
/// Comma-separated routing keys.
const ROUTING_KEYS_PATTERN: &str =
    r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*(,[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*)*$";

/// A queue bound to an exchange with a pattern: the runtime wiring of one consuming service,
/// described to the AsyncAPI export (services are values built at run time, so the export
/// cannot discover them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerBinding {
    queue: String,
    exchange: Exchange,
    pattern: BindingPattern,
}

impl ConsumerBinding {
    /// Queue `queue` bound to `exchange` with `pattern`.
    pub fn new(queue: impl Into<String>, exchange: Exchange, pattern: BindingPattern) -> Self {
        Self {
            queue: queue.into(),
            exchange,
            pattern,
        }
    }

    /// The queue (`billing_order`).
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The exchange the queue is bound to.
    pub fn exchange(&self) -> Exchange {
        self.exchange
    }

    /// The binding pattern (`order.*.submit`).
    pub fn pattern(&self) -> &BindingPattern {
        &self.pattern
    }

    /// Whether the queue receives the events of `contract`: same exchange, and the pattern
    /// matches the routing key by RabbitMQ's topic rules.
    pub fn receives(&self, contract: &EventContract) -> bool {
        contract.exchange().name() == self.exchange.name()
            && self.pattern.matches(contract.routing_key())
    }
}

/// The description of an AsyncAPI export: title, version, the consumer bindings, and the
/// contracts (every registered one unless [`AsyncApi::contracts`] narrows them).
///
/// ```standalone_crate
/// use event_manager::schema::AsyncApi;
/// use event_manager::{Event, Exchange};
///
/// const ORDER: Exchange = Exchange::topic("order");
///
/// /// An order.
/// #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema, Event)]
/// #[event(exchange = ORDER, version = "1.2.0", events(submit, chargeback))]
/// pub struct Order {
///     pub id: u64,
/// }
///
/// let api = AsyncApi::new("Orders", "1.0.0")
///     .contracts(Order::EVENTS)
///     .consumer("billing_order", ORDER, "order.*.submit".parse()?);
/// let doc = api.document();
/// assert_eq!(doc["asyncapi"], "3.0.0");
/// assert_eq!(doc["channels"]["order.v1.submit"]["address"], "order.v1.submit");
/// let receive = &doc["operations"]["receive.billing_order.order.v1.submit"];
/// assert_eq!(receive["action"], "receive");
/// assert_eq!(receive["x-binding-pattern"], "order.*.submit");
/// assert!(doc["operations"]["receive.billing_order.order.v1.chargeback"].is_null());
/// # Ok::<(), event_manager::RoutingError>(())
/// ```
#[derive(Debug, Clone)]
pub struct AsyncApi {
    title: String,
    version: String,
    description: Option<String>,
    consumers: Vec<ConsumerBinding>,
    contracts: Option<Vec<EventContract>>,
}

impl AsyncApi {
    /// An export titled `title`, the document (not the contracts) at version `version`, of
    /// every registered contract and no consumer.
    pub fn new(title: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            version: version.into(),
            description: None,
            consumers: Vec::new(),
            contracts: None,
        }
    }

    /// Sets the description of the document (`info.description`, CommonMark).
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Declares that queue `queue` is bound to `exchange` with `pattern`. Its receive
    /// operations cover every contract whose routing key the pattern matches.
    pub fn consumer(
        mut self,
        queue: impl Into<String>,
        exchange: Exchange,
        pattern: BindingPattern,
    ) -> Self {
        self.consumers
            .push(ConsumerBinding::new(queue, exchange, pattern));
        self
    }

    /// Exports `contracts` instead of every registered contract. May be called several times;
    /// the contracts add up.
    pub fn contracts<'a>(mut self, contracts: impl IntoIterator<Item = &'a EventContract>) -> Self {
        self.contracts
            .get_or_insert_with(Vec::new)
            .extend(contracts.into_iter().copied());
        self
    }

    /// The document title (`info.title`).
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The document version (`info.version`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The declared consumer bindings, in declaration order.
    pub fn consumers(&self) -> &[ConsumerBinding] {
        &self.consumers
    }

    /// The exported contracts, ordered by routing key, each once.
    pub fn events(&self) -> Vec<EventContract> {
        let mut all: Vec<EventContract> = match &self.contracts {
            Some(contracts) => contracts.clone(),
            None => registry::events().into_iter().copied().collect(),
        };
        all.sort_by_key(|c| (c.routing_key(), c.type_name()));
        all.dedup_by(|a, b| a.routing_key() == b.routing_key() && a.type_name() == b.type_name());
        all
    }

    /// The AsyncAPI 3.0.0 document, object keys sorted at every level.
    ///
    /// * One channel per routing key (the channel id and `address` are the routing key), with
    ///   the AMQP channel binding of its exchange (`is: routingKey`).
    /// * One message per routing key in `components.messages`, referenced by its channel:
    ///   `contentType` `application/json`, the wire headers as a headers schema, and the
    ///   payload as a reference to the exported JSON Schema file next to the document
    ///   (`{"$ref": "./order.v1.submit.json"}`).
    /// * One `send` operation per routing key, `send.<routing-key>`.
    /// * One `receive` operation per consumer queue and routing key its bindings match,
    ///   `receive.<queue>.<routing-key>`, carrying the queue in `x-queue` and the binding
    ///   pattern in `x-binding-pattern` (the first declared binding of the queue that matches,
    ///   since a queue receives a message once however many of its bindings match).
    pub fn document(&self) -> Value {
        let events = self.events();
        let mut channels = Map::new();
        let mut messages = Map::new();
        let mut operations = Map::new();
        for contract in &events {
            let key = contract.routing_key();
            channels.insert(key.to_owned(), channel(contract));
            messages.insert(key.to_owned(), message(contract));
            operations.insert(format!("send.{key}"), send_operation(contract));
        }
        for (queue, contract, pattern) in self.receivers(&events) {
            operations.insert(
                format!("receive.{queue}.{}", contract.routing_key()),
                receive_operation(queue, contract, pattern),
            );
        }
        let mut info = Map::new();
        info.insert("title".to_owned(), Value::String(self.title.clone()));
        info.insert("version".to_owned(), Value::String(self.version.clone()));
        if let Some(description) = &self.description {
            info.insert("description".to_owned(), Value::String(description.clone()));
        }
        let mut doc = json!({
            "asyncapi": ASYNCAPI_VERSION,
            "info": info,
            "defaultContentType": CONTENT_TYPE,
            "channels": channels,
            "operations": operations,
            "components": { "messages": messages },
        });
        doc.sort_all_objects();
        doc
    }

    /// Each (queue, contract) pair a consumer binding matches, with the first matching
    /// pattern of that queue.
    fn receivers<'a>(
        &'a self,
        events: &'a [EventContract],
    ) -> Vec<(&'a str, &'a EventContract, &'a BindingPattern)> {
        let mut seen: BTreeMap<(&str, &str), ()> = BTreeMap::new();
        let mut out = Vec::new();
        for binding in &self.consumers {
            for contract in events.iter().filter(|c| binding.receives(c)) {
                if seen
                    .insert((binding.queue(), contract.routing_key()), ())
                    .is_none()
                {
                    out.push((binding.queue(), contract, binding.pattern()));
                }
            }
        }
        out
    }
}

fn channel_ref(contract: &EventContract) -> Value {
    json!({ "$ref": format!("#/channels/{}", contract.routing_key()) })
}

fn channel_message_ref(contract: &EventContract) -> Value {
    let key = contract.routing_key();
    json!({ "$ref": format!("#/channels/{key}/messages/{key}") })
}

fn channel(contract: &EventContract) -> Value {
    let key = contract.routing_key();
    let exchange = contract.exchange();
    let mut channel = json!({
        "address": key,
        "messages": { key: { "$ref": format!("#/components/messages/{key}") } },
        "bindings": {
            "amqp": {
                "is": "routingKey",
                "exchange": {
                    "name": exchange.name(),
                    "type": "topic",
                    "durable": exchange.is_durable(),
                    "autoDelete": false,
                    "vhost": "/",
                },
                "bindingVersion": AMQP_BINDING_VERSION,
            }
        },
        VERSION_KEYWORD: contract.version_str(),
    });
    if !contract.description().is_empty() {
        channel["description"] = Value::String(contract.description().to_owned());
    }
    channel
}

fn message(contract: &EventContract) -> Value {
    let key = contract.routing_key();
    let schema = json_schema(contract);
    let mut message = json!({
        "name": key,
        "contentType": CONTENT_TYPE,
        "headers": headers_schema(contract),
        "payload": { "$ref": format!("./{}", schema_file_name(contract)) },
        "bindings": {
            "amqp": {
                "messageType": key,
                "bindingVersion": AMQP_BINDING_VERSION,
            }
        },
        VERSION_KEYWORD: contract.version_str(),
    });
    if let Some(title) = schema.get("title").and_then(Value::as_str) {
        message["title"] = Value::String(title.to_owned());
    }
    if !contract.description().is_empty() {
        message["description"] = Value::String(contract.description().to_owned());
    }
    message
}

/// The application headers a published event carries, as a JSON Schema.
fn headers_schema(contract: &EventContract) -> Value {
    let key = contract.routing_key();
    let major = contract.major();
    let version_pattern = format!(
        r"^{major}\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"
    );
    json!({
        "type": "object",
        "description": format!(
            "AMQP application headers. event-manager publishers set all of them, \
             `{TRACEPARENT_HEADER}` only when the publisher has a trace context and \
             `{PUBLISHED_AS_HEADER}` only when one event is published in several major \
             versions at once. Consumers require none: a message with only the routing key and \
             the JSON body is versioned by the `v<major>` word of its routing key."
        ),
        "properties": {
            VERSION_HEADER: {
                "type": "string",
                "description": "The full semver version of the contract the publisher was \
                    built with; its major is the one in the routing key.",
                "pattern": version_pattern,
                "examples": [contract.version_str()],
            },
            cloud_events::SPECVERSION: {
                "type": "string",
                "description": "CloudEvents specification version.",
                "const": "1.0",
            },
            cloud_events::ID: {
                "type": "string",
                "description": "CloudEvents id, equal to the AMQP message_id: unique per \
                    publish, kept on retries and dead letters.",
            },
            cloud_events::TYPE: {
                "type": "string",
                "description": "CloudEvents type: the routing key.",
                "const": key,
            },
            cloud_events::SOURCE: {
                "type": "string",
                "description": "CloudEvents source: the publishing service (AMQP app_id).",
            },
            cloud_events::TIME: {
                "type": "string",
                "description": "CloudEvents time: when the event was published (RFC 3339).",
                "format": "date-time",
            },
            cloud_events::DATASCHEMA: {
                "type": "string",
                "description": "CloudEvents dataschema: the $id of the payload's JSON Schema.",
                "const": schema_id(key),
            },
            TRACEPARENT_HEADER: {
                "type": "string",
                "description": "W3C trace context of the publisher.",
                "pattern": TRACEPARENT_PATTERN,
            },
            PUBLISHED_AS_HEADER: {
                "type": "string",
                "description": "The routing keys of every copy (this one included), \
                    comma-separated, when one event is published in several major versions at \
                    once. A consumer handles only the copy with the highest major it has a \
                    callback for.",
                "pattern": ROUTING_KEYS_PATTERN,
            },
        },
    })
}

fn send_operation(contract: &EventContract) -> Value {
    let key = contract.routing_key();
    json!({
        "action": "send",
        "summary": format!(
            "Publish `{key}` (version {}) to exchange `{}`.",
            contract.version_str(),
            contract.exchange().name()
        ),
        "channel": channel_ref(contract),
        "messages": [channel_message_ref(contract)],
        "bindings": {
            "amqp": {
                "deliveryMode": 2,
                "mandatory": true,
                "timestamp": true,
                "bindingVersion": AMQP_BINDING_VERSION,
            }
        },
    })
}

fn receive_operation(queue: &str, contract: &EventContract, pattern: &BindingPattern) -> Value {
    let key = contract.routing_key();
    json!({
        "action": "receive",
        "summary": format!(
            "Queue `{queue}` receives `{key}` through its binding `{pattern}` on exchange `{}`.",
            contract.exchange().name()
        ),
        "channel": channel_ref(contract),
        "messages": [channel_message_ref(contract)],
        "bindings": {
            "amqp": {
                "ack": true,
                "bindingVersion": AMQP_BINDING_VERSION,
            }
        },
        QUEUE_EXTENSION: queue,
        BINDING_PATTERN_EXTENSION: pattern.as_str(),
    })
}
