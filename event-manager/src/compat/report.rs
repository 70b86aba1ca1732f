//! Version bumps and the verdict of one old/new schema comparison.

use std::cmp::Ordering;
use std::fmt;

use semver::Version;
use serde_json::Value;

use super::change::Change;
use super::diff::diff;
use super::mode::Mode;
use super::resolve::VERSION_KEYWORD;

/// Size of a semantic-version bump, ordered `None < Patch < Minor < Major`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bump {
    /// Same version.
    None,
    /// Patch number raised (or a pre-release of the same `major.minor.patch` advanced).
    Patch,
    /// Minor number raised.
    Minor,
    /// Major number raised: in this project, a new routing key (`order.v1.submit` →
    /// `order.v2.submit`).
    Major,
}

impl Bump {
    /// The bump from `old` to `new`; [`Bump::None`] when `new` is not newer than `old`
    /// (see [`Report::is_downgrade`]).
    pub fn between(old: &Version, new: &Version) -> Bump {
        if new.cmp_precedence(old) != Ordering::Greater {
            Bump::None
        } else if new.major != old.major {
            Bump::Major
        } else if new.minor != old.minor {
            Bump::Minor
        } else {
            Bump::Patch
        }
    }

    /// The smallest version from `old` that makes this bump.
    pub fn apply(self, old: &Version) -> Version {
        match self {
            Bump::None => old.clone(),
            Bump::Patch => Version::new(old.major, old.minor, old.patch.saturating_add(1)),
            Bump::Minor => Version::new(old.major, old.minor.saturating_add(1), 0),
            Bump::Major => Version::new(old.major.saturating_add(1), 0, 0),
        }
    }

    /// Lowercase name: `none`, `patch`, `minor` or `major`.
    pub fn as_str(self) -> &'static str {
        match self {
            Bump::None => "none",
            Bump::Patch => "patch",
            Bump::Minor => "minor",
            Bump::Major => "major",
        }
    }
}

impl fmt::Display for Bump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads the contract version from the root `"x-event-version"` string of a schema.
///
/// Returns `None` when the keyword is missing, not a string, or not a semantic version.
pub fn schema_version(schema: &Value) -> Option<Version> {
    schema.get(VERSION_KEYWORD)?.as_str()?.trim().parse().ok()
}

/// The outcome of comparing two versions of one contract.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Every change found, in schema order.
    pub changes: Vec<Change>,
    /// The mode the changes were judged under.
    pub mode: Mode,
    /// The smallest bump the changes require: major if any change is breaking under `mode`,
    /// minor if any non-annotation change, patch if only annotations changed, none otherwise.
    pub required: Bump,
    /// The bump actually made from `old_version` to `new_version`.
    pub actual: Bump,
    /// Version of the old schema.
    pub old_version: Version,
    /// Version of the new schema.
    pub new_version: Version,
}

/// Compares two schemas and judges the version bump between them.
///
/// ```
/// use event_manager::compat::{check, Bump, Mode, Version};
/// use serde_json::json;
///
/// let old = json!({"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]});
/// let new = json!({"type": "object", "properties": {
///     "id": {"type": "string"},
///     "note": {"type": ["string", "null"]}
/// }, "required": ["id"]});
/// let report = check(&old, &new, &Version::new(1, 2, 0), &Version::new(1, 3, 0), Mode::Full);
/// assert_eq!(report.required, Bump::Minor);
/// assert!(report.is_sufficient());
/// ```
pub fn check(
    old: &Value,
    new: &Value,
    old_version: &Version,
    new_version: &Version,
    mode: Mode,
) -> Report {
    let changes = diff(old, new);
    let required = changes
        .iter()
        .map(|change| change.required_bump(mode))
        .max()
        .unwrap_or(Bump::None);
    Report {
        changes,
        mode,
        required,
        actual: Bump::between(old_version, new_version),
        old_version: old_version.clone(),
        new_version: new_version.clone(),
    }
}

impl Report {
    /// Whether the new version is older than the old one (by semver precedence).
    pub fn is_downgrade(&self) -> bool {
        self.new_version.cmp_precedence(&self.old_version) == Ordering::Less
    }

    /// Whether the actual bump covers the required one (a major bump always does; identical
    /// versions only when nothing changed; a downgrade never).
    pub fn is_sufficient(&self) -> bool {
        !self.is_downgrade() && self.actual >= self.required
    }

    /// The changes that are breaking under the report's mode.
    pub fn breaking_changes(&self) -> impl Iterator<Item = &Change> {
        self.changes
            .iter()
            .filter(move |change| change.is_breaking(self.mode))
    }

    /// The changes that need a larger bump than the one made (all changes after a downgrade).
    pub fn insufficient_changes(&self) -> impl Iterator<Item = &Change> {
        let downgrade = self.is_downgrade();
        self.changes
            .iter()
            .filter(move |change| downgrade || change.required_bump(self.mode) > self.actual)
    }

