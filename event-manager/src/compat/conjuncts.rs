//! `allOf` members left after normalization (those that cannot be merged into their parent),
//! matched by content rather than by position.

use serde_json::{Map, Value};

use super::change::ChangeKind;
use super::diff::Differ;
use super::resolve::child;
use super::variants::{describe, match_variants};

fn members(map: &Map<String, Value>) -> Result<&[Value], ()> {
    match map.get("allOf") {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(()),
    }
}

impl Differ<'_> {
    /// Matches `allOf` members like `oneOf` alternatives (by structure, discriminator, type,
    /// then the last one left); matched members are compared, an added member tightens
    /// (breaking backward) and a removed one relaxes (breaking forward).
    pub(super) fn compare_all_of(
        &mut self,
        o: &Map<String, Value>,
        n: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) {
        let (Ok(old_items), Ok(new_items)) = (members(o), members(n)) else {
            if o.get("allOf") != n.get("allOf") {
                self.push_unknown(path, "allOf");
            }
            return;
        };
        if old_items.is_empty() && new_items.is_empty() {
            return;
        }
        let (old_root, new_root) = (self.old_root, self.new_root);
        let old: Vec<_> = old_items.iter().map(|v| describe(old_root, v)).collect();
        let new: Vec<_> = new_items.iter().map(|v| describe(new_root, v)).collect();
        let pairs = match_variants(&old, &new);
        let all_path = child(path, "allOf");
        for (i, pair) in pairs.iter().enumerate() {
            match pair {
                Some(j) => {
                    let at = child(&all_path, &j.to_string());
                    self.compare(&old_items[i], &new_items[*j], &at, depth + 1);
                }
                None => {
                    let kind = ChangeKind::ConjunctRemoved {
                        label: old[i].label(i),
                    };
                    self.push(&child(&all_path, &i.to_string()), kind, true, false);
                }
            }
        }
        for (j, member) in new.iter().enumerate() {
            if !pairs.contains(&Some(j)) {
                let kind = ChangeKind::ConjunctAdded {
                    label: member.label(j),
                };
                self.push(&child(&all_path, &j.to_string()), kind, false, true);
            }
        }
    }
}
