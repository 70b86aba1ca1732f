//! `oneOf` exclusivity: a value valid under `oneOf` matches exactly one alternative, so a
//! change that lets a second alternative match old (or new) data breaks the reader even when
//! each alternative, compared on its own, is compatible.
//!
//! Alternatives are *provably disjoint* when their types share no instance, their allowed
//! values (`enum`/`const`) share none, or (for objects) one requires a property the other
//! rejects: a closed object without it, or a schema for it that is itself disjoint, e.g. two
//! different tag `const`s. serde's tagged enums always pass this test.

use serde_json::{Map, Value};

use super::change::{Change, ChangeKind};
use super::diff::Differ;
use super::normalize::normalize;
use super::resolve::child;
use super::values::{allowed, covers, json_type, overlaps, type_set};

/// How deep the disjointness proof follows nested properties.
const MAX_PROOF_DEPTH: usize = 8;

/// Whether no instance satisfies both `a` (of document `ra`) and `b` (of document `rb`).
/// `false` means "not proved", never "they overlap".
pub(super) fn disjoint(ra: &Value, a: &Value, rb: &Value, b: &Value, depth: usize) -> bool {
    if depth > MAX_PROOF_DEPTH {
        return false;
    }
    let (na, nb) = (normalize(ra, a), normalize(rb, b));
    match (na.value.as_ref(), nb.value.as_ref()) {
        (Value::Bool(false), _) | (_, Value::Bool(false)) => true,
        (Value::Object(a), Value::Object(b)) => disjoint_maps(ra, a, rb, b, depth),
        _ => false,
    }
}

fn disjoint_maps(
    ra: &Value,
    a: &Map<String, Value>,
    rb: &Value,
    b: &Map<String, Value>,
    depth: usize,
) -> bool {
    let (ta, tb) = (
        type_set(a.get("type")).ok().flatten(),
        type_set(b.get("type")).ok().flatten(),
    );
    if let (Some(x), Some(y)) = (&ta, &tb)
        && !overlaps(x, y)
    {
        return true;
    }
    let (va, vb) = (allowed(a).ok().flatten(), allowed(b).ok().flatten());
    if let (Some(x), Some(y)) = (&va, &vb)
        && !x.iter().any(|v| y.contains(v))
    {
        return true;
    }
    let outside = |values: &Option<Vec<Value>>, types: &Option<Vec<String>>| match (values, types) {
        (Some(values), Some(types)) => values.iter().all(|v| !covers(types, json_type(v))),
        _ => false,
    };
    if outside(&va, &tb) || outside(&vb, &ta) {
        return true;
    }
    let objects_only = |t: &Option<Vec<String>>| t.as_ref().is_some_and(|t| t == &["object"]);
    (objects_only(&ta) || objects_only(&tb))
        && (excludes(ra, a, rb, b, depth) || excludes(rb, b, ra, a, depth))
}

/// Whether an object valid under `a` cannot be valid under `b`: `a` requires a property that
/// `b` rejects.
fn excludes(
    ra: &Value,
    a: &Map<String, Value>,
    rb: &Value,
    b: &Map<String, Value>,
    depth: usize,
) -> bool {
    let Some(Value::Array(required)) = a.get("required") else {
        return false;
    };
    let empty = Map::new();
    let props = |m: &'_ Map<String, Value>| match m.get("properties") {
        Some(Value::Object(p)) => p.clone(),
        _ => empty.clone(),
    };
    let (a_props, b_props) = (props(a), props(b));
    // Without applicators left, `unevaluatedProperties` only sees `properties`.
    let b_closed = match b.get("additionalProperties") {
        Some(extra) => extra == &Value::Bool(false),
        None => {
            b.get("unevaluatedProperties") == Some(&Value::Bool(false))
                && !["allOf", "anyOf", "oneOf", "patternProperties"]
                    .iter()
                    .any(|key| b.contains_key(*key))
        }
    };
    required.iter().filter_map(Value::as_str).any(|name| {
        match (a_props.get(name), b_props.get(name)) {
            (_, None) => b_closed,
            (Some(x), Some(y)) => disjoint(ra, x, rb, y, depth + 1),
            (None, Some(_)) => false,
        }
    })
}

/// Whether a change can make a schema accept a value it rejected before.
fn widens(change: &Change) -> bool {
    !change.forward
        || matches!(
            change.kind,
            ChangeKind::PropertyRemoved { .. }
                | ChangeKind::AdditionalPropertiesOpened { .. }
                | ChangeKind::AdditionalPropertiesUnrestricted
        )
}

/// Whether a change can make a schema reject a value it accepted before.
fn narrows(change: &Change) -> bool {
    !change.backward || matches!(change.kind, ChangeKind::PropertyAdded { .. })
}

