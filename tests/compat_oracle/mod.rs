//! Support of the compatibility oracle: a deterministic random source, the validator with
//! serde's numeric ranges, the Rust types, the mutations and the instance sampler.

pub mod mutate;
pub mod sample;
pub mod types;

use serde_json::{Map, Value, json};

/// A small deterministic xorshift generator (the oracle must be reproducible).
pub struct Rng(u64);

impl Rng {
    /// A generator whose stream depends on every bit of `seed` (splitmix64 mixing).
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// `true` with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            items.get(self.below(items.len()))
        }
    }
}

/// The range a serde number type enforces, for a numeric `format` schemars emits.
fn format_range(format: &str) -> Option<(Value, Value)> {
    Some(match format {
        "int8" => (json!(i8::MIN), json!(i8::MAX)),
        "int16" => (json!(i16::MIN), json!(i16::MAX)),
        "int32" => (json!(i32::MIN), json!(i32::MAX)),
        "int64" => (json!(i64::MIN), json!(i64::MAX)),
        "uint8" => (json!(0), json!(u8::MAX)),
        "uint16" => (json!(0), json!(u16::MAX)),
        "uint32" => (json!(0), json!(u32::MAX)),
        "uint64" => (json!(0), json!(u64::MAX)),
        "float" => (json!(-f64::from(f32::MAX)), json!(f64::from(f32::MAX))),
        _ => return None,
    })
}

/// The schema as a serde reader enforces it: every numeric `format` becomes an `allOf` member
/// bounding the value to the type's range (applying to numbers only).
pub fn reader_view(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out: Map<String, Value> = map
                .iter()
                .map(|(key, value)| {
                    let value = if key == "enum" || key == "const" || key == "default" {
                        value.clone()
                    } else {
                        reader_view(value)
                    };
                    (key.clone(), value)
                })
                .collect();
            if let Some((min, max)) = map
                .get("format")
                .and_then(Value::as_str)
                .and_then(format_range)
            {
                let bound = json!({"minimum": min, "maximum": max});
                match out.get_mut("allOf") {
                    Some(Value::Array(members)) => members.push(bound),
                    _ => {
                        out.insert("allOf".to_owned(), json!([bound]));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(reader_view).collect()),
        other => other.clone(),
    }
}

/// A compiled schema (in its reader view) that checks formats.
pub struct Validator(jsonschema::Validator);

impl Validator {
    /// `None` when the schema does not compile (a mutation made it invalid).
    pub fn new(schema: &Value) -> Option<Validator> {
        jsonschema::options()
            .should_validate_formats(true)
            .build(&reader_view(schema))
            .ok()
            .map(Validator)
    }

    pub fn is_valid(&self, instance: &Value) -> bool {
        self.0.is_valid(instance)
    }
}
