//! `$ref` lookup in a document, keyword classes, and a canonical form for structural equality.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::normalize::normalize;

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

/// Whether a (normalized) property schema carries a `default`.
pub(crate) fn has_default(root: &Value, schema: &Value) -> bool {
    normalize(root, schema)
        .value
        .as_object()
        .is_some_and(|map| map.contains_key("default"))
}

/// A key fixing what `schema` means within `root`: its text, after following references
/// that stand alone (`{"$ref": …}` and nothing else), so `{"$ref": "#"}` keys like the root.
pub(crate) fn node_key(root: &Value, schema: &Value) -> String {
    let mut current = schema;
    for _ in 0..MAX_DEPTH {
        match current.as_object() {
            Some(map) if map.len() == 1 => match map.get("$ref") {
                Some(Value::String(reference)) => match lookup(root, reference) {
                    Some(target) => current = target,
                    None => break,
                },
                _ => break,
            },
            _ => break,
        }
    }
    current.to_string()
}

/// Whether a schema node can close a cycle: only a `$ref` can, directly or through the
/// `allOf`, `anyOf` or `oneOf` members its normal form absorbs.
pub(crate) fn may_recurse(schema: &Value) -> bool {
    schema.as_object().is_some_and(|map| {
        ["$ref", "allOf", "anyOf", "oneOf"]
            .iter()
            .any(|key| map.contains_key(*key))
    })
}

/// A canonical form of a schema for structural equality: every node normalized (references
/// expanded and conjoined, equivalent spellings rewritten, see [`normalize`]), a node met again
/// inside itself replaced by a marker counting how many levels up it is (so two identically
/// shaped recursive definitions with different names are equal), annotations and definitions
/// dropped, `required`, `type` and `enum` arrays sorted.
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

/// The text of the nodes being expanded that contain a `$ref` or `allOf`.
type Stack = Vec<String>;

fn canonical_schema(root: &Value, schema: &Value, stack: &mut Stack, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return Value::String("<too deep>".to_owned());
    }
    let frame = may_recurse(schema).then(|| schema.to_string());
    if let Some(text) = &frame {
        if let Some(position) = stack.iter().rposition(|seen| seen == text) {
            let mut marker = Map::new();
            marker.insert("$recursive".to_owned(), Value::from(stack.len() - position));
            return Value::Object(marker);
        }
        stack.push(text.clone());
    }
    let normal = normalize(root, schema);
    let result = match normal.value.as_ref() {
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
    if frame.is_some() {
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
        Value::Array(items) if matches!(keyword, "required" | "type" | "enum") => {
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
        let normal = normalize(&root, &schema);
        assert_eq!(
            normal.value.as_ref(),
            &json!({"type": "string", "description": "here"})
        );
        assert_eq!(normal.refs, ["#/$defs/A", "#/$defs/B"]);
    }

    #[test]
    fn self_referencing_chain_terminates() {
        let root = json!({"$defs": {"A": {"$ref": "#/$defs/A"}}});
        let schema = json!({"$ref": "#/$defs/A"});
        let normal = normalize(&root, &schema);
        assert_eq!(
            normal.value.as_ref(),
            &json!({"allOf": [{"$ref": "#/$defs/A"}]})
        );
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
