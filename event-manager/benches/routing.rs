//! Topic matching: one (pattern, routing key) pair per iteration.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use event_manager::BindingPattern;

fn matching(c: &mut Criterion) {
    let cases = [
        ("exact", "order.v1.submit", "order.v1.submit"),
        ("star", "order.*.submit", "order.v1.submit"),
        ("star_miss", "order.*.submit", "order.v1.chargeback"),
        ("hash_tail", "order.#", "order.v1.submit"),
        ("hash_head", "#.submit", "order.v1.submit"),
        ("hash_middle", "order.#.submit", "order.v1.submit"),
        ("hash_all", "#", "order.v1.submit"),
    ];
    let mut group = c.benchmark_group("topic_match");
    for (name, pattern, key) in cases {
        let pattern = BindingPattern::parse(pattern).expect("valid pattern");
        group.bench_function(name, |b| {
            b.iter(|| black_box(&pattern).matches(black_box(key)))
        });
    }
    group.finish();
}

criterion_group!(benches, matching);
criterion_main!(benches);
