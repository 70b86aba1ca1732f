//! Mutations of a schema (the changes a producer makes to a contract type) and equivalent
//! respellings (the same contract written differently, e.g. by another schemars version).

use serde_json::{Map, Value, json};

use super::Rng;

/// What was done to a schema, for failure messages.
pub struct Mutation(String);

impl std::fmt::Debug for Mutation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Property names a mutation adds (also used as map keys by the sampler).
pub const NEW_NAMES: &[&str] = &["zz", "memo", "kind", "c"];

const NUMERIC_FORMATS: &[(&str, &str)] = &[
    ("int8", "integer"),
    ("int16", "integer"),
    ("int32", "integer"),
    ("int64", "integer"),
    ("uint8", "integer"),
    ("uint16", "integer"),
    ("uint32", "integer"),
    ("uint64", "integer"),
    ("float", "number"),
    ("double", "number"),
];

fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// JSON Pointers of every schema object in the document (definitions included).
fn sites(value: &Value, pointer: &str, out: &mut Vec<String>) {
    let Value::Object(map) = value else { return };
    out.push(pointer.to_owned());
    for (key, child) in map {
        let here = format!("{pointer}/{}", escape(key));
        match (key.as_str(), child) {
            ("properties" | "$defs" | "definitions", Value::Object(children)) => {
                for (name, schema) in children {
                    sites(schema, &format!("{here}/{}", escape(name)), out);
                }
            }
            ("items" | "additionalProperties" | "unevaluatedProperties", _) => {
                sites(child, &here, out)
            }
            ("prefixItems" | "anyOf" | "oneOf" | "allOf", Value::Array(items)) => {
                for (index, schema) in items.iter().enumerate() {
                    sites(schema, &format!("{here}/{index}"), out);
                }
            }
            _ => {}
        }
    }
}

fn simple_schema(rng: &mut Rng) -> Value {
    let choices = [
        json!({"type": "string"}),
        json!({"type": "integer", "format": "int32"}),
        json!({"type": ["string", "null"]}),
        json!({"type": "boolean"}),
        json!({"type": "number", "format": "double"}),
        json!({"type": "integer", "format": "uint8", "minimum": 0, "maximum": 255}),
        json!({"type": "array", "items": {"type": "string"}}),
    ];
    choices[rng.below(choices.len())].clone()
}

