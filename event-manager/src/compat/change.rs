//! One detected difference between two schemas, and its verdict per direction.

use std::fmt;

use serde_json::Value;

use super::{Bump, Mode};

/// What changed at one place of a schema.
///
/// The verdicts (`backward`/`forward`) live on [`Change`], because some kinds depend on the
/// surrounding object (for example, whether the old object rejected unknown properties).
/// The module documentation has the full table of kinds and verdicts.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ChangeKind {
    /// A property appears in the new schema only.
    PropertyAdded {
        /// The property name.
        name: String,
        /// Whether the new schema lists it in `required`.
        required: bool,
        /// Whether the new property schema has a `default` (serde fills it in when missing).
        has_default: bool,
    },
    /// A property appears in the old schema only.
    PropertyRemoved {
        /// The property name.
        name: String,
        /// Whether the old schema listed it in `required`.
        required: bool,
        /// Whether the old property schema had a `default`.
        has_default: bool,
    },
    /// A property present on both sides became required.
    RequiredAdded {
        /// The property name.
        name: String,
        /// Whether the new property schema has a `default`.
        has_default: bool,
    },
    /// A property present on both sides is no longer required.
    RequiredRemoved {
        /// The property name.
        name: String,
        /// Whether the old property schema had a `default`.
        has_default: bool,
    },
    /// The set of accepted JSON types grew (e.g. `integer` → `["integer","null"]`,
    /// `integer` → `number`). An empty list means "any type" (no `type` keyword).
    TypeWidened {
        /// Old types (empty: any).
        from: Vec<String>,
        /// New types (empty: any).
        to: Vec<String>,
    },
    /// The set of accepted JSON types shrank.
    TypeNarrowed {
        /// Old types (empty: any).
        from: Vec<String>,
        /// New types (empty: any).
        to: Vec<String>,
    },
    /// The accepted JSON types changed in a way that is neither a widening nor a narrowing.
    TypeChanged {
        /// Old types.
        from: Vec<String>,
        /// New types.
        to: Vec<String>,
    },
    /// Values were added to the allowed set (`enum`, or `const` turned into an `enum`).
    EnumValuesAdded(Vec<Value>),
    /// Values were removed from the allowed set.
    EnumValuesRemoved(Vec<Value>),
    /// A `const` was replaced by another `const`.
    ConstChanged {
        /// Old constant.
        old: Value,
        /// New constant.
        new: Value,
    },
    /// `additionalProperties: false` was dropped (or replaced by a schema): the reader now
    /// tolerates unknown properties.
    AdditionalPropertiesOpened {
        /// Whether the new value is a schema (a map whose entries writers may emit) rather than
        /// `true`/absent.
        to_schema: bool,
    },
    /// `additionalProperties: false` was introduced: the reader now rejects unknown properties
    /// (serde `deny_unknown_fields`).
    AdditionalPropertiesClosed,
    /// `additionalProperties` went from open (`true`/absent) to a schema.
    AdditionalPropertiesRestricted,
    /// `additionalProperties` went from a schema to open (`true`/absent).
    AdditionalPropertiesUnrestricted,
    /// A validation keyword now accepts fewer values (bound raised/lowered, keyword added).
    ConstraintTightened {
        /// The keyword, e.g. `maximum`.
        keyword: String,
        /// Old value (`None`: absent).
        old: Option<Value>,
        /// New value (`None`: absent).
        new: Option<Value>,
    },
    /// A validation keyword now accepts more values (bound relaxed, keyword removed).
    ConstraintRelaxed {
        /// The keyword, e.g. `maxLength`.
        keyword: String,
        /// Old value (`None`: absent).
        old: Option<Value>,
        /// New value (`None`: absent).
        new: Option<Value>,
    },
    /// A validation keyword changed in a way that is neither tighter nor looser
    /// (e.g. a different `pattern` or `format`).
    ConstraintChanged {
        /// The keyword, e.g. `pattern`.
        keyword: String,
        /// Old value (`None`: absent).
        old: Option<Value>,
        /// New value (`None`: absent).
        new: Option<Value>,
    },
    /// A tuple (`prefixItems`, or draft-4 array-form `items`) changed length.
    TupleLengthChanged {
        /// Old number of positional items.
        old: usize,
        /// New number of positional items.
        new: usize,
    },
    /// A `oneOf`/`anyOf` alternative exists in the new schema only.
    VariantAdded {
        /// `oneOf` or `anyOf` (the keyword of the new schema, or of the old one if the new
        /// schema is not a combination).
        keyword: String,
        /// A readable name for the variant (discriminator, title, type or position).
        label: String,
    },
    /// A `oneOf`/`anyOf` alternative exists in the old schema only.
    VariantRemoved {
        /// `oneOf` or `anyOf`.
        keyword: String,
        /// A readable name for the variant.
        label: String,
    },
    /// A `oneOf` alternative may now match values that another alternative of the other
    /// version matches, so `oneOf` (which rejects a value matching two alternatives) may
    /// reject data that used to be, or is meant to be, valid.
    VariantsOverlap {
        /// The alternative whose change (or addition) creates the overlap.
        label: String,
        /// The alternative it may overlap with.
        other: String,
    },
    /// An `allOf` member (one that cannot be merged into its parent) exists in the new
    /// schema only: values must now also satisfy it.
    ConjunctAdded {
        /// A readable name for the member.
        label: String,
    },
    /// An `allOf` member exists in the old schema only.
    ConjunctRemoved {
        /// A readable name for the member.
        label: String,
    },
    /// `oneOf` became `anyOf` or the reverse.
    CombinatorChanged {
        /// Old keyword.
        from: String,
        /// New keyword.
        to: String,
    },
    /// The schema became the boolean schema `false` (rejects every value).
    SchemaBecameFalse,
    /// The schema was the boolean schema `false` and now accepts values.
    SchemaNoLongerFalse,
    /// The `default` value changed, appeared or disappeared.
    DefaultChanged {
        /// Old default (`None`: absent).
        old: Option<Value>,
        /// New default (`None`: absent).
        new: Option<Value>,
    },
    /// Only an annotation changed (`title`, `description`, `examples`, `$comment`,
    /// `deprecated`, `x-…` extensions, …).
    AnnotationChanged {
        /// The annotation keyword.
        keyword: String,
    },
    /// A keyword the checker does not reason about changed; judged breaking both ways.
    KeywordChanged {
        /// The keyword.
        keyword: String,
    },
}

