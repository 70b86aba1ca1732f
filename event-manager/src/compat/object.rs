//! Object keywords: `properties`, `required`, and `additionalProperties` /
//! `unevaluatedProperties` (the content model).

use serde_json::{Map, Value};

use super::change::ChangeKind;
use super::diff::Differ;
use super::resolve::{child, has_default};

/// `additionalProperties` (or, when absent, `unevaluatedProperties`) of an object schema.
#[derive(Clone, Copy)]
enum Extra<'m> {
    /// Absent, `true` or `{}`: unknown properties are tolerated.
    Open,
    /// `false`: unknown properties are rejected.
    Closed,
    /// A schema: unknown properties are map entries that must match it.
    Schema(&'m Value),
}

fn extra(map: &Map<String, Value>) -> Result<Extra<'_>, ()> {
    let value = map
        .get("additionalProperties")
        .or_else(|| map.get("unevaluatedProperties"));
    match value {
        None | Some(Value::Bool(true)) => Ok(Extra::Open),
        Some(Value::Bool(false)) => Ok(Extra::Closed),
        Some(Value::Object(schema)) if schema.is_empty() => Ok(Extra::Open),
        Some(schema @ Value::Object(_)) => Ok(Extra::Schema(schema)),
        Some(_) => Err(()),
    }
}

fn required(map: &Map<String, Value>) -> Result<Vec<String>, ()> {
    match map.get("required") {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or(()))
            .collect(),
        Some(_) => Err(()),
    }
}

fn properties(map: &Map<String, Value>) -> Result<Option<&Map<String, Value>>, ()> {
    match map.get("properties") {
        None => Ok(None),
        Some(Value::Object(props)) => Ok(Some(props)),
        Some(_) => Err(()),
    }
}

impl Differ<'_> {
    /// Compares the properties and content model of two schema objects.
    pub(super) fn compare_object(
        &mut self,
        o: &Map<String, Value>,
        n: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) {
        let (old_root, new_root) = (self.old_root, self.new_root);
        let (Ok(o_props), Ok(n_props)) = (properties(o), properties(n)) else {
            if o.get("properties") != n.get("properties") {
                self.push_unknown(path, "properties");
            }
            return;
        };
        let (Ok(o_req), Ok(n_req)) = (required(o), required(n)) else {
            if o.get("required") != n.get("required") {
                self.push_unknown(path, "required");
            }
            return;
        };
        let extras = match (extra(o), extra(n)) {
            (Ok(a), Ok(b)) => Some((a, b)),
            _ => {
                if o.get("additionalProperties") != n.get("additionalProperties")
                    || o.get("unevaluatedProperties") != n.get("unevaluatedProperties")
                {
                    self.push_unknown(path, "additionalProperties");
                }
                None
            }
        };
        let (o_extra, n_extra) = extras.unwrap_or((Extra::Open, Extra::Open));
        let empty = Map::new();
        let o_props = o_props.unwrap_or(&empty);
        let n_props = n_props.unwrap_or(&empty);

        let mut names: Vec<&str> = Vec::new();
        let all = o_props
            .keys()
            .chain(n_props.keys())
            .chain(o_req.iter())
            .chain(n_req.iter());
        for name in all {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }

        let props_path = child(path, "properties");
        for name in names {
            let p = child(&props_path, name);
            let was_required = o_req.iter().any(|r| r == name);
            let is_required = n_req.iter().any(|r| r == name);
            match (o_props.get(name), n_props.get(name)) {
                (Some(op), Some(np)) => {
                    if !was_required && is_required {
                        let has_default = has_default(new_root, np);
                        let kind = ChangeKind::RequiredAdded {
                            name: name.to_owned(),
                            has_default,
                        };
                        self.push(&p, kind, has_default, true);
                    }
                    if was_required && !is_required {
                        let has_default = has_default(old_root, op);
                        let kind = ChangeKind::RequiredRemoved {
                            name: name.to_owned(),
                            has_default,
                        };
                        self.push(&p, kind, true, has_default);
                    }
                    self.compare(op, np, &p, depth + 1);
                }
                (Some(op), None) => {
                    let has_default = has_default(old_root, op);
                    // New readers meet this property in old data: fine unless they reject
                    // unknown properties (or their map-value schema rejects its values).
                    let backward = match n_extra {
                        Extra::Open => true,
                        Extra::Closed => false,
                        Extra::Schema(values) => self
                            .probe(|d| d.compare(op, values, &p, depth + 1))
                            .iter()
                            .all(|c| c.backward),
                    };
                    let kind = ChangeKind::PropertyRemoved {
                        name: name.to_owned(),
                        required: was_required,
                        has_default,
                    };
                    self.push(&p, kind, backward, !was_required || has_default);
                }
                (None, Some(np)) => {
                    let has_default = has_default(new_root, np);
                    // Old readers meet this property in new data: serde ignores it unless
                    // they reject unknown properties (or their map-value schema rejects it).
                    let forward = match o_extra {
                        Extra::Open => true,
                        Extra::Closed => false,
                        Extra::Schema(values) => self
                            .probe(|d| d.compare(values, np, &p, depth + 1))
                            .iter()
                            .all(|c| c.forward),
                    };
                    let kind = ChangeKind::PropertyAdded {
                        name: name.to_owned(),
                        required: is_required,
                        has_default,
                    };
                    self.push(&p, kind, !is_required || has_default, forward);
                }
                (None, None) => {
                    if !was_required && is_required {
                        let kind = ChangeKind::RequiredAdded {
                            name: name.to_owned(),
                            has_default: false,
                        };
                        self.push(&p, kind, false, true);
                    }
                    if was_required && !is_required {
                        let kind = ChangeKind::RequiredRemoved {
                            name: name.to_owned(),
                            has_default: false,
                        };
                        self.push(&p, kind, true, false);
                    }
                }
            }
        }

        let keyword = if o.contains_key("additionalProperties")
            || n.contains_key("additionalProperties")
            || !(o.contains_key("unevaluatedProperties") || n.contains_key("unevaluatedProperties"))
        {
            "additionalProperties"
        } else {
            "unevaluatedProperties"
        };
        let extra_path = child(path, keyword);
        if extras.is_none() {
            return;
        }
        match (o_extra, n_extra) {
            (Extra::Open, Extra::Open) | (Extra::Closed, Extra::Closed) => {}
            (Extra::Schema(a), Extra::Schema(b)) => self.compare(a, b, &extra_path, depth + 1),
            (Extra::Open | Extra::Schema(_), Extra::Closed) => {
                self.push(
                    &extra_path,
                    ChangeKind::AdditionalPropertiesClosed,
                    false,
                    true,
                );
            }
            (Extra::Closed, Extra::Open) => {
                let kind = ChangeKind::AdditionalPropertiesOpened { to_schema: false };
                self.push(&extra_path, kind, true, true);
            }
            (Extra::Closed, Extra::Schema(_)) => {
                let kind = ChangeKind::AdditionalPropertiesOpened { to_schema: true };
                self.push(&extra_path, kind, true, false);
            }
            (Extra::Open, Extra::Schema(_)) => {
                let kind = ChangeKind::AdditionalPropertiesRestricted;
                self.push(&extra_path, kind, false, true);
            }
            (Extra::Schema(_), Extra::Open) => {
                let kind = ChangeKind::AdditionalPropertiesUnrestricted;
                self.push(&extra_path, kind, true, true);
            }
        }
    }
}
