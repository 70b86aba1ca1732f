//! Compile-fail tests of `#[derive(Event)]`: every bad attribute gives a readable error that
//! points at the offending tokens.

#[test]
fn bad_attributes_fail_to_compile() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
