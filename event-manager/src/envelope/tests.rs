//! Unit tests of the wire format.

use super::*;

fn bare(key: &str) -> Message {
    Message {
        exchange: "order".into(),
        routing_key: key.to_owned().into(),
        body: Vec::from(&b"{}"[..]).into(),
        properties: Properties::default(),
    }
}

#[test]
fn headers_of_the_wire_contract_have_no_x_prefix_and_legacy_ones_are_read() {
    for name in HEADER_NAMES {
        let ours = !name.starts_with("cloudEvents_") && name != TRACEPARENT_HEADER;
        assert!(!(ours && name.starts_with("x-")), "{name}");
    }
    // A message from a 0.1 publisher, retried twice by a 0.1 service.
    let mut legacy = bare("order.v1.submit");
    let headers = &mut legacy.properties.headers;
    headers.insert("x-event-version", "1.4.0");
    headers.insert("x-attempts", 2_i64);
    headers.insert("x-original-routing-key", "order.v1.submit");
    headers.insert("x-original-exchange", "order");
    headers.insert("x-published-as", "order.v1.submit,order.v2.submit");
    let read = read(&legacy).unwrap();
    assert_eq!(
        read.version,
        ReceivedVersion::Full("1.4.0".parse().unwrap())
    );
    assert_eq!(read.attempts, 2);
    assert!(read.published_as.is_some());
    assert_eq!(original_exchange(&legacy), "order");
    // Retried here: the current names win over the legacy ones.
    let retried = to_retry(&legacy, "billing.wait.1000ms", 3);
    assert_eq!(retried.properties.headers.get_int(ATTEMPTS_HEADER), Some(3));
    assert_eq!(read_attempts(&retried), 3);
    // A legacy dead letter keeps its kind, and a replay clears both forms.
    let mut dead = legacy.clone();
    dead.properties
        .headers
        .insert("x-dead-letter-kind", "handler-failed");
    dead.properties
        .headers
        .insert("x-dead-letter-reason", "boom");
    assert_eq!(
        DeadLetterKind::of(&dead),
        Some(DeadLetterKind::HandlerFailed)
    );
    let replayed = to_replay(&dead, "billing");
    assert_eq!(DeadLetterKind::of(&replayed), None);
    assert!(
        replayed
            .properties
            .headers
            .get("x-dead-letter-reason")
            .is_none()
    );
}

fn read_attempts(message: &Message) -> u32 {
    read(message).unwrap().attempts
}

#[test]
fn headerless_message_is_versioned_by_its_key() {
    let m = bare("order.v2.submit");
    let r = read(&m).unwrap();
    assert_eq!(r.version, ReceivedVersion::Major(2));
    assert_eq!(r.routing_key, "order.v2.submit");
    assert_eq!(r.attempts, 0);
    assert_eq!(
        read(&bare("legacy")).unwrap().version,
        ReceivedVersion::Unknown
    );
}

#[test]
fn header_version_must_agree_with_key() {
    let mut m = bare("order.v1.submit");
    m.properties.headers.insert(VERSION_HEADER, "2.0.0");
    assert!(matches!(
        read(&m),
        Err(EnvelopeError::VersionMismatch { .. })
    ));
    m.properties.headers.insert(VERSION_HEADER, "nonsense");
    assert!(matches!(read(&m), Err(EnvelopeError::BadVersion(_))));
    m.properties.headers.insert(VERSION_HEADER, "1.4.0");
    assert_eq!(
        read(&m).unwrap().version,
        ReceivedVersion::Full(semver::Version::new(1, 4, 0))
    );
}

