//! `$ref` resolution against a document root, and a canonical form for structural equality.

use std::borrow::Cow;

use serde_json::{Map, Value};

/// Deepest nesting (of schemas, counted through `$ref`s) the checker follows.
pub(crate) const MAX_DEPTH: usize = 200;

/// Keywords that only document a schema; changing them never affects which data is valid.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "examples",
    "example",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$schema",
    "$id",
    "$anchor",
    "$dynamicAnchor",
    "$vocabulary",
    "contentMediaType",
    "contentEncoding",
];

/// The root keyword carrying the contract version; it is metadata, never part of a diff.
pub(crate) const VERSION_KEYWORD: &str = "x-event-version";

/// Whether `keyword` is an annotation (see the module docs). `x-…` extensions count as
/// annotations, except [`VERSION_KEYWORD`], which is ignored altogether.
pub(crate) fn is_annotation(keyword: &str) -> bool {
    ANNOTATIONS.contains(&keyword) || (keyword.starts_with("x-") && keyword != VERSION_KEYWORD)
}

/// Keywords never compared directly: definitions are compared only where they are used.
pub(crate) fn is_ignored(keyword: &str) -> bool {
    matches!(keyword, "$defs" | "definitions") || keyword == VERSION_KEYWORD
}

/// Keywords whose value is one schema.
const SCHEMA_KEYWORDS: &[&str] = &[
    "items",
    "additionalProperties",
    "unevaluatedProperties",
    "additionalItems",
    "unevaluatedItems",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "contentSchema",
];

/// Keywords whose value is an array of schemas.
const SCHEMA_ARRAY_KEYWORDS: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems", "items"];

/// Keywords whose value maps names to schemas.
const SCHEMA_MAP_KEYWORDS: &[&str] = &[
    "properties",
    "patternProperties",
    "dependentSchemas",
    "dependencies",
];

/// Appends one JSON Pointer segment (escaping `~` and `/`).
pub(crate) fn child(path: &str, segment: &str) -> String {
    let escaped = segment.replace('~', "~0").replace('/', "~1");
    format!("{path}/{escaped}")
}

/// Decodes `%XX` escapes of a URI fragment; returns the input unchanged if it is malformed.
fn percent_decode(fragment: &str) -> Cow<'_, str> {
    if !fragment.contains('%') {
        return Cow::Borrowed(fragment);
    }
    let bytes = fragment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(byte) => {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                None => return Cow::Borrowed(fragment),
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(decoded) => Cow::Owned(decoded),
        Err(_) => Cow::Borrowed(fragment),
    }
}

/// Looks up a document-local reference (`#`, `#/$defs/Name`, `#/definitions/Name`, any
/// `#/json/pointer`). Other references (remote, anchors) are not resolved.
pub(crate) fn lookup<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let fragment = reference.strip_prefix('#')?;
    let fragment = percent_decode(fragment);
    if fragment.is_empty() {
        Some(root)
    } else if fragment.starts_with('/') {
        root.pointer(&fragment)
    } else {
        None
    }
}

/// A schema with its `$ref` chain followed.
pub(crate) struct Resolved<'a> {
    /// The effective schema (the target, with any sibling keywords of the `$ref` merged in).
    pub(crate) value: Cow<'a, Value>,
    /// The last reference followed, if any.
    pub(crate) reference: Option<String>,
    /// Every reference followed, in order.
    pub(crate) chain: Vec<String>,
}