impl ChangeKind {
    /// Whether this change only touches documentation-like annotations.
    pub fn is_annotation(&self) -> bool {
        matches!(self, ChangeKind::AnnotationChanged { .. })
    }
}

/// One difference between the old and the new schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// JSON Pointer into the schema, following the instance structure through resolved `$ref`s,
    /// e.g. `/properties/lines/items/properties/qty`. The root is the empty string.
    pub path: String,
    /// What changed.
    pub kind: ChangeKind,
    /// Whether a consumer using the new schema can still read data written with the old one.
    pub backward: bool,
    /// Whether a consumer using the old schema can still read data written with the new one.
    pub forward: bool,
}

impl Change {
    /// Builds a change with explicit verdicts.
    pub(crate) fn new(
        path: impl Into<String>,
        kind: ChangeKind,
        backward: bool,
        forward: bool,
    ) -> Self {
        Change {
            path: path.into(),
            kind,
            backward,
            forward,
        }
    }

    /// Whether this change fails a direction that `mode` requires.
    pub fn is_breaking(&self, mode: Mode) -> bool {
        (mode.requires_backward() && !self.backward) || (mode.requires_forward() && !self.forward)
    }

    /// Whether this change only touches annotations.
    pub fn is_annotation(&self) -> bool {
        self.kind.is_annotation()
    }

    /// The smallest version bump this change alone requires under `mode`:
    /// major if breaking, patch if annotation-only, minor otherwise.
    pub fn required_bump(&self, mode: Mode) -> Bump {
        if self.is_breaking(mode) {
            Bump::Major
        } else if self.is_annotation() {
            Bump::Patch
        } else {
            Bump::Minor
        }
    }
}

