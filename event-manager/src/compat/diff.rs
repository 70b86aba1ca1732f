//! The structural differ: walks both schemas side by side and records [`Change`]s.

use std::borrow::Cow;
use std::collections::HashSet;

use serde_json::{Map, Value};

use super::change::{Change, ChangeKind};
use super::resolve::{
    MAX_DEPTH, Resolved, canonical_keyword, child, is_annotation, is_ignored, resolve,
};
use super::variants::combinator;

/// The schema `true` (accepts everything), used where a keyword is absent.
static TRUE: Value = Value::Bool(true);

/// Keywords compared by dedicated logic; everything else goes through the generic
/// annotation / `default` / unknown-keyword comparison.
const HANDLED: &[&str] = &[
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
/// `$ref`s are resolved against each document's own root before comparing, so renaming a
/// definition without changing its shape is not a change. See the module documentation for
/// the meaning of each [`ChangeKind`] and its verdicts.
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

/// Identity of a (resolved) schema node for the recursion guard.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum NodeId {
    /// A node of a document (its address, stable while the comparison is in progress), however
    /// it was reached: inline, through `$ref`, or through `#`.
    Addr(usize),
    /// A definition merged with the keywords next to its `$ref` (a temporary value).
    Merged(Option<String>),
}

fn node_id(resolved: &Resolved<'_>) -> NodeId {
    match &resolved.value {
        Cow::Borrowed(value) => NodeId::Addr(*value as *const Value as usize),
        Cow::Owned(_) => NodeId::Merged(resolved.reference.clone()),
    }
}

fn type_set(value: Option<&Value>) -> Result<Option<Vec<String>>, ()> {
    match value {
        None => Ok(None),
        Some(Value::String(name)) => Ok(Some(vec![name.clone()])),
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut names = items
                .iter()
                .map(|item| item.as_str().map(str::to_owned).ok_or(()))
                .collect::<Result<Vec<_>, ()>>()?;
            names.sort();
            names.dedup();
            Ok(Some(names))
        }
        Some(_) => Err(()),
    }
}

/// Whether the type set accepts every instance of type `name` (`number` covers `integer`).
fn covers(set: &[String], name: &str) -> bool {
    set.iter()
        .any(|t| t == name || (t == "number" && name == "integer"))
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.iter().any(|t| covers(b, t)) || b.iter().any(|t| covers(a, t))
}

/// The values allowed by `enum` and/or `const` (`None`: unrestricted).
fn allowed(map: &Map<String, Value>) -> Result<Option<Vec<Value>>, ()> {
    let listed = match map.get("enum") {
        None => None,
        Some(Value::Array(items)) => Some(items.clone()),
        Some(_) => return Err(()),
    };
    Ok(match (listed, map.get("const")) {
        (None, None) => None,
        (Some(items), None) => Some(items),
        (None, Some(value)) => Some(vec![value.clone()]),
        (Some(items), Some(value)) => Some(items.into_iter().filter(|v| v == value).collect()),
    })
}

/// The positional items of a tuple schema and the keyword holding them.
fn tuple(map: &Map<String, Value>) -> Option<(&'static str, &Vec<Value>)> {
    match (map.get("prefixItems"), map.get("items")) {
        (Some(Value::Array(items)), _) => Some(("prefixItems", items)),
        (_, Some(Value::Array(items))) => Some(("items", items)),
        _ => None,
    }
}

