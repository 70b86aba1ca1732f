//! `oneOf` / `anyOf`: matching the alternatives of the old and new schema.

use serde_json::{Map, Value};

use super::change::ChangeKind;
use super::diff::Differ;
use super::exclusive::Alternatives;
use super::normalize::normalize;
use super::resolve::{canonical, child, is_annotation, is_ignored};

/// The combinators whose alternatives are matched (the first present one is used).
const COMBINATORS: [&str; 2] = ["oneOf", "anyOf"];

/// The combinator keyword of a schema object and its alternatives.
pub(super) fn combinator(map: &Map<String, Value>) -> Option<(&'static str, &Vec<Value>)> {
    COMBINATORS
        .into_iter()
        .find_map(|keyword| match map.get(keyword) {
            Some(Value::Array(items)) => Some((keyword, items)),
            _ => None,
        })
}

/// A schema split into the keywords that apply to the whole and its alternatives.
struct Split {
    /// Annotations and `default` of the whole.
    base: Map<String, Value>,
    /// `oneOf`/`anyOf`, or `None` for a schema read as a single alternative.
    keyword: Option<&'static str>,
    /// The alternatives as written (for matching by discriminator).
    written: Vec<Value>,
    /// The alternatives each conjoined with the whole's other keywords (for comparing).
    items: Vec<Value>,
    /// The same without the whole's `unevaluatedProperties`, which `oneOf` does not see when it
    /// counts matching alternatives (for the exclusivity proof).
    matched: Vec<Value>,
}

/// Each alternative conjoined with the whole's keywords `rest`.
fn distribute(rest: &Map<String, Value>, written: &[Value]) -> Vec<Value> {
    written
        .iter()
        .map(|item| {
            if rest.is_empty() {
                return item.clone();
            }
            let mut whole = rest.clone();
            match whole.get_mut("allOf") {
                Some(Value::Array(members)) => members.push(item.clone()),
                _ => {
                    whole.insert("allOf".to_owned(), Value::Array(vec![item.clone()]));
                }
            }
            Value::Object(whole)
        })
        .collect()
}

/// Splits a schema object into its annotations and its alternatives.
///
/// The whole's other keywords hold for every alternative, so they are distributed into each
/// (`A ∧ oneOf(V₁, V₂)` is `oneOf(A ∧ V₁, A ∧ V₂)`): a closed alternative then also rejects
/// the properties the whole declares, and `unevaluatedProperties` of the whole sees each
/// alternative's properties. A schema without a combinator is read as a single alternative
/// (everything except annotations and `default`), so `T` versus `T | U` is "a variant was
/// added".
fn split(map: &Map<String, Value>) -> Split {
    let combined = combinator(map);
    let mut base = Map::new();
    let mut rest = Map::new();
    for (key, value) in map {
        if combined.is_some_and(|(keyword, _)| keyword == key) {
            continue;
        }
        if is_annotation(key) || is_ignored(key) || key == "default" {
            base.insert(key.clone(), value.clone());
        } else {
            rest.insert(key.clone(), value.clone());
        }
    }
    let Some((keyword, written)) = combined else {
        let single = vec![Value::Object(rest)];
        return Split {
            base,
            keyword: None,
            written: single.clone(),
            items: single.clone(),
            matched: single,
        };
    };
    let items = distribute(&rest, written);
    rest.remove("unevaluatedProperties");
    let matched = distribute(&rest, written);
    Split {
        base,
        keyword: Some(keyword),
        written: written.clone(),
        items,
        matched,
    }
}

/// What is known about one alternative (or `allOf` member) for matching.
pub(super) struct Variant {
    /// Structural form (references inlined, annotations dropped).
    canonical: Value,
    /// A discriminator: `const`, tag property, single external-tag property, title or
    /// reference name, whichever comes first.
    key: Option<String>,
    /// The `type` keyword as text.
    type_key: Option<String>,
}

impl Variant {
    /// A readable name: the discriminator, else the type, else the position.
    pub(super) fn label(&self, index: usize) -> String {
        self.key
            .clone()
            .or_else(|| self.type_key.as_ref().map(|t| format!("type {t}")))
            .unwrap_or_else(|| format!("#{index}"))
    }
}

