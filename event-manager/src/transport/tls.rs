//! TLS settings for `amqps://` connections.

use std::fmt;
use std::path::Path;

use crate::error::ConnectError;

/// What an `amqps://` connection trusts besides the platform's root certificates: the CA of
/// a private PKI, as brokers inside a company or a cluster often use.
///
/// ```
/// use event_manager::transport::TlsOptions;
///
/// let pem = "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n";
/// let tls = TlsOptions::new().trust_ca_pem(pem)?;
/// assert!(tls.has_extra_roots());
/// assert!(TlsOptions::new().trust_ca_pem("not a certificate").is_err());
/// # Ok::<(), event_manager::ConnectError>(())
/// ```
///
/// Use it with [`crate::Bus::connect_with_tls`]; [`crate::Bus::from_env`] reads the file
/// named by `AMQP_CA_FILE`. Connecting with TLS needs the crate's `tls` feature.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    ca_pem: Option<String>,
}

/// The line that starts a certificate in PEM.
const PEM_CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----";

impl TlsOptions {
    /// The platform's root certificates only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also trusts the CA certificates in `pem` (one or more PEM `CERTIFICATE` blocks).
    /// Fails when `pem` holds no certificate.
    pub fn trust_ca_pem(mut self, pem: impl Into<String>) -> Result<Self, ConnectError> {
        let pem = pem.into();
        if !pem.contains(PEM_CERTIFICATE) {
            return Err(ConnectError::Tls {
                reason: format!("the CA certificates hold no `{PEM_CERTIFICATE}` block"),
            });
        }
        match &mut self.ca_pem {
            Some(existing) => {
                existing.push('\n');
                existing.push_str(&pem);
            }
            None => self.ca_pem = Some(pem),
        }
        Ok(self)
    }

    /// Also trusts the CA certificates in the PEM file at `path`.
    pub fn trust_ca_file(self, path: impl AsRef<Path>) -> Result<Self, ConnectError> {
        let path = path.as_ref();
        let pem = std::fs::read_to_string(path).map_err(|e| ConnectError::Tls {
            reason: format!("cannot read the CA file {}: {e}", path.display()),
        })?;
        self.trust_ca_pem(pem).map_err(|e| ConnectError::Tls {
            reason: format!("{}: {e}", path.display()),
        })
    }

    /// Whether certificates beyond the platform's roots are trusted.
    pub fn has_extra_roots(&self) -> bool {
        self.ca_pem.is_some()
    }

    /// The configuration lapin connects with.
    pub(crate) fn lapin_config(&self) -> lapin::tcp::OwnedTLSConfig {
        lapin::tcp::OwnedTLSConfig {
            identity: None,
            cert_chain: self.ca_pem.clone(),
        }
    }
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let certificates = self
            .ca_pem
            .as_deref()
            .map_or(0, |pem| pem.matches(PEM_CERTIFICATE).count());
        f.debug_struct("TlsOptions")
            .field("extra_ca_certificates", &certificates)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn ca_certificates_accumulate() {
        let tls = TlsOptions::new()
            .trust_ca_pem(PEM)
            .unwrap()
            .trust_ca_pem(PEM)
            .unwrap();
        assert_eq!(
            format!("{tls:?}"),
            "TlsOptions { extra_ca_certificates: 2 }"
        );
        assert_eq!(
            tls.lapin_config()
                .cert_chain
                .unwrap()
                .matches("BEGIN")
                .count(),
            2
        );
        assert!(!TlsOptions::new().has_extra_roots());
    }

    #[test]
    fn bad_ca_input_is_a_named_error() {
        let err = TlsOptions::new().trust_ca_pem("").unwrap_err();
        assert!(
            err.to_string().contains("no `-----BEGIN CERTIFICATE-----`"),
            "{err}"
        );
        let err = TlsOptions::new()
            .trust_ca_file("/nonexistent/ca.pem")
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
