//! Telemetry: `tracing` spans named after the OpenTelemetry messaging conventions, W3C trace
//! context carried in the message headers (feature `otel`), and metrics through the
//! [`metrics`](https://docs.rs/metrics) facade.
//!
//! Nothing here needs set-up in the library: spans go to whatever `tracing` subscriber the
//! application installs, and metrics to whatever `metrics` recorder it installs (for example
//! `metrics-exporter-prometheus`). Install the recorder before starting services: a service
//! registers its metric handles when it starts.

pub mod metrics;
pub(crate) mod trace;

pub use trace::{legacy_semconv, set_legacy_semconv};
