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

/// The names of both sides' properties and `required` lists, in first-seen order.
fn all_names<'m>(
    o_props: &'m Map<String, Value>,
    n_props: &'m Map<String, Value>,
    o_req: &'m [String],
    n_req: &'m [String],
) -> Vec<&'m str> {
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
    names
}

/// One object's keywords, read.
struct Shape<'m> {
    props: &'m Map<String, Value>,
    required: Vec<String>,
    extra: Extra<'m>,
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
        let old = Shape {
            props: o_props.unwrap_or(&empty),
            required: o_req,
            extra: o_extra,
        };
        let new = Shape {
            props: n_props.unwrap_or(&empty),
            required: n_req,
            extra: n_extra,
        };
        let props_path = child(path, "properties");
        for name in all_names(old.props, new.props, &old.required, &new.required) {
            let p = child(&props_path, name);
            self.compare_property(&old, &new, name, &p, depth);
        }
        if extras.is_some() {
            self.compare_extra(o, n, o_extra, n_extra, path, depth);
        }
    }

    /// One property name, present on either or both sides.
    fn compare_property(
        &mut self,
        old: &Shape<'_>,
        new: &Shape<'_>,
        name: &str,
        p: &str,
        depth: usize,
    ) {
        let (old_root, new_root) = (self.old_root, self.new_root);
        let was_required = old.required.iter().any(|r| r == name);
        let is_required = new.required.iter().any(|r| r == name);
        let (op, np) = (old.props.get(name), new.props.get(name));
        let old_default = op.is_some_and(|op| has_default(old_root, op));
        let new_default = np.is_some_and(|np| has_default(new_root, np));
        match (op, np) {
            (Some(op), Some(np)) => {
                self.compare_required(
                    name,
                    p,
                    (was_required, is_required),
                    old_default,
                    new_default,
                );
                self.compare(op, np, p, depth + 1);
            }
            (Some(op), None) => {
                // New readers meet this property in old data: fine unless they reject unknown
                // properties (or their map-value schema rejects its values).
                let backward = self.extra_reads(new.extra, op, p, depth, true);
                // Old readers miss it in new data, unless new writers emit it as a map entry.
                let forward = (!was_required || old_default)
                    && self.extra_written(new.extra, op, p, depth, false);
                let kind = ChangeKind::PropertyRemoved {
                    name: name.to_owned(),
                    required: was_required,
                    has_default: old_default,
                };
                self.push(p, kind, backward, forward);
            }
            (None, Some(np)) => {
                // New readers miss it in old data, unless old writers emit it as a map entry.
                let backward = (!is_required || new_default)
                    && self.extra_written(old.extra, np, p, depth, true);
                // Old readers meet it in new data: serde ignores it unless they reject unknown
                // properties (or their map-value schema rejects it).
                let forward = self.extra_reads(old.extra, np, p, depth, false);
                let kind = ChangeKind::PropertyAdded {
                    name: name.to_owned(),
                    required: is_required,
                    has_default: new_default,
                };
                self.push(p, kind, backward, forward);
            }
            (None, None) => {
                self.compare_required(name, p, (was_required, is_required), false, false);
            }
        }
    }

    /// `required` membership of a property on both sides.
    fn compare_required(
        &mut self,
        name: &str,
        p: &str,
        (was_required, is_required): (bool, bool),
        old_default: bool,
        new_default: bool,
    ) {
        if !was_required && is_required {
            let kind = ChangeKind::RequiredAdded {
                name: name.to_owned(),
                has_default: new_default,
            };
            self.push(p, kind, new_default, true);
        }
        if was_required && !is_required {
            let kind = ChangeKind::RequiredRemoved {
                name: name.to_owned(),
                has_default: old_default,
            };
            self.push(p, kind, true, old_default);
        }
    }

    /// Whether a reader whose content model is `extra` accepts a property it does not declare,
    /// written with schema `written`. `backward`: the reader is the new schema.
    fn extra_reads(
        &mut self,
        extra: Extra<'_>,
        written: &Value,
        p: &str,
        depth: usize,
        backward: bool,
    ) -> bool {
        match extra {
            Extra::Open => true,
            Extra::Closed => false,
            Extra::Schema(values) => {
                let changes = if backward {
                    self.probe(|d| d.compare(written, values, p, depth + 1))
                } else {
                    self.probe(|d| d.compare(values, written, p, depth + 1))
                };
                changes
                    .iter()
                    .all(|c| if backward { c.backward } else { c.forward })
            }
        }
    }

    /// Whether a reader that declares a property with schema `read` accepts what writers whose
    /// content model is `extra` may emit under that name (only map entries, rule 1).
    /// `backward`: the writer is the old schema.
    fn extra_written(
        &mut self,
        extra: Extra<'_>,
        read: &Value,
        p: &str,
        depth: usize,
        backward: bool,
    ) -> bool {
        match extra {
            Extra::Open | Extra::Closed => true,
            Extra::Schema(values) => {
                let changes = if backward {
                    self.probe(|d| d.compare(values, read, p, depth + 1))
                } else {
                    self.probe(|d| d.compare(read, values, p, depth + 1))
                };
                changes
                    .iter()
                    .all(|c| if backward { c.backward } else { c.forward })
            }
        }
    }

    /// `additionalProperties` / `unevaluatedProperties`: the content model.
    fn compare_extra(
        &mut self,
        o: &Map<String, Value>,
        n: &Map<String, Value>,
        o_extra: Extra<'_>,
        n_extra: Extra<'_>,
        path: &str,
        depth: usize,
    ) {
        let keyword = if o.contains_key("additionalProperties")
            || n.contains_key("additionalProperties")
            || !(o.contains_key("unevaluatedProperties") || n.contains_key("unevaluatedProperties"))
        {
            "additionalProperties"
        } else {
            "unevaluatedProperties"
        };
        let extra_path = child(path, keyword);
        let (kind, backward, forward) = match (o_extra, n_extra) {
            (Extra::Open, Extra::Open) | (Extra::Closed, Extra::Closed) => return,
            (Extra::Schema(a), Extra::Schema(b)) => {
                self.compare(a, b, &extra_path, depth + 1);
                return;
            }
            (Extra::Open | Extra::Schema(_), Extra::Closed) => {
                (ChangeKind::AdditionalPropertiesClosed, false, true)
            }
            (Extra::Closed, Extra::Open) => (
                ChangeKind::AdditionalPropertiesOpened { to_schema: false },
                true,
                true,
            ),
            (Extra::Closed, Extra::Schema(_)) => (
                ChangeKind::AdditionalPropertiesOpened { to_schema: true },
                true,
                false,
            ),
            (Extra::Open, Extra::Schema(_)) => {
                (ChangeKind::AdditionalPropertiesRestricted, false, true)
            }
            (Extra::Schema(_), Extra::Open) => {
                (ChangeKind::AdditionalPropertiesUnrestricted, true, true)
            }
        };
        self.push(&extra_path, kind, backward, forward);
    }
}
