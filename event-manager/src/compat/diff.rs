//! The structural differ: walks both schemas side by side and records [`Change`]s.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::change::{Change, ChangeKind};
use super::normalize::normalize;
use super::resolve::{MAX_DEPTH, may_recurse, node_key};
use super::variants::combinator;

/// The schema `true` (accepts everything), used where a keyword is absent.
pub(super) static TRUE: Value = Value::Bool(true);

/// Keywords compared by dedicated logic; everything else goes through the generic
/// annotation / `default` / assertion / unknown-keyword comparison.
pub(super) const HANDLED: &[&str] = &[
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
    "minProperties",
    "maxProperties",
    "properties",
    "required",
    "additionalProperties",
    "unevaluatedProperties",
    "items",
    "prefixItems",
    "allOf",
];

/// Diffs two JSON Schemas and returns every change with its verdicts.
///
/// Each node is normalized before comparing: `$ref`s are expanded against each document's
/// own root and conjoined with their sibling keywords, `allOf` members are merged, and
/// equivalent spellings are rewritten to one form, so renaming a definition without changing
/// its shape is not a change. See the module documentation for the meaning of each
/// [`ChangeKind`] and its verdicts.
///
/// Changes come sorted by path (a parent before its children; stable within one path).
///
/// Never panics: malformed keywords are compared textually and, if they differ, reported as
/// [`ChangeKind::KeywordChanged`] (breaking both ways).
pub fn diff(old: &Value, new: &Value) -> Vec<Change> {
    let mut differ = Differ::new(old, new);
    differ.compare(old, new, "", 0);
    let mut changes = differ.changes;
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    changes
}

/// A schema object, with `true` read as the empty schema `{}`.
fn as_map<'a>(value: &'a Value, empty: &'a Map<String, Value>) -> Option<&'a Map<String, Value>> {
    match value {
        Value::Object(map) => Some(map),
        Value::Bool(true) => Some(empty),
        _ => None,
    }
}

/// Walks two schemas in parallel, collecting changes.
pub(crate) struct Differ<'r> {
    pub(super) old_root: &'r Value,
    pub(super) new_root: &'r Value,
    pub(super) changes: Vec<Change>,
    /// The pairs of nodes (as text, which fixes their meaning within their documents) being
    /// compared further up; only nodes with a `$ref` or `allOf` can close a cycle.
    in_progress: HashSet<(String, String)>,
}

impl<'r> Differ<'r> {
    pub(crate) fn new(old_root: &'r Value, new_root: &'r Value) -> Self {
        Differ {
            old_root,
            new_root,
            changes: Vec::new(),
            in_progress: HashSet::new(),
        }
    }

    pub(super) fn push(&mut self, path: &str, kind: ChangeKind, backward: bool, forward: bool) {
        self.changes
            .push(Change::new(path, kind, backward, forward));
    }

    /// Runs `probe` with a fresh change list and returns what it recorded.
    pub(super) fn probe(&mut self, probe: impl FnOnce(&mut Self)) -> Vec<Change> {
        let saved = std::mem::take(&mut self.changes);
        probe(self);
        std::mem::replace(&mut self.changes, saved)
    }

    /// Compares two schemas (each possibly a `$ref`, an `allOf`, …) found at `path`.
    pub(super) fn compare(&mut self, old: &Value, new: &Value, path: &str, depth: usize) {
        if depth > MAX_DEPTH {
            self.push(
                path,
                ChangeKind::KeywordChanged {
                    keyword: "(nesting too deep to compare)".to_owned(),
                },
                false,
                false,
            );
            return;
        }
        // The same pair of nodes is already being compared further up: a recursive schema.
        // Its changes are reported at the outer occurrence. The key is the nodes' full text,
        // keywords next to a `$ref` included, so a sibling constraint is never skipped.
        let (old_root, new_root) = (self.old_root, self.new_root);
        let key = (depth == 0 || may_recurse(old) || may_recurse(new))
            .then(|| (node_key(old_root, old), node_key(new_root, new)));
        if let Some(key) = &key
            && !self.in_progress.insert(key.clone())
        {
            return;
        }
        let old_normal = normalize(old_root, old);
        let new_normal = normalize(new_root, new);
        self.compare_normal(&old_normal.value, &new_normal.value, path, depth);
        if let Some(key) = &key {
            self.in_progress.remove(key);
        }
    }

