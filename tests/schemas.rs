//! The exported contract documents (`schemas/`): the checked-in files are what the code
//! exports, events serialized by the Rust types validate against their JSON Schemas (and wrong
//! instances do not), and the AsyncAPI document describes the routing of the example services.

// The export description (title, consumer bindings) is shared with the export command, so the
// check below compares with exactly what `cargo run --example export_schemas` writes.
#[path = "../examples/export_schemas.rs"]
#[allow(dead_code)]
mod export_schemas;

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use event_manager::envelope::{
    self, PUBLISHED_AS_HEADER, TRACEPARENT_HEADER, VERSION_HEADER, cloud_events,
};
use event_manager::message::HeaderValue;
use event_manager::schema::{
    self, AsyncApi, BINDING_PATTERN_EXTENSION, QUEUE_EXTENSION, Staleness, VERSION_KEYWORD,
    json_schema, schema_file_name,
};
use event_manager::{BindingPattern, Bus, Delivery, Event, EventContract, PublishOptions};
use event_manager_examples::{ORDER, Order, OrderLine, OrderSubmittedV2};
use jsonschema::Validator;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const SCHEMAS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas");
const KEYS: [&str; 3] = ["order.v1.chargeback", "order.v1.submit", "order.v2.submit"];

fn api() -> AsyncApi {
    match export_schemas::asyncapi() {
        Ok(api) => api,
        Err(e) => panic!("the example consumer bindings do not parse: {e}"),
    }
}

fn contract(routing_key: &str) -> EventContract {
    api()
        .events()
        .into_iter()
        .find(|c| c.routing_key() == routing_key)
        .unwrap_or_else(|| panic!("no exported contract {routing_key}"))
}

/// A draft 2020-12 validator of the exported schema of `routing_key`, checking formats.
fn validator(routing_key: &str) -> Validator {
    let schema = json_schema(&contract(routing_key));
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("the schema of {routing_key} does not compile: {e}"))
}

fn assert_valid(validator: &Validator, routing_key: &str, instance: &Value) {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{instance} does not validate against the schema of {routing_key}: {errors:#?}"
    );
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_else(|e| panic!("cannot serialize: {e}"))
}

#[test]
fn checked_in_schemas_are_up_to_date() {
    let stale = schema::find_stale(&api(), SCHEMAS_DIR)
        .unwrap_or_else(|e| panic!("cannot check {SCHEMAS_DIR}: {e}"));
    let list: Vec<String> = stale.iter().map(ToString::to_string).collect();
    assert!(
        stale.is_empty(),
        "schemas/ is not what the code exports:\n  {}\nregenerate it with `{}` and commit the result",
        list.join("\n  "),
        export_schemas::REGENERATE
    );
}

#[test]
fn every_example_contract_is_exported_once() {
    let api = api();
    let keys: Vec<&str> = api.events().iter().map(|c| c.routing_key()).collect();
    assert_eq!(keys, KEYS);
    let files = schema::files(&api).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "asyncapi.json",
            "order.v1.chargeback.json",
            "order.v1.submit.json",
            "order.v2.submit.json"
        ]
    );
    for text in files.values() {
        assert!(text.ends_with("}\n"), "a file lacks its trailing newline");
        let reparsed: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}"));
        let mut sorted = reparsed.clone();
        sorted.sort_all_objects();
        assert_eq!(
            serde_json::to_string_pretty(&sorted).ok().map(|s| s + "\n"),
            Some(text.clone()),
            "a file is not pretty JSON with sorted keys"
        );
    }
    assert_eq!(
        schema::files(&api).ok(),
        Some(files),
        "the export is not deterministic"
    );
}

#[test]
fn schema_roots_carry_id_title_description_and_version() {
    for event in Order::EVENTS.iter().chain(OrderSubmittedV2::EVENTS) {
        let schema = json_schema(event);
        let key = event.routing_key();
        assert_eq!(
            schema["$id"],
            envelope::schema_id(key),
            "the $id of {key} is not its cloudEvents_dataschema header"
        );
        assert_eq!(schema["$id"], format!("urn:event-manager:schema:{key}"));
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert_eq!(schema["description"], event.description());
        assert_eq!(schema[VERSION_KEYWORD], event.version_str());
        assert!(
            schema["$defs"]["OrderLine"].is_object(),
            "{key}: $defs kept"
        );
        assert_eq!(schema_file_name(event), format!("{key}.json"));
    }
    let v1 = json_schema(&Order::SUBMIT.contract().to_owned());
    assert_eq!(v1["title"], "Order");
    assert_eq!(
        v1["description"],
        "An order as it travels between services."
    );
    assert_eq!(v1["x-event-version"], "1.2.0");
    let v2 = json_schema(OrderSubmittedV2::SUBMIT.contract());
    assert_eq!(v2["title"], "OrderSubmittedV2");
    assert_eq!(
        v2["description"],
        "A submitted order, second major version: every order now names its currency."
    );
    assert_eq!(v2["x-event-version"], "2.0.0");
}

