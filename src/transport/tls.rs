//! How the gRPC server speaks: TLS (rustls) when given a certificate and key,
//! with mutual TLS when given a client CA; plaintext only when asked for, or
//! on a loopback address or a Unix socket (reachable from this machine
//! only).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::{Config, ListenAddr};

/// A TLS handshake that takes longer than this is dropped (it would
/// otherwise hold a connection slot forever).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The transport the settings ask for.
pub enum Transport {
    Plaintext,
    Tls {
        config: ServerTlsConfig,
        mutual: bool,
    },
}

impl Transport {
    /// Reads and checks the TLS files, or decides that plaintext is allowed
    /// on `addr` (the address actually listened on). Every refusal says
    /// which setting to change.
    pub fn from_config(config: &Config, addr: &ListenAddr) -> anyhow::Result<Transport> {
        match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                if config.plaintext {
                    bail!(
                        "AFFINITY_PLAINTEXT (--plaintext) and AFFINITY_TLS_CERT (--tls-cert) \
                         contradict each other: set one or the other"
                    );
                }
                let cert_pem = read(cert, "AFFINITY_TLS_CERT (--tls-cert)")?;
                let certs = CertificateDer::pem_slice_iter(&cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        anyhow::anyhow!("AFFINITY_TLS_CERT {}: bad PEM: {e}", cert.display())
                    })?;
                if certs.is_empty() {
                    bail!(
                        "AFFINITY_TLS_CERT {}: no PEM certificate in it",
                        cert.display()
                    );
                }
                let key_pem = read(key, "AFFINITY_TLS_KEY (--tls-key)")?;
                // Never quote the key's contents: only the file's name.
                PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
                    anyhow::anyhow!(
                        "AFFINITY_TLS_KEY {}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in it",
                        key.display()
                    )
                })?;
                let mut tls = ServerTlsConfig::new()
                    .identity(Identity::from_pem(cert_pem, key_pem))
                    .timeout(HANDSHAKE_TIMEOUT);
                let mutual = match &config.tls_client_ca {
                    Some(ca) => {
                        let ca_pem = read(ca, "AFFINITY_TLS_CLIENT_CA (--tls-client-ca)")?;
                        let cas = CertificateDer::pem_slice_iter(&ca_pem)
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(|e| {
                                anyhow::anyhow!(
                                    "AFFINITY_TLS_CLIENT_CA {}: bad PEM: {e}",
                                    ca.display()
                                )
                            })?;
                        if cas.is_empty() {
                            bail!(
                                "AFFINITY_TLS_CLIENT_CA {}: no PEM certificate in it",
                                ca.display()
                            );
                        }
                        tls = tls.client_ca_root(Certificate::from_pem(ca_pem));
                        true
                    }
                    None => false,
                };
                Ok(Transport::Tls {
                    config: tls,
                    mutual,
                })
            }
            (Some(_), None) => bail!(
                "AFFINITY_TLS_CERT (--tls-cert) is set but AFFINITY_TLS_KEY (--tls-key) is not: \
                 TLS needs both"
            ),
            (None, Some(_)) => bail!(
                "AFFINITY_TLS_KEY (--tls-key) is set but AFFINITY_TLS_CERT (--tls-cert) is not: \
                 TLS needs both"
            ),
            (None, None) => {
                if config.tls_client_ca.is_some() {
                    bail!(
                        "AFFINITY_TLS_CLIENT_CA (--tls-client-ca) needs AFFINITY_TLS_CERT and \
                         AFFINITY_TLS_KEY: mutual TLS is TLS"
                    );
                }
                let local_only = match addr {
                    ListenAddr::Tcp(a) => a.ip().is_loopback(),
                    ListenAddr::Unix(_) => true,
                };
                if config.plaintext || local_only {
                    Ok(Transport::Plaintext)
                } else {
                    bail!(
                        "refusing to serve plaintext gRPC on {addr}, a non-loopback address: \
                         set AFFINITY_TLS_CERT and AFFINITY_TLS_KEY (--tls-cert, --tls-key) to \
                         serve TLS, or AFFINITY_PLAINTEXT=true (--plaintext) if a proxy or a \
                         private network protects the traffic"
                    )
                }
            }
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Transport::Plaintext => "plaintext",
            Transport::Tls { mutual: false, .. } => "tls",
            Transport::Tls { mutual: true, .. } => "mutual tls",
        }
    }
}

fn read(path: &Path, setting: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{setting}: cannot read {}", path.display()))
}
