//! The conjunction of two schemas (`allOf`, or a `$ref` with sibling keywords) as one schema.
//!
//! Keywords that only one side has are kept; keywords both sides have are intersected where
//! that is exact (`type`, `required`, `enum`/`const`, numeric and length bounds, numeric
//! `format`s, `properties` with `additionalProperties`, schema-valued keywords as a nested
//! `allOf`). Anything else that differs makes [`conjoin`] give up, and the caller keeps the
//! part in `allOf`, where it is matched by content.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::constraints::{LOWER_BOUNDS, UPPER_BOUNDS, compare_numbers, numeric_format_order};
use super::resolve::is_annotation;

/// Keywords whose value is one schema and whose conjunction is the `allOf` of both values.
const SCHEMA_VALUED: &[&str] = &[
    "items",
    "additionalItems",
    "unevaluatedProperties",
    "unevaluatedItems",
    "propertyNames",
];

/// The object keywords merged together (each side's `additionalProperties` also constrains
/// the properties only the other side declares).
const OBJECT_GROUP: &[&str] = &["properties", "additionalProperties", "patternProperties"];

/// Keywords that only mean something together: when both sides use one of a group and the
/// two groups differ, the conjunction is not merged (except `items` against `items`).
const GROUPS: &[&[&str]] = &[
    &[
        "prefixItems",
        "items",
        "additionalItems",
        "unevaluatedItems",
    ],
    &["if", "then", "else"],
    &["contains", "minContains", "maxContains"],
];

/// The conjunction of `a` and `b` as one schema, or `None` when it cannot be written without
/// `allOf`. `false` when the two contradict each other on `type`, `const` or `enum`.
pub(crate) fn conjoin(a: &Value, b: &Value) -> Option<Value> {
    match (a, b) {
        (Value::Bool(false), _) | (_, Value::Bool(false)) => Some(Value::Bool(false)),
        (Value::Bool(true), other) | (other, Value::Bool(true)) => Some(other.clone()),
        (Value::Object(a), Value::Object(b)) => conjoin_maps(a, b),
        _ => None,
    }
}

/// `x ∧ y` as a schema value: one of them when that is exact, else a flat, sorted `allOf`.
pub(crate) fn conjoin_lazily(x: &Value, y: &Value) -> Value {
    let trivial = |v: &Value| v == &Value::Bool(true) || v.as_object().is_some_and(Map::is_empty);
    if x == y || trivial(y) {
        return x.clone();
    }
    if trivial(x) {
        return y.clone();
    }
    if x == &Value::Bool(false) || y == &Value::Bool(false) {
        return Value::Bool(false);
    }
    let members = |v: &Value| match v.as_object() {
        Some(map) if map.len() == 1 => match map.get("allOf") {
            Some(Value::Array(items)) => items.clone(),
            _ => vec![v.clone()],
        },
        _ => vec![v.clone()],
    };
    let mut all = members(x);
    all.extend(members(y));
    all.sort_by_key(Value::to_string);
    all.dedup();
    let mut map = Map::new();
    map.insert("allOf".to_owned(), Value::Array(all));
    Value::Object(map)
}

/// One keyword merged from both sides.
enum Merged {
    Value(Value),
    /// The two sides accept no common value.
    Contradiction,
}

/// Whether both sides use a keyword group differently (see [`GROUPS`]).
fn groups_clash(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    GROUPS.iter().any(|group| {
        fn part<'m>(
            group: &[&'static str],
            m: &'m Map<String, Value>,
        ) -> Vec<(&'static str, &'m Value)> {
            group
                .iter()
                .filter_map(|key| m.get(*key).map(|value| (*key, value)))
                .collect()
        }
        let (x, y) = (part(group, a), part(group, b));
        let only_items = |p: &[(&str, &Value)]| matches!(p, [("items", v)] if !v.is_array());
        let both = !x.is_empty() && !y.is_empty();
        let items_only = only_items(&x) && only_items(&y);
        both && x != y && !items_only
    })
}

