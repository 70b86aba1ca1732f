//! Table-driven tests of the contract compatibility checker (`event_manager::compat`).
//!
//! Each case: old schema, new schema, old version, new version, mode → the bump the changes
//! require and whether the actual bump is sufficient (optionally: a path that must be reported).

use event_manager::compat::{Bump, Mode, Version, check, diff};
use serde_json::{Value, json};

struct Case {
    name: &'static str,
    old: Value,
    new: Value,
    old_version: &'static str,
    new_version: &'static str,
    mode: Mode,
    required: Bump,
    sufficient: bool,
    /// A path that must appear among the reported changes.
    path: Option<&'static str>,
}

fn case(
    name: &'static str,
    old: Value,
    new: Value,
    versions: (&'static str, &'static str),
    mode: Mode,
    required: Bump,
    sufficient: bool,
) -> Case {
    Case {
        name,
        old,
        new,
        old_version: versions.0,
        new_version: versions.1,
        mode,
        required,
        sufficient,
        path: None,
    }
}

impl Case {
    fn at(mut self, path: &'static str) -> Case {
        self.path = Some(path);
        self
    }
}

/// An object schema with the given properties and required names.
fn object(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required})
}

/// A closed object schema (serde `deny_unknown_fields`).
fn closed(properties: Value, required: &[&str]) -> Value {
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false
    })
}

fn order_v1() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "OrderSubmitted",
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "customer": {"$ref": "#/$defs/Customer"},
            "lines": {"type": "array", "items": {"$ref": "#/$defs/Line"}, "minItems": 1}
        },
        "required": ["id", "customer", "lines"],
        "$defs": {
            "Customer": {
                "type": "object",
                "properties": {
                    "email": {"type": "string"},
                    "name": {"type": ["string", "null"]}
                },
                "required": ["email"]
            },
            "Line": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string"},
                    "qty": {"type": "integer", "format": "uint32", "minimum": 0}
                },
                "required": ["sku", "qty"]
            }
        }
    })
}

/// `order_v1` with `edit` applied to a clone.
fn order_with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut schema = order_v1();
    edit(&mut schema);
    schema
}

/// Sets (inserting if absent) the member at `pointer` (`/parent/pointer/key`).
fn set(schema: &mut Value, pointer: &str, value: Value) {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer with a key");
    match schema.pointer_mut(parent).and_then(Value::as_object_mut) {
        Some(map) => {
            map.insert(key.to_owned(), value);
        }
        None => panic!("test fixture has no object at {parent:?}"),
    }
}

fn remove(schema: &mut Value, pointer: &str, key: &str) {
    match schema.pointer_mut(pointer).and_then(Value::as_object_mut) {
        Some(map) => {
            map.remove(key);
        }
        None => panic!("test fixture has no object at {pointer}"),
    }
}

/// A serde internally tagged enum as schemars exports it.
fn tagged(variants: &[(&str, Value)]) -> Value {
    let one_of: Vec<Value> = variants
        .iter()
        .map(|(tag, fields)| {
            let mut properties = json!({"kind": {"type": "string", "const": tag}});
            if let (Some(target), Some(extra)) = (properties.as_object_mut(), fields.as_object()) {
                for (key, value) in extra {
                    target.insert(key.clone(), value.clone());
                }
            }
            json!({"type": "object", "properties": properties, "required": ["kind"]})
        })
        .collect();
    json!({"oneOf": one_of})
}

fn tree(def_name: &str, extra_field: bool) -> Value {
    let mut node = json!({
        "type": "object",
        "properties": {
            "value": {"type": "integer"},
            "children": {"type": "array", "items": {"$ref": format!("#/$defs/{def_name}")}}
        },
        "required": ["value", "children"]
    });
    if extra_field {
        set(
            &mut node,
            "/properties/label",
            json!({"type": ["string", "null"]}),
        );
    }
    let mut defs = serde_json::Map::new();
    defs.insert(def_name.to_owned(), node);
    json!({"$ref": format!("#/$defs/{def_name}"), "$defs": defs})
}

/// Rust contract types as a producer would evolve them; their schemas come from schemars.
#[allow(dead_code)]
mod rust_types {
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    pub mod v1 {
        use super::*;

        #[derive(Serialize, Deserialize, JsonSchema)]
        pub struct Line {
            pub sku: String,
            pub qty: u32,
        }

        #[derive(Serialize, Deserialize, JsonSchema)]
        #[serde(tag = "kind")]
        pub enum Status {
            Created,
            Cancelled { reason: String },
        }

        /// An order was submitted.
        #[derive(Serialize, Deserialize, JsonSchema)]
        pub struct Order {
            pub id: String,
            pub lines: Vec<Line>,
            pub status: Status,
        }
    }

    /// v1 with an `Option` field added.
    pub mod optional_added {
        use super::*;

        /// An order was submitted.
        #[derive(Serialize, Deserialize, JsonSchema)]
        pub struct Order {
            pub id: String,
            pub lines: Vec<super::v1::Line>,
            pub status: super::v1::Status,
            pub memo: Option<String>,
        }
    }

    /// v1 with a `#[serde(default)]` field added to the line type, renamed `OrderLine`.
    pub mod default_added {
        use super::*;

        #[derive(Serialize, Deserialize, JsonSchema)]
        pub struct OrderLine {
            pub sku: String,
            pub qty: u32,
            #[serde(default)]
            pub discount: u8,
        }

        /// An order was submitted.
        #[derive(Serialize, Deserialize, JsonSchema)]
        pub struct Order {
            pub id: String,
            pub lines: Vec<OrderLine>,
            pub status: super::v1::Status,
        }
    }