/// Follows local `$ref`s (also chains of them) of `schema` within `root`.
///
/// Keywords next to a `$ref` (allowed since draft 2019-09) are merged over the target, so
/// `{"$ref": "#/$defs/A", "description": "…"}` compares like `A` with that description.
/// An unresolvable `$ref` is left in place and is then compared textually.
pub(crate) fn resolve<'a>(root: &'a Value, schema: &'a Value) -> Resolved<'a> {
    let mut current: Cow<'a, Value> = Cow::Borrowed(schema);
    let mut reference = None;
    let mut seen: Vec<String> = Vec::new();
    while let Some(map) = current.as_object() {
        let Some(Value::String(target_ref)) = map.get("$ref") else {
            break;
        };
        if seen.iter().any(|s| s == target_ref) || seen.len() > MAX_DEPTH {
            break;
        }
        let Some(target) = lookup(root, target_ref) else {
            break;
        };
        let target_ref = target_ref.clone();
        let next = if map.len() == 1 {
            Cow::Borrowed(target)
        } else {
            let mut siblings = map.clone();
            siblings.remove("$ref");
            Cow::Owned(merge(target, siblings))
        };
        seen.push(target_ref.clone());
        reference = Some(target_ref);
        current = next;
    }
    Resolved {
        value: current,
        reference,
        chain: seen,
    }
}

/// `target` with `siblings` layered on top (siblings win on conflicts).
fn merge(target: &Value, siblings: Map<String, Value>) -> Value {
    match target {
        Value::Object(map) => {
            let mut merged = map.clone();
            for (key, value) in siblings {
                merged.insert(key, value);
            }
            Value::Object(merged)
        }
        Value::Bool(false) => Value::Bool(false),
        _ => Value::Object(siblings),
    }
}

/// Whether a (resolved) property schema carries a `default`.
pub(crate) fn has_default(root: &Value, schema: &Value) -> bool {
    resolve(root, schema)
        .value
        .as_object()
        .is_some_and(|map| map.contains_key("default"))
}

/// A canonical form of a schema for structural equality: `$ref`s inlined (recursive
/// references replaced by a depth marker, so two identically shaped recursive definitions
/// with different names are equal), annotations and definitions dropped, `required` and
/// `type` arrays sorted.
pub(crate) fn canonical(root: &Value, schema: &Value) -> Value {
    let mut stack = Vec::new();
    canonical_schema(root, schema, &mut stack, 0)
}

/// Canonical form of the value of keyword `keyword` (schema-aware where the keyword holds
/// schemas, verbatim otherwise).
pub(crate) fn canonical_keyword(root: &Value, keyword: &str, value: &Value) -> Value {
    let mut stack = Vec::new();
    canonical_keyword_value(root, keyword, value, &mut stack, 0)
}

/// Definitions being expanded: one frame per resolved `$ref` chain.
type Stack = Vec<Vec<String>>;

fn canonical_schema(root: &Value, schema: &Value, stack: &mut Stack, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return Value::String("<too deep>".to_owned());
    }
    // Detect recursion before resolving: a `$ref` that points to a definition currently being
    // expanded becomes a marker counting how many levels up it points.
    if let Some(Value::String(reference)) = schema.as_object().and_then(|m| m.get("$ref"))
        && let Some(position) = stack
            .iter()
            .rposition(|frame| frame.iter().any(|s| s == reference))
    {
        let mut marker = Map::new();
        marker.insert("$recursive".to_owned(), Value::from(stack.len() - position));
        return Value::Object(marker);
    }
    let resolved = resolve(root, schema);
    let pushed = !resolved.chain.is_empty();
    if pushed {
        stack.push(resolved.chain.clone());
    }
    let result = match resolved.value.as_ref() {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                if is_annotation(key) || is_ignored(key) {
                    continue;
                }
                out.insert(
                    key.clone(),
                    canonical_keyword_value(root, key, value, stack, depth + 1),
                );
            }
            Value::Object(out)
        }
        other => other.clone(),
    };
    if pushed {
        stack.pop();
    }
    result
}