fn conjoin_maps(a: &Map<String, Value>, b: &Map<String, Value>) -> Option<Value> {
    // An unresolved reference is opaque: it stays an `allOf` member.
    if a.contains_key("$ref") || b.contains_key("$ref") || groups_clash(a, b) {
        return None;
    }
    let mut out = a.clone();
    let grouped = |m: &Map<String, Value>| OBJECT_GROUP.iter().any(|key| m.contains_key(*key));
    if grouped(a) && grouped(b) {
        merge_object(a, b, &mut out)?;
    } else {
        for key in OBJECT_GROUP {
            if let Some(value) = b.get(*key) {
                out.insert((*key).to_owned(), value.clone());
            }
        }
    }
    for (key, theirs) in b {
        if OBJECT_GROUP.contains(&key.as_str()) {
            continue;
        }
        let merged = match out.get(key) {
            None => Merged::Value(theirs.clone()),
            Some(ours) if ours == theirs => continue,
            Some(ours) => merge_keyword(key, ours, theirs)?,
        };
        match merged {
            Merged::Value(value) => {
                out.insert(key.clone(), value);
            }
            Merged::Contradiction => return Some(Value::Bool(false)),
        }
    }
    if let (Some(value), Some(Value::Array(values))) = (out.get("const"), out.get("enum")) {
        if !values.contains(value) {
            return Some(Value::Bool(false));
        }
        out.remove("enum");
    }
    Some(Value::Object(out))
}

fn merge_keyword(key: &str, ours: &Value, theirs: &Value) -> Option<Merged> {
    if is_annotation(key) || key == "default" {
        return Some(Merged::Value(theirs.clone()));
    }
    let value = match key {
        "type" => return merge_types(ours, theirs),
        "const" => return Some(Merged::Contradiction),
        "enum" => {
            let (Value::Array(x), Value::Array(y)) = (ours, theirs) else {
                return None;
            };
            let common: Vec<Value> = x.iter().filter(|v| y.contains(v)).cloned().collect();
            if common.is_empty() {
                return Some(Merged::Contradiction);
            }
            Value::Array(common)
        }
        "required" | "allOf" => {
            let (Value::Array(x), Value::Array(y)) = (ours, theirs) else {
                return None;
            };
            let mut all = x.clone();
            all.extend(y.iter().filter(|v| !x.contains(v)).cloned());
            Value::Array(all)
        }
        "uniqueItems" => match (ours, theirs) {
            (Value::Bool(x), Value::Bool(y)) => Value::Bool(*x || *y),
            _ => return None,
        },
        "format" => {
            let (Value::String(x), Value::String(y)) = (ours, theirs) else {
                return None;
            };
            match numeric_format_order(x, y)? {
                Ordering::Less | Ordering::Equal => ours.clone(),
                Ordering::Greater => theirs.clone(),
            }
        }
        _ if SCHEMA_VALUED.contains(&key) => conjoin_lazily(ours, theirs),
        _ if LOWER_BOUNDS.contains(&key) || UPPER_BOUNDS.contains(&key) => {
            let (Value::Number(x), Value::Number(y)) = (ours, theirs) else {
                return None;
            };
            let larger = compare_numbers(x, y)? == Ordering::Less;
            // A lower bound keeps the larger value, an upper bound the smaller one.
            if larger == LOWER_BOUNDS.contains(&key) {
                theirs.clone()
            } else {
                ours.clone()
            }
        }
        _ => return None,
    };
    Some(Merged::Value(value))
}

