//! `amqps://` with a private CA, against the real RabbitMQ behind a TLS terminator (as a
//! load balancer or stunnel in front of a broker would be): the terminator presents a
//! certificate issued by a CA generated for the test and forwards the decrypted stream to the
//! broker of `AMQP_URL`. Needs the `tls` feature, which `scripts/test` enables.

#![cfg(feature = "tls")]

mod common;

use std::sync::atomic::Ordering;

use common::tls::{Terminator, pki};
use common::{Env, amqp_url, recorder};
use event_manager::transport::TlsOptions;
use event_manager::{Bus, ConnectError};
use event_manager_examples::Order;

#[tokio::test]
async fn events_flow_over_tls_with_a_private_ca() {
    let pki = pki();
    let terminator = Terminator::start(pki.server).await;
    let ca_file = std::env::temp_dir().join(format!("{}.pem", common::unique("ca")));
    std::fs::write(&ca_file, &pki.ca_pem).expect("write the CA file");
    let tls = TlsOptions::new()
        .trust_ca_file(&ca_file)
        .expect("the CA file is read");
    let _ = std::fs::remove_file(&ca_file);
    let bus = Bus::connect_with_tls(&terminator.url(), &tls)
        .await
        .expect("connects over TLS");
    let env = Env::over_rabbitmq(bus);

    let (seen, mut records) = recorder();
    let mut service = env.service("tls_billing");
    service
        .bind(event_manager_examples::ORDER, "order.*.submit")
        .unwrap();
    service.on(Order::SUBMIT, move |order: Order, _| {
        let seen = seen.clone();
        async move {
            seen.record(order.id);
            Ok(())
        }
    });
    let running = service.start().await.expect("service starts over TLS");
    for id in 1..=3 {
        Order::sample(id).submit(&env.bus).await.expect("confirmed");
    }
    let mut ids = records.take(3).await;
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 3]);
    running.shutdown().await.expect("shuts down");
    env.cleanup().await;
    // The connection went through TLS.
    assert!(
        terminator.sessions.load(Ordering::SeqCst) >= 1,
        "{} TLS sessions",
        terminator.sessions.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn an_unknown_ca_is_refused_without_leaking_the_password() {
    let pki = pki();
    let terminator = Terminator::start(pki.server).await;
    let err = Bus::connect(&terminator.url())
        .await
        .expect_err("the platform's roots do not trust the test CA");
    let text = err.to_string();
    assert!(matches!(err, ConnectError::Broker { .. }), "{err:?}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    assert!(!text.contains("guest:guest"), "{text}");
    assert_eq!(terminator.sessions.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_ca_for_a_plain_url_is_a_named_error() {
    let tls = TlsOptions::new().trust_ca_pem(pki().ca_pem).unwrap();
    let err = Bus::connect_with_tls(&amqp_url(), &tls)
        .await
        .expect_err("CA certificates make no sense without TLS");
    assert!(matches!(err, ConnectError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("not an amqps:// URL"), "{err}");
}
