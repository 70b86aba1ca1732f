//! Equivalent spellings reduced to one form before two schemas are compared.
//!
//! [`normalize`] rewrites one schema node (not its children, which are normalized when the
//! differ reaches them):
//!
//! * `$ref` is followed, and keywords next to it are **conjoined** with its target, never
//!   allowed to replace the target's keywords: `{"$ref": "#/$defs/Inner", "properties":
//!   {"kind": …}, "required": ["kind"]}` (schemars' internally tagged newtype variant) reads as
//!   `Inner`'s properties plus `kind`, and both `required` lists. `allOf` members are conjoined
//!   the same way ([`super::conjoin`]); members that cannot be merged stay in `allOf`.
//! * Nullable forms: `anyOf`/`oneOf` of a schema and `{"type": "null"}` becomes that schema with
//!   `"null"` added to its `type` (and to its `enum`), as in `type: ["integer", "null"]`.
//! * Tuples: draft-07 `items: [..]` + `additionalItems` becomes 2020-12 `prefixItems` + `items`,
//!   and `items: false` after `prefixItems` becomes `maxItems`.
//! * A one-value `enum` becomes `const`; a one-element `type` array becomes a string.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::conjoin::conjoin;
use super::resolve::{is_annotation, is_ignored, lookup};

/// How deep nullable forms nested in each other are unfolded.
const MAX_UNFOLD: usize = 16;

/// Most conjuncts (expanded `$ref`s and `allOf` members) one node is allowed to gather.
const MAX_CONJUNCTS: usize = 256;

/// A schema node in its normal form.
pub(crate) struct Normal<'a> {
    /// The node with references expanded and equivalent spellings rewritten.
    pub(crate) value: Cow<'a, Value>,
    /// The references expanded to build it, outermost first.
    pub(crate) refs: Vec<String>,
}

/// The normal form of `schema`, a node of the document `root` (see the module docs).
pub(crate) fn normalize<'a>(root: &'a Value, schema: &'a Value) -> Normal<'a> {
    normalize_at(root, schema, 0)
}

fn normalize_at<'a>(root: &'a Value, schema: &'a Value, unfold: usize) -> Normal<'a> {
    let Value::Object(map) = schema else {
        return Normal {
            value: Cow::Borrowed(schema),
            refs: Vec::new(),
        };
    };
    let mut refs = Vec::new();
    let mut node: Cow<'a, Value> = if needs_flattening(root, map) {
        let mut walk = Walk {
            root,
            stack: Vec::new(),
            refs: &mut refs,
            budget: MAX_CONJUNCTS,
        };
        Cow::Owned(walk.flatten(schema, true))
    } else {
        Cow::Borrowed(schema)
    };
    if let Some(rewritten) = node.as_object().and_then(rewrite_local) {
        node = Cow::Owned(rewritten);
    }
    if unfold < MAX_UNFOLD
        && let Some(map) = node.as_object()
        && let Some((unfolded, inner_refs)) = unfold_nullable(root, map, unfold)
    {
        refs.extend(inner_refs);
        node = Cow::Owned(unfolded);
    }
    Normal { value: node, refs }
}

/// Whether a node has a local `$ref` or an `allOf` to expand.
fn needs_flattening(root: &Value, map: &Map<String, Value>) -> bool {
    let resolvable = match map.get("$ref") {
        Some(Value::String(reference)) => lookup(root, reference).is_some(),
        _ => false,
    };
    resolvable || matches!(map.get("allOf"), Some(Value::Array(_)))
}

/// The expansion of one node's `$ref`s and `allOf` members.
struct Walk<'r, 'l> {
    root: &'r Value,
    /// References being expanded (a reference met again is a cycle and is left opaque).
    stack: Vec<String>,
    /// Every reference expanded, outermost first.
    refs: &'l mut Vec<String>,
    /// Conjuncts left to expand (bounds pathological documents).
    budget: usize,
}

impl Walk<'_, '_> {
    /// `schema` with its `$ref` target and `allOf` members conjoined with its own keywords
    /// (which come last, so that they win for annotations).
    ///
    /// `unevaluatedProperties` of a conjunct (`top == false`) only sees that conjunct's own
    /// properties, so there it is read as `additionalProperties`; the node's own
    /// `unevaluatedProperties` sees them all and stays.
    fn flatten(&mut self, schema: &Value, top: bool) -> Value {
        let Value::Object(map) = schema else {
            return schema.clone();
        };
        if self.budget == 0 {
            return schema.clone();
        }
        self.budget -= 1;
        let mut parts = Vec::new();
        let mut rest = map.clone();
        if let Some(Value::String(reference)) = map.get("$ref")
            && !self.stack.contains(reference)
            && let Some(target) = lookup(self.root, reference)
        {
            rest.remove("$ref");
            self.stack.push(reference.clone());
            self.refs.push(reference.clone());
            parts.push(self.flatten(target, false));
            self.stack.pop();
        }
        if let Some(Value::Array(members)) = map.get("allOf") {
            rest.remove("allOf");
            for member in members {
                parts.push(self.flatten(member, false));
            }
        }
        rest.retain(|key, _| !is_ignored(key));
        let mut merged = if parts.is_empty() {
            Value::Object(rest)
        } else {
            parts.push(Value::Object(rest));
            fold(parts)
        };
        if !top {
            close_unevaluated(&mut merged);
        }
        merged
    }
}

