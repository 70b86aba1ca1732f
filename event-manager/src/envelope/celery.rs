//! Celery's task message protocol 2, as a Python `event_manager` deployment speaks it: each
//! event is a Celery task named after its routing key, whose `instance` keyword argument is
//! the payload. Reading such messages needs no setting; an exchange marked
//! [`Exchange::celery`](crate::Exchange::celery) publishes its events this way.
//!
//! The body is `[args, kwargs, embed]`: `[[], {"instance": {...}}, {"callbacks": null,
//! "errbacks": null, "chain": null, "chord": null}]`; the headers name the task (`task`), its
//! id (`id`, also the `correlation_id`) and Celery's bookkeeping (`lang`, `root_id`,
//! `parent_id`, `retries`, `argsrepr`, `kwargsrepr`, `origin`, …).

use serde_json::{Map, Value};

use crate::message::{Bytes, HeaderValue, Headers, Message};

/// The header naming the Celery task: the event's routing key.
pub const TASK_HEADER: &str = "task";
/// The header with the Celery task id.
pub const TASK_ID_HEADER: &str = "id";
/// The keyword argument carrying the event's payload.
pub const INSTANCE_KWARG: &str = "instance";

/// The task a Celery task message runs, or `None` for another message.
pub(crate) fn task(message: &Message) -> Option<&str> {
    message.properties.headers.get_str(TASK_HEADER)
}

/// The Celery task id of a Celery task message.
pub(crate) fn task_id(message: &Message) -> Option<&str> {
    task(message)?;
    message.properties.headers.get_str(TASK_ID_HEADER)
}

/// The payload of a Celery task message body: its `instance` keyword argument, or its only
/// positional argument.
pub(crate) fn payload(body: &[u8]) -> Result<Vec<u8>, String> {
    let (args, mut kwargs, _embed): (Vec<Value>, Map<String, Value>, Value) =
        serde_json::from_slice(body)
            .map_err(|e| format!("not a Celery task body `[args, kwargs, embed]`: {e}"))?;
    let instance = match kwargs.remove(INSTANCE_KWARG) {
        Some(instance) => instance,
        None => match <[Value; 1]>::try_from(args) {
            Ok([only]) => only,
            Err(_) => {
                return Err(format!(
                    "a Celery task message without an `{INSTANCE_KWARG}` keyword argument"
                ));
            }
        },
    };
    serde_json::to_vec(&instance).map_err(|e| e.to_string())
}

/// The body of a Celery task message whose `instance` is the JSON `payload`.
pub(crate) fn task_body(payload: &[u8]) -> Bytes {
    const HEAD: &[u8] = br#"[[],{"instance":"#;
    const TAIL: &[u8] = br#"},{"callbacks":null,"errbacks":null,"chain":null,"chord":null}]"#;
    let mut body = Vec::with_capacity(HEAD.len() + payload.len() + TAIL.len());
    body.extend_from_slice(HEAD);
    body.extend_from_slice(payload);
    body.extend_from_slice(TAIL);
    Bytes::from(body)
}

/// The longest `kwargsrepr` kept, as Celery cuts it.
const MAX_REPR: usize = 1024;

/// Celery's protocol-2 headers of the task `task` with id `id`, sent by `origin`, for the
/// JSON `payload`.
pub(crate) fn task_headers(
    headers: &mut Headers,
    task: &str,
    id: &str,
    origin: &str,
    payload: &[u8],
) {
    let repr = String::from_utf8_lossy(payload);
    let repr = super::forward::cut(&repr, MAX_REPR);
    headers.insert("lang", "py");
    headers.insert(TASK_HEADER, task.to_owned());
    headers.insert(TASK_ID_HEADER, id.to_owned());
    headers.insert("shadow", HeaderValue::Void);
    headers.insert("eta", HeaderValue::Void);
    headers.insert("expires", HeaderValue::Void);
    headers.insert("group", HeaderValue::Void);
    headers.insert("group_index", HeaderValue::Void);
    headers.insert("retries", 0_i64);
    headers.insert(
        "timelimit",
        HeaderValue::Array(vec![HeaderValue::Void, HeaderValue::Void]),
    );
    headers.insert("root_id", id.to_owned());
    headers.insert("parent_id", HeaderValue::Void);
    headers.insert("argsrepr", "()");
    headers.insert("kwargsrepr", format!("{{'{INSTANCE_KWARG}': {repr}}}"));
    headers.insert("origin", origin.to_owned());
    headers.insert("ignore_result", false);
    headers.insert("replaced_task_nesting", 0_i64);
    headers.insert("stamped_headers", HeaderValue::Void);
    headers.insert("stamps", HeaderValue::Table(Vec::new()));
}

/// A random version-4 UUID, as Celery's task ids are.
pub(crate) fn uuid4() -> String {
    use std::hash::{BuildHasher, RandomState};
    let state = RandomState::new();
    let high = state.hash_one(1_u8);
    let low = state.hash_one(2_u8);
    let high = (high & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
    let low = (low & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0xffff,
        low >> 48,
        low & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_python_task_body_yields_its_instance() {
        let body = br#"[[], {"instance": {"id": 7, "lines": [{"id": 1, "quantity": 2, "price": 9.5}]}}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]"#;
        let instance = payload(body).unwrap();
        let value: Value = serde_json::from_slice(&instance).unwrap();
        assert_eq!(value["id"], 7);
        assert_eq!(value["lines"][0]["price"], 9.5);
        assert!(
            payload(br#"[[], {}, {}]"#)
                .unwrap_err()
                .contains("instance")
        );
        assert!(payload(br#"{"id": 7}"#).is_err());
        assert_eq!(
            &payload(br#"[[{"id": 8}], {}, {}]"#).unwrap()[..],
            br#"{"id":8}"#
        );
    }

    #[test]
    fn a_task_body_round_trips() {
        let body = task_body(br#"{"id":7}"#);
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value[1]["instance"]["id"], 7);
        assert!(value[2]["chord"].is_null());
        assert_eq!(&payload(&body).unwrap()[..], br#"{"id":7}"#);
    }

    /// A task sent straight to a queue through the default exchange has the queue's name as
    /// its routing key, and that is what its retry records as the original routing key. The
    /// retry used to be read by that name, found no callback, and went to the dead-letter
    /// queue instead of being tried again.
    #[test]
    fn a_retried_task_of_the_default_exchange_is_still_its_task() {
        let mut headers = crate::message::Headers::new();
        let body = task_body(br#"{"id":7}"#);
        task_headers(&mut headers, "order.v1.submit", "id-1", "shop", &body);
        let message = Message {
            exchange: "".into(),
            routing_key: "billing".into(),
            body,
            properties: crate::message::Properties {
                headers,
                ..Default::default()
            },
        };
        assert_eq!(
            crate::envelope::read(&message).unwrap().routing_key,
            "order.v1.submit"
        );
        let retry = crate::envelope::to_retry(&message, "billing.wait.1s", 1);
        let retried = crate::envelope::read(&retry).unwrap();
        assert_eq!(retried.routing_key, "order.v1.submit");
        assert_eq!(retried.attempts, 1);
        assert_eq!(&retried.payload[..], br#"{"id":7}"#);
    }

    #[test]
    fn task_ids_are_version_4_uuids() {
        let (a, b) = (uuid4(), uuid4());
        assert_ne!(a, b);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "{a}");
        assert!(
            matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
            "{a}"
        );
    }
}
