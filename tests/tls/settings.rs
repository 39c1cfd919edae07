//! Bad TLS settings stop the binary with a message naming the setting, never quoting the key.
use crate::support::{binary_exit, write, Ca};

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