    /// v1 with the line type renamed only.
    pub mod renamed {
        use super::*;

        #[derive(Serialize, Deserialize, JsonSchema)]
        pub struct OrderLine {
            pub sku: String,
            pub qty: u32,
        }

        /// An order was submitted.
        #[derive(Serialize, Deserialize, JsonSchema)]
        pub struct Order {
            pub id: String,
            pub lines: Vec<OrderLine>,
            pub status: super::v1::Status,
        }
    }

    /// v1 with a new enum variant, a wider quantity and a new doc comment.
    pub mod widened {
        use super::*;

        #[derive(Serialize, Deserialize, JsonSchema)]
        pub struct Line {
            pub sku: String,
            pub qty: u64,
        }

        #[derive(Serialize, Deserialize, JsonSchema)]
        #[serde(tag = "kind")]
        pub enum Status {
            Created,
            Cancelled { reason: String },
            Shipped,
        }

        /// An order was submitted by a customer.
        #[derive(Serialize, Deserialize, JsonSchema)]
        pub struct Order {
            pub id: String,
            pub lines: Vec<Line>,
            pub status: Status,
        }
    }

    /// v1 with `deny_unknown_fields` on the order.
    pub mod strict {
        use super::*;

        /// An order was submitted.
        #[derive(Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct Order {
            pub id: String,
            pub lines: Vec<super::v1::Line>,
            pub status: super::v1::Status,
        }
    }

    /// v1 with only the doc comment changed.
    pub mod redocumented {
        use super::*;

        /// An order was submitted (see the ordering guide).
        #[derive(Serialize, Deserialize, JsonSchema)]
        pub struct Order {
            pub id: String,
            pub lines: Vec<super::v1::Line>,
            pub status: super::v1::Status,
        }
    }
}

/// The JSON Schema schemars generates for `T`.
fn schema<T: schemars::JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).expect("schema serializes")
}

use Bump::{Major, Minor, None as NoBump, Patch};
use Mode::{Backward, Forward, Full};

