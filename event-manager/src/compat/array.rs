//! Array keywords: `prefixItems` (tuples) and `items`.

use serde_json::{Map, Value};

use super::change::ChangeKind;
use super::diff::{Differ, TRUE};
use super::resolve::child;

/// The positional items of a tuple schema (draft-07 array `items` was normalized to
/// `prefixItems` already).
fn tuple(map: &Map<String, Value>) -> Option<&Vec<Value>> {
    match map.get("prefixItems") {
        Some(Value::Array(items)) => Some(items),
        _ => None,
    }
}

/// The single-schema `items` (2020-12 meaning), if any.
fn items_schema(map: &Map<String, Value>) -> Option<&Value> {
    map.get("items").filter(|items| !items.is_array())
}

impl Differ<'_> {
    /// Compares tuples position by position and `items` as one schema.
    pub(super) fn compare_array(
        &mut self,
        o: &Map<String, Value>,
        n: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) {
        match (tuple(o), tuple(n)) {
            (None, None) => {}
            (Some(old), Some(new)) => {
                let tuple_path = child(path, "prefixItems");
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
}
