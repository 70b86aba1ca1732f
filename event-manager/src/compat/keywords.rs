//! Keywords without a structural rule of their own: annotations, `default`, `propertyNames`,
//! `dependentRequired`, the pure assertions (`not`, `contains`, `dependentSchemas`,
//! `if`/`then`/`else`) and anything unknown.

use serde_json::{Map, Value};

use super::change::ChangeKind;
use super::diff::{Differ, HANDLED, TRUE};
use super::resolve::{canonical_keyword, child, is_annotation, is_ignored};

/// Keywords that only ever reject instances: adding one tightens, removing one relaxes.
const ASSERTIONS: &[&str] = &["not", "contains", "dependentSchemas"];

/// The conditional keywords, judged together as one assertion.
const CONDITIONAL: &[&str] = &["if", "then", "else"];

/// How two `dependentRequired` maps relate: each name's list on the one side contains the
/// other side's, or neither.
fn dependent_required(old: &Value, new: &Value) -> Option<(bool, bool)> {
    let (Value::Object(old), Value::Object(new)) = (old, new) else {
        return None;
    };
    // Whether every requirement of `weaker` is also a requirement of `stronger`.
    let implies = |stronger: &Map<String, Value>, weaker: &Map<String, Value>| {
        weaker.iter().all(|(name, needs)| {
            let (Some(needs), Some(Value::Array(has))) = (needs.as_array(), stronger.get(name))
            else {
                return needs.as_array().is_some_and(Vec::is_empty);
            };
            needs.iter().all(|need| has.contains(need))
        })
    };
    Some((implies(new, old), implies(old, new)))
}

impl Differ<'_> {
    /// Annotations, `default`, and keywords without structural logic.
    pub(super) fn compare_remaining(
        &mut self,
        o: &Map<String, Value>,
        n: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) {
        let keys = o.keys().chain(n.keys().filter(|key| !o.contains_key(*key)));
        for key in keys {
            if is_ignored(key) || HANDLED.contains(&key.as_str()) {
                continue;
            }
            let (a, b) = (o.get(key), n.get(key));
            if a == b {
                continue;
            }
            if is_annotation(key) {
                let kind = ChangeKind::AnnotationChanged {
                    keyword: key.clone(),
                };
                self.push(path, kind, true, true);
            } else if key == "default" {
                let kind = ChangeKind::DefaultChanged {
                    old: a.cloned(),
                    new: b.cloned(),
                };
                self.push(path, kind, true, true);
            } else if key == "propertyNames" {
                let names_path = child(path, key);
                self.compare(
                    a.unwrap_or(&TRUE),
                    b.unwrap_or(&TRUE),
                    &names_path,
                    depth + 1,
                );
            } else if !CONDITIONAL.contains(&key.as_str()) {
                self.compare_assertion(key, a, b, path);
            }
        }
        self.compare_conditional(o, n, path);
    }

    /// A keyword that can only reject more (tightened when added) or is not analysed.
    fn compare_assertion(&mut self, key: &str, a: Option<&Value>, b: Option<&Value>, path: &str) {
        let canon_a = a.map(|v| canonical_keyword(self.old_root, key, v));
        let canon_b = b.map(|v| canonical_keyword(self.new_root, key, v));
        if canon_a == canon_b {
            return;
        }
        let effect = match (a, b) {
            (Some(old), Some(new)) if key == "dependentRequired" => dependent_required(old, new),
            (None, Some(_)) if ASSERTIONS.contains(&key) || key == "dependentRequired" => {
                Some((true, false))
            }
            (Some(_), None) if ASSERTIONS.contains(&key) || key == "dependentRequired" => {
                Some((false, true))
            }
            _ => None,
        };
        let (keyword, old, new) = (key.to_owned(), a.cloned(), b.cloned());
        match effect {
            Some((true, true)) => {}
            Some((true, false)) => {
                let kind = ChangeKind::ConstraintTightened { keyword, old, new };
                self.push(path, kind, false, true);
            }
            Some((false, true)) => {
                let kind = ChangeKind::ConstraintRelaxed { keyword, old, new };
                self.push(path, kind, true, false);
            }
            _ => self.push_unknown(path, key),
        }
    }

    /// `if`/`then`/`else` as one assertion: added (with `then` or `else`) tightens, removed
    /// relaxes, any other edit is not analysed.
    fn compare_conditional(&mut self, o: &Map<String, Value>, n: &Map<String, Value>, path: &str) {
        let group = |root: &Value, m: &Map<String, Value>| {
            let parts: Vec<Option<Value>> = CONDITIONAL
                .iter()
                .map(|key| m.get(*key).map(|v| canonical_keyword(root, key, v)))
                .collect();
            let active = parts[0].is_some() && (parts[1].is_some() || parts[2].is_some());
            (active, parts)
        };
        let (old_active, old) = group(self.old_root, o);
        let (new_active, new) = group(self.new_root, n);
        if old == new || (!old_active && !new_active) {
            return;
        }
        let keyword = "if".to_owned();
        let (a, b) = (o.get("if").cloned(), n.get("if").cloned());
        match (old_active, new_active) {
            (false, true) => {
                let kind = ChangeKind::ConstraintTightened {
                    keyword,
                    old: a,
                    new: b,
                };
                self.push(path, kind, false, true);
            }
            (true, false) => {
                let kind = ChangeKind::ConstraintRelaxed {
                    keyword,
                    old: a,
                    new: b,
                };
                self.push(path, kind, true, false);
            }
            _ => self.push_unknown(path, "if"),
        }
    }
}