fn cases() -> Vec<Case> {
    let id = || json!({"id": {"type": "string"}});
    let id_note = || json!({"id": {"type": "string"}, "note": {"type": ["string", "null"]}});
    use rust_types::*;
    vec![
        // --- schemas generated by schemars from Rust types ------------------------------
        case("schemars: Option field added", schema::<v1::Order>(), schema::<optional_added::Order>(),
            ("1.0.0", "1.1.0"), Full, Minor, true).at("/properties/memo"),
        case("schemars: serde(default) field added in a renamed type",
            schema::<v1::Order>(), schema::<default_added::Order>(),
            ("1.0.0", "1.1.0"), Full, Minor, true).at("/properties/lines/items/properties/discount"),
        case("schemars: nested type renamed only", schema::<v1::Order>(), schema::<renamed::Order>(),
            ("1.0.0", "1.0.0"), Full, NoBump, true),
        case("schemars: variant added and u32 widened, full mode", schema::<v1::Order>(), schema::<widened::Order>(),
            ("1.0.0", "1.1.0"), Full, Major, false).at("/properties/status/oneOf/2"),
        case("schemars: variant added and u32 widened, backward mode", schema::<v1::Order>(), schema::<widened::Order>(),
            ("1.0.0", "1.1.0"), Backward, Minor, true).at("/properties/lines/items/properties/qty"),
        case("schemars: deny_unknown_fields added", schema::<v1::Order>(), schema::<strict::Order>(),
            ("1.0.0", "1.1.0"), Full, Major, false).at("/additionalProperties"),
        case("schemars: doc comment changed", schema::<v1::Order>(), schema::<redocumented::Order>(),
            ("1.0.0", "1.0.1"), Full, Patch, true).at(""),
        // --- no change / annotations ---------------------------------------------------
        case("identical, same version", order_v1(), order_v1(), ("1.2.0", "1.2.0"), Full, NoBump, true),
        case("identical, patch bump", order_v1(), order_v1(), ("1.2.0", "1.2.1"), Full, NoBump, true),
        case(
            "description only, same version",
            order_v1(),
            order_with(|s| set(s, "/properties/id/description", json!("the order id"))),
            ("1.2.0", "1.2.0"), Full, Patch, false,
        ).at("/properties/id"),
        case(
            "description only, patch bump",
            order_v1(),
            order_with(|s| set(s, "/properties/id/description", json!("the order id"))),
            ("1.2.0", "1.2.1"), Full, Patch, true,
        ),
        case(
            "title and examples at root, minor bump",
            order_v1(),
            order_with(|s| {
                set(s, "/title", json!("OrderSubmittedEvent"));
                set(s, "/examples", json!([{"id": "x"}]));
            }),
            ("1.2.0", "1.3.0"), Full, Patch, true,
        ),
        case(
            "annotation inside a referenced definition",
            order_v1(),
            order_with(|s| set(s, "/$defs/Customer/description", json!("who ordered"))),
            ("1.2.0", "1.2.0"), Full, Patch, false,
        ).at("/properties/customer"),
        case(
            "only x-event-version differs",
            json!({"x-event-version": "1.0.0", "type": "string"}),
            json!({"x-event-version": "1.0.1", "type": "string"}),
            ("1.0.0", "1.0.1"), Full, NoBump, true,
        ),
        // --- properties ------------------------------------------------------------------
        case("optional property added, minor bump", object(id(), &["id"]), object(id_note(), &["id"]),
            ("1.2.0", "1.3.0"), Full, Minor, true).at("/properties/note"),
        case("optional property added, patch bump", object(id(), &["id"]), object(id_note(), &["id"]),
            ("1.2.0", "1.2.1"), Full, Minor, false),
        case("optional property added, same version", object(id(), &["id"]), object(id_note(), &["id"]),
            ("1.2.0", "1.2.0"), Full, Minor, false),
        case(
            "required property added without default",
            object(id(), &["id"]),
            object(json!({"id": {"type": "string"}, "total": {"type": "integer"}}), &["id", "total"]),
            ("1.2.0", "1.3.0"), Full, Major, false,
        ).at("/properties/total"),
        case(
            "required property added without default, forward mode",
            object(id(), &["id"]),
            object(json!({"id": {"type": "string"}, "total": {"type": "integer"}}), &["id", "total"]),
            ("1.2.0", "1.3.0"), Forward, Minor, true,
        ),
        case(
            "required property added with default",
            object(id(), &["id"]),
            object(json!({"id": {"type": "string"}, "total": {"type": "integer", "default": 0}}), &["id", "total"]),
            ("1.2.0", "1.3.0"), Full, Minor, true,
        ),
        case(
            "property added to a closed object",
            closed(id(), &["id"]),
            closed(id_note(), &["id"]),
            ("1.2.0", "1.3.0"), Full, Major, false,
        ),
        case(
            "property added to a closed object, backward mode",
            closed(id(), &["id"]),
            closed(id_note(), &["id"]),
            ("1.2.0", "1.3.0"), Backward, Minor, true,
        ),
        case("optional property removed", object(id_note(), &["id"]), object(id(), &["id"]),
            ("1.2.0", "1.3.0"), Full, Minor, true).at("/properties/note"),
        case(
            "optional property removed from a closed object",
            closed(id_note(), &["id"]),
            closed(id(), &["id"]),
            ("1.2.0", "1.3.0"), Full, Major, false,
        ),
        case(
            "required property removed",
            order_v1(),
            order_with(|s| {
                remove(s, "/properties", "id");
                set(s, "/required", json!(["customer", "lines"]));
            }),
            ("1.2.0", "1.3.0"), Full, Major, false,
        ).at("/properties/id"),
        case(
            "required property removed, backward mode",
            order_v1(),
            order_with(|s| {
                remove(s, "/properties", "id");
                set(s, "/required", json!(["customer", "lines"]));
            }),
            ("1.2.0", "1.3.0"), Backward, Minor, true,
        ),
        case(
            "required property removed, major bump",
            order_v1(),
            order_with(|s| {
                remove(s, "/properties", "id");
                set(s, "/required", json!(["customer", "lines"]));
            }),
            ("1.2.0", "2.0.0"), Full, Major, true,
        ),
        case(
            "optional became required",
            object(id_note(), &["id"]), object(id_note(), &["id", "note"]),
            ("1.2.0", "1.3.0"), Full, Major, false,
        ).at("/properties/note"),
        case(
            "optional became required, forward mode",
            object(id_note(), &["id"]), object(id_note(), &["id", "note"]),
            ("1.2.0", "1.3.0"), Forward, Minor, true,
        ),
        case(
            "optional became required with a default",
            object(id_note(), &["id"]),
            object(json!({"id": {"type": "string"}, "note": {"type": ["string", "null"], "default": null}}), &["id", "note"]),
            ("1.2.0", "1.3.0"), Full, Minor, true,
        ),
        case(
            "required became optional",
            object(id_note(), &["id", "note"]), object(id_note(), &["id"]),
            ("1.2.0", "1.3.0"), Full, Major, false,
        ),
        case(
            "required became optional, backward mode",
            object(id_note(), &["id", "note"]), object(id_note(), &["id"]),
            ("1.2.0", "1.3.0"), Backward, Minor, true,
        ),
        case(
            "property literally named `description` added",
            object(id(), &["id"]),
            object(json!({"id": {"type": "string"}, "description": {"type": ["string", "null"]}}), &["id"]),
            ("1.2.0", "1.2.1"), Full, Minor, false,
        ).at("/properties/description"),
        // --- types ------------------------------------------------------------------------
        case("integer widened to nullable", json!({"type": "integer"}), json!({"type": ["integer", "null"]}),
            ("1.0.0", "1.1.0"), Full, Major, false),
        case("integer widened to nullable, backward mode", json!({"type": "integer"}), json!({"type": ["integer", "null"]}),
            ("1.0.0", "1.1.0"), Backward, Minor, true),
        case("integer widened to number, backward mode", json!({"type": "integer"}), json!({"type": "number"}),
            ("1.0.0", "1.1.0"), Backward, Minor, true),
        case("integer widened to number, forward mode", json!({"type": "integer"}), json!({"type": "number"}),
            ("1.0.0", "1.1.0"), Forward, Major, false),
        case("number narrowed to integer, forward mode", json!({"type": "number"}), json!({"type": "integer"}),
            ("1.0.0", "1.1.0"), Forward, Minor, true),
        case("number narrowed to integer, full mode", json!({"type": "number"}), json!({"type": "integer"}),
            ("1.0.0", "1.1.0"), Full, Major, false),
        case("string changed to integer, backward mode", json!({"type": "string"}), json!({"type": "integer"}),
            ("1.0.0", "1.1.0"), Backward, Major, false),
        case("string changed to integer, major bump", json!({"type": "string"}), json!({"type": "integer"}),
            ("1.0.0", "2.0.0"), Full, Major, true),
        // --- enum / const -----------------------------------------------------------------
        case("enum value added, backward mode",
            json!({"type": "string", "enum": ["new", "paid"]}),
            json!({"type": "string", "enum": ["new", "paid", "shipped"]}),
            ("1.0.0", "1.1.0"), Backward, Minor, true),
        case("enum value added, full mode",
            json!({"type": "string", "enum": ["new", "paid"]}),
            json!({"type": "string", "enum": ["new", "paid", "shipped"]}),
            ("1.0.0", "1.1.0"), Full, Major, false),
        case("enum value removed, forward mode",
            json!({"type": "string", "enum": ["new", "paid"]}),
            json!({"type": "string", "enum": ["new"]}),
            ("1.0.0", "1.1.0"), Forward, Minor, true),
        case("enum value removed, backward mode",
            json!({"type": "string", "enum": ["new", "paid"]}),
            json!({"type": "string", "enum": ["new"]}),
            ("1.0.0", "1.1.0"), Backward, Major, false),
        case("enum reordered", json!({"enum": ["a", "b"]}), json!({"enum": ["b", "a"]}),
            ("1.0.0", "1.0.0"), Full, NoBump, true),
        case("const changed", json!({"const": "v1"}), json!({"const": "v2"}),
            ("1.0.0", "1.1.0"), Forward, Major, false),
        case("const widened to enum, backward mode", json!({"const": "a"}), json!({"enum": ["a", "b"]}),
            ("1.0.0", "1.1.0"), Backward, Minor, true),
        // --- additionalProperties ---------------------------------------------------------
        case("additionalProperties opened", closed(id(), &["id"]), object(id(), &["id"]),
            ("1.0.0", "1.1.0"), Full, Minor, true).at("/additionalProperties"),
        case("additionalProperties closed", object(id(), &["id"]), closed(id(), &["id"]),
            ("1.0.0", "1.1.0"), Full, Major, false),
        case("additionalProperties closed, forward mode", object(id(), &["id"]), closed(id(), &["id"]),
            ("1.0.0", "1.1.0"), Forward, Minor, true),
        case("map values widened, backward mode",
            json!({"type": "object", "additionalProperties": {"type": "integer"}}),
            json!({"type": "object", "additionalProperties": {"type": "number"}}),
            ("1.0.0", "1.1.0"), Backward, Minor, true).at("/additionalProperties"),
        case("map values widened, full mode",
            json!({"type": "object", "additionalProperties": {"type": "integer"}}),
            json!({"type": "object", "additionalProperties": {"type": "number"}}),
            ("1.0.0", "1.1.0"), Full, Major, false),
        case("property added that the old map-value schema accepts",
            json!({"type": "object", "additionalProperties": {"type": "string"}}),
            json!({"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": {"type": "string"}}),
            ("1.0.0", "1.1.0"), Full, Minor, true),
        case("property added that the old map-value schema rejects",
            json!({"type": "object", "additionalProperties": {"type": "string"}}),
            json!({"type": "object", "properties": {"x": {"type": "integer"}}, "additionalProperties": {"type": "string"}}),
            ("1.0.0", "1.1.0"), Full, Major, false),
        // --- constraints ------------------------------------------------------------------
        case("maximum tightened, backward mode", json!({"type": "integer", "maximum": 100}), json!({"type": "integer", "maximum": 50}),
            ("1.0.0", "1.1.0"), Backward, Major, false),
        case("maximum tightened, forward mode", json!({"type": "integer", "maximum": 100}), json!({"type": "integer", "maximum": 50}),
            ("1.0.0", "1.1.0"), Forward, Minor, true),
        case("maxLength relaxed, backward mode", json!({"type": "string", "maxLength": 10}), json!({"type": "string", "maxLength": 20}),
            ("1.0.0", "1.1.0"), Backward, Minor, true),
        case("maxLength relaxed, full mode", json!({"type": "string", "maxLength": 10}), json!({"type": "string", "maxLength": 20}),
            ("1.0.0", "1.1.0"), Full, Major, false),
        case("minimum added", json!({"type": "number"}), json!({"type": "number", "minimum": 0}),
            ("1.0.0", "1.1.0"), Full, Major, false),
        case("exclusiveMinimum relaxed, backward mode", json!({"type": "number", "exclusiveMinimum": 5}), json!({"type": "number", "exclusiveMinimum": 1}),
            ("1.0.0", "1.1.0"), Backward, Minor, true),
        case("pattern changed", json!({"type": "string", "pattern": "^[a-z]+$"}), json!({"type": "string", "pattern": "^[a-z0-9]+$"}),
            ("1.0.0", "1.1.0"), Forward, Major, false),
        case("format added", json!({"type": "string"}), json!({"type": "string", "format": "uuid"}),
            ("1.0.0", "1.1.0"), Backward, Major, false),
        case("u32 to u64, backward mode", json!({"type": "integer", "format": "uint32", "minimum": 0}), json!({"type": "integer", "format": "uint64", "minimum": 0}),
            ("1.0.0", "1.1.0"), Backward, Minor, true),
        case("minItems relaxed, backward mode", json!({"type": "array", "minItems": 1}), json!({"type": "array", "minItems": 0}),
            ("1.0.0", "1.1.0"), Backward, Minor, true),
        case("multipleOf tightened, backward mode", json!({"type": "number", "multipleOf": 0.5}), json!({"type": "number", "multipleOf": 1}),
            ("1.0.0", "1.1.0"), Backward, Major, false),
        case("uniqueItems added, forward mode", json!({"type": "array"}), json!({"type": "array", "uniqueItems": true}),
            ("1.0.0", "1.1.0"), Forward, Minor, true),
        // --- nesting, arrays, $ref ------------------------------------------------------
        case(
            "nested: required field removed from a referenced definition",
            order_v1(),
            order_with(|s| {
                remove(s, "/$defs/Customer/properties", "email");
                set(s, "/$defs/Customer/required", json!([]));
            }),
            ("1.2.0", "1.3.0"), Full, Major, false,
        ).at("/properties/customer/properties/email"),
        case(
            "nested: optional field added to a referenced definition",
            order_v1(),
            order_with(|s| set(s, "/$defs/Customer/properties/phone", json!({"type": ["string", "null"]}))),
            ("1.2.0", "1.3.0"), Full, Minor, true,
        ).at("/properties/customer/properties/phone"),
        case(
            "array of objects: item field type changed",
            order_v1(),
            order_with(|s| set(s, "/$defs/Line/properties/qty", json!({"type": "string"}))),
            ("1.2.0", "1.3.0"), Full, Major, false,
        ).at("/properties/lines/items/properties/qty"),
        case(
            "array of objects: item field added inline (no $ref)",
            json!({"type": "array", "items": {"type": "object", "properties": {"a": {"type": "integer"}}}}),
            json!({"type": "array", "items": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"}}}}),
            ("1.0.0", "1.1.0"), Full, Minor, true,
        ).at("/items/properties/b"),
        case(
            "array items changed from integer to string",
            json!({"type": "array", "items": {"type": "integer"}}),
            json!({"type": "array", "items": {"type": "string"}}),
            ("1.0.0", "1.1.0"), Full, Major, false,
        ).at("/items"),
        case(
            "definition renamed, structurally identical",
            order_v1(),
            order_with(|s| {
                let customer = s.pointer("/$defs/Customer").cloned().unwrap_or(Value::Null);
                remove(s, "/$defs", "Customer");
                set(s, "/$defs/Buyer", customer);
                set(s, "/properties/customer", json!({"$ref": "#/$defs/Buyer"}));
            }),
            ("1.2.0", "1.2.0"), Full, NoBump, true,
        ),
        case(
            "inline schema replaced by an identical $ref",
            json!({"type": "object", "properties": {"a": {"type": "object", "properties": {"x": {"type": "integer"}}}}}),
            json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}},
                   "$defs": {"A": {"type": "object", "properties": {"x": {"type": "integer"}}}}}),
            ("1.0.0", "1.0.0"), Full, NoBump, true,
        ),
        case(
            "legacy definitions moved to $defs",
            json!({"properties": {"a": {"$ref": "#/definitions/A"}}, "definitions": {"A": {"type": "string"}}}),
            json!({"properties": {"a": {"$ref": "#/$defs/A"}}, "$defs": {"A": {"type": "string"}}}),
            ("1.0.0", "1.0.0"), Full, NoBump, true,
        ),
        case("recursive definition renamed", tree("Node", false), tree("TreeNode", false),
            ("1.0.0", "1.0.0"), Full, NoBump, true),
        case("recursive definition gains an optional field", tree("Node", false), tree("Node", true),
            ("1.0.0", "1.1.0"), Full, Minor, true).at("/properties/label"),
        case(
            "unresolvable $ref changed",
            json!({"$ref": "other.json#/A"}), json!({"$ref": "other.json#/B"}),
            ("1.0.0", "1.1.0"), Full, Major, false,
        ),
        case(
            "tuple gained an element",
            json!({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "minItems": 2, "maxItems": 2}),
            json!({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}, {"type": "boolean"}], "minItems": 3, "maxItems": 3}),
            ("1.0.0", "1.1.0"), Full, Major, false,
        ).at("/prefixItems"),
        // --- oneOf / anyOf ----------------------------------------------------------------
        case(
            "tagged enum: variant added, backward mode",
            tagged(&[("Created", json!({})), ("Cancelled", json!({"reason": {"type": "string"}}))]),
            tagged(&[("Created", json!({})), ("Cancelled", json!({"reason": {"type": "string"}})), ("Shipped", json!({}))]),
            ("1.0.0", "1.1.0"), Backward, Minor, true,
        ).at("/oneOf/2"),
        case(
            "tagged enum: variant added, full mode",
            tagged(&[("Created", json!({}))]),
            tagged(&[("Created", json!({})), ("Shipped", json!({}))]),
            ("1.0.0", "1.1.0"), Full, Major, false,
        ),
        case(
            "tagged enum: variant removed, forward mode",
            tagged(&[("Created", json!({})), ("Shipped", json!({}))]),
            tagged(&[("Created", json!({}))]),
            ("1.0.0", "1.1.0"), Forward, Minor, true,
        ),
        case(
            "tagged enum: variant removed, full mode",
            tagged(&[("Created", json!({})), ("Shipped", json!({}))]),
            tagged(&[("Shipped", json!({}))]),
            ("1.0.0", "1.1.0"), Full, Major, false,
        ).at("/oneOf/0"),
        case(
            "tagged enum: variants reordered",
            tagged(&[("Created", json!({})), ("Shipped", json!({}))]),
            tagged(&[("Shipped", json!({})), ("Created", json!({}))]),
            ("1.0.0", "1.0.0"), Full, NoBump, true,
        ),
        case(
            "tagged enum: field removed inside a variant (matched by tag)",
            tagged(&[("Created", json!({})), ("Cancelled", json!({"reason": {"type": "string"}}))]),
            tagged(&[("Cancelled", json!({})), ("Created", json!({}))]),
            ("1.0.0", "1.1.0"), Full, Minor, true,
        ).at("/oneOf/0/properties/reason"),
        case(
            "documented unit enum: variant description changed",
            json!({"oneOf": [{"type": "string", "const": "A", "description": "first"}, {"type": "string", "const": "B"}]}),
            json!({"oneOf": [{"type": "string", "const": "A", "description": "the first"}, {"type": "string", "const": "B"}]}),
            ("1.0.0", "1.0.1"), Full, Patch, true,
        ).at("/oneOf/0"),
        case(
            "Option<T>: field added inside T",
            json!({"type": "object", "properties": {"addr": {"anyOf": [{"$ref": "#/$defs/Addr"}, {"type": "null"}]}},
                   "$defs": {"Addr": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}),
            json!({"type": "object", "properties": {"addr": {"anyOf": [{"$ref": "#/$defs/Addr"}, {"type": "null"}]}},
                   "$defs": {"Addr": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": ["string", "null"]}}, "required": ["city"]}}}),
            ("1.0.0", "1.1.0"), Full, Minor, true,
        ).at("/properties/addr/properties/zip"),
        case(
            "T became Option<T>, backward mode",
            json!({"properties": {"addr": {"$ref": "#/$defs/Addr"}}, "$defs": {"Addr": {"type": "object"}}}),
            json!({"properties": {"addr": {"anyOf": [{"$ref": "#/$defs/Addr"}, {"type": "null"}]}}, "$defs": {"Addr": {"type": "object"}}}),
            ("1.0.0", "1.1.0"), Backward, Minor, true,
        ).at("/properties/addr"),
        case(
            "T became Option<T>, full mode",
            json!({"properties": {"addr": {"$ref": "#/$defs/Addr"}}, "$defs": {"Addr": {"type": "object"}}}),
            json!({"properties": {"addr": {"anyOf": [{"$ref": "#/$defs/Addr"}, {"type": "null"}]}}, "$defs": {"Addr": {"type": "object"}}}),
            ("1.0.0", "1.1.0"), Full, Major, false,
        ),
        case(
            "anyOf became oneOf, forward mode",
            json!({"anyOf": [{"type": "string"}, {"type": "integer"}]}),
            json!({"oneOf": [{"type": "string"}, {"type": "integer"}]}),
            ("1.0.0", "1.1.0"), Forward, Minor, true,
        ),
        // --- boolean schemas, defaults, unknown keywords, versions ---------------------
        case("root true to true", json!(true), json!(true), ("1.0.0", "1.0.0"), Full, NoBump, true),
        case("root true to false", json!(true), json!(false), ("1.0.0", "1.1.0"), Full, Major, false),
        case("root true to false, forward mode", json!(true), json!(false), ("1.0.0", "1.1.0"), Forward, Minor, true),
        case("property schema false to {}, backward mode",
            json!({"properties": {"x": false}}), json!({"properties": {"x": {}}}),
            ("1.0.0", "1.1.0"), Backward, Minor, true).at("/properties/x"),
        case("boolean true vs equivalent {}", json!({"properties": {"x": true}}), json!({"properties": {"x": {}}}),
            ("1.0.0", "1.0.0"), Full, NoBump, true),
        case("default changed", json!({"type": "integer", "default": 1}), json!({"type": "integer", "default": 2}),
            ("1.0.0", "1.0.1"), Full, Minor, false),
        case("unknown keyword `not` changed", json!({"not": {"type": "string"}}), json!({"not": {"type": "integer"}}),
            ("1.0.0", "1.1.0"), Full, Major, false),
        case("downgrade without change", json!({"type": "string"}), json!({"type": "string"}),
            ("1.1.0", "1.0.0"), Full, NoBump, false),
        case("malformed keywords do not crash",
            json!({"type": 5, "required": "id", "properties": [], "enum": 3}),
            json!({"type": 6, "required": "id", "properties": [], "enum": 3}),
            ("1.0.0", "1.1.0"), Full, Major, false),
    ]
}

/// An internally tagged enum whose `Newtype` variant wraps `Inner`, as schemars writes it:
/// `{"$ref": Inner, "properties": {tag}, "required": [tag]}`.
fn internal_newtype(inner_a: Value) -> Value {
    json!({
        "oneOf": [
            {"type": "object", "properties": {"kind": {"type": "string", "const": "Unit"}}, "required": ["kind"]},
            {"$ref": "#/$defs/Inner", "type": "object",
             "properties": {"kind": {"type": "string", "const": "Newtype"}}, "required": ["kind"]}
        ],
        "$defs": {"Inner": {"type": "object", "properties": {"a": inner_a}, "required": ["a"]}}
    })
}

/// A recursive node referenced with sibling keywords, at the root and at `next`.
fn linked(next_extra: Value) -> Value {
    let mut next = json!({"$ref": "#/$defs/Node", "description": "the rest"});
    if let (Some(target), Some(extra)) = (next.as_object_mut(), next_extra.as_object()) {
        target.extend(extra.clone());
    }
    json!({"$ref": "#/$defs/Node", "description": "a list",
           "$defs": {"Node": {"type": "object", "properties": {"v": {"type": "integer"}, "next": next}}}})
}

/// A closed (`deny_unknown_fields`) struct before and after gaining an `Option` field.
mod closed_types {
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct V1 {
        pub id: String,
    }

    #[derive(Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields, rename = "V1")]
    pub struct V2 {
        pub id: String,
        pub memo: Option<String>,
    }
}

/// The cases of the semantic model: conjunctions, normalized spellings, numeric ranges,
/// assertions, closed objects and `oneOf` exclusivity.
fn semantic_cases() -> Vec<Case> {
    let base =
        json!({"$defs": {"Base": {"type": "object", "properties": {"id": {"type": "string"}}}}});
    let with = |schema: Value| {
        let mut out = base.clone();
        if let (Some(target), Some(extra)) = (out.as_object_mut(), schema.as_object()) {
            target.extend(extra.clone());
        }
        out
    };
    let two_patterns = |first: &str, second: &str| json!({"type": "string", "allOf": [{"pattern": first}, {"pattern": second}]});
    vec![
        // --- `$ref` with sibling keywords is a conjunction ----------------------------------
        case("internally tagged newtype variant: field retyped inside the $ref target",
            internal_newtype(json!({"type": "integer"})), internal_newtype(json!({"type": "string"})),
            ("1.0.0", "1.1.0"), Full, Major, false).at("/oneOf/1/properties/a"),
        case("internally tagged newtype variant: unchanged",
            internal_newtype(json!({"type": "integer"})), internal_newtype(json!({"type": "integer"})),
            ("1.0.0", "1.0.0"), Full, NoBump, true),
        case("constraint tightened next to a recursive $ref",
            linked(json!({})), linked(json!({"maxProperties": 1})),
            ("1.0.0", "1.1.0"), Full, Major, false).at("/properties/next"),
        case("constraint tightened next to a recursive $ref, forward mode",
            linked(json!({})), linked(json!({"maxProperties": 1})),
            ("1.0.0", "1.1.0"), Forward, Minor, true),
        // --- allOf: matched by content -------------------------------------------------------
        case("allOf members reordered (unmergeable members)",
            two_patterns("^a", "b$"), two_patterns("b$", "^a"),
            ("1.0.0", "1.0.0"), Full, NoBump, true),
        case("allOf members reordered (merged members)",
            with(json!({"allOf": [{"$ref": "#/$defs/Base"}, {"required": ["id"]}]})),
            with(json!({"allOf": [{"required": ["id"]}, {"$ref": "#/$defs/Base"}]})),
            ("1.0.0", "1.0.0"), Full, NoBump, true),
        case("allOf conjunct added, forward mode",
            with(json!({"allOf": [{"$ref": "#/$defs/Base"}]})),
            with(json!({"allOf": [{"$ref": "#/$defs/Base"}, {"required": ["id"]}]})),
            ("1.0.0", "1.1.0"), Forward, Minor, true).at("/properties/id"),
        case("allOf conjunct added, backward mode",
            with(json!({"allOf": [{"$ref": "#/$defs/Base"}]})),
            with(json!({"allOf": [{"$ref": "#/$defs/Base"}, {"required": ["id"]}]})),
            ("1.0.0", "1.1.0"), Backward, Major, false),
        case("unmergeable allOf conjunct added, forward mode",
            json!({"type": "string", "allOf": [{"pattern": "^a"}]}), two_patterns("^a", "b$"),
            ("1.0.0", "1.1.0"), Forward, Minor, true).at("/allOf/0"),
        case("unmergeable allOf conjunct removed, backward mode",
            two_patterns("^a", "b$"), json!({"type": "string", "allOf": [{"pattern": "^a"}]}),
            ("1.0.0", "1.1.0"), Backward, Minor, true),
        case("allOf: [$ref] (schemars 0.8) against a plain $ref (schemars 1.x)",
            with(json!({"properties": {"b": {"allOf": [{"$ref": "#/$defs/Base"}], "description": "b"}}})),
            with(json!({"properties": {"b": {"$ref": "#/$defs/Base", "description": "b"}}})),
            ("1.0.0", "1.0.0"), Full, NoBump, true),
        // --- equivalent spellings -------------------------------------------------------------
        case("type [integer, null] against anyOf with null",
            json!({"type": ["integer", "null"], "format": "int32"}),
            json!({"anyOf": [{"type": "integer", "format": "int32"}, {"type": "null"}]}),
            ("1.0.0", "1.0.0"), Full, NoBump, true),
        case("anyOf with null against type [integer, null]",
            json!({"anyOf": [{"type": "null"}, {"type": "integer"}]}),
            json!({"type": ["null", "integer"]}),
            ("1.0.0", "1.0.0"), Full, NoBump, true),
        case("Option<enum> as anyOf against the enum with null added",
            json!({"anyOf": [{"$ref": "#/$defs/E"}, {"type": "null"}], "$defs": {"E": {"type": "string", "enum": ["A", "B"]}}}),
            json!({"type": ["string", "null"], "enum": ["A", "B", null]}),
            ("1.0.0", "1.0.0"), Full, NoBump, true),
        case("draft-07 items array + additionalItems against 2020-12 prefixItems",
            json!({"type": "array", "items": [{"type": "string"}, {"type": "integer"}], "additionalItems": false, "minItems": 2}),
            json!({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "minItems": 2, "maxItems": 2}),
            ("1.0.0", "1.0.0"), Full, NoBump, true),
        case("draft-07 tuple element retyped against 2020-12",
            json!({"type": "array", "items": [{"type": "string"}], "additionalItems": false}),
            json!({"type": "array", "prefixItems": [{"type": "integer"}], "maxItems": 1}),
            ("1.0.0", "1.1.0"), Full, Major, false).at("/prefixItems/0"),
        case("one-value enum against const",
            json!({"type": "string", "enum": ["v1"]}), json!({"type": "string", "const": "v1"}),
            ("1.0.0", "1.0.0"), Full, NoBump, true),
        case("one-value enum against another const",
            json!({"enum": ["v1"]}), json!({"const": "v2"}),
            ("1.0.0", "1.1.0"), Full, Major, false),
        // --- numeric formats ordered by range -----------------------------------------------
        case("int32 to double, backward mode",
            json!({"type": "integer", "format": "int32"}), json!({"type": "number", "format": "double"}),
            ("1.0.0", "1.1.0"), Backward, Minor, true),
        case("int32 to double, full mode",
            json!({"type": "integer", "format": "int32"}), json!({"type": "number", "format": "double"}),
            ("1.0.0", "1.1.0"), Full, Major, false),
        case("float to double, backward mode",
            json!({"type": "number", "format": "float"}), json!({"type": "number", "format": "double"}),
            ("1.0.0", "1.1.0"), Backward, Minor, true),
        case("double to float, forward mode",
            json!({"type": "number", "format": "double"}), json!({"type": "number", "format": "float"}),
            ("1.0.0", "1.1.0"), Forward, Minor, true),
        case("int8 to int16, backward mode",
            json!({"type": "integer", "format": "int8"}), json!({"type": "integer", "format": "int16"}),
            ("1.0.0", "1.1.0"), Backward, Minor, true),
        case("uint64 to int64 (neither contains the other), backward mode",
            json!({"type": "integer", "format": "uint64"}), json!({"type": "integer", "format": "int64"}),
            ("1.0.0", "1.1.0"), Backward, Major, false),
        // --- assertions -------------------------------------------------------------------------
        case("propertyNames added, forward mode",
            object(json!({"id": {"type": "string"}}), &["id"]),
            json!({"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"], "propertyNames": {"maxLength": 8}}),
            ("1.0.0", "1.1.0"), Forward, Minor, true).at("/propertyNames"),
        case("propertyNames added, backward mode",
            object(json!({"id": {"type": "string"}}), &["id"]),
            json!({"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"], "propertyNames": {"maxLength": 8}}),
            ("1.0.0", "1.1.0"), Backward, Major, false),
        case("dependentRequired added, forward mode",
            object(id_and_note(), &["id"]),
            json!({"type": "object", "properties": id_and_note(), "required": ["id"], "dependentRequired": {"note": ["id"]}}),
            ("1.0.0", "1.1.0"), Forward, Minor, true),
        case("dependentRequired removed, backward mode",
            json!({"type": "object", "properties": id_and_note(), "required": ["id"], "dependentRequired": {"note": ["id"]}}),
            object(id_and_note(), &["id"]),
            ("1.0.0", "1.1.0"), Backward, Minor, true),
        case("dependentRequired widened, backward mode",
            json!({"type": "object", "properties": id_and_note(), "dependentRequired": {"note": ["id"]}}),
            json!({"type": "object", "properties": id_and_note(), "dependentRequired": {"note": ["id"], "id": ["note"]}}),
            ("1.0.0", "1.1.0"), Backward, Major, false),
        case("not added, forward mode",
            json!({"type": "string"}), json!({"type": "string", "not": {"const": ""}}),
            ("1.0.0", "1.1.0"), Forward, Minor, true),
        // --- closed objects (deny_unknown_fields) ---------------------------------------------
        case("schemars: Option field added to a deny_unknown_fields struct, full mode",
            schema::<closed_types::V1>(), schema::<closed_types::V2>(),
            ("1.0.0", "1.1.0"), Full, Major, false).at("/properties/memo"),
        case("schemars: Option field added to a deny_unknown_fields struct, backward mode",
            schema::<closed_types::V1>(), schema::<closed_types::V2>(),
            ("1.0.0", "1.1.0"), Backward, Minor, true),
        case("schemars: Option field removed from a deny_unknown_fields struct, full mode",
            schema::<closed_types::V2>(), schema::<closed_types::V1>(),
            ("1.0.0", "1.1.0"), Full, Major, false),
        case("schemars: Option field removed from a deny_unknown_fields struct, forward mode",
            schema::<closed_types::V2>(), schema::<closed_types::V1>(),
            ("1.0.0", "1.1.0"), Forward, Minor, true),
        // --- map entries and oneOf exclusivity ------------------------------------------------
        case("property added that old map entries may carry with another type, backward mode",
            json!({"type": "object", "additionalProperties": {"type": "integer"}}),
            json!({"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": {"type": "integer"}}),
            ("1.0.0", "1.1.0"), Backward, Major, false).at("/properties/x"),
        case("tag removed from an internally tagged variant: it overlaps the others, backward mode",
            tagged(&[("Created", json!({})), ("Cancelled", json!({"reason": {"type": "string"}}))]),
            json!({"oneOf": [
                {"type": "object", "properties": {}, "required": []},
                {"type": "object", "properties": {"kind": {"type": "string", "const": "Cancelled"}, "reason": {"type": "string"}}, "required": ["kind"]}
            ]}),
            ("1.0.0", "1.1.0"), Backward, Major, false).at("/oneOf/0"),
    ]
}

