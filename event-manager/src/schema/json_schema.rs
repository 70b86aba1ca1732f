//! The JSON Schema (2020-12) document exported for one event contract.

use serde_json::Value;

use crate::contract::EventContract;
/// The root keyword carrying the full semver version of the contract (`1.2.0`), the value of
/// the [`VERSION_HEADER`](crate::envelope::VERSION_HEADER) a published event carries. An `x-`
/// extension keyword of JSON Schema, which validators ignore.
pub const VERSION_KEYWORD: &str = "x-event-version";

/// The file the JSON Schema of `contract` is exported to: `<routing-key>.json`
/// (`order.v1.submit.json`).
pub fn schema_file_name(contract: &EventContract) -> String {
    format!("{}.json", contract.routing_key())
}

/// The title used when the payload schema has none: the payload type's name without its
/// module path or generic arguments (`Order`).
fn short_type_name(type_name: &str) -> &str {
    let base = type_name.split('<').next().unwrap_or(type_name);
    base.rsplit("::").next().unwrap_or(base)
}

/// The exported JSON Schema (2020-12) of the payload of `contract`.
///
/// It is the schema `schemars` generates (keeping its `$schema` and `$defs`) with these root
/// keywords set:
///
/// * `$id`: [`envelope::schema_id`](crate::envelope::schema_id) of the routing key
///   (`urn:event-manager:schema:order.v1.submit`), the value of the `cloudEvents_dataschema`
///   header of every published event;
/// * `title`: the schema's title, by default the payload type's name (`Order`);
/// * `description`: the payload type's doc comment, when it has one;
/// * [`x-event-version`](VERSION_KEYWORD): the full version of the contract (`1.2.0`).
///
/// Object keys are sorted at every level, so the document is the same on every run.
///
/// ```standalone_crate
/// use event_manager::schema::json_schema;
/// use event_manager::{Event, Exchange};
///
/// const ORDER: Exchange = Exchange::topic("order");
///
/// /// An order.
/// #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema, Event)]
/// #[event(exchange = ORDER, version = "1.2.0", events(submit))]
/// pub struct Order {
///     pub id: u64,
/// }
///
/// let schema = json_schema(Order::SUBMIT.contract());
/// assert_eq!(schema["$id"], "urn:event-manager:schema:order.v1.submit");
/// assert_eq!(schema["title"], "Order");
/// assert_eq!(schema["description"], "An order.");
/// assert_eq!(schema["x-event-version"], "1.2.0");
/// assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
/// ```
pub fn json_schema(contract: &EventContract) -> Value {
    let mut schema = contract.payload_schema();
    let root = schema.ensure_object();
    root.insert(
        "$id".to_owned(),
        Value::String(contract.schema_id().to_owned()),
    );
    let has_title = root
        .get("title")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty());
    if !has_title {
        root.insert(
            "title".to_owned(),
            Value::String(short_type_name(contract.type_name()).to_owned()),
        );
    }
    if !contract.description().is_empty() {
        root.insert(
            "description".to_owned(),
            Value::String(contract.description().to_owned()),
        );
    }
    root.insert(
        VERSION_KEYWORD.to_owned(),
        Value::String(contract.version_str().to_owned()),
    );
    let mut value = schema.to_value();
    value.sort_all_objects();
    value
}

#[cfg(test)]
mod tests {
    use super::short_type_name;

    #[test]
    fn short_type_names() {
        assert_eq!(short_type_name("contracts::Order"), "Order");
        assert_eq!(short_type_name("Order"), "Order");
        assert_eq!(
            short_type_name("contracts::Wrapper<contracts::Order>"),
            "Wrapper"
        );
    }
}