/// Shortened compact JSON for messages.
fn short(value: &Value) -> String {
    const LIMIT: usize = 60;
    let text = value.to_string();
    if text.chars().count() <= LIMIT {
        text
    } else {
        let cut: String = text.chars().take(LIMIT).collect();
        format!("{cut}…")
    }
}

fn opt(value: &Option<Value>) -> String {
    value.as_ref().map_or_else(|| "absent".to_owned(), short)
}

fn types(list: &[String]) -> String {
    if list.is_empty() {
        "any".to_owned()
    } else {
        list.join("|")
    }
}

fn values(list: &[Value]) -> String {
    list.iter().map(short).collect::<Vec<_>>().join(", ")
}

impl ChangeKind {
    /// Formats the changes of `additionalProperties` and of constraint keywords.
    fn fmt_constraint(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeKind::AdditionalPropertiesOpened { to_schema } => {
                if *to_schema {
                    f.write_str("additionalProperties opened to a schema (map entries accepted)")
                } else {
                    f.write_str("additionalProperties opened (unknown properties now accepted)")
                }
            }
            ChangeKind::AdditionalPropertiesClosed => {
                f.write_str("additionalProperties closed (unknown properties now rejected)")
            }
            ChangeKind::AdditionalPropertiesRestricted => {
                f.write_str("additionalProperties restricted from any value to a schema")
            }
            ChangeKind::AdditionalPropertiesUnrestricted => {
                f.write_str("additionalProperties no longer restricted to a schema")
            }
            ChangeKind::ConstraintTightened { keyword, old, new } => {
                write!(f, "`{keyword}` tightened ({} -> {})", opt(old), opt(new))
            }
            ChangeKind::ConstraintRelaxed { keyword, old, new } => {
                write!(f, "`{keyword}` relaxed ({} -> {})", opt(old), opt(new))
            }
            ChangeKind::ConstraintChanged { keyword, old, new } => {
                write!(f, "`{keyword}` changed ({} -> {})", opt(old), opt(new))
            }
            _ => Ok(()),
        }
    }

    /// The text of the `oneOf`/`anyOf`/`allOf` kinds.
    fn fmt_combination(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeKind::VariantAdded { keyword, label } => {
                write!(f, "{keyword} variant added: {label}")
            }
            ChangeKind::VariantRemoved { keyword, label } => {
                write!(f, "{keyword} variant removed: {label}")
            }
            ChangeKind::VariantsOverlap { label, other } => write!(
                f,
                "oneOf alternative {label} may also match values of {other} \
                 (oneOf rejects a value that matches two)"
            ),
            ChangeKind::ConjunctAdded { label } => write!(f, "allOf member added: {label}"),
            ChangeKind::ConjunctRemoved { label } => write!(f, "allOf member removed: {label}"),
            ChangeKind::CombinatorChanged { from, to } => {
                write!(f, "combinator changed from {from} to {to}")
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn qualifier(required: bool, has_default: bool) -> &'static str {
            match (required, has_default) {
                (true, true) => "required, with default",
                (true, false) => "required",
                (false, true) => "optional, with default",
                (false, false) => "optional",
            }
        }
        match self {
            ChangeKind::PropertyAdded {
                required,
                has_default,
                ..
            } => write!(f, "property added ({})", qualifier(*required, *has_default)),
            ChangeKind::PropertyRemoved {
                required,
                has_default,
                ..
            } => write!(
                f,
                "property removed ({})",
                qualifier(*required, *has_default)
            ),
            ChangeKind::RequiredAdded { has_default, .. } => {
                if *has_default {
                    f.write_str("property became required (has a default)")
                } else {
                    f.write_str("property became required")
                }
            }
            ChangeKind::RequiredRemoved { .. } => f.write_str("property became optional"),
            ChangeKind::TypeWidened { from, to } => {
                write!(f, "type widened from {} to {}", types(from), types(to))
            }
            ChangeKind::TypeNarrowed { from, to } => {
                write!(f, "type narrowed from {} to {}", types(from), types(to))
            }
            ChangeKind::TypeChanged { from, to } => {
                write!(f, "type changed from {} to {}", types(from), types(to))
            }
            ChangeKind::EnumValuesAdded(list) => {
                write!(f, "enum value(s) added: {}", values(list))
            }
            ChangeKind::EnumValuesRemoved(list) => {
                write!(f, "enum value(s) removed: {}", values(list))
            }
            ChangeKind::ConstChanged { old, new } => {
                write!(f, "const changed from {} to {}", short(old), short(new))
            }
            ChangeKind::AdditionalPropertiesOpened { .. }
            | ChangeKind::AdditionalPropertiesClosed
            | ChangeKind::AdditionalPropertiesRestricted
            | ChangeKind::AdditionalPropertiesUnrestricted
            | ChangeKind::ConstraintTightened { .. }
            | ChangeKind::ConstraintRelaxed { .. }
            | ChangeKind::ConstraintChanged { .. } => self.fmt_constraint(f),
            ChangeKind::TupleLengthChanged { old, new } => {
                write!(f, "tuple length changed from {old} to {new}")
            }
            ChangeKind::VariantAdded { .. }
            | ChangeKind::VariantRemoved { .. }
            | ChangeKind::VariantsOverlap { .. }
            | ChangeKind::ConjunctAdded { .. }
            | ChangeKind::ConjunctRemoved { .. }
            | ChangeKind::CombinatorChanged { .. } => self.fmt_combination(f),
            ChangeKind::SchemaBecameFalse => {
                f.write_str("schema became `false` (rejects every value)")
            }
            ChangeKind::SchemaNoLongerFalse => {
                f.write_str("schema was `false` (rejected every value) and now accepts values")
            }
            ChangeKind::DefaultChanged { old, new } => {
                write!(f, "default changed ({} -> {})", opt(old), opt(new))
            }
            ChangeKind::AnnotationChanged { keyword } => {
                write!(f, "annotation `{keyword}` changed")
            }
            ChangeKind::KeywordChanged { keyword } => write!(
                f,
                "keyword `{keyword}` changed (not analysed; treated as breaking)"
            ),
        }
    }
}

