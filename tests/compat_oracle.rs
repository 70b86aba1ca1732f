//! An oracle for the contract compatibility checker (`event_manager::compat`).
//!
//! Schemas come from real Rust types through schemars (structs, enums in every serde tagging,
//! `Option`, maps, tuples, `flatten`, recursion, `deny_unknown_fields`). Each is mutated (fields
//! added, removed, retyped, made optional or required; enums and variants narrowed or widened;
//! constraints and numeric formats tightened or loosened; objects closed or opened; nullability
//! toggled; equivalent respellings), and for every (old, new) pair instances are sampled from the
//! writer's schema and validated against the reader's with the `jsonschema` crate:
//!
//! * backward: instances of the old schema (old data) against the new schema (new reader);
//! * forward: instances of the new schema (new data) against the old schema (old reader).
//!
//! A "compatible" verdict that a sampled instance refutes is a false negative: none is allowed.
//! A "breaking" verdict that no sampled instance refutes is counted as a (possible) false
//! positive and printed: the checker's reader model (serde readers, rule 4 of COMPAT.md) is
//! deliberately stricter than set inclusion.
//!
//! `COMPAT_ORACLE_SEED=<n>` runs another seed; `COMPAT_ORACLE_VERBOSE=1` prints every
//! breaking verdict that no sample refuted.
//!
//! Writers follow rule 1 of COMPAT.md: they emit declared properties only, plus map entries
//! where `additionalProperties` is a schema. Numeric `format`s are enforced as the ranges of the
//! serde types they stand for (the validator does not check formats on numbers).

#[path = "compat_oracle/mod.rs"]
mod oracle;

use oracle::mutate::{Mutation, mutate, respell};
use oracle::sample::Sampler;
use oracle::types::base_schemas;
use oracle::{Rng, Validator};

use event_manager::compat::{Change, diff};
use serde_json::Value;

/// Instances sampled from each writer schema.
const SAMPLES: usize = 24;
/// Mutated variants generated from each base schema.
const MUTANTS: usize = 40;

#[derive(Default)]
struct Tally {
    pairs: usize,
    instances: usize,
    /// Directions judged compatible that a sample refuted.
    false_negatives: Vec<String>,
    /// Directions judged breaking.
    breaking: usize,
    /// Directions judged breaking that no sample refuted.
    unrefuted_breaking: usize,
    /// Directions whose writer schema yielded no valid instance (e.g. a mutation made it
    /// unsatisfiable): nothing can refute them, so they are left out of the false-positive rate.
    unsampled: usize,
    /// Breaking verdicts among those.
    unsampled_breaking: usize,
    /// Pairs the validator could not compile (a mutation produced no valid schema).
    skipped: usize,
}

/// One direction of one pair: does some instance of `writer` fail `reader`?
fn refuted(
    sampler: &mut Sampler,
    writer: &Value,
    writer_check: &Validator,
    reader_check: &Validator,
    tally: &mut Tally,
) -> Option<Value> {
    let samples = sampler.samples(writer, writer_check, SAMPLES);
    tally.instances += samples.len();
    if samples.is_empty() {
        tally.unsampled += 1;
    }
    samples.into_iter().find(|s| !reader_check.is_valid(s))
}

/// Whether the direction just sampled yielded no instance.
fn samples_missing(tally: &Tally, before: usize) -> bool {
    tally.unsampled > before
}

fn judge(name: &str, old: &Value, new: &Value, sampler: &mut Sampler, tally: &mut Tally) {
    let (Some(old_check), Some(new_check)) = (Validator::new(old), Validator::new(new)) else {
        tally.skipped += 1;
        return;
    };
    tally.pairs += 1;
    let changes: Vec<Change> = diff(old, new);
    let backward = changes.iter().all(|c| c.backward);
    let forward = changes.iter().all(|c| c.forward);
    let directions = [
        ("backward", backward, old, &old_check, &new_check),
        ("forward", forward, new, &new_check, &old_check),
    ];
    for (direction, compatible, writer, writer_check, reader_check) in directions {
        let before = tally.unsampled;
        let witness = refuted(sampler, writer, writer_check, reader_check, tally);
        match (compatible, witness) {
            (true, Some(instance)) => tally.false_negatives.push(format!(
                "{name}: judged {direction} compatible, refuted by {instance}\nchanges: {changes:#?}\nold: {old}\nnew: {new}"
            )),
            (false, _) if samples_missing(tally, before) => tally.unsampled_breaking += 1,
            (false, witness) => {
                tally.breaking += 1;
                if witness.is_none() {
                    tally.unrefuted_breaking += 1;
                    if std::env::var_os("COMPAT_ORACLE_VERBOSE").is_some() {
                        let kinds: Vec<String> =
                            changes.iter().map(ToString::to_string).collect();
                        println!("unrefuted {direction}: {name}: {kinds:?}");
                    }
                }
            }
            (true, None) => {}
        }
    }
}