#[test]
fn exported_schemas_are_valid_against_the_2020_12_meta_schema() {
    for key in KEYS {
        let schema = json_schema(&contract(key));
        if let Err(e) = jsonschema::draft202012::meta::validate(&schema) {
            panic!("the schema of {key} is not valid 2020-12: {e}");
        }
    }
}

#[test]
fn serialized_events_validate_against_their_schemas() {
    let submit = validator("order.v1.submit");
    let chargeback = validator("order.v1.chargeback");
    let v2 = validator("order.v2.submit");
    for id in [0, 1, 2, 96, 97, 1_000_003, u64::MAX] {
        let order = Order::sample(id);
        assert_valid(&submit, "order.v1.submit", &to_json(&order));
        assert_valid(&chargeback, "order.v1.chargeback", &to_json(&order));
        assert_valid(
            &v2,
            "order.v2.submit",
            &to_json(&OrderSubmittedV2::from(order)),
        );
    }
    let empty = Order {
        id: 7,
        customer: String::new(),
        lines: Vec::new(),
    };
    assert_valid(&submit, "order.v1.submit", &to_json(&empty));
}

fn order_lines() -> impl Strategy<Value = Vec<OrderLine>> {
    prop::collection::vec(
        (any::<String>(), any::<u32>(), any::<u64>()).prop_map(|(sku, quantity, price)| {
            OrderLine {
                sku,
                quantity,
                unit_price_cents: price,
            }
        }),
        0..4,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_orders_validate(
        id in any::<u64>(),
        customer in any::<String>(),
        lines in order_lines(),
        currency in "[A-Z]{3}",
    ) {
        let order = Order { id, customer, lines };
        let v1 = to_json(&order);
        prop_assert!(validator("order.v1.submit").is_valid(&v1), "{}", v1);
        prop_assert!(validator("order.v1.chargeback").is_valid(&v1), "{}", v1);
        let mut v2 = OrderSubmittedV2::from(order);
        v2.currency = currency;
        let v2 = to_json(&v2);
        prop_assert!(validator("order.v2.submit").is_valid(&v2), "{}", v2);
    }
}

#[test]
fn wrong_instances_are_rejected() {
    let submit = validator("order.v1.submit");
    let v2 = validator("order.v2.submit");
    let good = to_json(&Order::sample(1));
    let mut cases: Vec<(&str, Value)> = Vec::new();
    let mut missing = good.clone();
    if let Some(o) = missing.as_object_mut() {
        o.remove("customer");
    }
    cases.push(("missing required field", missing));
    let mut wrong_type = good.clone();
    wrong_type["id"] = json!("one");
    cases.push(("id of the wrong type", wrong_type));
    let mut negative = good.clone();
    negative["id"] = json!(-1);
    cases.push(("negative id", negative));
    let mut fractional = good.clone();
    fractional["id"] = json!(1.5);
    cases.push(("fractional id", fractional));
    let mut bad_line = good.clone();
    bad_line["lines"][0]["quantity"] = json!("two");
    cases.push(("order line with a wrong type (through $defs)", bad_line));
    let mut line_missing = good.clone();
    if let Some(o) = line_missing["lines"][0].as_object_mut() {
        o.remove("sku");
    }
    cases.push(("order line missing a field", line_missing));
    let mut lines_object = good.clone();
    lines_object["lines"] = json!({});
    cases.push(("lines not an array", lines_object));
    cases.push(("null", Value::Null));
    for (what, instance) in &cases {
        assert!(
            !submit.is_valid(instance),
            "{what}: {instance} validates against order.v1.submit"
        );
    }
    assert!(
        !v2.is_valid(&good),
        "a version 1 order (no currency) validates against order.v2.submit"
    );
    let mut v2_bad = to_json(&OrderSubmittedV2::from(Order::sample(1)));
    v2_bad["currency"] = json!(978);
    assert!(!v2.is_valid(&v2_bad), "a numeric currency validates");
}

#[test]
fn asyncapi_has_a_channel_per_routing_key() {
    let api = api();
    let doc = api.document();
    assert_eq!(doc["asyncapi"], "3.0.0");
    assert_eq!(doc["defaultContentType"], envelope::CONTENT_TYPE);
    let channels = doc["channels"].as_object().cloned().unwrap_or_default();
    let keys: Vec<&str> = channels.keys().map(String::as_str).collect();
    assert_eq!(keys, KEYS);
    let files = schema::files(&api).unwrap_or_else(|e| panic!("{e}"));
    for c in api.events() {
        let key = c.routing_key();
        let channel = &channels[key];
        assert_eq!(channel["address"], key);
        assert_eq!(
            channel["bindings"]["amqp"],
            json!({
                "is": "routingKey",
                "exchange": {
                    "name": "order",
                    "type": "topic",
                    "durable": true,
                    "autoDelete": false,
                    "vhost": "/",
                },
                "bindingVersion": "0.3.0",
            })
        );
        assert_eq!(
            channel["messages"][key]["$ref"],
            format!("#/components/messages/{key}")
        );
        let message = &doc["components"]["messages"][key];
        assert_eq!(message["contentType"], "application/json");
        let payload = message["payload"]["$ref"].as_str().unwrap_or_default();
        assert_eq!(payload, format!("./{key}.json"));
        assert!(
            files.contains_key(payload.trim_start_matches("./")),
            "{payload} is not exported"
        );
        let headers = &message["headers"]["properties"];
        for name in [
            VERSION_HEADER,
            cloud_events::SPECVERSION,
            cloud_events::ID,
            cloud_events::TYPE,
            cloud_events::SOURCE,
            cloud_events::TIME,
            cloud_events::DATASCHEMA,
            TRACEPARENT_HEADER,
            PUBLISHED_AS_HEADER,
        ] {
            assert!(headers[name].is_object(), "{key}: no header {name}");
        }
        assert_eq!(
            headers[cloud_events::DATASCHEMA]["const"],
            envelope::schema_id(key)
        );
        let send = &doc["operations"][format!("send.{key}")];
        assert_eq!(send["action"], "send");
        assert_eq!(send["channel"]["$ref"], format!("#/channels/{key}"));
        assert_eq!(
            send["messages"],
            json!([{ "$ref": format!("#/channels/{key}/messages/{key}") }])
        );
    }
}

#[test]
fn receive_operations_follow_the_binding_patterns() {
    let doc = api().document();
    let operations = doc["operations"].as_object().cloned().unwrap_or_default();
    let mut received: BTreeSet<(String, String, String)> = BTreeSet::new();
    for op in operations.values().filter(|op| op["action"] == "receive") {
        let queue = op[QUEUE_EXTENSION].as_str().unwrap_or_default();
        let pattern = op[BINDING_PATTERN_EXTENSION].as_str().unwrap_or_default();
        let channel = op["channel"]["$ref"].as_str().unwrap_or_default();
        let key = channel.trim_start_matches("#/channels/");
        let parsed = BindingPattern::parse(pattern)
            .unwrap_or_else(|e| panic!("{pattern} is not a binding pattern: {e}"));
        assert!(parsed.matches(key), "{pattern} does not match {key}");
        assert_eq!(
            op["messages"],
            json!([{ "$ref": format!("#/channels/{key}/messages/{key}") }])
        );
        received.insert((queue.to_owned(), pattern.to_owned(), key.to_owned()));
    }
    let expected: BTreeSet<(String, String, String)> = [
        ("billing_order", "order.*.submit", "order.v1.submit"),
        ("billing_order", "order.*.submit", "order.v2.submit"),
        ("logistics_order", "order.#", "order.v1.chargeback"),
        ("logistics_order", "order.#", "order.v1.submit"),
        ("logistics_order", "order.#", "order.v2.submit"),
    ]
    .into_iter()
    .map(|(q, p, k)| (q.to_owned(), p.to_owned(), k.to_owned()))
    .collect();
    assert_eq!(received, expected);
    assert_eq!(
        operations["receive.billing_order.order.v1.submit"][BINDING_PATTERN_EXTENSION],
        "order.*.submit"
    );
}

#[test]
fn a_queue_matched_by_several_bindings_receives_each_event_once() {
    let doc = AsyncApi::new("t", "1.0.0")
        .contracts(Order::EVENTS)
        .consumer(
            "audit",
            ORDER,
            "order.#".parse().unwrap_or_else(|e| panic!("{e}")),
        )
        .consumer(
            "audit",
            ORDER,
            "#.submit".parse().unwrap_or_else(|e| panic!("{e}")),
        )
        .document();
    let ops = doc["operations"].as_object().cloned().unwrap_or_default();
    let receive: Vec<(&String, &Value)> = ops
        .iter()
        .filter(|(_, op)| op["action"] == "receive")
        .collect();
    assert_eq!(receive.len(), 2, "{receive:#?}");
    assert_eq!(
        ops["receive.audit.order.v1.submit"][BINDING_PATTERN_EXTENSION],
        "order.#"
    );
    let other_exchange = AsyncApi::new("t", "1.0.0")
        .contracts(Order::EVENTS)
        .consumer(
            "audit",
            event_manager::Exchange::topic("payment"),
            "#".parse().unwrap_or_else(|e| panic!("{e}")),
        )
        .document();
    assert!(
        other_exchange["operations"]
            .as_object()
            .is_some_and(|ops| ops.values().all(|op| op["action"] == "send")),
        "a binding on another exchange receives order events"
    );
}

/// A fresh directory under the system temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    std::env::temp_dir().join(format!("{name}-{}-{nanos}", std::process::id()))
}