    fn compare_normal(&mut self, old: &Value, new: &Value, path: &str, depth: usize) {
        match (old, new) {
            (Value::Bool(false), Value::Bool(false)) => return,
            (Value::Bool(false), _) => {
                self.push(path, ChangeKind::SchemaNoLongerFalse, true, false);
                return;
            }
            (_, Value::Bool(false)) => {
                self.push(path, ChangeKind::SchemaBecameFalse, false, true);
                return;
            }
            _ => {}
        }
        let empty = Map::new();
        match (as_map(old, &empty), as_map(new, &empty)) {
            (Some(o), Some(n)) => {
                if combinator(o).is_some() || combinator(n).is_some() {
                    self.compare_combined(o, n, path, depth);
                } else {
                    self.compare_keywords(o, n, path, depth);
                }
            }
            _ => {
                if old != new {
                    self.push(
                        path,
                        ChangeKind::KeywordChanged {
                            keyword: "(not a schema)".to_owned(),
                        },
                        false,
                        false,
                    );
                }
            }
        }
    }

    /// Compares all keywords of two normalized schema objects (combinators already split off).
    pub(super) fn compare_keywords(
        &mut self,
        o: &Map<String, Value>,
        n: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) {
        let disjoint = self.compare_type(o, n, path);
        if !disjoint {
            self.compare_allowed_values(o, n, path);
            self.compare_constraints(o, n, path);
            self.compare_object(o, n, path, depth);
            self.compare_array(o, n, path, depth);
            self.compare_all_of(o, n, path, depth);
        }
        self.compare_remaining(o, n, path, depth);
    }

