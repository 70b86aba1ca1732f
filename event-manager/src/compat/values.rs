//! `type`, `enum` and `const`: which JSON types and values a schema accepts.

use serde_json::{Map, Value};

use super::change::ChangeKind;
use super::diff::Differ;

/// The sorted, deduplicated names of a `type` keyword (`None`: absent, any type).
pub(super) fn type_set(value: Option<&Value>) -> Result<Option<Vec<String>>, ()> {
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
pub(super) fn covers(set: &[String], name: &str) -> bool {
    set.iter()
        .any(|t| t == name || (t == "number" && name == "integer"))
}

/// Whether some instance has a type in both sets.
pub(super) fn overlaps(a: &[String], b: &[String]) -> bool {
    a.iter().any(|t| covers(b, t)) || b.iter().any(|t| covers(a, t))
}

/// The JSON type of a value, as a `type` keyword names it (integral numbers are `integer`).
pub(super) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(n) if n.as_f64().is_some_and(|x| x.fract() == 0.0) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The types a schema's instances can actually have: the `type` keyword, narrowed to the
/// types of the `enum`/`const` values it admits when those are listed (so
/// `{"type": ["string", "null"], "const": "A"}` only ever holds a string).
fn effective_types(map: &Map<String, Value>) -> Result<Option<Vec<String>>, ()> {
    let declared = type_set(map.get("type"))?;
    let Ok(Some(values)) = allowed(map) else {
        return Ok(declared);
    };
    let mut types: Vec<String> = values
        .iter()
        .map(json_type)
        .filter(|t| declared.as_ref().is_none_or(|d| covers(d, t)))
        .map(str::to_owned)
        .collect();
    types.sort();
    types.dedup();
    Ok(Some(types))
}

/// The values allowed by `enum` and/or `const` (`None`: unrestricted).
pub(super) fn allowed(map: &Map<String, Value>) -> Result<Option<Vec<Value>>, ()> {
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

impl Differ<'_> {
    /// Reports a `type` change; returns whether old and new types share no instance (then the
    /// structural keywords are not worth comparing).
    pub(super) fn compare_type(
        &mut self,
        o: &Map<String, Value>,
        n: &Map<String, Value>,
        path: &str,
    ) -> bool {
        match (effective_types(o), effective_types(n)) {
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
    pub(super) fn compare_allowed_values(
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
}