#[test]
fn check_and_write_name_missing_differing_and_extra_files() {
    let api = api();
    let dir = temp_dir("event-manager-schemas");
    let stale = schema::find_stale(&api, &dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stale.len(), 4);
    assert!(stale.iter().all(|f| f.staleness == Staleness::Missing));

    let written = schema::write(&api, &dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(written, stale, "write reports what it created");
    assert_eq!(schema::find_stale(&api, &dir).ok(), Some(Vec::new()));
    assert_eq!(schema::write(&api, &dir).ok(), Some(Vec::new()));

    let write = |name: &str, text: &str| {
        fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("{e}"));
    };
    write("order.v1.submit.json", "{}\n");
    write("order.v9.gone.json", "{}\n");
    write("README.md", "not an export\n");
    fs::remove_file(dir.join("asyncapi.json")).unwrap_or_else(|e| panic!("{e}"));
    let stale = schema::find_stale(&api, &dir).unwrap_or_else(|e| panic!("{e}"));
    let found: Vec<(&str, Staleness)> = stale
        .iter()
        .map(|f| (f.name.as_str(), f.staleness))
        .collect();
    assert_eq!(
        found,
        [
            ("asyncapi.json", Staleness::Missing),
            ("order.v1.submit.json", Staleness::Differs),
            ("order.v9.gone.json", Staleness::Extra),
        ]
    );
    assert_eq!(stale[0].path, dir.join("asyncapi.json"));

    let fixed = schema::write(&api, &dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fixed, stale);
    assert_eq!(schema::find_stale(&api, &dir).ok(), Some(Vec::new()));
    assert!(!dir.join("order.v9.gone.json").exists());
    assert!(dir.join("README.md").exists(), "other files are left alone");
    fs::remove_dir_all(&dir).ok();
}