/// Equivalent respellings of `base`: each must diff as no change at all (collected in
/// `found.1`), and is judged like any other pair.
fn respell_and_judge(
    type_name: &str,
    base: &Value,
    rng: &mut Rng,
    sampler: &mut Sampler,
    tally: &mut Tally,
    found: &mut (usize, Vec<String>),
) {
    for _ in 0..4 {
        let mut spelled = base.clone();
        if let Some(how) = respell(&mut spelled, rng) {
            found.0 += 1;
            let changes = diff(base, &spelled);
            if !changes.is_empty() {
                found.1.push(format!("{type_name} {how}: {changes:#?}"));
            }
            judge(
                &format!("{type_name} {how}"),
                base,
                &spelled,
                sampler,
                tally,
            );
        }
    }
}

/// The seed: fixed, so that the test is reproducible; `COMPAT_ORACLE_SEED=<n>` explores others.
fn seed() -> u64 {
    std::env::var("COMPAT_ORACLE_SEED")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0x05EE_D0FC_04A7)
}

#[test]
fn no_compatible_verdict_is_refuted_by_a_sampled_instance() {
    let seed = seed();
    let mut rng = Rng::new(seed);
    let mut sampler = Sampler::new(Rng::new(seed.rotate_left(17) ^ 0x0DA7_A5A4_D1E5));
    let mut tally = Tally::default();
    let mut respellings = (0usize, Vec::new());
    for (type_name, base) in base_schemas() {
        let itself = diff(&base, &base);
        assert!(
            itself.is_empty(),
            "{type_name} differs from itself: {itself:#?}\n{base}"
        );
        let base_check = Validator::new(&base).expect("schemars output compiles");
        let samples = sampler.samples(&base, &base_check, SAMPLES);
        assert!(
            !samples.is_empty(),
            "{type_name}: only {} valid samples",
            samples.len()
        );
        for _ in 0..MUTANTS {
            let mut mutant = base.clone();
            let mut applied: Vec<Mutation> = Vec::new();
            for _ in 0..=(rng.below(3) / 2) {
                if let Some(mutation) = mutate(&mut mutant, &mut rng) {
                    applied.push(mutation);
                }
            }
            if applied.is_empty() {
                continue;
            }
            let name = format!("{type_name} {applied:?}");
            judge(&name, &base, &mutant, &mut sampler, &mut tally);
            judge(
                &format!("{name} (reversed)"),
                &mutant,
                &base,
                &mut sampler,
                &mut tally,
            );
        }
        respell_and_judge(
            type_name,
            &base,
            &mut rng,
            &mut sampler,
            &mut tally,
            &mut respellings,
        );
    }
    let sampled = tally.pairs * 2 - tally.unsampled;
    println!(
        "compat oracle (seed {seed}): {} schema pairs checked ({} skipped: invalid schema), \
         {} instances sampled, {} false negatives; of {sampled} sampled directions {} judged \
         breaking, {} of them refuted by no sample: false-positive rate {:.1}% of breaking \
         verdicts ({:.1}% of sampled directions); {} directions without a valid writer instance \
         ({} judged breaking); {} respellings, all without change",
        tally.pairs,
        tally.skipped,
        tally.instances,
        tally.false_negatives.len(),
        tally.breaking,
        tally.unrefuted_breaking,
        100.0 * tally.unrefuted_breaking as f64 / tally.breaking.max(1) as f64,
        100.0 * tally.unrefuted_breaking as f64 / sampled.max(1) as f64,
        tally.unsampled,
        tally.unsampled_breaking,
        respellings.0,
    );
    assert!(tally.pairs >= 500, "only {} pairs checked", tally.pairs);
    assert!(
        tally.false_negatives.is_empty(),
        "{} false negative(s):\n\n{}",
        tally.false_negatives.len(),
        tally.false_negatives.join("\n\n")
    );
    assert!(
        respellings.1.is_empty(),
        "equivalent spellings reported as changes:\n{}",
        respellings.1.join("\n")
    );
}