fn canonical_keyword_value(
    root: &Value,
    keyword: &str,
    value: &Value,
    stack: &mut Stack,
    depth: usize,
) -> Value {
    match value {
        Value::Array(items) if SCHEMA_ARRAY_KEYWORDS.contains(&keyword) => Value::Array(
            items
                .iter()
                .map(|item| canonical_schema(root, item, stack, depth))
                .collect(),
        ),
        Value::Object(map) if SCHEMA_MAP_KEYWORDS.contains(&keyword) => Value::Object(
            map.iter()
                .map(|(name, item)| (name.clone(), canonical_schema(root, item, stack, depth)))
                .collect(),
        ),
        _ if SCHEMA_KEYWORDS.contains(&keyword) => canonical_schema(root, value, stack, depth),
        Value::Array(items) if keyword == "required" || keyword == "type" => {
            let mut sorted = items.clone();
            sorted.sort_by_key(|item| item.to_string());
            sorted.dedup();
            Value::Array(sorted)
        }
        _ => value.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn looks_up_defs_definitions_and_escapes() {
        let root = json!({
            "$defs": {"A": {"type": "string"}, "a/b": {"type": "integer"}},
            "definitions": {"Old": {"type": "boolean"}}
        });
        assert_eq!(lookup(&root, "#/$defs/A"), Some(&json!({"type": "string"})));
        assert_eq!(
            lookup(&root, "#/definitions/Old"),
            Some(&json!({"type": "boolean"}))
        );
        assert_eq!(
            lookup(&root, "#/$defs/a~1b"),
            Some(&json!({"type": "integer"}))
        );
        assert_eq!(
            lookup(&root, "#/%24defs/A"),
            Some(&json!({"type": "string"}))
        );
        assert_eq!(lookup(&root, "#"), Some(&root));
        assert_eq!(lookup(&root, "#/$defs/Missing"), None);
        assert_eq!(lookup(&root, "other.json#/$defs/A"), None);
        assert_eq!(lookup(&root, "#anchor"), None);
        assert_eq!(lookup(&root, "#/%zz"), None);
    }

    #[test]
    fn resolves_chains_and_merges_siblings() {
        let root = json!({"$defs": {
            "A": {"$ref": "#/$defs/B"},
            "B": {"type": "string", "description": "b"}
        }});
        let schema = json!({"$ref": "#/$defs/A", "description": "here"});
        let resolved = resolve(&root, &schema);
        assert_eq!(
            resolved.value.as_ref(),
            &json!({"type": "string", "description": "here"})
        );
        assert_eq!(resolved.reference.as_deref(), Some("#/$defs/B"));
    }

    #[test]
    fn self_referencing_chain_terminates() {
        let root = json!({"$defs": {"A": {"$ref": "#/$defs/A"}}});
        let schema = json!({"$ref": "#/$defs/A"});
        let resolved = resolve(&root, &schema);
        assert_eq!(resolved.value.as_ref(), &json!({"$ref": "#/$defs/A"}));
    }

    #[test]
    fn canonical_ignores_names_and_annotations() {
        let a = json!({
            "$defs": {"Node": {"type": "object", "title": "N", "properties": {
                "next": {"$ref": "#/$defs/Node"}}}},
            "$ref": "#/$defs/Node"
        });
        let b = json!({
            "$defs": {"Renamed": {"type": "object", "properties": {
                "next": {"$ref": "#/$defs/Renamed"}}}},
            "$ref": "#/$defs/Renamed"
        });
        assert_eq!(canonical(&a, &a), canonical(&b, &b));
    }

    #[test]
    fn canonical_keeps_property_named_like_an_annotation() {
        let root = json!({});
        let schema = json!({"properties": {"description": {"type": "string"}}});
        assert_eq!(canonical(&root, &schema), schema);
    }

    #[test]
    fn canonical_handles_reference_chains_in_recursion() {
        let root = json!({"$defs": {
            "A": {"$ref": "#/$defs/B"},
            "B": {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}}
        }});
        let schema = json!({"$ref": "#/$defs/A"});
        assert_eq!(
            canonical(&root, &schema),
            json!({"type": "object", "properties": {"a": {"$recursive": 1}}})
        );
    }

    #[test]
    fn canonical_stops_at_depth_limit() {
        let deep = (0..1000).fold(json!({}), |inner, _| json!({"not": inner}));
        let text = canonical(&json!({}), &deep).to_string();
        assert!(text.contains("<too deep>"));
    }

    #[test]
    fn child_escapes() {
        assert_eq!(child("", "a/b~c"), "/a~1b~0c");
    }
}