/// A `*.json` file whose name is not UTF-8 is no export: it is reported as extra and
/// removed by `write`, like any other. It used to be skipped.
#[cfg(unix)]
#[test]
fn a_json_file_with_a_name_that_is_not_utf8_is_extra() {
    use std::os::unix::ffi::OsStrExt;
    let api = api();
    let dir = temp_dir("event-manager-schemas-utf8");
    schema::write(&api, &dir).unwrap_or_else(|e| panic!("{e}"));
    let odd = dir.join(std::ffi::OsStr::from_bytes(b"order.v1.\xffsubmit.json"));
    fs::write(&odd, "{}\n").unwrap_or_else(|e| panic!("{e}"));
    let stale = schema::find_stale(&api, &dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0].staleness, Staleness::Extra);
    assert_eq!(stale[0].path, odd);
    schema::write(&api, &dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(!odd.exists(), "write removed it");
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_unwritable_directory_is_an_error_naming_the_path() {
    let file = temp_dir("event-manager-schemas-file");
    fs::write(&file, "a file, not a directory").unwrap_or_else(|e| panic!("{e}"));
    let error = schema::write(&api(), &file).err();
    let text = error.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        text.contains(&file.display().to_string()),
        "the error does not name the path: {text:?}"
    );
    fs::remove_file(&file).ok();
}

fn header_json(delivery: &Delivery) -> Value {
    let mut map = Map::new();
    for (name, value) in delivery.headers().iter() {
        let value = match value {
            HeaderValue::Str(s) => Value::String(s.to_string()),
            HeaderValue::Int(i) => json!(i),
            HeaderValue::Bool(b) => Value::Bool(*b),
            other => Value::String(other.to_string()),
        };
        map.insert(name.to_owned(), value);
    }
    Value::Object(map)
}

