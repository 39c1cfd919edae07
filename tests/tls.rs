//! Transport: TLS with a certificate and key, mutual TLS with a client CA,
//! plaintext only on loopback or when asked for, and clear refusals of bad
//! TLS settings. Certificates are made per test (rcgen).
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use affinity::config::Config;
use affinity::proto;
use affinity_testkit::test_config;
use common::server::{authed, user_token, SECRET};
use common::TestDb;
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
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate (PEM) and its private key (PEM).
struct Leaf {
    cert_pem: String,
    key_pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
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
    fn server(&self) -> Leaf {
        self.leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate.
    fn client(&self, name: &str) -> Leaf {
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

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// The TLS files of a server: its certificate and key, and optionally a
/// client CA, in a temporary directory.
struct TlsFiles {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

impl TlsFiles {
    fn new(server: &Leaf, client_ca: Option<&Ca>) -> TlsFiles {
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
struct TlsServer {
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TlsServer {
    async fn start(db: &TestDb, files: &TlsFiles) -> TlsServer {
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
    fn tls_channel(&self, ca: &Ca, identity: Option<&Leaf>) -> Channel {
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

    fn plaintext_channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://127.0.0.1:{}", self.port))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(5))
            .connect_lazy()
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.handle.await.unwrap().unwrap();
    }
}

async fn health(channel: Channel) -> Result<ServingStatus, tonic::Status> {
    let r = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    Ok(ServingStatus::try_from(r.into_inner().status).unwrap_or(ServingStatus::Unknown))
}

/// Waits for SERVING over `channel`; panics with the last error after 60 s.
async fn wait_serving(channel: &Channel) {
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

async fn create_org(channel: Channel) -> Result<proto::Organization, tonic::Status> {
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

#[tokio::test(flavor = "multi_thread")]
async fn with_a_certificate_and_key_rpcs_and_health_answer_over_tls_and_plaintext_is_refused() {
    let db = TestDb::empty().await;
    let ca = Ca::new("affinity test CA");
    let files = TlsFiles::new(&ca.server(), None);
    let server = TlsServer::start(&db, &files).await;

    let tls = server.tls_channel(&ca, None);
    wait_serving(&tls).await;
    let org = create_org(tls.clone()).await.expect("an RPC over TLS");
    assert!(!org.id.is_empty());

    // A plaintext client gets nowhere on the TLS port.
    assert!(health(server.plaintext_channel()).await.is_err());
    assert!(create_org(server.plaintext_channel()).await.is_err());
    // Nor does a TLS client that does not trust the server's CA.
    let stranger = Ca::new("some other CA");
    assert!(health(server.tls_channel(&stranger, None)).await.is_err());

    // The TLS client still works after the refused ones.
    assert_eq!(health(tls).await.unwrap(), ServingStatus::Serving);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_client_ca_only_clients_with_a_certificate_signed_by_it_get_in() {
    let db = TestDb::empty().await;
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let files = TlsFiles::new(&server_ca.server(), Some(&client_ca));
    let server = TlsServer::start(&db, &files).await;

    let good = client_ca.client("bff");
    let with_cert = server.tls_channel(&server_ca, Some(&good));
    wait_serving(&with_cert).await;
    create_org(with_cert)
        .await
        .expect("an RPC with a client certificate signed by the client CA");

    // No client certificate: refused, for health as for every RPC.
    let without = server.tls_channel(&server_ca, None);
    assert!(health(without.clone()).await.is_err());
    assert!(create_org(without).await.is_err());
    // A certificate from another CA (here, the server's): refused.
    let foreign = server_ca.client("intruder");
    let with_foreign = server.tls_channel(&server_ca, Some(&foreign));
    assert!(health(with_foreign).await.is_err());

    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_on_a_non_loopback_address_needs_to_be_asked_for() {
    // Through the library: refused with the documented message...
    let config = test_config("postgres://localhost/unused".into(), SECRET);
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = affinity::server::run(config, listener, std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    for setting in ["non-loopback", "AFFINITY_TLS_CERT", "AFFINITY_PLAINTEXT"] {
        assert!(err.contains(setting), "{setting} missing from: {err}");
    }

    // ...and served when plaintext is asked for (health answers while the
    // unreachable database keeps it NOT_SERVING).
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "postgres://postgres@localhost/affinity?host={}&port=5432",
        dir.path().join("nowhere").display()
    );
    let mut config = test_config(url, SECRET);
    config.plaintext = true;
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(affinity::server::run(config, listener, async {
        let _ = stopped.await;
    }));
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_lazy();
    let status = common::server::await_health(channel, 100, |_| true).await;
    assert_eq!(status, Some(ServingStatus::NotServing));
    common::server::stop_server(stop, handle).await;
}

/// Runs the binary with `args` and `env`; it must exit by itself within 30 s.
fn binary_exit(args: &[&str], env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
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

#[test]
fn the_binary_refuses_plaintext_on_a_non_loopback_address_unless_asked_for() {
    let (status, stderr) = binary_exit(&["serve", "--listen-addr", "0.0.0.0:0"], &[]);
    assert!(!status.success());
    assert!(
        stderr.contains("refusing to serve plaintext gRPC")
            && stderr.contains("AFFINITY_PLAINTEXT=true"),
        "{stderr}"
    );
}

#[test]
fn bad_tls_settings_stop_the_binary_with_a_message_naming_the_setting() {
    let ca = Ca::new("CA");
    let server = ca.server();
    let dir = tempfile::tempdir().unwrap();
    let cert = write(dir.path(), "server.pem", &server.cert_pem);
    let key = write(dir.path(), "server.key", &server.key_pem);
    let garbage = write(dir.path(), "garbage.pem", "not a PEM file\n");
    let missing = dir.path().join("missing.pem");
    let [cert, key, garbage, missing] =
        [&cert, &key, &garbage, &missing].map(|p| p.to_str().unwrap().to_string());

    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "certificate without key",
            vec!["--tls-cert", &cert],
            "AFFINITY_TLS_KEY",
        ),
        (
            "key without certificate",
            vec!["--tls-key", &key],
            "AFFINITY_TLS_CERT",
        ),
        (
            "unreadable certificate",
            vec!["--tls-cert", &missing, "--tls-key", &key],
            "AFFINITY_TLS_CERT",
        ),
        (
            "certificate file without a certificate",
            vec!["--tls-cert", &garbage, "--tls-key", &key],
            "AFFINITY_TLS_CERT",
        ),
        (
            "key file without a key",
            vec!["--tls-cert", &cert, "--tls-key", &garbage],
            "AFFINITY_TLS_KEY",
        ),
        (
            "client CA file without a certificate",
            vec![
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
                "--tls-client-ca",
                &garbage,
            ],
            "AFFINITY_TLS_CLIENT_CA",
        ),
        (
            "client CA without TLS",
            vec!["--tls-client-ca", &cert],
            "AFFINITY_TLS_CLIENT_CA",
        ),
        (
            "TLS and plaintext both",
            vec!["--tls-cert", &cert, "--tls-key", &key, "--plaintext"],
            "AFFINITY_PLAINTEXT",
        ),
    ];
    for (case, flags, setting) in cases {
        let mut args = vec!["serve", "--listen-addr", "127.0.0.1:0"];
        args.extend(flags);
        let (status, stderr) = binary_exit(&args, &[]);
        assert!(!status.success(), "{case}: exited successfully");
        assert!(
            stderr.contains(setting),
            "{case}: {setting} not in {stderr}"
        );
    }
    // The key's contents are never quoted, even when it is the wrong file.
    let (_, stderr) = binary_exit(
        &[
            "serve",
            "--listen-addr",
            "127.0.0.1:0",
            "--tls-cert",
            &key,
            "--tls-key",
            &key,
        ],
        &[],
    );
    assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");
    // The environment names work as well as the flags.
    let (status, stderr) = binary_exit(
        &["serve", "--listen-addr", "127.0.0.1:0"],
        &[("AFFINITY_TLS_CERT", cert.as_str())],
    );
    assert!(!status.success());
    assert!(stderr.contains("AFFINITY_TLS_KEY"), "{stderr}");
}
