//! `Bus::from_env` with `AMQP_CA_FILE`: the CA of an `amqps://` broker named in the
//! environment. A test binary of its own, because it changes the process environment.

#![cfg(feature = "tls")]

mod common;

use std::sync::atomic::Ordering;

use common::tls::{Terminator, pki};
use event_manager::{Bus, ConnectError};
use event_manager_examples::ORDER;

#[tokio::test]
async fn from_env_trusts_the_ca_file_it_names() {
    let pki = pki();
    // Started before the environment changes: it forwards to the broker of `AMQP_URL`.
    let terminator = Terminator::start(pki.server).await;
    let ca_file = std::env::temp_dir().join(format!("{}.pem", common::unique("env-ca")));
    std::fs::write(&ca_file, &pki.ca_pem).expect("write the CA file");
    // SAFETY: this binary holds this one test, and no other thread reads the environment.
    unsafe {
        std::env::set_var("AMQP_URL", terminator.url());
        std::env::set_var("AMQP_CA_FILE", "/nonexistent/ca.pem");
    }
    let err = Bus::from_env()
        .await
        .expect_err("the CA file does not exist");
    assert!(matches!(err, ConnectError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");

    // SAFETY: as above.
    unsafe { std::env::set_var("AMQP_CA_FILE", &ca_file) };
    let bus = Bus::from_env()
        .await
        .expect("connects over TLS")
        .with_namespace(common::unique("ns"));
    let _ = std::fs::remove_file(&ca_file);
    bus.topology()
        .declare_exchange(ORDER)
        .await
        .expect("declares over TLS");
    event_manager::testing::transport(&bus)
        .delete_exchange(&bus.topology().exchange_name(ORDER))
        .await
        .expect("deletes over TLS");
    bus.close().await;
    assert!(terminator.sessions.load(Ordering::SeqCst) >= 1);
}
