//! What a scenario counts (published, confirmed, handled and dead-lettered ids) and the one
//! line of figures it prints.

use std::collections::HashSet;
use std::fmt::{Display, Write as _};
use std::sync::{Arc, Mutex};

/// A scenario's result type: errors are plain text for the report.
pub type Res<T> = Result<T, String>;

/// Adds what was being done to an error, as text.
pub trait Ctx<T> {
    fn ctx(self, what: &str) -> Res<T>;
}

impl<T, E: Display> Ctx<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Res<T> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

/// A shared set of message ids (or order ids).
#[derive(Debug, Clone, Default)]
pub struct Ids(Arc<Mutex<HashSet<String>>>);

impl Ids {
    /// Adds `id`; true when it was new.
    pub fn insert(&self, id: impl Into<String>) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.into())
    }

    pub fn contains(&self, id: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn snapshot(&self) -> HashSet<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The ledger of one scenario. `lost` = confirmed ids neither handled nor dead-lettered.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Distinct ids a publish was attempted for (a re-send of the same id counts once).
    pub published: Ids,
    pub confirmed: Ids,
    pub handled: Ids,
    pub dead: Ids,
}

impl Tally {
    /// Confirmed ids that were neither handled nor dead-lettered, sorted.
    pub fn lost(&self) -> Vec<String> {
        let handled = self.handled.snapshot();
        let dead = self.dead.snapshot();
        let mut lost: Vec<String> = self
            .confirmed
            .snapshot()
            .into_iter()
            .filter(|id| !handled.contains(id) && !dead.contains(id))
            .collect();
        lost.sort();
        lost
    }
}

/// The figures of one scenario, its extra facts and what went wrong.
#[derive(Debug, Default)]
pub struct Report {
    pub published: usize,
    pub confirmed: usize,
    pub handled: usize,
    pub dead_lettered: usize,
    pub lost: Vec<String>,
    pub stuck: u64,
    facts: Vec<(String, String)>,
    pub problems: Vec<String>,
    pub details: Vec<String>,
}

impl Report {
    /// The figures of `tally` with `stuck` messages left in the service's queues.
    pub fn new(tally: &Tally, stuck: u64) -> Self {
        let lost = tally.lost();
        let mut report = Self {
            published: tally.published.len(),
            confirmed: tally.confirmed.len(),
            handled: tally.handled.len(),
            dead_lettered: tally.dead.len(),
            stuck,
            ..Self::default()
        };
        if !lost.is_empty() {
            let sample: Vec<&str> = lost.iter().take(5).map(String::as_str).collect();
            report.problem(format!(
                "{} confirmed message(s) neither handled nor dead-lettered, e.g. {}",
                lost.len(),
                sample.join(", ")
            ));
        }
        if stuck > 0 {
            report.problem(format!(
                "{stuck} message(s) still ready or unacknowledged in the service's queues after the settle period"
            ));
        }
        report.lost = lost;
        report
    }

    /// Adds `name=value` to the parenthesised facts.
    pub fn fact(&mut self, name: &str, value: impl Display) -> &mut Self {
        self.facts.push((name.to_owned(), value.to_string()));
        self
    }

    /// Records something that went wrong: the scenario fails.
    pub fn problem(&mut self, text: impl Into<String>) -> &mut Self {
        self.problems.push(text.into());
        self
    }

    /// A line of detail printed under the figures when the scenario fails.
    pub fn detail(&mut self, text: impl Into<String>) -> &mut Self {
        self.details.push(text.into());
        self
    }

    pub fn passed(&self) -> bool {
        self.lost.is_empty() && self.stuck == 0 && self.problems.is_empty()
    }

    /// `published=N confirmed=N handled=N dead_lettered=N lost=N stuck=N (facts)`.
    pub fn figures(&self) -> String {
        let mut line = format!(
            "published={} confirmed={} handled={} dead_lettered={} lost={} stuck={}",
            self.published,
            self.confirmed,
            self.handled,
            self.dead_lettered,
            self.lost.len(),
            self.stuck
        );
        if !self.facts.is_empty() {
            let facts: Vec<String> = self.facts.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = write!(line, " ({})", facts.join(", "));
        }
        line
    }
}

/// Seconds with one decimal, for facts.
pub fn secs(duration: std::time::Duration) -> String {
    format!("{:.1}", duration.as_secs_f64())
}
