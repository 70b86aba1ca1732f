//! Exported contract documents: a JSON Schema (2020-12) per event version and an AsyncAPI
//! 3.0.0 document of the whole registry, written to a directory and compared with it.
//!
//! * [`json_schema`]: the JSON Schema of one contract, `$id`
//!   [`envelope::schema_id`](crate::envelope::schema_id) of its routing key (the value of the
//!   `cloudEvents_dataschema` header), `title`, `description` from the payload's doc comment and
//!   [`x-event-version`](VERSION_KEYWORD).
//! * [`AsyncApi`]: the AsyncAPI document. Channels are routing keys with their AMQP binding;
//!   `send` operations publish them; `receive` operations come from the consumer bindings
//!   the export is told about ([`AsyncApi::consumer`]).
//! * [`files`], [`write()`], [`find_stale`]: the whole export as files, `<routing-key>.json` per
//!   contract and [`ASYNCAPI_FILE`], deterministic to the byte so they can be checked in and
//!   compared by a test.
//!
//! ## Payload references
//!
//! Each AsyncAPI message references its payload schema as a separate file,
//! `{"$ref": "./order.v1.submit.json"}`, rather than embedding it. The exported JSON Schemas
//! stay the single source, and their internal references (`#/$defs/OrderLine`) resolve
//! within their own file: embedded into `components.schemas` they would point at the AsyncAPI
//! document's root and need rewriting. The official AsyncAPI parser resolves such relative
//! references from the local files when it is given the document's path, without network
//! access; tools that parse the document from a string need the schema files beside it.
//!
//! ```no_run
//! use event_manager::Exchange;
//! use event_manager::schema::{self, AsyncApi};
//!
//! const ORDER: Exchange = Exchange::topic("order");
//!
//! let api = AsyncApi::new("Order events", "1.0.0")
//!     .consumer("billing_order", ORDER, "order.*.submit".parse()?)
//!     .consumer("logistics_order", ORDER, "order.#".parse()?);
//! let stale = schema::find_stale(&api, "schemas")?;
//! for file in &stale {
//!     eprintln!("{file}");
//! }
//! schema::write(&api, "schemas")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod asyncapi;
mod error;
mod files;
mod json_schema;

pub use asyncapi::{
    AMQP_BINDING_VERSION, ASYNCAPI_FILE, ASYNCAPI_VERSION, AsyncApi, BINDING_PATTERN_EXTENSION,
    ConsumerBinding, QUEUE_EXTENSION,
};
pub use error::SchemaError;
pub use files::{StaleFile, Staleness, files, find_stale, write};
pub use json_schema::{VERSION_KEYWORD, json_schema, schema_file_name};
