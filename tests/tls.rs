//! `amqps://` with a private CA, against the real RabbitMQ behind a TLS terminator (as a
//! load balancer or stunnel in front of a broker would be): the terminator presents a
//! certificate issued by a CA generated for the test and forwards the decrypted stream to the
//! broker of `AMQP_URL`. Needs the `tls` feature, which `scripts/test` enables.

#![cfg(feature = "tls")]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Env, amqp_url, recorder};
use event_manager::transport::TlsOptions;
use event_manager::{Bus, ConnectError};
use event_manager_examples::Order;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA and a server certificate for `localhost` issued by it.
struct Pki {
    ca_pem: String,
    server: ServerConfig,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "event-manager test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");
    let server_key = KeyPair::generate().expect("server key");
    let server_cert = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("server params")
        .signed_by(&server_key, &ca)
        .expect("server certificate");
    let server = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(server_cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .expect("server TLS config");
    Pki {
        ca_pem: ca.pem(),
        server,
    }
}

/// The broker's address, from `AMQP_URL`.
fn broker_addr() -> String {
    let url = amqp_url();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5672")
    }
}

/// A TLS terminator on a free local port, forwarding to the broker.
struct Terminator {
    addr: SocketAddr,
    /// TLS sessions that completed their handshake.
    sessions: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Terminator {
    async fn start(server: ServerConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let acceptor = TlsAcceptor::from(Arc::new(server));
        let sessions = Arc::new(AtomicUsize::new(0));
        let upstream = broker_addr();
        let counted = sessions.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, counted, upstream) =
                    (acceptor.clone(), counted.clone(), upstream.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    counted.fetch_add(1, Ordering::SeqCst);
                    let Ok(mut broker) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
                });
            }
        });
        Self {
            addr,
            sessions,
            task,
        }
    }

    fn url(&self) -> String {
        format!("amqps://guest:guest@localhost:{}/%2f", self.addr.port())
    }
}

impl Drop for Terminator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

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
            Ok::<_, std::convert::Infallible>(())
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
    // The probe connection and the connection itself both went through TLS.
    assert!(
        terminator.sessions.load(Ordering::SeqCst) >= 2,
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