/// The single value a (resolved) schema allows through `const` or a one-element `enum`.
fn single_value(root: &Value, schema: &Value) -> Option<Value> {
    let normal = normalize(root, schema);
    let map = normal.value.as_object()?;
    if let Some(value) = map.get("const") {
        return Some(value.clone());
    }
    match map.get("enum") {
        Some(Value::Array(items)) if items.len() == 1 => items.first().cloned(),
        _ => None,
    }
}

/// The matching keys of one alternative of document `root`.
pub(super) fn describe(root: &Value, schema: &Value) -> Variant {
    let normal = normalize(root, schema);
    let canonical = canonical(root, schema);
    let map = normal.value.as_object();
    let type_key = map.and_then(|m| m.get("type")).map(|t| match t {
        Value::String(name) => name.clone(),
        other => other.to_string(),
    });
    let key = map.and_then(|m| discriminator(root, m)).or_else(|| {
        normal
            .refs
            .first()
            .map(|r| format!("$ref {}", r.rsplit('/').next().unwrap_or(r)))
    });
    Variant {
        canonical,
        key,
        type_key,
    }
}

fn discriminator(root: &Value, map: &Map<String, Value>) -> Option<String> {
    if let Some(value) = single_value(root, &Value::Object(map.clone())) {
        return Some(format!("const {value}"));
    }
    let required: Vec<&str> = match map.get("required") {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if let Some(Value::Object(props)) = map.get("properties") {
        let tags: Vec<String> = props
            .iter()
            .filter(|(name, _)| required.contains(&name.as_str()))
            .filter_map(|(name, schema)| {
                single_value(root, schema).map(|value| format!("{name} = {value}"))
            })
            .collect();
        if !tags.is_empty() {
            return Some(tags.join(", "));
        }
        if props.len() == 1
            && let Some(name) = props.keys().next()
            && required == [name.as_str()]
        {
            return Some(format!("property {name}"));
        }
    }
    match map.get("title") {
        Some(Value::String(title)) => Some(format!("title {title:?}")),
        _ => None,
    }
}

/// The alternatives' matching keys: structure from the distributed alternatives,
/// discriminators from the written ones.
fn describe_all(root: &Value, split: &Split) -> Vec<Variant> {
    split
        .items
        .iter()
        .zip(&split.written)
        .map(|(item, written)| {
            let mut variant = describe(root, written);
            variant.canonical = canonical(root, item);
            variant
        })
        .collect()
}

/// Pairs old and new alternatives; returns `pairs[old] = Some(new)`.
pub(super) fn match_variants(old: &[Variant], new: &[Variant]) -> Vec<Option<usize>> {
    let mut pairs: Vec<Option<usize>> = vec![None; old.len()];
    let mut used = vec![false; new.len()];

    // 1. Same structure.
    for (i, a) in old.iter().enumerate() {
        if let Some(j) = (0..new.len()).find(|&j| !used[j] && new[j].canonical == a.canonical) {
            pairs[i] = Some(j);
            used[j] = true;
        }
    }
    // 2. Same discriminator, when it is unique on both sides.
    let count = |list: &[Variant], key: &String| {
        list.iter().filter(|v| v.key.as_ref() == Some(key)).count()
    };
    for (i, a) in old.iter().enumerate() {
        let Some(key) = &a.key else { continue };
        if pairs[i].is_some() || count(old, key) != 1 || count(new, key) != 1 {
            continue;
        }
        if let Some(j) = (0..new.len()).find(|&j| !used[j] && new[j].key.as_ref() == Some(key)) {
            pairs[i] = Some(j);
            used[j] = true;
        }
    }
    // 3. Same `type`, when exactly one unmatched alternative on each side has it.
    for i in 0..old.len() {
        let Some(type_key) = &old[i].type_key else {
            continue;
        };
        if pairs[i].is_some() {
            continue;
        }
        let old_count = (0..old.len())
            .filter(|&k| pairs[k].is_none() && old[k].type_key.as_ref() == Some(type_key))
            .count();
        let candidates: Vec<usize> = (0..new.len())
            .filter(|&j| !used[j] && new[j].type_key.as_ref() == Some(type_key))
            .collect();
        if old_count == 1
            && let [j] = candidates[..]
        {
            pairs[i] = Some(j);
            used[j] = true;
        }
    }
    // 4. One alternative left on each side: compare them with each other.
    let left_old: Vec<usize> = (0..old.len()).filter(|&i| pairs[i].is_none()).collect();
    let left_new: Vec<usize> = (0..new.len()).filter(|&j| !used[j]).collect();
    if let ([i], [j]) = (&left_old[..], &left_new[..]) {
        pairs[*i] = Some(*j);
    }
    pairs
}

impl Differ<'_> {
    /// Records a change of combinator (`oneOf` <-> `anyOf`).
    fn compare_combinators(&mut self, from: Option<&str>, to: Option<&str>, path: &str) {
        if let (Some(from), Some(to)) = (from, to)
            && from != to
        {
            // `anyOf` accepts everything `oneOf` accepts (and values matching several
            // alternatives), so oneOf -> anyOf widens and anyOf -> oneOf narrows.
            let widened = to == "anyOf";
            let kind = ChangeKind::CombinatorChanged {
                from: from.to_owned(),
                to: to.to_owned(),
            };
            self.push(path, kind, widened, !widened);
        }
    }

    /// Compares two schema objects of which at least one has `oneOf`/`anyOf`.
    pub(super) fn compare_combined(
        &mut self,
        o: &Map<String, Value>,
        n: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) {
        let (old_root, new_root) = (self.old_root, self.new_root);
        let old_split = split(o);
        let new_split = split(n);
        let (o_keyword, n_keyword) = (old_split.keyword, new_split.keyword);
        let (o_items, n_items) = (&old_split.items, &new_split.items);

        self.compare_combinators(o_keyword, n_keyword, path);
        self.compare_keywords(&old_split.base, &new_split.base, path, depth);

        let old = describe_all(old_root, &old_split);
        let new = describe_all(new_root, &new_split);
        let pairs = match_variants(&old, &new);
        let variant_path = |keyword: Option<&str>, index: usize| match keyword {
            Some(keyword) => child(&child(path, keyword), &index.to_string()),
            None => path.to_owned(),
        };
        let any_keyword = n_keyword.or(o_keyword).unwrap_or("oneOf");

        let at = |i: usize, j: usize| {
            if n_keyword.is_some() {
                variant_path(n_keyword, j)
            } else {
                variant_path(o_keyword, i)
            }
        };
        let removed_keyword = o_keyword.unwrap_or(any_keyword);
        let mut pair_changes = Vec::with_capacity(pairs.len());
        for (i, pair) in pairs.iter().enumerate() {
            let changes = match pair {
                Some(j) => {
                    self.probe(|d| d.compare(&o_items[i], &n_items[*j], &at(i, *j), depth + 1))
                }
                None => {
                    let kind = ChangeKind::VariantRemoved {
                        keyword: removed_keyword.to_owned(),
                        label: old[i].label(i),
                    };
                    self.push(&variant_path(o_keyword, i), kind, false, true);
                    Vec::new()
                }
            };
            self.changes.extend(changes.iter().cloned());
            pair_changes.push(changes);
        }
        let added = new
            .iter()
            .enumerate()
            .filter(|(j, _)| !pairs.contains(&Some(*j)));
        for (j, variant) in added {
            let kind = ChangeKind::VariantAdded {
                keyword: n_keyword.unwrap_or(any_keyword).to_owned(),
                label: variant.label(j),
            };
            self.push(&variant_path(n_keyword, j), kind, true, false);
        }
        // Which alternatives match a value is decided without the whole's
        // `unevaluatedProperties`: judge their widening on the forms that leave it out.
        let unevaluated =
            old_split.matched != old_split.items || new_split.matched != new_split.items;
        if unevaluated {
            for (i, pair) in pairs.iter().enumerate() {
                if let Some(j) = pair {
                    let (a, b) = (&old_split.matched[i], &new_split.matched[*j]);
                    pair_changes[i] = self.probe(|d| d.compare(a, b, path, depth + 1));
                }
            }
        }
        let alternatives = Alternatives {
            old_keyword: o_keyword,
            new_keyword: n_keyword,
            old_matched: &old_split.matched,
            new_matched: &new_split.matched,
            old_valid: o_items,
            new_valid: n_items,
            old_labels: old.iter().enumerate().map(|(i, v)| v.label(i)).collect(),
            new_labels: new.iter().enumerate().map(|(j, v)| v.label(j)).collect(),
            pairs: &pairs,
            changes: &pair_changes,
        };
        self.check_exclusive(&alternatives, path);
    }
}
