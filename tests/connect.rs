//! Connecting: clear errors, fast failure, and no password in any error.

use event_manager::{Bus, ConnectError};

#[tokio::test]
async fn an_unreachable_broker_fails_fast_without_showing_the_password() {
    let started = std::time::Instant::now();
    let err = Bus::connect("amqp://guest:s3cr3t-pw@127.0.0.1:1/%2f")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ConnectError::Broker { .. }), "{err:?}");
    assert!(!text.contains("s3cr3t-pw"), "{text}");
    assert!(!format!("{err:?}").contains("s3cr3t-pw"));
    assert!(text.contains("amqp://guest:***@127.0.0.1:1"), "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[tokio::test]
async fn unknown_schemes_are_refused() {
    let err = Bus::connect("kafka://localhost:9092").await.unwrap_err();
    assert!(
        matches!(&err, ConnectError::UnsupportedScheme { scheme } if scheme == "kafka"),
        "{err:?}"
    );
}

#[cfg(not(feature = "tls"))]
#[tokio::test]
async fn amqps_is_refused_rather_than_sent_in_plain_text_without_tls() {
    let err = Bus::connect("amqps://guest:guest@127.0.0.1:5671/%2f")
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::TlsNotEnabled), "{err:?}");
}
