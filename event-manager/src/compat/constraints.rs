//! Validation keywords that bound values: numeric and length bounds, `multipleOf`,
//! `uniqueItems`, `pattern` and `format`.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use super::change::ChangeKind;
use super::diff::Differ;

/// Keywords whose larger value accepts fewer instances.
pub(super) const LOWER_BOUNDS: &[&str] = &[
    "minimum",
    "exclusiveMinimum",
    "minLength",
    "minItems",
    "minProperties",
];

/// Keywords whose smaller value accepts fewer instances.
pub(super) const UPPER_BOUNDS: &[&str] = &[
    "maximum",
    "exclusiveMaximum",
    "maxLength",
    "maxItems",
    "maxProperties",
];

/// Direction of a constraint change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Tightened,
    Relaxed,
    Changed,
}

/// Orders two JSON numbers exactly when both are integers, else as `f64`.
pub(super) fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    let int = |n: &Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (int(a), int(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// A bound keyword (`lower`: larger is tighter).
fn bound(old: Option<&Value>, new: Option<&Value>, lower: bool) -> Option<Effect> {
    match (old, new) {
        (None, None) => None,
        (Some(a), Some(b)) if a == b => None,
        // Draft-4 boolean `exclusiveMinimum`/`exclusiveMaximum` flags.
        (_, Some(Value::Bool(_))) | (Some(Value::Bool(_)), _) => flag(old, new),
        (None, Some(_)) => Some(Effect::Tightened),
        (Some(_), None) => Some(Effect::Relaxed),
        (Some(Value::Number(a)), Some(Value::Number(b))) => match compare_numbers(a, b)? {
            Ordering::Equal => None,
            Ordering::Less if lower => Some(Effect::Tightened),
            Ordering::Greater if !lower => Some(Effect::Tightened),
            _ => Some(Effect::Relaxed),
        },
        _ => Some(Effect::Changed),
    }
}

/// A boolean flag where `true` accepts fewer instances and absence means `false`.
fn flag(old: Option<&Value>, new: Option<&Value>) -> Option<Effect> {
    let read = |v: Option<&Value>| match v {
        None => Some(false),
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => None,
    };
    match (read(old), read(new)) {
        (Some(a), Some(b)) if a == b => None,
        (Some(false), Some(true)) => Some(Effect::Tightened),
        (Some(true), Some(false)) => Some(Effect::Relaxed),
        _ => Some(Effect::Changed),
    }
}

fn is_integral(x: f64) -> bool {
    x.is_finite() && (x - x.round()).abs() <= 1e-9 * x.abs().max(1.0)
}

fn multiple_of(old: Option<&Value>, new: Option<&Value>) -> Option<Effect> {
    match (old, new) {
        (None, None) => None,
        (Some(a), Some(b)) if a == b => None,
        (None, Some(_)) => Some(Effect::Tightened),
        (Some(_), None) => Some(Effect::Relaxed),
        (Some(Value::Number(a)), Some(Value::Number(b))) => {
            let (Some(a), Some(b)) = (a.as_f64(), b.as_f64()) else {
                return Some(Effect::Changed);
            };
            if a <= 0.0 || b <= 0.0 {
                Some(Effect::Changed)
            } else if is_integral(b / a) {
                // Every multiple of `b` is a multiple of `a`.
                (!is_integral(a / b)).then_some(Effect::Tightened)
            } else if is_integral(a / b) {
                Some(Effect::Relaxed)
            } else {
                Some(Effect::Changed)
            }
        }
        _ => Some(Effect::Changed),
    }
}

/// Value ranges of the numeric `format`s schemars emits for Rust number types.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Range {
    /// Integers from the first to the second bound.
    Int(i128, u128),
    /// Any number whose magnitude is at most this.
    Float(f64),
}

fn numeric_format(name: &str) -> Option<Range> {
    let signed = |bits: u32| {
        let max = (1u128 << (bits - 1)) - 1;
        let min = -(1i128 << (bits - 1));
        Range::Int(min, max)
    };
    let unsigned = |bits: u32| Range::Int(0, u128::MAX >> (128 - bits));
    Some(match name {
        "int8" => signed(8),
        "int16" => signed(16),
        "int32" => signed(32),
        "int64" | "int" => signed(64),
        "int128" => Range::Int(i128::MIN, i128::MAX as u128),
        "uint8" => unsigned(8),
        "uint16" => unsigned(16),
        "uint32" => unsigned(32),
        "uint64" | "uint" => unsigned(64),
        "uint128" => Range::Int(0, u128::MAX),
        "float" => Range::Float(f64::from(f32::MAX)),
        "double" => Range::Float(f64::MAX),
        _ => return None,
    })
}

/// Whether every value of range `inner` lies in range `outer`.
fn contains(outer: Range, inner: Range) -> bool {
    match (outer, inner) {
        (Range::Int(o_min, o_max), Range::Int(i_min, i_max)) => o_min <= i_min && i_max <= o_max,
        (Range::Float(max), Range::Int(min, i_max)) => -max <= min as f64 && i_max as f64 <= max,
        (Range::Float(o), Range::Float(i)) => i <= o,
        (Range::Int(..), Range::Float(_)) => false,
    }
}

/// How two numeric formats' ranges compare: `Less` when `a`'s values all fit in `b` (int8 ⊂
/// int16 ⊂ int32 ⊂ int64, uint8 ⊂ … ⊂ uint64, every integer format ⊂ double, float ⊂ double),
/// `Equal` for the same range, `None` when neither contains the other or a format is not
/// numeric.
pub(super) fn numeric_format_order(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (numeric_format(a)?, numeric_format(b)?);
    match (contains(b, a), contains(a, b)) {
        (true, true) => Some(Ordering::Equal),
        (true, false) => Some(Ordering::Less),
        (false, true) => Some(Ordering::Greater),
        (false, false) => None,
    }
}

/// `format`: known numeric ranges are ordered; any other difference is a plain change.
fn format(old: Option<&Value>, new: Option<&Value>) -> Option<Effect> {
    match (old, new) {
        (None, None) => None,
        (Some(a), Some(b)) if a == b => None,
        (None, Some(_)) => Some(Effect::Tightened),
        (Some(_), None) => Some(Effect::Relaxed),
        (Some(Value::String(a)), Some(Value::String(b))) => match numeric_format_order(a, b) {
            Some(Ordering::Equal) => None,
            Some(Ordering::Less) => Some(Effect::Relaxed),
            Some(Ordering::Greater) => Some(Effect::Tightened),
            None => Some(Effect::Changed),
        },
        _ => Some(Effect::Changed),
    }
}

/// `pattern` (regular-expression inclusion is not decided: any edit is a plain change).
fn pattern(old: Option<&Value>, new: Option<&Value>) -> Option<Effect> {
    match (old, new) {
        (None, None) => None,
        (Some(a), Some(b)) if a == b => None,
        (None, Some(_)) => Some(Effect::Tightened),
        (Some(_), None) => Some(Effect::Relaxed),
        _ => Some(Effect::Changed),
    }
}

impl Differ<'_> {
    /// Compares the bounding keywords of two schema objects.
    pub(super) fn compare_constraints(
        &mut self,
        o: &Map<String, Value>,
        n: &Map<String, Value>,
        path: &str,
    ) {
        let mut checks: Vec<(&str, Option<Effect>)> = Vec::new();
        for keyword in LOWER_BOUNDS {
            checks.push((keyword, bound(o.get(*keyword), n.get(*keyword), true)));
        }
        for keyword in UPPER_BOUNDS {
            checks.push((keyword, bound(o.get(*keyword), n.get(*keyword), false)));
        }
        checks.push((
            "multipleOf",
            multiple_of(o.get("multipleOf"), n.get("multipleOf")),
        ));
        checks.push((
            "uniqueItems",
            flag(o.get("uniqueItems"), n.get("uniqueItems")),
        ));
        checks.push(("pattern", pattern(o.get("pattern"), n.get("pattern"))));
        checks.push(("format", format(o.get("format"), n.get("format"))));

        for (keyword, effect) in checks {
            let Some(effect) = effect else { continue };
            let keyword_name = keyword.to_owned();
            let old = o.get(keyword).cloned();
            let new = n.get(keyword).cloned();
            let (kind, backward, forward) = match effect {
                Effect::Tightened => (
                    ChangeKind::ConstraintTightened {
                        keyword: keyword_name,
                        old,
                        new,
                    },
                    false,
                    true,
                ),
                Effect::Relaxed => (
                    ChangeKind::ConstraintRelaxed {
                        keyword: keyword_name,
                        old,
                        new,
                    },
                    true,
                    false,
                ),
                Effect::Changed => (
                    ChangeKind::ConstraintChanged {
                        keyword: keyword_name,
                        old,
                        new,
                    },
                    false,
                    false,
                ),
            };
            self.push(path, kind, backward, forward);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bounds() {
        let (a, b) = (json!(1), json!(2));
        assert_eq!(bound(Some(&a), Some(&b), true), Some(Effect::Tightened));
        assert_eq!(bound(Some(&a), Some(&b), false), Some(Effect::Relaxed));
        assert_eq!(bound(None, Some(&b), false), Some(Effect::Tightened));
        assert_eq!(bound(Some(&a), None, true), Some(Effect::Relaxed));
        assert_eq!(bound(Some(&json!(1)), Some(&json!(1.0)), true), None);
        assert_eq!(
            bound(Some(&json!("x")), Some(&b), true),
            Some(Effect::Changed)
        );
        assert_eq!(
            bound(None, Some(&json!(true)), true),
            Some(Effect::Tightened)
        );
        assert_eq!(bound(None, Some(&json!(false)), true), None);
        assert_eq!(
            bound(Some(&json!(u64::MAX)), Some(&json!(-1)), false),
            Some(Effect::Tightened)
        );
    }

    #[test]
    fn multiples() {
        let m = |a: Value, b: Value| multiple_of(Some(&a), Some(&b));
        assert_eq!(m(json!(2), json!(4)), Some(Effect::Tightened));
        assert_eq!(m(json!(4), json!(2)), Some(Effect::Relaxed));
        assert_eq!(m(json!(2), json!(3)), Some(Effect::Changed));
        assert_eq!(m(json!(0.1), json!(0.2)), Some(Effect::Tightened));
        assert_eq!(m(json!(0), json!(2)), Some(Effect::Changed));
        assert_eq!(m(json!(2), json!(2.0)), None);
    }

    #[test]
    fn numeric_formats() {
        let f = |a: &str, b: &str| format(Some(&json!(a)), Some(&json!(b)));
        assert_eq!(f("uint8", "uint16"), Some(Effect::Relaxed));
        assert_eq!(f("int64", "int32"), Some(Effect::Tightened));
        assert_eq!(f("uint32", "int64"), Some(Effect::Relaxed));
        assert_eq!(f("uint64", "int64"), Some(Effect::Changed));
        assert_eq!(f("uint", "uint64"), None);
        assert_eq!(f("float", "double"), Some(Effect::Relaxed));
        assert_eq!(f("int32", "double"), Some(Effect::Relaxed));
        assert_eq!(f("int64", "double"), Some(Effect::Relaxed));
        assert_eq!(f("uint16", "float"), Some(Effect::Relaxed));
        assert_eq!(f("uint128", "float"), Some(Effect::Changed));
        assert_eq!(f("double", "int32"), Some(Effect::Tightened));
        assert_eq!(f("date-time", "date"), Some(Effect::Changed));
        assert_eq!(f("int128", "uint128"), Some(Effect::Changed));
    }
}