/// A header of the contract with a value of another type is an error naming it, never a
/// header left out (which skipped the version check, or read a retried copy under its wait
/// queue's key).
#[test]
fn a_contract_header_of_the_wrong_type_is_an_error() {
    let cases: [(&str, HeaderValue, &str); 4] = [
        (VERSION_HEADER, HeaderValue::Int(2), "an integer"),
        (
            ORIGINAL_ROUTING_KEY_HEADER,
            HeaderValue::Bool(true),
            "a boolean",
        ),
        (
            ATTEMPTS_HEADER,
            HeaderValue::Float(1.5),
            "a floating-point number",
        ),
        (PUBLISHED_AS_HEADER, HeaderValue::Void, "void"),
    ];
    for (header, value, kind) in cases {
        let mut m = bare("order.v1.submit");
        m.properties.headers.insert(header, value);
        match read(&m) {
            Err(e @ EnvelopeError::HeaderType { .. }) => {
                let text = e.to_string();
                assert!(text.contains(header) && text.contains(kind), "{text}");
            }
            other => panic!("{header}: {other:?}"),
        }
    }
    // A legacy copy of the wrong type is left out, before or after the current header.
    let legacy = format!("{LEGACY_HEADER_PREFIX}{VERSION_HEADER}");
    for legacy_first in [true, false] {
        let mut m = bare("order.v1.submit");
        if legacy_first {
            m.properties.headers.insert(legacy.clone(), 7_i64);
        }
        m.properties.headers.insert(VERSION_HEADER, "1.4.0");
        if !legacy_first {
            m.properties.headers.insert(legacy.clone(), 7_i64);
        }
        assert_eq!(
            read(&m).unwrap().version,
            ReceivedVersion::Full(semver::Version::new(1, 4, 0))
        );
    }
}

/// The version kept from the last message read is used only for the same text.
#[test]
fn each_message_is_read_with_its_own_version() {
    let mut m = bare("order.v1.submit");
    for text in [
        "1.4.0",
        "1.4.0",
        "1.5.0-beta.1+build.7",
        "1.4.0",
        "1.4.0.0",
        "1.4.0",
    ] {
        m.properties.headers.insert(VERSION_HEADER, text);
        match semver::Version::parse(text) {
            Ok(expected) => assert_eq!(read(&m).unwrap().version, ReceivedVersion::Full(expected)),
            Err(_) => assert!(
                matches!(read(&m), Err(EnvelopeError::BadVersion(_))),
                "{text}"
            ),
        }
    }
}

#[test]
fn attempts_beyond_u32_saturate() {
    let mut m = bare("order.v1.submit");
    for (header, attempts) in [
        ("4294967295", u32::MAX),
        ("99999999999", u32::MAX),
        ("-3", 0),
        ("2", 2),
    ] {
        m.properties.headers.insert(ATTEMPTS_HEADER, header);
        assert_eq!(read(&m).unwrap().attempts, attempts, "{header}");
    }
    m.properties.headers.insert(ATTEMPTS_HEADER, i64::MAX);
    assert_eq!(read(&m).unwrap().attempts, u32::MAX);
}

#[test]
fn bodies_must_be_utf8_json() {
    let ok: serde_json::Value = from_json(br#"{"id":1,"name":"\u00e9t\u00e9"}"#).unwrap();
    assert_eq!(ok["name"], "été");
    let err = from_json::<serde_json::Value>(b"{\"id\":\"\xff\"}").unwrap_err();
    assert!(err.to_string().contains("not UTF-8"), "{err}");
    assert!(from_json::<serde_json::Value>(b"{\"id\":").is_err());
}

#[test]
fn message_ids_are_unique() {
    let a = new_message_id();
    let b = new_message_id();
    assert_ne!(a, b);
}

#[test]
fn a_message_id_is_the_prefix_and_the_counter_in_hexadecimal() {
    for _ in 0..40 {
        let id = new_message_id();
        let (prefix, counter) = id.split_once('-').expect("prefix-counter");
        assert_eq!(prefix, ID_PREFIX.as_str());
        let n = u64::from_str_radix(counter, 16).expect("hexadecimal");
        assert_eq!(counter, format!("{n:x}"), "no leading zeros, lower case");
    }
    let hex = |n: u64| {
        let mut out = String::new();
        push_hex(&mut out, n);
        out
    };
    // The largest counter still fits.
    assert_eq!(hex(u64::MAX), "ffffffffffffffff");
    assert_eq!(hex(0), "0");
    assert_eq!(hex(0x1a), "1a");
}