fn type_names(value: &Value) -> Option<Vec<&str>> {
    match value {
        Value::String(name) => Some(vec![name.as_str()]),
        Value::Array(items) => items.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

fn merge_types(ours: &Value, theirs: &Value) -> Option<Merged> {
    let (x, y) = (type_names(ours)?, type_names(theirs)?);
    let admits = |set: &[&str], name: &str| {
        set.contains(&name) || (name == "integer" && set.contains(&"number"))
    };
    let mut common: Vec<&str> = x
        .iter()
        .chain(y.iter())
        .copied()
        .filter(|name| admits(&x, name) && admits(&y, name))
        .collect();
    common.sort_unstable();
    common.dedup();
    Some(match &common[..] {
        [] => Merged::Contradiction,
        [one] => Merged::Value(Value::String((*one).to_owned())),
        many => Merged::Value(Value::Array(
            many.iter()
                .map(|name| Value::String((*name).to_owned()))
                .collect(),
        )),
    })
}

/// A restricting `additionalProperties` (absent, `true` and `{}` restrict nothing).
fn restricting(map: &Map<String, Value>) -> Option<&Value> {
    match map.get("additionalProperties") {
        None | Some(Value::Bool(true)) => None,
        Some(Value::Object(schema)) if schema.is_empty() => None,
        Some(value) => Some(value),
    }
}

/// `properties` and `additionalProperties` of both sides: a property only one side declares
/// must also satisfy the other side's `additionalProperties`.
fn merge_object(
    a: &Map<String, Value>,
    b: &Map<String, Value>,
    out: &mut Map<String, Value>,
) -> Option<()> {
    if a.contains_key("patternProperties") || b.contains_key("patternProperties") {
        return None;
    }
    let empty = Map::new();
    fn props<'m>(
        m: &'m Map<String, Value>,
        empty: &'m Map<String, Value>,
    ) -> Option<&'m Map<String, Value>> {
        match m.get("properties") {
            None => Some(empty),
            Some(Value::Object(p)) => Some(p),
            Some(_) => None,
        }
    }
    let (a_props, b_props) = (props(a, &empty)?, props(b, &empty)?);
    let (a_extra, b_extra) = (restricting(a), restricting(b));
    let mut merged = Map::new();
    for name in a_props.keys().chain(b_props.keys()) {
        if merged.contains_key(name) {
            continue;
        }
        let x = a_props.get(name).or(a_extra);
        let y = b_props.get(name).or(b_extra);
        let value = match (x, y) {
            (Some(x), Some(y)) => conjoin_lazily(x, y),
            (Some(only), None) | (None, Some(only)) => only.clone(),
            (None, None) => continue,
        };
        merged.insert(name.clone(), value);
    }
    if a.contains_key("properties") || b.contains_key("properties") {
        out.insert("properties".to_owned(), Value::Object(merged));
    }
    let extra = match (a_extra, b_extra) {
        (Some(x), Some(y)) => Some(conjoin_lazily(x, y)),
        (Some(x), None) | (None, Some(x)) => Some(x.clone()),
        (None, None) => b
            .get("additionalProperties")
            .or_else(|| a.get("additionalProperties"))
            .cloned(),
    };
    if let Some(extra) = extra {
        out.insert("additionalProperties".to_owned(), extra);
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn intersects_types_bounds_and_values() {
        let merged = conjoin(
            &json!({"type": ["number", "null"], "minimum": 0, "enum": [1, 2, 3]}),
            &json!({"type": "integer", "minimum": 1, "maximum": 5, "enum": [2, 3, 4]}),
        );
        assert_eq!(
            merged,
            Some(json!({"type": "integer", "minimum": 1, "maximum": 5, "enum": [2, 3]}))
        );
        assert_eq!(
            conjoin(&json!({"type": "string"}), &json!({"type": "integer"})),
            Some(json!(false))
        );
        assert_eq!(
            conjoin(&json!({"const": 1}), &json!({"enum": [2]})),
            Some(json!(false))
        );
        assert_eq!(
            conjoin(&json!({"format": "int64"}), &json!({"format": "int32"})),
            Some(json!({"format": "int32"}))
        );
        assert_eq!(
            conjoin(&json!({"pattern": "a"}), &json!({"pattern": "b"})),
            None
        );
    }

    #[test]
    fn closed_side_constrains_the_other_sides_properties() {
        let merged = conjoin(
            &json!({"properties": {"a": {"type": "integer"}}, "additionalProperties": false}),
            &json!({"properties": {"kind": {"const": "K"}}, "required": ["kind"]}),
        );
        assert_eq!(
            merged,
            Some(json!({
                "properties": {"a": {"type": "integer"}, "kind": false},
                "additionalProperties": false,
                "required": ["kind"]
            }))
        );
    }

    #[test]
    fn lazy_conjunction_is_flat_and_sorted() {
        let x = json!({"type": "integer"});
        let y = json!({"minimum": 1});
        let both = conjoin_lazily(&x, &y);
        assert_eq!(conjoin_lazily(&y, &x), both);
        assert_eq!(conjoin_lazily(&both, &x), both);
        assert_eq!(conjoin_lazily(&x, &json!(true)), x);
    }
}
