//! Test certificates (rcgen), TLS servers and clients, and the binary run until it exits.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::server::{authed, user_token, SECRET};
use crate::common::TestDb;
use affinity::config::Config;
use affinity::proto;
use affinity_testkit::test_config;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tokio::sync::oneshot;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
use uuid::Uuid;

/// A throwaway certificate authority.
pub(crate) struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate (PEM) and its private key (PEM).
pub(crate) struct Leaf {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

impl Ca {
    pub(crate) fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub(crate) fn server(&self) -> Leaf {
        self.leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate.
    pub(crate) fn client(&self, name: &str) -> Leaf {
        self.leaf(vec![name.into()], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(&self, names: Vec<String>, usage: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

pub(crate) fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// The TLS files of a server: its certificate and key, and optionally a
/// client CA, in a temporary directory.
pub(crate) struct TlsFiles {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

impl TlsFiles {
    pub(crate) fn new(server: &Leaf, client_ca: Option<&Ca>) -> TlsFiles {
        let dir = tempfile::tempdir().unwrap();
        TlsFiles {
            cert: write(dir.path(), "server.pem", &server.cert_pem),
            key: write(dir.path(), "server.key", &server.key_pem),
            client_ca: client_ca.map(|ca| write(dir.path(), "client-ca.pem", &ca.pem())),
            _dir: dir,
        }
    }

    fn apply(&self, config: &mut Config) {
        config.tls_cert = Some(self.cert.clone());
        config.tls_key = Some(self.key.clone());
        config.tls_client_ca = self.client_ca.clone();
    }
}

/// `server::run` with TLS on 127.0.0.1:0 over `db`.
pub(crate) struct TlsServer {
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TlsServer {
    pub(crate) async fn start(db: &TestDb, files: &TlsFiles) -> TlsServer {
        let mut config = test_config(db.url.clone(), SECRET);
        files.apply(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(affinity::server::run(config, listener, async {
            let _ = stopped.await;
        }));
        TlsServer {
            port,
            stop: Some(stop),
            handle,
        }
    }

    /// A TLS channel trusting `ca`, presenting `identity` if given.
    pub(crate) fn tls_channel(&self, ca: &Ca, identity: Option<&Leaf>) -> Channel {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca.pem()))
            .domain_name("localhost");
        if let Some(id) = identity {
            tls = tls.identity(Identity::from_pem(&id.cert_pem, &id.key_pem));
        }
        Endpoint::from_shared(format!("https://127.0.0.1:{}", self.port))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy()
    }

    pub(crate) fn plaintext_channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://127.0.0.1:{}", self.port))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(5))
            .connect_lazy()
    }

    pub(crate) async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.handle.await.unwrap().unwrap();
    }
}

pub(crate) async fn health(channel: Channel) -> Result<ServingStatus, tonic::Status> {
    let r = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    Ok(ServingStatus::try_from(r.into_inner().status).unwrap_or(ServingStatus::Unknown))
}

/// Waits for SERVING over `channel`; panics with the last error after 60 s.
pub(crate) async fn wait_serving(channel: &Channel) {
    let mut last = None;
    for _ in 0..600 {
        match health(channel.clone()).await {
            Ok(ServingStatus::Serving) => return,
            other => last = Some(other),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not SERVING over TLS within 60 s: {last:?}");
}

pub(crate) async fn create_org(channel: Channel) -> Result<proto::Organization, tonic::Status> {
    let user = Uuid::new_v4();
    let slug = format!("tls-{}", &Uuid::new_v4().simple().to_string()[..12]);
    let r = proto::organization_service_client::OrganizationServiceClient::new(channel)
        .create_organization(authed(
            proto::CreateOrganizationRequest {
                name: slug.clone(),
                slug,
                owner_user_id: String::new(),
            },
            &user_token(user),
        ))
        .await?;
    Ok(r.into_inner())
}

/// Runs the binary with `args` and `env`; it must exit by itself within 30 s.
pub(crate) fn binary_exit(
    args: &[&str],
    env: &[(&str, &str)],
) -> (std::process::ExitStatus, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_affinity"));
    cmd.args(args)
        .env_remove("AFFINITY_TLS_CERT")
        .env_remove("AFFINITY_TLS_KEY")
        .env_remove("AFFINITY_TLS_CLIENT_CA")
        .env_remove("AFFINITY_PLAINTEXT")
        .env_remove("AFFINITY_LISTEN_ADDR")
        // Unreachable: nothing here should get as far as connecting.
        .env(
            "DATABASE_URL",
            "postgres://postgres@localhost/none?host=/nonexistent-affinity-dir",
        )
        .env("AFFINITY_JWT_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            return (status, stderr);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("`affinity {args:?}` did not exit by itself");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
