//! `probe.v1.ping`: an event for the crate's unit tests, not registered with the registry.

use crate::contract::{Event, EventContract, EventDef, Exchange};

pub(crate) const PROBE: Exchange = Exchange::topic("probe");

/// The payload of `probe.v1.ping`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub(crate) struct Probe {
    pub(crate) id: u64,
}

pub(crate) const PING_CONTRACT: EventContract = EventContract::__new(
    PROBE,
    "ping",
    "1.0.0",
    1,
    "probe.v1.ping",
    "urn:event-manager:schema:probe.v1.ping",
    "Probe",
    "A test event.",
    crate::__private::root_schema::<Probe>,
);

impl Event for Probe {
    const EVENTS: &'static [EventContract] = &[PING_CONTRACT];
}

pub(crate) const PING: EventDef<Probe> = EventDef::__new(PING_CONTRACT);
