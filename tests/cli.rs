//! The `affinity` command line.
use std::process::Command;

fn affinity(args: &[&str]) -> std::process::Output {
    affinity_with(args, &[])
}

/// The binary with `args`, and of the environment's settings only `env`.
fn affinity_with(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_affinity"))
        .args(args)
        .env_remove("AFFINITY_JWT_SECRET")
        .env_remove("DATABASE_URL")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn serve_help_explains_every_setting_with_its_environment_name() {
    let out = affinity(&["serve", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for name in [
        "DATABASE_URL",
        "AFFINITY_DIRECT_DATABASE_URL",
        "AFFINITY_DATA_DIR",
        "AFFINITY_LISTEN_ADDR",
        "AFFINITY_JWT_SECRET",
        "AFFINITY_LOG_FORMAT",
        "AFFINITY_MAX_MESSAGE_BYTES",
        "AFFINITY_MAX_BATCH",
        "AFFINITY_MAX_METADATA_BYTES",
        "AFFINITY_METRICS_RETENTION_DAYS",
        "AFFINITY_DB_MAX_CONNECTIONS",
        "AFFINITY_SHUTDOWN_GRACE_SECS",
        "AFFINITY_TLS_CERT",
        "AFFINITY_TLS_KEY",
        "AFFINITY_TLS_CLIENT_CA",
        "AFFINITY_PLAINTEXT",
    ] {
        assert!(help.contains(name), "{name} missing from:\n{help}");
    }
    assert!(help.contains("127.0.0.1:50051"));
}

#[test]
fn token_mints_a_verifiable_token_for_each_role() {
    let secret = "a-secret-for-the-cli-test-0123456789";
    let user = uuid::Uuid::new_v4();
    let verifier = affinity::auth::Authenticator::new(secret.as_bytes());
    for (role, service) in [("authenticated", false), ("service_role", true)] {
        let out = affinity(&[
            "token",
            "--user",
            &user.to_string(),
            "--role",
            role,
            "--jwt-secret",
            secret,
            "--ttl",
            "60",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout).unwrap();
        let p = verifier.verify(token.trim()).unwrap();
        assert_eq!((p.subject(), p.is_service()), (user, service));
    }
    // Without a secret anywhere it says what to do and fails.
    let dir = tempfile::tempdir().unwrap();
    let out = affinity(&[
        "token",
        "--user",
        &user.to_string(),
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("AFFINITY_JWT_SECRET"));
}

#[test]
fn token_finds_its_secret_where_serve_does() {
    let dir = tempfile::tempdir().unwrap();
    let generated = "a-secret-the-embedded-service-generated-0123";
    std::fs::write(dir.path().join("jwt_secret"), generated).unwrap();
    let user = uuid::Uuid::new_v4().to_string();
    let args = [
        "token",
        "--user",
        &user,
        "--data-dir",
        dir.path().to_str().unwrap(),
    ];

    // Embedded mode: the secret `serve` generated in the data directory.
    let out = affinity_with(&args, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let verifier = affinity::auth::Authenticator::new(generated.as_bytes());
    assert_eq!(
        verifier.verify(token.trim()).unwrap().subject().to_string(),
        user
    );

    // With a DATABASE_URL `serve` needs AFFINITY_JWT_SECRET and never reads
    // that file: neither does `token`.
    let out = affinity_with(&args, &[("DATABASE_URL", "postgres://db.invalid/x")]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("AFFINITY_JWT_SECRET") && said.contains("DATABASE_URL"),
        "{said}"
    );
}

#[test]
fn help_lists_verify_finalize_and_the_rollback_flag() {
    let out = affinity(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for command in ["serve", "migrate", "verify", "finalize", "token"] {
        assert!(help.contains(command), "{command} missing from:\n{help}");
    }
    let out = affinity(&["migrate", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("--rollback"), "{help}");
    assert!(help.contains("DATABASE_URL"), "{help}");
}
