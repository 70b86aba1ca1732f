//! `oneOf` / `anyOf`: matching the alternatives of the old and new schema.

use serde_json::{Map, Value};

use super::change::ChangeKind;
use super::diff::Differ;
use super::resolve::{canonical, child, is_annotation, is_ignored, resolve};

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
///
/// A schema without a combinator is read as a single alternative (everything except
/// annotations and `default`), so `T` versus `anyOf: [T, null]` is "a variant was added".
fn split(map: &Map<String, Value>) -> (Map<String, Value>, Option<&'static str>, Vec<Value>) {
    if let Some((keyword, items)) = combinator(map) {
        let mut base = map.clone();
        base.remove(keyword);
        return (base, Some(keyword), items.clone());
    }
    let mut base = Map::new();
    let mut rest = Map::new();
    for (key, value) in map {
        if is_annotation(key) || is_ignored(key) || key == "default" {
            base.insert(key.clone(), value.clone());
        } else {
            rest.insert(key.clone(), value.clone());
        }
    }
    (base, None, vec![Value::Object(rest)])
}

/// What is known about one alternative for matching.
struct Variant {
    /// Structural form (references inlined, annotations dropped).
    canonical: Value,
    /// A discriminator: `const`, tag property, single external-tag property, title or
    /// reference name, whichever comes first.
    key: Option<String>,
    /// The `type` keyword as text.
    type_key: Option<String>,
}

impl Variant {
    fn label(&self, index: usize) -> String {
        self.key
            .clone()
            .or_else(|| self.type_key.as_ref().map(|t| format!("type {t}")))
            .unwrap_or_else(|| format!("#{index}"))
    }
}

/// The single value a (resolved) schema allows through `const` or a one-element `enum`.
fn single_value(root: &Value, schema: &Value) -> Option<Value> {
    let resolved = resolve(root, schema);
    let map = resolved.value.as_object()?;
    if let Some(value) = map.get("const") {
        return Some(value.clone());
    }
    match map.get("enum") {
        Some(Value::Array(items)) if items.len() == 1 => items.first().cloned(),
        _ => None,
    }
}

fn describe(root: &Value, schema: &Value) -> Variant {
    let resolved = resolve(root, schema);
    let canonical = canonical(root, schema);
    let map = resolved.value.as_object();
    let type_key = map.and_then(|m| m.get("type")).map(|t| match t {
        Value::String(name) => name.clone(),
        other => other.to_string(),
    });
    let key = map.and_then(|m| discriminator(root, m)).or_else(|| {
        resolved
            .chain
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

/// Pairs old and new alternatives; returns `pairs[old] = Some(new)`.
fn match_variants(old: &[Variant], new: &[Variant]) -> Vec<Option<usize>> {
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
    /// Compares two schema objects of which at least one has `oneOf`/`anyOf`.
    pub(super) fn compare_combined(
        &mut self,
        o: &Map<String, Value>,
        n: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) {
        let (old_root, new_root) = (self.old_root, self.new_root);
        let (o_base, o_keyword, o_items) = split(o);
        let (n_base, n_keyword, n_items) = split(n);

        if let (Some(from), Some(to)) = (o_keyword, n_keyword)
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
        self.compare_keywords(&o_base, &n_base, path, depth);

        let old: Vec<Variant> = o_items.iter().map(|v| describe(old_root, v)).collect();
        let new: Vec<Variant> = n_items.iter().map(|v| describe(new_root, v)).collect();
        let pairs = match_variants(&old, &new);
        let variant_path = |keyword: Option<&str>, index: usize| match keyword {
            Some(keyword) => child(&child(path, keyword), &index.to_string()),
            None => path.to_owned(),
        };
        let any_keyword = n_keyword.or(o_keyword).unwrap_or("oneOf");

        for (i, pair) in pairs.iter().enumerate() {
            match pair {
                Some(j) => {
                    let at = if n_keyword.is_some() {
                        variant_path(n_keyword, *j)
                    } else {
                        variant_path(o_keyword, i)
                    };
                    if let (Some(a), Some(b)) = (o_items.get(i), n_items.get(*j)) {
                        self.compare(a, b, &at, depth + 1);
                    }
                }
                None => {
                    let kind = ChangeKind::VariantRemoved {
                        keyword: o_keyword.unwrap_or(any_keyword).to_owned(),
                        label: old[i].label(i),
                    };
                    self.push(&variant_path(o_keyword, i), kind, false, true);
                }
            }
        }
        for (j, variant) in new.iter().enumerate() {
            if pairs.contains(&Some(j)) {
                continue;
            }
            let kind = ChangeKind::VariantAdded {
                keyword: n_keyword.unwrap_or(any_keyword).to_owned(),
                label: variant.label(j),
            };
            self.push(&variant_path(n_keyword, j), kind, true, false);
        }
    }
}