fn id_and_note() -> Value {
    json!({"id": {"type": "string"}, "note": {"type": "string"}})
}

#[test]
fn table() {
    let mut cases = cases();
    cases.extend(semantic_cases());
    assert!(cases.len() >= 45, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let old_version: Version = case.old_version.parse().expect("case old version");
        let new_version: Version = case.new_version.parse().expect("case new version");
        let report = check(&case.old, &case.new, &old_version, &new_version, case.mode);
        let mut problems = Vec::new();
        if report.required != case.required {
            problems.push(format!(
                "required {} (expected {})",
                report.required, case.required
            ));
        }
        if report.is_sufficient() != case.sufficient {
            problems.push(format!(
                "sufficient {} (expected {})",
                report.is_sufficient(),
                case.sufficient
            ));
        }
        if let Some(path) = case.path
            && !report.changes.iter().any(|c| c.path == path)
        {
            problems.push(format!("no change reported at {path}"));
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}\n{report}", case.name, problems.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn diff_is_symmetric_in_its_verdicts_for_simple_changes() {
    // Swapping old and new swaps the directions of a widening/narrowing.
    let a = json!({"type": "integer"});
    let b = json!({"type": ["integer", "null"]});
    let forward = diff(&a, &b);
    let backward = diff(&b, &a);
    assert_eq!(forward.len(), 1);
    assert_eq!(backward.len(), 1);
    assert_eq!((forward[0].backward, forward[0].forward), (true, false));
    assert_eq!((backward[0].backward, backward[0].forward), (false, true));
}
