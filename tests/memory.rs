//! The conformance suite on the in-memory broker.

mod common;
mod conformance;

all_conformance_cases!(common::Env::memory());