    /// The one-line verdict, e.g. `verdict: breaking change(s) under full mode; requires major
    /// bump (1.2.0 -> 2.0.0 or a new routing key), got minor (1.2.0 -> 1.3.0): INSUFFICIENT`.
    pub fn verdict_line(&self) -> String {
        let summary = match self.required {
            Bump::Major => format!("breaking change(s) under {} mode", self.mode),
            Bump::Minor => format!("compatible change(s) under {} mode", self.mode),
            Bump::Patch => "annotation-only change(s)".to_owned(),
            Bump::None => "no schema change".to_owned(),
        };
        let old = &self.old_version;
        let target = self.required.apply(old);
        let requires = match self.required {
            Bump::None => "requires no bump".to_owned(),
            Bump::Major => format!("requires major bump ({old} -> {target} or a new routing key)"),
            bump => format!("requires {bump} bump ({old} -> {target})"),
        };
        let got = if self.is_downgrade() {
            "a downgrade"
        } else {
            self.actual.as_str()
        };
        let status = if self.is_sufficient() {
            "OK"
        } else {
            "INSUFFICIENT"
        };
        format!(
            "verdict: {summary}; {requires}, got {got} ({old} -> {}): {status}",
            self.new_version
        )
    }
}

impl fmt::Display for Report {
    /// One line per change, then the verdict line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for change in &self.changes {
            writeln!(f, "{change}")?;
        }
        f.write_str(&self.verdict_line())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(text: &str) -> Version {
        Version::parse(text).expect("test version")
    }

    #[test]
    fn bump_between_versions() {
        assert_eq!(Bump::between(&v("1.2.3"), &v("1.2.3")), Bump::None);
        assert_eq!(Bump::between(&v("1.2.3"), &v("1.2.4")), Bump::Patch);
        assert_eq!(Bump::between(&v("1.2.3"), &v("1.3.0")), Bump::Minor);
        assert_eq!(Bump::between(&v("1.2.3"), &v("2.0.0")), Bump::Major);
        assert_eq!(Bump::between(&v("1.2.3"), &v("1.2.2")), Bump::None);
        assert_eq!(Bump::between(&v("1.3.0-rc.1"), &v("1.3.0")), Bump::Patch);
        assert_eq!(Bump::between(&v("1.2.0"), &v("1.3.0-rc.1")), Bump::Minor);
        assert_eq!(Bump::between(&v("1.2.0+a"), &v("1.2.0+b")), Bump::None);
        assert!(Bump::None < Bump::Patch && Bump::Minor < Bump::Major);
    }

    #[test]
    fn apply_targets() {
        assert_eq!(Bump::Major.apply(&v("1.2.3")), v("2.0.0"));
        assert_eq!(Bump::Minor.apply(&v("1.2.3")), v("1.3.0"));
        assert_eq!(Bump::Patch.apply(&v("1.2.3")), v("1.2.4"));
        assert_eq!(Bump::None.apply(&v("1.2.3")), v("1.2.3"));
    }

    #[test]
    fn reads_schema_version() {
        assert_eq!(
            schema_version(&json!({"x-event-version": "1.2.0"})),
            Some(v("1.2.0"))
        );
        assert_eq!(schema_version(&json!({"x-event-version": "1.2"})), None);
        assert_eq!(schema_version(&json!({"x-event-version": 1})), None);
        assert_eq!(schema_version(&json!({})), None);
        assert_eq!(schema_version(&json!(true)), None);
    }

    #[test]
    fn verdict_line_for_breaking_change() {
        let old = json!({"properties": {"id": {"type": "string"}}, "required": ["id"]});
        let new = json!({"properties": {}});
        let report = check(&old, &new, &v("1.2.0"), &v("1.3.0"), Mode::Full);
        assert_eq!(
            report.verdict_line(),
            "verdict: breaking change(s) under full mode; requires major bump \
             (1.2.0 -> 2.0.0 or a new routing key), got minor (1.2.0 -> 1.3.0): INSUFFICIENT"
        );
        assert_eq!(report.insufficient_changes().count(), 1);
        assert_eq!(report.breaking_changes().count(), 1);
        let text = report.to_string();
        assert!(text.starts_with("/properties/id: property removed (required)"));
    }

    #[test]
    fn identical_schemas_need_no_bump_but_no_downgrade() {
        let schema = json!({"type": "string"});
        let same = check(&schema, &schema, &v("1.0.0"), &v("1.0.0"), Mode::Full);
        assert!(same.is_sufficient());
        assert_eq!(
            same.verdict_line(),
            "verdict: no schema change; requires no bump, got none (1.0.0 -> 1.0.0): OK"
        );
        let down = check(&schema, &schema, &v("1.1.0"), &v("1.0.0"), Mode::Full);
        assert!(!down.is_sufficient());
        assert!(
            down.verdict_line()
                .contains("got a downgrade (1.1.0 -> 1.0.0): INSUFFICIENT")
        );
    }
}