/// The alternatives of one `oneOf`/`anyOf` comparison and how they were matched.
pub(super) struct Alternatives<'a> {
    /// `oneOf`/`anyOf` of the old schema (`None`: a single alternative).
    pub(super) old_keyword: Option<&'static str>,
    /// `oneOf`/`anyOf` of the new schema.
    pub(super) new_keyword: Option<&'static str>,
    /// The alternatives as `oneOf` matches them (without the whole's
    /// `unevaluatedProperties`).
    pub(super) old_matched: &'a [Value],
    pub(super) new_matched: &'a [Value],
    /// The alternatives as a valid value satisfies them (the whole distributed in).
    pub(super) old_valid: &'a [Value],
    pub(super) new_valid: &'a [Value],
    pub(super) old_labels: Vec<String>,
    pub(super) new_labels: Vec<String>,
    /// `pairs[old] = Some(new)`.
    pub(super) pairs: &'a [Option<usize>],
    /// The changes found inside each old alternative's pair (empty when unpaired).
    pub(super) changes: &'a [Vec<Change>],
}

impl Differ<'_> {
    /// Reports `oneOf` alternatives that may no longer be exclusive for the data of the other
    /// version (see the module docs).
    pub(super) fn check_exclusive(&mut self, alts: &Alternatives<'_>, path: &str) {
        let (old_root, new_root) = (self.old_root, self.new_root);
        let old_of = |j: usize| alts.pairs.iter().position(|p| *p == Some(j));
        if alts.new_keyword == Some("oneOf") {
            // New readers, old data: a new alternative that accepts more may also match old
            // data of another alternative.
            for (j, item) in alts.new_matched.iter().enumerate() {
                let counterpart = old_of(j);
                let widened = counterpart.is_none_or(|i| alts.changes[i].iter().any(widens));
                let overlapping = (0..alts.old_valid.len())
                    .filter(|&k| Some(k) != counterpart)
                    .find(|&k| !disjoint(new_root, item, old_root, &alts.old_valid[k], 0));
                if widened && let Some(k) = overlapping {
                    let kind = ChangeKind::VariantsOverlap {
                        label: alts.new_labels[j].clone(),
                        other: alts.old_labels[k].clone(),
                    };
                    let at = child(&child(path, "oneOf"), &j.to_string());
                    self.push(&at, kind, false, true);
                }
            }
        }
        if alts.old_keyword == Some("oneOf") {
            // Old readers, new data: an old alternative whose new version accepts less may
            // match new data of another alternative that it used to exclude.
            for (i, item) in alts.old_matched.iter().enumerate() {
                let counterpart = alts.pairs[i];
                let narrowed = counterpart.is_none() || alts.changes[i].iter().any(narrows);
                let overlapping = (0..alts.new_valid.len())
                    .filter(|&k| Some(k) != counterpart)
                    .find(|&k| !disjoint(old_root, item, new_root, &alts.new_valid[k], 0));
                if narrowed && let Some(k) = overlapping {
                    let kind = ChangeKind::VariantsOverlap {
                        label: alts.old_labels[i].clone(),
                        other: alts.new_labels[k].clone(),
                    };
                    let at = child(&child(path, "oneOf"), &i.to_string());
                    self.push(&at, kind, true, false);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apart(a: Value, b: Value) -> bool {
        let root = json!({});
        disjoint(&root, &a, &root, &b, 0)
    }

    #[test]
    fn proves_serde_taggings_disjoint() {
        // Internally / adjacently tagged: different tag constants.
        let tagged = |tag: &str| json!({"type": "object", "properties": {"kind": {"const": tag}}, "required": ["kind"]});
        assert!(apart(tagged("A"), tagged("B")));
        assert!(!apart(tagged("A"), tagged("A")));
        // Externally tagged: a closed object without the other's single required property.
        let external = |name: &str| {
            json!({"type": "object", "properties": {name: {}}, "required": [name],
                   "additionalProperties": false})
        };
        assert!(apart(external("A"), external("B")));
        // Unit variants against object variants: types.
        assert!(apart(
            json!({"type": "string", "enum": ["U"]}),
            external("A")
        ));
        // Values outside the other's types.
        assert!(apart(json!({"enum": [1, 2]}), json!({"type": "string"})));
    }

    #[test]
    fn open_objects_are_not_proved_disjoint() {
        let a = json!({"type": "object", "properties": {"a": {}}, "required": ["a"]});
        let b = json!({"type": "object", "properties": {"b": {}}, "required": ["b"]});
        assert!(!apart(a, b));
        assert!(!apart(json!({}), json!({"type": "integer"})));
    }
}
