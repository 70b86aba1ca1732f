//! Instances generated from a schema, as a writer following COMPAT.md rule 1 would emit them:
//! declared properties only (optional ones sometimes left out), map entries only where
//! `additionalProperties` is a schema. Values favour the edges of each range. Candidates are
//! kept only when the writer's own schema accepts them.

use serde_json::{Map, Value, json};

use super::mutate::NEW_NAMES;
use super::{Rng, Validator};

/// Attempts per requested sample before giving up.
const ATTEMPTS: usize = 6;
/// Nesting beyond which optional content is left out (recursive types terminate).
const DEEP: usize = 5;

pub struct Sampler {
    rng: Rng,
}

fn lookup<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    if pointer.is_empty() {
        Some(root)
    } else {
        root.pointer(pointer)
    }
}

/// Merges generated parts of one object (later parts win).
fn merge(into: &mut Value, part: Value) {
    match (into, part) {
        (Value::Object(a), Value::Object(b)) => a.extend(b),
        (slot, part) => *slot = part,
    }
}

impl Sampler {
    pub fn new(rng: Rng) -> Sampler {
        Sampler { rng }
    }

    /// Up to `count` distinct instances of `schema` that `check` accepts.
    pub fn samples(&mut self, schema: &Value, check: &Validator, count: usize) -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        for _ in 0..count * ATTEMPTS {
            if out.len() >= count {
                break;
            }
            if let Some(instance) = self.generate(schema, schema, 0)
                && check.is_valid(&instance)
                && !out.contains(&instance)
            {
                out.push(instance);
            }
        }
        out
    }

    fn generate(&mut self, root: &Value, schema: &Value, depth: usize) -> Option<Value> {
        let map = match schema {
            Value::Bool(true) => return Some(json!(1)),
            Value::Object(map) => map,
            _ => return None,
        };
        if depth > 3 * DEEP {
            return None;
        }
        let mut parts: Vec<Value> = Vec::new();
        if let Some(target) = map
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| lookup(root, r))
        {
            parts.push(self.generate(root, target, depth + 1)?);
        }
        if let Some(Value::Array(members)) = map.get("allOf") {
            for member in members {
                parts.push(self.generate(root, member, depth + 1)?);
            }
        }
        for keyword in ["oneOf", "anyOf"] {
            if let Some(Value::Array(options)) = map.get(keyword) {
                let chosen = self.choose_alternative(options, depth);
                parts.push(self.generate(root, chosen?, depth + 1)?);
            }
        }
        if let Some(own) = self.own(root, map, depth) {
            parts.push(own);
        } else if parts.is_empty() {
            return None;
        }
        let mut value = parts.remove(0);
        for part in parts {
            merge(&mut value, part);
        }
        Some(value)
    }

    /// Deep in a recursive type, prefer an alternative that ends it (`null`).
    fn choose_alternative<'a>(&mut self, options: &'a [Value], depth: usize) -> Option<&'a Value> {
        if depth > DEEP
            && let Some(null) = options
                .iter()
                .find(|o| o.get("type") == Some(&json!("null")))
        {
            return Some(null);
        }
        self.rng.pick(options)
    }

    /// A value for the schema's own keywords (`None` when it has no value-shaping keyword).
    fn own(&mut self, root: &Value, map: &Map<String, Value>, depth: usize) -> Option<Value> {
        if let Some(value) = map.get("const") {
            return Some(value.clone());
        }
        if let Some(Value::Array(values)) = map.get("enum") {
            return self.rng.pick(values).cloned();
        }
        let types: Vec<&str> = match map.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ if map.contains_key("properties") => vec!["object"],
            _ => return None,
        };
        let ty = if depth > DEEP && types.contains(&"null") {
            "null"
        } else {
            *self.rng.pick(&types)?
        };
        Some(match ty {
            "null" => Value::Null,
            "boolean" => json!(self.rng.chance(50)),
            "integer" => self.integer(map),
            "number" => self.number(map),
            "string" => self.string(map),
            "array" => self.array(root, map, depth)?,
            "object" => self.object(root, map, depth)?,
            _ => return None,
        })
    }

    fn integer(&mut self, map: &Map<String, Value>) -> Value {
        let (min, max) = match map.get("format").and_then(Value::as_str) {
            Some("int8") => (i8::MIN as f64, i8::MAX as f64),
            Some("int16") => (i16::MIN as f64, i16::MAX as f64),
            Some("int32") => (i32::MIN as f64, i32::MAX as f64),
            Some("uint8") => (0.0, u8::MAX as f64),
            Some("uint16") => (0.0, u16::MAX as f64),
            Some("uint32") => (0.0, u32::MAX as f64),
            Some("uint64") => (0.0, 1.8e19),
            _ => (-9.2e18, 9.2e18),
        };
        let min = map
            .get("minimum")
            .and_then(Value::as_f64)
            .map_or(min, |m| m.max(min));
        let max = map
            .get("maximum")
            .and_then(Value::as_f64)
            .map_or(max, |m| m.min(max));
        let pick = match self.rng.below(6) {
            0 => min,
            1 => max,
            2 => 0.0,
            3 => -1.0,
            4 => 300.0,
            _ => (self.rng.below(2000) as f64) - 1000.0,
        };
        let pick = pick.clamp(min, max);
        if pick >= 0.0 && pick > i64::MAX as f64 {
            json!(u64::MAX)
        } else if pick <= i64::MIN as f64 {
            json!(i64::MIN)
        } else if pick >= i64::MAX as f64 {
            json!(i64::MAX)
        } else {
            json!(pick as i64)
        }
    }

    fn number(&mut self, map: &Map<String, Value>) -> Value {
        let choice: f64 = match self.rng.below(6) {
            0 => 1.5,
            1 => 1e300,
            2 => -2.25,
            3 => 3.0,
            4 => 0.0,
            _ => 1e20,
        };
        let choice = if map.get("format") == Some(&json!("float")) && choice.abs() > 1e38 {
            1.0e38
        } else {
            choice
        };
        json!(choice)
    }

    fn string(&mut self, map: &Map<String, Value>) -> Value {
        let min = map.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
        let max = map.get("maxLength").and_then(Value::as_u64).unwrap_or(12) as usize;
        let len = match self.rng.below(4) {
            0 => min,
            1 => max,
            _ => min + self.rng.below(max.saturating_sub(min) + 1),
        };
        let alphabet: &[u8] = if self.rng.chance(50) {
            b"abcxyz"
        } else {
            b"aZ9 -"
        };
        let text: String = (0..len)
            .map(|_| alphabet[self.rng.below(alphabet.len())] as char)
            .collect();
        json!(text)
    }

    fn array(&mut self, root: &Value, map: &Map<String, Value>, depth: usize) -> Option<Value> {
        let mut out = Vec::new();
        if let Some(Value::Array(prefix)) = map.get("prefixItems") {
            for item in prefix {
                out.push(self.generate(root, item, depth + 1)?);
            }
            return Some(Value::Array(out));
        }
        let min = map.get("minItems").and_then(Value::as_u64).unwrap_or(0) as usize;
        let max = map.get("maxItems").and_then(Value::as_u64).unwrap_or(3) as usize;
        let len = if depth > DEEP {
            min
        } else {
            min + self.rng.below(max.saturating_sub(min) + 1)
        };
        let items = map.get("items").cloned().unwrap_or(json!(true));
        for _ in 0..len {
            out.push(self.generate(root, &items, depth + 1)?);
        }
        Some(Value::Array(out))
    }

    fn object(&mut self, root: &Value, map: &Map<String, Value>, depth: usize) -> Option<Value> {
        let mut out = Map::new();
        let required: Vec<&str> = match map.get("required") {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if let Some(Value::Object(props)) = map.get("properties") {
            for (name, schema) in props {
                let wanted =
                    required.contains(&name.as_str()) || (depth <= DEEP && self.rng.chance(60));
                if wanted {
                    out.insert(name.clone(), self.generate(root, schema, depth + 1)?);
                }
            }
        }
        if let Some(values @ Value::Object(_)) = map.get("additionalProperties") {
            for _ in 0..self.rng.below(3) {
                let pool = ["id", "a", "x", NEW_NAMES[self.rng.below(NEW_NAMES.len())]];
                let key = pool[self.rng.below(pool.len())];
                if !out.contains_key(key)
                    && map.get("properties").is_none_or(|p| p.get(key).is_none())
                {
                    let value = self.generate(root, values, depth + 1)?;
                    out.insert(key.to_owned(), value);
                }
            }
        }
        Some(Value::Object(out))
    }
}
