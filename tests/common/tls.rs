//! A private PKI and a TLS terminator in front of the test broker, for the `amqps://` tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::amqp_url;

/// A CA and a server certificate for `localhost` issued by it.
pub struct Pki {
    pub ca_pem: String,
    pub server: ServerConfig,
}

pub fn pki() -> Pki {
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
pub struct Terminator {
    addr: SocketAddr,
    /// TLS sessions that completed their handshake.
    pub sessions: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Terminator {
    pub async fn start(server: ServerConfig) -> Self {
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

    /// The `amqps://` URL of the broker behind the terminator.
    pub fn url(&self) -> String {
        format!("amqps://guest:guest@localhost:{}/%2f", self.addr.port())
    }
}

impl Drop for Terminator {
    fn drop(&mut self) {
        self.task.abort();
    }
}