    pub(super) fn push_unknown(&mut self, path: &str, keyword: &str) {
        self.push(
            path,
            ChangeKind::KeywordChanged {
                keyword: keyword.to_owned(),
            },
            false,
            false,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kinds(old: &Value, new: &Value) -> Vec<ChangeKind> {
        diff(old, new).into_iter().map(|c| c.kind).collect()
    }

    #[test]
    fn identical_documents_have_no_changes() {
        let schema = json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}},
                            "$defs": {"A": {"type": "integer"}}});
        assert!(diff(&schema, &schema).is_empty());
    }

    #[test]
    fn root_self_reference_terminates() {
        let old = json!({"type": "object", "properties": {"me": {"$ref": "#"}}});
        let new = json!({"type": "object", "properties": {"me": {"$ref": "#"}, "x": {}}});
        let changes = diff(&old, &new);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].path, "/properties/x");
    }

    #[test]
    fn mutual_recursion_terminates() {
        let schema = |extra: bool| {
            let mut b = json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}});
            if extra
                && let Some(props) = b.pointer_mut("/properties").and_then(Value::as_object_mut)
            {
                props.insert("n".into(), json!({"type": "integer"}));
            }
            json!({"$ref": "#/$defs/A", "$defs": {
                "A": {"type": "object", "properties": {"b": {"$ref": "#/$defs/B"}}},
                "B": b
            }})
        };
        let changes = diff(&schema(false), &schema(true));
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].path, "/properties/b/properties/n");
    }

    #[test]
    fn recursive_old_against_finite_new_is_compared_fully() {
        // Old: a recursive list; new: the same shape unrolled twice, with a change at depth 2.
        let old = json!({"$ref": "#/$defs/L", "$defs": {"L": {"type": "object", "properties": {
            "next": {"$ref": "#/$defs/L"}, "v": {"type": "integer"}}}}});
        let new = json!({"type": "object", "properties": {"v": {"type": "integer"}, "next": {
            "type": "object", "properties": {"v": {"type": "string"}}}}});
        let changes = diff(&old, &new);
        assert!(
            changes
                .iter()
                .any(|c| c.path == "/properties/next/properties/v"
                    && matches!(c.kind, ChangeKind::TypeChanged { .. })),
            "{changes:?}"
        );
    }

    #[test]
    fn dangling_and_remote_refs_do_not_crash() {
        let old =
            json!({"properties": {"a": {"$ref": "#/$defs/Missing"}, "b": {"$ref": "x.json"}}});
        assert!(diff(&old, &old).is_empty());
        let new = json!({"properties": {"a": {"$ref": "#/$defs/Other"}, "b": {"$ref": "x.json"}}});
        assert_eq!(
            kinds(&old, &new),
            vec![ChangeKind::KeywordChanged {
                keyword: "$ref".into()
            }]
        );
    }

    #[test]
    fn non_schema_values_do_not_crash() {
        let values = [
            json!(null),
            json!(1),
            json!("x"),
            json!([1, 2]),
            json!(true),
            json!(false),
            json!({}),
            json!({"type": []}),
            json!({"type": [1]}),
            json!({"properties": {"a": 1}, "required": [1]}),
            json!({"items": [1, {"type": "string"}]}),
            json!({"oneOf": "x", "anyOf": [1, null]}),
            json!({"additionalProperties": 3}),
            json!({"enum": {}, "const": null}),
            json!({"minimum": "a", "multipleOf": -1, "format": 5, "pattern": []}),
            json!({"allOf": [true, false], "$ref": 7}),
        ];
        for old in &values {
            for new in &values {
                let changes = diff(old, new);
                if old == new {
                    assert!(changes.is_empty(), "{old} vs itself: {changes:?}");
                }
            }
        }
    }

    #[test]
    fn garbage_schemas_are_reported_as_breaking() {
        let changes = diff(&json!("a"), &json!("b"));
        assert_eq!(changes.len(), 1);
        assert!(!changes[0].backward && !changes[0].forward);
    }

    #[test]
    fn deep_nesting_hits_the_depth_limit_without_overflowing() {
        fn nest(levels: usize, leaf: Value) -> Value {
            (0..levels).fold(leaf, |inner, _| json!({"type": "array", "items": inner}))
        }
        let old = nest(400, json!({"type": "integer"}));
        let new = nest(400, json!({"type": "string"}));
        let result = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || diff(&old, &new))
            .expect("spawn")
            .join()
            .expect("no stack overflow");
        assert_eq!(result.len(), 1);
        assert!(matches!(result[0].kind, ChangeKind::KeywordChanged { .. }));
    }

    #[test]
    fn property_names_are_escaped_in_paths() {
        let old = json!({"properties": {}});
        let new = json!({"properties": {"a/b~c": {}}});
        assert_eq!(diff(&old, &new)[0].path, "/properties/a~1b~0c");
    }

    #[test]
    fn pseudo_random_schemas_never_panic() {
        // A small deterministic generator of schema-like values (no extra crates).
        struct Rng(u64);
        impl Rng {
            fn next(&mut self) -> u64 {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0
            }
            fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
                items[(self.next() % items.len() as u64) as usize]
            }
        }
        const KEYS: &[&str] = &[
            "type",
            "properties",
            "required",
            "items",
            "prefixItems",
            "enum",
            "const",
            "oneOf",
            "anyOf",
            "allOf",
            "additionalProperties",
            "minimum",
            "maxLength",
            "format",
            "pattern",
            "$ref",
            "default",
            "description",
            "not",
            "multipleOf",
        ];
        const REFS: &[&str] = &["#", "#/$defs/A", "#/$defs/B", "#/definitions/C", "#/nope"];
        const TYPES: &[&str] = &["string", "integer", "number", "object", "array", "null"];
        fn gen_value(rng: &mut Rng, depth: u32) -> Value {
            if depth == 0 {
                return match rng.next() % 4 {
                    0 => json!(true),
                    1 => json!(false),
                    2 => json!({}),
                    _ => json!({"type": rng.pick(TYPES)}),
                };
            }
            let mut map = Map::new();
            for _ in 0..(rng.next() % 4) {
                let key = rng.pick(KEYS);
                let value = match key {
                    "type" => json!(rng.pick(TYPES)),
                    "properties" => {
                        json!({"a": gen_value(rng, depth - 1), "b": gen_value(rng, depth - 1)})
                    }
                    "required" => json!(["a"]),
                    "items" | "not" | "additionalProperties" => gen_value(rng, depth - 1),
                    "prefixItems" | "oneOf" | "anyOf" | "allOf" => {
                        json!([gen_value(rng, depth - 1), gen_value(rng, depth - 1)])
                    }
                    "enum" => json!([rng.next() % 3, "x"]),
                    "$ref" => json!(rng.pick(REFS)),
                    _ => json!(rng.next() % 5),
                };
                map.insert(key.to_owned(), value);
            }
            Value::Object(map)
        }
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..2000 {
            let root = |rng: &mut Rng| {
                let mut schema = gen_value(rng, 3);
                if let Value::Object(map) = &mut schema {
                    map.insert(
                        "$defs".into(),
                        json!({"A": gen_value(rng, 2), "B": gen_value(rng, 2)}),
                    );
                    map.insert("definitions".into(), json!({"C": gen_value(rng, 2)}));
                }
                schema
            };
            let old = root(&mut rng);
            let new = root(&mut rng);
            let _ = diff(&old, &new);
            assert!(diff(&old, &old).is_empty(), "{old}");
        }
    }
}