/// Reads `unevaluatedProperties` as `additionalProperties` where nothing else can evaluate
/// properties (no combinator, no `patternProperties`).
fn close_unevaluated(schema: &mut Value) {
    const EVALUATING: &[&str] = &[
        "additionalProperties",
        "patternProperties",
        "allOf",
        "anyOf",
        "oneOf",
        "if",
        "dependentSchemas",
        "$ref",
    ];
    if let Value::Object(map) = schema
        && !EVALUATING.iter().any(|key| map.contains_key(*key))
        && let Some(value) = map.remove("unevaluatedProperties")
    {
        map.insert("additionalProperties".to_owned(), value);
    }
}

/// Conjoins the expanded parts into one node; parts that cannot be merged stay in `allOf`.
///
/// Parts are merged in a canonical order (by their text), so that which of two conflicting
/// parts stays in `allOf` does not depend on how the document ordered them; annotations are
/// then laid over in document order, so the node's own (last) annotations win.
fn fold(parts: Vec<Value>) -> Value {
    let mut sorted: Vec<(String, &Value)> = parts.iter().map(|p| (p.to_string(), p)).collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut merged = Value::Object(Map::new());
    let mut residual: Vec<Value> = Vec::new();
    for (_, part) in sorted {
        match conjoin(&merged, part) {
            Some(value) => merged = value,
            None => {
                if !residual.contains(part) {
                    residual.push(part.clone());
                }
            }
        }
    }
    let Value::Object(mut map) = merged else {
        return merged;
    };
    for part in &parts {
        if let Value::Object(part) = part
            && !residual.iter().any(|r| r.as_object() == Some(part))
        {
            for (key, value) in part {
                if is_annotation(key) || key == "default" {
                    map.insert(key.clone(), value.clone());
                }
            }
        }
    }
    if !residual.is_empty() {
        if let Some(Value::Array(own)) = map.remove("allOf") {
            residual.splice(0..0, own);
        }
        map.insert("allOf".to_owned(), Value::Array(residual));
    }
    Value::Object(map)
}

/// The draft-07 tuple, one-value `enum` and one-element `type` rewrites; `None` when none
/// applies.
fn rewrite_local(map: &Map<String, Value>) -> Option<Value> {
    let tuple = matches!(map.get("items"), Some(Value::Array(_)))
        || (map.contains_key("prefixItems") && map.get("items") == Some(&Value::Bool(false)));
    let single_enum = matches!(map.get("enum"), Some(Value::Array(v)) if v.len() == 1)
        && !map.contains_key("const");
    let single_type = matches!(map.get("type"), Some(Value::Array(v)) if v.len() == 1);
    if !(tuple || single_enum || single_type) {
        return None;
    }
    let mut out = map.clone();
    if let Some(Value::Array(items)) = out.get("items").cloned()
        && !out.contains_key("prefixItems")
    {
        out.insert("prefixItems".to_owned(), Value::Array(items));
        match out.remove("additionalItems") {
            Some(rest) => out.insert("items".to_owned(), rest),
            None => out.remove("items"),
        };
    }
    if out.get("items") == Some(&Value::Bool(false))
        && let Some(Value::Array(prefix)) = out.get("prefixItems")
    {
        let len = prefix.len() as u64;
        let max = match out.get("maxItems").and_then(Value::as_u64) {
            Some(max) => max.min(len),
            None => len,
        };
        out.remove("items");
        out.insert("maxItems".to_owned(), Value::from(max));
    }
    if single_enum && let Some(Value::Array(mut values)) = out.remove("enum") {
        out.insert("const".to_owned(), values.remove(0));
    }
    if let Some(Value::Array(types)) = out.get("type")
        && let [only] = &types[..]
    {
        let only = only.clone();
        out.insert("type".to_owned(), only);
    }
    Some(Value::Object(out))
}

/// Whether a schema accepts exactly `null` (annotations aside).
fn is_null_only(schema: &Value) -> bool {
    let Value::Object(map) = schema else {
        return false;
    };
    let mut asserting = map.iter().filter(|(key, _)| !is_annotation(key));
    matches!(asserting.next(), Some((key, Value::String(t))) if key == "type" && t == "null")
        && asserting.next().is_none()
}

/// Keywords a schema may carry and still be folded with `null` into one node.
const FOLDABLE: &[&str] = &[
    "type",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minItems",
    "maxItems",
    "uniqueItems",
    "items",
    "prefixItems",
    "minProperties",
    "maxProperties",
    "properties",
    "required",
    "additionalProperties",
    "unevaluatedProperties",
    "propertyNames",
    "dependentRequired",
    "default",
];