/// The single-schema `items` (2020-12 meaning), if any.
fn items_schema(map: &Map<String, Value>) -> Option<&Value> {
    map.get("items").filter(|items| !items.is_array())
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
    in_progress: HashSet<(NodeId, NodeId)>,
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

    /// Compares two schemas (each possibly a `$ref`) found at `path`.
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
        let (old_root, new_root) = (self.old_root, self.new_root);
        let old_resolved = resolve(old_root, old);
        let new_resolved = resolve(new_root, new);
        let key = (node_id(&old_resolved), node_id(&new_resolved));
        // This pair of nodes is already being compared further up: a recursive schema (only
        // `$ref`s can close such a loop). Its changes are reported at the outer occurrence.
        if !self.in_progress.insert(key.clone()) {
            return;
        }
        self.compare_resolved(&old_resolved.value, &new_resolved.value, path, depth);
        self.in_progress.remove(&key);
    }

    fn compare_resolved(&mut self, old: &Value, new: &Value, path: &str, depth: usize) {
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

    /// Compares all keywords of two schema objects (combinators already split off).
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
        self.compare_remaining(o, n, path);
    }

    /// Reports a `type` change; returns whether old and new types share no instance (then the
    /// structural keywords are not worth comparing).
    fn compare_type(&mut self, o: &Map<String, Value>, n: &Map<String, Value>, path: &str) -> bool {
        match (type_set(o.get("type")), type_set(n.get("type"))) {
            (Ok(None), Ok(None)) => false,
            (Ok(None), Ok(Some(to))) => {
                self.push(
                    path,
                    ChangeKind::TypeNarrowed { from: vec![], to },
                    false,
                    true,
                );
                false
            }
            (Ok(Some(from)), Ok(None)) => {
                self.push(
                    path,
                    ChangeKind::TypeWidened { from, to: vec![] },
                    true,
                    false,
                );
                false
            }
            (Ok(Some(from)), Ok(Some(to))) => {
                let widened = from.iter().all(|t| covers(&to, t));
                let narrowed = to.iter().all(|t| covers(&from, t));
                let disjoint = !overlaps(&from, &to);
                match (widened, narrowed) {
                    (true, true) => {}
                    (true, false) => {
                        self.push(path, ChangeKind::TypeWidened { from, to }, true, false)
                    }
                    (false, true) => {
                        self.push(path, ChangeKind::TypeNarrowed { from, to }, false, true)
                    }
                    (false, false) => {
                        self.push(path, ChangeKind::TypeChanged { from, to }, false, false)
                    }
                }
                disjoint
            }
            _ => {
                if o.get("type") != n.get("type") {
                    self.push_unknown(path, "type");
                }
                false
            }
        }
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

    fn compare_allowed_values(
        &mut self,
        o: &Map<String, Value>,
        n: &Map<String, Value>,
        path: &str,
    ) {
        let only_const =
            |m: &Map<String, Value>| m.contains_key("const") && !m.contains_key("enum");
        if only_const(o) && only_const(n) {
            if let (Some(old), Some(new)) = (o.get("const"), n.get("const"))
                && old != new
            {
                let kind = ChangeKind::ConstChanged {
                    old: old.clone(),
                    new: new.clone(),
                };
                self.push(path, kind, false, false);
            }
            return;
        }
        let keyword = |m: &Map<String, Value>| {
            if m.contains_key("enum") {
                "enum"
            } else {
                "const"
            }
        };
        match (allowed(o), allowed(n)) {
            (Ok(None), Ok(None)) => {}
            (Ok(None), Ok(Some(_))) => {
                let kw = keyword(n);
                let kind = ChangeKind::ConstraintTightened {
                    keyword: kw.to_owned(),
                    old: None,
                    new: n.get(kw).cloned(),
                };
                self.push(path, kind, false, true);
            }
            (Ok(Some(_)), Ok(None)) => {
                let kw = keyword(o);
                let kind = ChangeKind::ConstraintRelaxed {
                    keyword: kw.to_owned(),
                    old: o.get(kw).cloned(),
                    new: None,
                };
                self.push(path, kind, true, false);
            }
            (Ok(Some(old)), Ok(Some(new))) => {
                let added: Vec<Value> = new.iter().filter(|v| !old.contains(v)).cloned().collect();
                let removed: Vec<Value> =
                    old.iter().filter(|v| !new.contains(v)).cloned().collect();
                if !added.is_empty() {
                    self.push(path, ChangeKind::EnumValuesAdded(added), true, false);
                }
                if !removed.is_empty() {
                    self.push(path, ChangeKind::EnumValuesRemoved(removed), false, true);
                }
            }
            _ => {
                if o.get("enum") != n.get("enum") || o.get("const") != n.get("const") {
                    self.push_unknown(path, "enum");
                }
            }
        }
    }

    fn compare_array(
        &mut self,
        o: &Map<String, Value>,
        n: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) {
        match (tuple(o), tuple(n)) {
            (None, None) => {}
            (Some((_, old)), Some((keyword, new))) => {
                let tuple_path = child(path, keyword);
                for (index, (a, b)) in old.iter().zip(new.iter()).enumerate() {
                    self.compare(a, b, &child(&tuple_path, &index.to_string()), depth + 1);
                }
                if old.len() != new.len() {
                    let kind = ChangeKind::TupleLengthChanged {
                        old: old.len(),
                        new: new.len(),
                    };
                    self.push(&tuple_path, kind, false, false);
                }
            }
            (Some(_), None) | (None, Some(_)) => self.push_unknown(path, "prefixItems"),
        }
        match (items_schema(o), items_schema(n)) {
            (None, None) => {}
            (a, b) => self.compare(
                a.unwrap_or(&TRUE),
                b.unwrap_or(&TRUE),
                &child(path, "items"),
                depth + 1,
            ),
        }
    }

    fn compare_all_of(
        &mut self,
        o: &Map<String, Value>,
        n: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) {
        match (o.get("allOf"), n.get("allOf")) {
            (None, None) => {}
            (Some(Value::Array(a)), Some(Value::Array(b))) if a.len() == b.len() => {
                let all_path = child(path, "allOf");
                for (index, (x, y)) in a.iter().zip(b.iter()).enumerate() {
                    self.compare(x, y, &child(&all_path, &index.to_string()), depth + 1);
                }
            }
            (a, b) => {
                let canon_a = a.map(|v| canonical_keyword(self.old_root, "allOf", v));
                let canon_b = b.map(|v| canonical_keyword(self.new_root, "allOf", v));
                if canon_a != canon_b {
                    self.push_unknown(path, "allOf");
                }
            }
        }
    }

    /// Annotations, `default`, and keywords without dedicated logic.
    fn compare_remaining(&mut self, o: &Map<String, Value>, n: &Map<String, Value>, path: &str) {
        let keys = o.keys().chain(n.keys().filter(|key| !o.contains_key(*key)));
        for key in keys {
            if is_ignored(key) || HANDLED.contains(&key.as_str()) {
                continue;
            }
            let (a, b) = (o.get(key), n.get(key));
            if is_annotation(key) {
                if a != b {
                    let kind = ChangeKind::AnnotationChanged {
                        keyword: key.clone(),
                    };
                    self.push(path, kind, true, true);
                }
            } else if key == "default" {
                if a != b {
                    let kind = ChangeKind::DefaultChanged {
                        old: a.cloned(),
                        new: b.cloned(),
                    };
                    self.push(path, kind, true, true);
                }
            } else {
                let canon_a = a.map(|v| canonical_keyword(self.old_root, key, v));
                let canon_b = b.map(|v| canonical_keyword(self.new_root, key, v));
                if canon_a != canon_b {
                    self.push_unknown(path, key);
                }
            }
        }
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