#[tokio::test]
async fn published_events_match_the_exported_documents() {
    type Seen = (String, Value, Value);
    let bus = Bus::in_memory().with_app_id("orders");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Seen>();
    let mut logistics = bus.service("logistics_order");
    logistics
        .bind(ORDER, "order.#")
        .unwrap_or_else(|e| panic!("{e}"));
    let forward = |tx: tokio::sync::mpsc::UnboundedSender<Seen>| {
        move |ctx: &Delivery| {
            let body = serde_json::from_slice(ctx.body()).unwrap_or(Value::Null);
            tx.send((ctx.routing_key().to_owned(), header_json(ctx), body))
                .ok();
        }
    };
    for event in [Order::SUBMIT, Order::CHARGEBACK] {
        let f = forward(tx.clone());
        logistics.on(event, move |_: Order, ctx: Delivery| {
            f(&ctx);
            async { Ok(()) }
        });
    }
    let f = forward(tx.clone());
    logistics.on(
        OrderSubmittedV2::SUBMIT,
        move |_: OrderSubmittedV2, ctx: Delivery| {
            f(&ctx);
            async { Ok(()) }
        },
    );
    let running = logistics.start().await.unwrap_or_else(|e| panic!("{e}"));
    let traced = PublishOptions {
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()),
        ..PublishOptions::default()
    };
    let published = [
        bus.publish_with(Order::SUBMIT, &Order::sample(1), &traced)
            .await,
        bus.publish(Order::CHARGEBACK, &Order::sample(2)).await,
        bus.publish(
            OrderSubmittedV2::SUBMIT,
            &OrderSubmittedV2::from(Order::sample(3)),
        )
        .await,
    ];
    for p in published {
        p.unwrap_or_else(|e| panic!("{e}"));
    }

    let doc = api().document();
    let mut seen = BTreeSet::new();
    for _ in 0..3 {
        let (key, headers, body) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("an event was not delivered"));
        assert_valid(&validator(&key), &key, &body);
        let headers_schema = &doc["components"]["messages"][key.as_str()]["headers"];
        let headers_validator = jsonschema::draft7::options()
            .should_validate_formats(true)
            .build(headers_schema)
            .unwrap_or_else(|e| panic!("the headers schema of {key} does not compile: {e}"));
        assert_valid(&headers_validator, &key, &headers);
        let mut wrong = headers.clone();
        wrong[cloud_events::TYPE] = json!("order.v9.submit");
        assert!(
            !headers_validator.is_valid(&wrong),
            "the headers schema of {key} accepts another event type"
        );
        assert_eq!(
            headers[cloud_events::DATASCHEMA],
            json_schema(&contract(&key))["$id"],
            "the dataschema header of {key} is not the exported $id"
        );
        seen.insert(key);
    }
    assert_eq!(seen, KEYS.iter().map(|k| (*k).to_owned()).collect());
    running.shutdown().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn copies_published_in_several_majors_match_the_headers_schema() {
    type Seen = (String, Value, Value);
    let bus = Bus::in_memory().with_app_id("orders");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Seen>();
    let mut billing = bus.service("billing_order");
    billing
        .bind(ORDER, "order.*.submit")
        .unwrap_or_else(|e| panic!("{e}"));
    billing.on(Order::SUBMIT, move |_: Order, ctx: Delivery| {
        let body = serde_json::from_slice(ctx.body()).unwrap_or(Value::Null);
        tx.send((ctx.routing_key().to_owned(), header_json(&ctx), body))
            .ok();
        async { Ok(()) }
    });
    let running = billing.start().await.unwrap_or_else(|e| panic!("{e}"));
    let v1 = Order::sample(5);
    let v2 = OrderSubmittedV2::from(v1.clone());
    bus.publish_versions()
        .version(Order::SUBMIT, &v1)
        .and_then(|p| p.version(OrderSubmittedV2::SUBMIT, &v2))
        .unwrap_or_else(|e| panic!("{e}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (key, headers, body) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the v1 copy was not delivered"));
    assert_eq!(key, "order.v1.submit");
    assert_valid(&validator(&key), &key, &body);
    assert!(
        headers[PUBLISHED_AS_HEADER].is_string(),
        "no {PUBLISHED_AS_HEADER} header: {headers}"
    );
    let doc = api().document();
    let headers_validator = jsonschema::draft7::options()
        .should_validate_formats(true)
        .build(&doc["components"]["messages"][key.as_str()]["headers"])
        .unwrap_or_else(|e| panic!("the headers schema of {key} does not compile: {e}"));
    assert_valid(&headers_validator, &key, &headers);
    running.shutdown().await.unwrap_or_else(|e| panic!("{e}"));
}
