//! Rust contract types whose schemars output the oracle mutates.

#![allow(dead_code)]

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Line {
    pub sku: String,
    pub qty: u32,
    pub price: f64,
}

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Address {
    pub city: String,
    pub zip: Option<String>,
}

/// A closed struct with a defaulted field.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Strict {
    pub id: u64,
    #[serde(default)]
    pub note: String,
    pub level: u8,
}

/// Internally tagged, with a newtype variant (`$ref` next to the tag).
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind")]
pub enum Internal {
    Created,
    Paid { amount: i64 },
    Shipped(Address),
}

#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", deny_unknown_fields)]
pub enum InternalStrict {
    Opened,
    Moved { x: u8, y: u8 },
}

/// Externally tagged: unit, struct, newtype and tuple variants.
#[derive(Serialize, Deserialize, JsonSchema)]
pub enum External {
    Pending,
    Done,
    Failed { reason: String },
    Moved(Address),
    Pair(u8, String),
}

#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(tag = "t", content = "c")]
pub enum Adjacent {
    Ping,
    Amount(i32),
    Item(Line),
}

#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Untagged {
    Code(u16),
    Text(String),
    Place(Address),
}

#[derive(Serialize, Deserialize, JsonSchema)]
pub enum Color {
    Red,
    Green,
    Blue,
}

/// An order event using most of the above.
#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Order {
    pub id: String,
    pub lines: Vec<Line>,
    pub status: Internal,
    pub color: Option<Color>,
    pub address: Option<Address>,
    pub tags: BTreeMap<String, String>,
    pub point: (i32, i32),
}

/// `flatten` of a struct and of a map.
#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Flattened {
    pub id: u32,
    #[serde(flatten)]
    pub address: Address,
    #[serde(flatten)]
    pub extra: BTreeMap<String, i64>,
}

#[derive(Serialize, Deserialize, JsonSchema)]
pub enum Shape {
    Circle { r: f32 },
    Square { side: f32 },
}

/// `flatten` of an enum into a closed struct (`unevaluatedProperties: false`).
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlatEnum {
    pub id: u32,
    #[serde(flatten)]
    pub shape: Shape,
}

/// Recursion through `Vec` and `Option<Box<_>>`.
#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Tree {
    pub value: i16,
    pub children: Vec<Tree>,
    pub parent: Option<Box<Tree>>,
}

/// Every numeric width schemars distinguishes.
#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Numbers {
    pub a: i8,
    pub b: i16,
    pub c: i32,
    pub d: i64,
    pub e: u8,
    pub f: u16,
    pub g: u32,
    pub h: u64,
    pub x: f32,
    pub y: f64,
}

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Envelope {
    pub adjacent: Adjacent,
    pub untagged: Untagged,
    pub external: External,
    pub strict: Strict,
    pub closed: InternalStrict,
}

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Measure(u32);

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Pair(String, Option<i32>);

fn schema<T: JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).expect("schema serializes")
}

/// The base schemas, by type name.
pub fn base_schemas() -> Vec<(&'static str, Value)> {
    vec![
        ("Line", schema::<Line>()),
        ("Strict", schema::<Strict>()),
        ("Internal", schema::<Internal>()),
        ("InternalStrict", schema::<InternalStrict>()),
        ("External", schema::<External>()),
        ("Adjacent", schema::<Adjacent>()),
        ("Untagged", schema::<Untagged>()),
        ("Color", schema::<Color>()),
        ("Order", schema::<Order>()),
        ("Flattened", schema::<Flattened>()),
        ("FlatEnum", schema::<FlatEnum>()),
        ("Tree", schema::<Tree>()),
        ("Numbers", schema::<Numbers>()),
        ("Envelope", schema::<Envelope>()),
        ("Measure", schema::<Measure>()),
        ("Pair", schema::<Pair>()),
    ]
}