impl fmt::Display for Change {
    /// One readable line, e.g.
    /// `/properties/id: property removed (required) — breaking (forward)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        let verdict = match (self.backward, self.forward) {
            (true, true) if self.is_annotation() => "compatible (annotation)",
            (true, true) => "compatible",
            (false, true) => "breaking (backward)",
            (true, false) => "breaking (forward)",
            (false, false) => "breaking (backward, forward)",
        };
        write!(f, "{path}: {} — {verdict}", self.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_matches_the_documented_shape() {
        let change = Change::new(
            "/properties/id",
            ChangeKind::PropertyRemoved {
                name: "id".into(),
                required: true,
                has_default: false,
            },
            true,
            false,
        );
        assert_eq!(
            change.to_string(),
            "/properties/id: property removed (required) — breaking (forward)"
        );
        assert!(change.is_breaking(Mode::Full));
        assert!(change.is_breaking(Mode::Forward));
        assert!(!change.is_breaking(Mode::Backward));
        assert_eq!(change.required_bump(Mode::Backward), Bump::Minor);
    }

    #[test]
    fn root_path_and_annotation_display() {
        let change = Change::new(
            "",
            ChangeKind::AnnotationChanged {
                keyword: "title".into(),
            },
            true,
            true,
        );
        assert_eq!(
            change.to_string(),
            "/: annotation `title` changed — compatible (annotation)"
        );
        assert_eq!(change.required_bump(Mode::Full), Bump::Patch);
    }

    #[test]
    fn long_values_are_shortened() {
        let long = Value::String("x".repeat(200));
        let text = ChangeKind::EnumValuesAdded(vec![long]).to_string();
        assert!(text.ends_with('…'));
        assert!(text.chars().count() < 100);
    }
}