/// `anyOf`/`oneOf: [X, {"type": "null"}]` (with only annotations beside it) as `X` accepting
/// `null`; `None` when the node is not of that shape or `X` cannot absorb `null` exactly.
fn unfold_nullable(
    root: &Value,
    map: &Map<String, Value>,
    unfold: usize,
) -> Option<(Value, Vec<String>)> {
    let (keyword, members) = ["anyOf", "oneOf"]
        .into_iter()
        .find_map(|k| match map.get(k) {
            Some(Value::Array(items)) => Some((k, items)),
            _ => None,
        })?;
    let only_annotations = map
        .keys()
        .all(|key| key == keyword || is_annotation(key) || is_ignored(key) || key == "default");
    let [a, b] = &members[..] else { return None };
    let other = match (is_null_only(a), is_null_only(b)) {
        (true, false) => b,
        (false, true) => a,
        _ => return None,
    };
    if !only_annotations {
        return None;
    }
    let inner = normalize_at(root, other, unfold + 1);
    let Value::Object(inner_map) = inner.value.as_ref() else {
        return None;
    };
    if !inner_map
        .keys()
        .all(|key| FOLDABLE.contains(&key.as_str()) || is_annotation(key) || is_ignored(key))
    {
        return None;
    }
    let mut out = inner_map.clone();
    let accepts_null = add_null(&mut out)?;
    // `oneOf` rejects a value both alternatives accept: `X` must not have accepted `null`.
    if keyword == "oneOf" && accepts_null {
        return None;
    }
    for (key, value) in map {
        if key != keyword {
            out.insert(key.clone(), value.clone());
        }
    }
    Some((Value::Object(out), inner.refs))
}

/// Adds `null` to what a foldable schema accepts; returns whether it already accepted `null`,
/// or `None` when the keywords are malformed.
fn add_null(map: &mut Map<String, Value>) -> Option<bool> {
    let mut had_null = true;
    match map.get("type") {
        None => {}
        Some(Value::String(t)) => {
            had_null = t == "null";
            if !had_null {
                let mut types = vec![Value::String(t.clone()), Value::String("null".to_owned())];
                types.sort_by_key(Value::to_string);
                map.insert("type".to_owned(), Value::Array(types));
            }
        }
        Some(Value::Array(types)) => {
            had_null = types.iter().any(|t| t == "null");
            let mut types = types.clone();
            if !had_null {
                types.push(Value::String("null".to_owned()));
            }
            types.sort_by_key(Value::to_string);
            map.insert("type".to_owned(), Value::Array(types));
        }
        Some(_) => return None,
    }
    if let Some(value) = map.remove("const") {
        had_null &= value.is_null();
        let values = if value.is_null() {
            vec![value]
        } else {
            vec![value, Value::Null]
        };
        map.insert("enum".to_owned(), Value::Array(values));
    } else if let Some(values) = map.get_mut("enum") {
        let Value::Array(values) = values else {
            return None;
        };
        let contains = values.contains(&Value::Null);
        had_null &= contains;
        if !contains {
            values.push(Value::Null);
        }
    }
    Some(had_null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn norm(root: &Value, schema: &Value) -> Value {
        normalize(root, schema).value.into_owned()
    }

    #[test]
    fn ref_siblings_are_conjoined_not_substituted() {
        let root = json!({"$defs": {"Inner": {"type": "object",
            "properties": {"a": {"type": "integer"}}, "required": ["a"]}}});
        let variant = json!({"$ref": "#/$defs/Inner", "type": "object",
            "properties": {"kind": {"const": "N"}}, "required": ["kind"]});
        let out = norm(&root, &variant);
        assert_eq!(out["properties"]["a"], json!({"type": "integer"}));
        assert_eq!(out["properties"]["kind"], json!({"const": "N"}));
        assert_eq!(out["required"], json!(["a", "kind"]));
    }

    #[test]
    fn nullable_forms_agree() {
        let root = json!({"$defs": {"E": {"type": "string", "enum": ["A", "B"]}}});
        assert_eq!(
            norm(
                &root,
                &json!({"anyOf": [{"type": "integer"}, {"type": "null"}]})
            ),
            json!({"type": ["integer", "null"]})
        );
        assert_eq!(
            norm(
                &root,
                &json!({"anyOf": [{"$ref": "#/$defs/E"}, {"type": "null"}]})
            ),
            json!({"type": ["null", "string"], "enum": ["A", "B", null]})
        );
        // `oneOf` with an alternative that already accepts null is left alone.
        let both = json!({"oneOf": [{}, {"type": "null"}]});
        assert_eq!(norm(&root, &both), both);
    }

    #[test]
    fn draft7_tuples_become_prefix_items() {
        let root = json!({});
        let old = json!({"type": "array", "items": [{"type": "string"}], "additionalItems": false});
        assert_eq!(
            norm(&root, &old),
            json!({"type": "array", "prefixItems": [{"type": "string"}], "maxItems": 1})
        );
    }

    #[test]
    fn single_value_enum_is_const_and_cycles_terminate() {
        let root = json!({"$defs": {"A": {"allOf": [{"$ref": "#/$defs/A"}], "type": "string"}}});
        assert_eq!(norm(&root, &json!({"enum": [1]})), json!({"const": 1}));
        let out = norm(&root, &json!({"$ref": "#/$defs/A"}));
        assert_eq!(out["type"], json!("string"));
    }
}