fn type_names(map: &Map<String, Value>) -> Vec<String> {
    match map.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Applies one random applicable mutation somewhere in `schema`.
pub fn mutate(schema: &mut Value, rng: &mut Rng) -> Option<Mutation> {
    let mut all = Vec::new();
    sites(schema, "", &mut all);
    for _ in 0..20 {
        let pointer = rng.pick(&all)?.clone();
        let Some(Value::Object(map)) = schema.pointer_mut(&pointer) else {
            continue;
        };
        let kind = rng.below(12);
        if let Some(what) = apply(map, kind, rng) {
            return Some(Mutation(format!("{what} at {pointer:?}")));
        }
    }
    None
}

fn apply(map: &mut Map<String, Value>, kind: usize, rng: &mut Rng) -> Option<String> {
    match kind {
        0..=3 => mutate_fields(map, kind, rng),
        4 => mutate_enum(map, rng),
        5 => mutate_variants(map, rng),
        6 | 7 => mutate_bounds(map, rng),
        8 => mutate_format(map, rng),
        9 => mutate_content_model(map, rng),
        10 => mutate_nullability(map, rng),
        _ => mutate_assertions(map, rng),
    }
}

fn property_names(map: &Map<String, Value>) -> Vec<String> {
    match map.get("properties") {
        Some(Value::Object(props)) => props.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

fn required_list(map: &mut Map<String, Value>) -> &mut Vec<Value> {
    let entry = map.entry("required").or_insert_with(|| json!([]));
    if !entry.is_array() {
        *entry = json!([]);
    }
    entry.as_array_mut().expect("array")
}

fn mutate_fields(map: &mut Map<String, Value>, kind: usize, rng: &mut Rng) -> Option<String> {
    if !map.get("properties").is_some_and(Value::is_object) {
        return None;
    }
    let names = property_names(map);
    match kind {
        0 => {
            let name = (*rng.pick(NEW_NAMES)?).to_owned();
            let required = rng.chance(30);
            let schema = simple_schema(rng);
            map["properties"][&name] = schema;
            if required {
                required_list(map).push(json!(name));
            }
            Some(format!("add field {name} (required: {required})"))
        }
        1 => {
            let name = rng.pick(&names)?.clone();
            map.get_mut("properties")?.as_object_mut()?.remove(&name);
            required_list(map).retain(|r| r != &json!(name));
            Some(format!("remove field {name}"))
        }
        2 => {
            let name = rng.pick(&names)?.clone();
            let schema = simple_schema(rng);
            map["properties"][&name] = schema;
            Some(format!("retype field {name}"))
        }
        _ => {
            let name = rng.pick(&names)?.clone();
            let list = required_list(map);
            if list.contains(&json!(name)) {
                list.retain(|r| r != &json!(name));
                Some(format!("make {name} optional"))
            } else {
                list.push(json!(name));
                drop_default(map, &name);
                Some(format!("make {name} required"))
            }
        }
    }
}

/// A required property never has a `default` in schemars output (`#[serde(default)]` makes it
/// optional), and rule 3 of COMPAT.md reads such a property as optional where a JSON Schema
/// validator does not: mutations keep that invariant.
fn drop_default(map: &mut Map<String, Value>, name: &str) {
    if let Some(Value::Object(prop)) = map.get_mut("properties").and_then(|p| p.get_mut(name)) {
        prop.remove("default");
    }
}

fn mutate_enum(map: &mut Map<String, Value>, rng: &mut Rng) -> Option<String> {
    let Some(Value::Array(values)) = map.get_mut("enum") else {
        return None;
    };
    if values.len() >= 2 && rng.chance(50) {
        let index = rng.below(values.len());
        let removed = values.remove(index);
        Some(format!("remove enum value {removed}"))
    } else {
        values.push(json!("Zed"));
        Some("add enum value Zed".to_owned())
    }
}

fn mutate_variants(map: &mut Map<String, Value>, rng: &mut Rng) -> Option<String> {
    let keyword = ["oneOf", "anyOf"]
        .into_iter()
        .find(|k| map.contains_key(*k))?;
    let Some(Value::Array(items)) = map.get_mut(keyword) else {
        return None;
    };
    if items.len() >= 2 && rng.chance(50) {
        let index = rng.below(items.len());
        items.remove(index);
        return Some(format!("remove {keyword} alternative {index}"));
    }
    // A new variant: a copy of the first with its tag changed, or a new type.
    let mut added = items.first().cloned().unwrap_or(json!({}));
    let tag = added
        .get("properties")
        .and_then(Value::as_object)
        .and_then(|props| {
            props
                .iter()
                .find(|(_, s)| s.get("const").is_some())
                .map(|(n, _)| n.clone())
        });
    match tag {
        Some(tag) => added["properties"][&tag]["const"] = json!("Added"),
        None => added = json!({"type": "boolean"}),
    }
    items.push(added);
    Some(format!("add {keyword} alternative"))
}

fn mutate_bounds(map: &mut Map<String, Value>, rng: &mut Rng) -> Option<String> {
    let types = type_names(map);
    let (keyword, value) = if types.iter().any(|t| t == "integer" || t == "number") {
        match rng.below(5) {
            0 => ("minimum", json!(rng.below(3) as i64 - 1)),
            1 => ("maximum", json!([10, 100, 1000, 70000][rng.below(4)])),
            2 => ("exclusiveMaximum", json!(1000)),
            3 => (
                "multipleOf",
                [json!(1), json!(2), json!(0.5)][rng.below(3)].clone(),
            ),
            _ => ("minimum", Value::Null),
        }
    } else if types.iter().any(|t| t == "string") {
        match rng.below(4) {
            0 => ("maxLength", json!(rng.below(4))),
            1 => ("minLength", json!(1 + rng.below(2))),
            2 => ("pattern", json!("^[a-z]*$")),
            _ => ("maxLength", Value::Null),
        }
    } else if types.iter().any(|t| t == "array") {
        match rng.below(4) {
            0 => ("minItems", json!(1)),
            1 => ("maxItems", json!(1 + rng.below(2))),
            2 => ("uniqueItems", json!(true)),
            _ => ("minItems", Value::Null),
        }
    } else if types.iter().any(|t| t == "object") {
        match rng.below(2) {
            0 => ("maxProperties", json!(2 + rng.below(3))),
            _ => ("minProperties", json!(1)),
        }
    } else {
        return None;
    };
    if value.is_null() {
        let removed = [
            "minimum",
            "maximum",
            "maxLength",
            "minLength",
            "minItems",
            "maxItems",
        ]
        .into_iter()
        .find(|k| map.remove(*k).is_some())?;
        return Some(format!("remove {removed}"));
    }
    map.insert(keyword.to_owned(), value.clone());
    Some(format!("set {keyword} {value}"))
}

fn mutate_format(map: &mut Map<String, Value>, rng: &mut Rng) -> Option<String> {
    let from = map.get("format")?.as_str()?.to_owned();
    NUMERIC_FORMATS.iter().find(|(name, _)| *name == from)?;
    let (to, ty) = *rng.pick(NUMERIC_FORMATS)?;
    map.insert("format".to_owned(), json!(to));
    map.remove("minimum");
    map.remove("maximum");
    // Bounds as schemars writes them.
    match to {
        "int8" => {
            map.insert("minimum".into(), json!(i8::MIN));
            map.insert("maximum".into(), json!(i8::MAX));
        }
        "uint8" => {
            map.insert("minimum".into(), json!(0));
            map.insert("maximum".into(), json!(u8::MAX));
        }
        "uint16" => {
            map.insert("minimum".into(), json!(0));
            map.insert("maximum".into(), json!(u16::MAX));
        }
        "uint32" | "uint64" => {
            map.insert("minimum".into(), json!(0));
        }
        _ => {}
    }
    let nullable = type_names(map).iter().any(|t| t == "null");
    let new_type = if nullable {
        json!([ty, "null"])
    } else {
        json!(ty)
    };
    map.insert("type".to_owned(), new_type);
    Some(format!("format {from} -> {to}"))
}

fn mutate_content_model(map: &mut Map<String, Value>, rng: &mut Rng) -> Option<String> {
    if !type_names(map).iter().any(|t| t == "object") {
        return None;
    }
    for key in ["additionalProperties", "unevaluatedProperties"] {
        if map.get(key) == Some(&json!(false)) {
            map.remove(key);
            return Some(format!("open ({key})"));
        }
    }
    if let Some(Value::Object(_)) = map.get("additionalProperties") {
        let schema = simple_schema(rng);
        map.insert("additionalProperties".to_owned(), schema);
        return Some("retype map values".to_owned());
    }
    map.insert("additionalProperties".to_owned(), json!(false));
    Some("close (additionalProperties: false)".to_owned())
}

fn mutate_nullability(map: &mut Map<String, Value>, rng: &mut Rng) -> Option<String> {
    if let Some(Value::Array(items)) = map.get_mut("anyOf")
        && items.len() == 2
        && let Some(null) = items.iter().position(|s| s == &json!({"type": "null"}))
    {
        items.remove(null);
        return Some("drop null alternative".to_owned());
    }
    let types = type_names(map);
    match &types[..] {
        [one, null] | [null, one] if null == "null" => {
            let one = one.clone();
            map.insert("type".to_owned(), json!(one));
            Some("not nullable".to_owned())
        }
        [one] if one == "integer" && rng.chance(50) => {
            map.insert("type".to_owned(), json!("number"));
            Some("integer -> number".to_owned())
        }
        [one] if one == "number" && rng.chance(50) => {
            map.insert("type".to_owned(), json!("integer"));
            Some("number -> integer".to_owned())
        }
        [one] if one != "null" => {
            let one = one.clone();
            map.insert("type".to_owned(), json!([one, "null"]));
            Some("nullable".to_owned())
        }
        _ => None,
    }
}

fn mutate_assertions(map: &mut Map<String, Value>, rng: &mut Rng) -> Option<String> {
    let names = property_names(map);
    if names.is_empty() {
        return None;
    }
    match rng.below(4) {
        0 => {
            map.insert("propertyNames".to_owned(), json!({"maxLength": 4}));
            Some("add propertyNames".to_owned())
        }
        1 if names.len() >= 2 => {
            let rule = json!({names[0].clone(): [names[1].clone()]});
            map.insert("dependentRequired".to_owned(), rule);
            Some("add dependentRequired".to_owned())
        }
        2 => {
            let name = rng.pick(&names)?.clone();
            let member = json!({"required": [name]});
            map.insert("allOf".to_owned(), json!([member]));
            drop_default(map, &name);
            Some(format!("add allOf requiring {name}"))
        }
        _ => {
            let name = rng.pick(&names)?.clone();
            if map
                .get("required")
                .and_then(Value::as_array)
                .is_some_and(|r| r.contains(&json!(name)))
            {
                return None;
            }
            let prop = map.get_mut("properties")?.get_mut(&name)?.as_object_mut()?;
            let value = if type_names(prop).iter().any(|t| t == "null") {
                json!(null)
            } else {
                return None;
            };
            prop.insert("default".to_owned(), value);
            Some(format!("default on {name}"))
        }
    }
}

/// Rewrites one node of `schema` into an equivalent spelling; `None` when no site fits.
pub fn respell(schema: &mut Value, rng: &mut Rng) -> Option<String> {
    let mut all = Vec::new();
    sites(schema, "", &mut all);
    for _ in 0..40 {
        let pointer = rng.pick(&all)?.clone();
        let Some(Value::Object(map)) = schema.pointer_mut(&pointer) else {
            continue;
        };
        if let Some(how) = respell_node(map, rng.below(5)) {
            return Some(format!("{how} at {pointer:?}"));
        }
    }
    None
}

fn respell_node(map: &mut Map<String, Value>, kind: usize) -> Option<String> {
    match kind {
        0 => {
            // `type: [T, "null"]` as `anyOf: [{type: T, …}, {type: null}]`.
            let types = type_names(map);
            let [a, b] = &types[..] else { return None };
            let one = if a == "null" {
                b.clone()
            } else if b == "null" {
                a.clone()
            } else {
                return None;
            };
            let annotations = ["description", "title", "default"];
            let mut inner = Map::new();
            for (key, value) in std::mem::take(map) {
                if annotations.contains(&key.as_str()) {
                    map.insert(key, value);
                } else {
                    inner.insert(key, value);
                }
            }
            inner.insert("type".to_owned(), json!(one));
            map.insert("anyOf".to_owned(), json!([inner, {"type": "null"}]));
            Some("nullable type as anyOf".to_owned())
        }
        1 => {
            let reference = map.get("$ref")?.clone();
            if map.len() != 1 {
                return None;
            }
            map.remove("$ref");
            map.insert("allOf".to_owned(), json!([{"$ref": reference}]));
            Some("$ref wrapped in allOf".to_owned())
        }
        2 => {
            let value = map.remove("const")?;
            map.insert("enum".to_owned(), json!([value]));
            Some("const as one-value enum".to_owned())
        }
        3 => {
            let keyword = ["oneOf", "anyOf"]
                .into_iter()
                .find(|k| map.contains_key(*k))?;
            map.get_mut(keyword)?.as_array_mut()?.reverse();
            Some(format!("{keyword} reordered"))
        }
        _ => {
            let len = map.get("prefixItems")?.as_array()?.len();
            if map.get("maxItems") != Some(&json!(len)) || map.contains_key("items") {
                return None;
            }
            map.insert("items".to_owned(), json!(false));
            Some("closed tuple with items: false".to_owned())
        }
    }
}
