//! The Markdown section: how it was run, each round side by side, and the
//! issue's targets with MET / NOT MET.

use std::fmt::Write as _;

use crate::alone::{items_f64, AloneRound};
use crate::phases::{MemoryPhase, ServiceRound};
use crate::procfs::mb;
use crate::setup::Prepared;

/// Items embedded per second by the service over the model alone's.
pub const RATIO_TARGET: f64 = 0.8;
/// The service's resident memory with the long queue.
pub const MEMORY_TARGET_MB: f64 = 300.0;
/// "Flat": the second half's peak within this share (or 5 MB) of the first's.
const FLAT_TOLERANCE: f64 = 0.05;

pub struct Report {
    pub command: String,
    pub date: String,
    pub git: String,
    pub machine: String,
    pub database: String,
    pub model: String,
    pub prepared: Prepared,
    pub batch: usize,
    pub workers: usize,
    pub rounds: Vec<(AloneRound, ServiceRound, bool)>,
    pub memory: Option<MemoryPhase>,
    pub total_secs: f64,
}

fn met(ok: bool) -> &'static str {
    if ok {
        "**MET**"
    } else {
        "**NOT MET**"
    }
}

fn ms_per(cpu: f64, items: f64) -> f64 {
    1000.0 * cpu / items.max(1.0)
}

/// Overall rates: (alone items/s, service items/s), each over all its rounds.
pub fn overall(rounds: &[(AloneRound, ServiceRound, bool)]) -> (f64, f64) {
    let sum = |f: &dyn Fn(&(AloneRound, ServiceRound, bool)) -> f64| -> f64 {
        rounds.iter().map(f).sum()
    };
    let alone = sum(&|r| items_f64(r.0.items)) / sum(&|r| r.0.secs);
    let service = sum(&|r| r.1.items as f64) / sum(&|r| r.1.secs);
    (alone, service)
}

/// Whether the memory stayed flat: the peak of the window's second half is
/// within 5% (or 5 MB) of the first half's.
pub fn flat(m: &MemoryPhase) -> bool {
    let half = m.secs / 2.0;
    let first = mb(m.rss.max_between(0.0, half));
    let second = mb(m.rss.max_between(half, f64::INFINITY));
    second <= first + (first * FLAT_TOLERANCE).max(5.0)
}

pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let w = &mut s;
    let p = &r.prepared;
    let _ = writeln!(
        w,
        "## Backfill: the vectorizer against the model alone ({})\n",
        r.date
    );
    let _ = writeln!(
        w,
        "Produced by `benches/backfill.rs`. The service's backfill of legacy posts \
         (the release `affinity` binary, a child process) against the embedding server's \
         own throughput on the same texts, batch size and concurrency, measured \
         alternately in one run: on a small shared machine the ratio of one run is what \
         counts.\n"
    );
    let _ = writeln!(w, "- Command: `{}`", r.command);
    let _ = writeln!(w, "- Date: {}; code: {}", r.date, r.git);
    let _ = writeln!(w, "- Machine: {}", r.machine);
    let _ = writeln!(w, "- Database: {} (a private durable cluster)", r.database);
    let _ = writeln!(
        w,
        "- Model: {}; batch **{}**, **{}** requests in flight (the service's vectorizer \
         workers, `AFFINITY_EMBEDDING_BATCH`, `AFFINITY_VECTORIZER_WORKERS`)",
        r.model, r.batch, r.workers
    );
    let _ = writeln!(
        w,
        "- Data: **{}** legacy posts with text, queued by migration 09 (the seeded \
         generator made {} posts for {} users in {:.0} s; migrating took {:.0} s; {} other \
         texts, AI context entries from the chat history and posts beyond the first {}, \
         were left out so both sides embed exactly these posts)",
        p.posts, p.generated_posts, p.users, p.fill_secs, p.migrate_secs, p.removed_texts, p.posts
    );
    let _ = writeln!(w, "- Whole run: {:.1} minutes\n", r.total_secs / 60.0);

    let _ = writeln!(w, "### Method\n");
    let _ = writeln!(
        w,
        "- **Model alone**: every queued text, in the order the service claims them, \
         in batches of {b}, with {c} requests in flight, in the service's request body \
         (`input` array, `input_type: passage`, `encoding_format: base64`), answers \
         parsed. No service, no database work.\n\
         - **Service**: every vector of the model deleted and every text queued again \
         (plus `VACUUM ANALYZE`), untimed; then `affinity serve` is spawned and timed \
         from the spawn (start-up included) until the queue is empty (polled every \
         250 ms); afterwards every text is checked to have a vector of its current \
         version. CPU: utime + stime from /proc of the service, of the embedding \
         server and of all PostgreSQL processes, over the same window.\n\
         - The rounds alternate, alone then service, then service then alone, so that \
         drift in the machine's load falls on both sides.\n",
        b = r.batch,
        c = r.workers
    );

    let _ = writeln!(w, "### Rounds\n");
    let _ = writeln!(
        w,
        "| round | order | model alone items/s | service items/s | service / alone | \
         service start-up s | service CPU ms/item | model CPU ms/item (alone / with service) | \
         PostgreSQL CPU ms/item | service RSS max MB |"
    );
    let _ = writeln!(
        w,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for (i, (a, sv, alone_first)) in r.rounds.iter().enumerate() {
        let items = sv.items as f64;
        let _ =
            writeln!(
            w,
            "| {} | {} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {:.1} / {:.1} | {:.2} | {:.1} |",
            i + 1,
            if *alone_first { "alone, service" } else { "service, alone" },
            a.rate(),
            sv.rate(),
            sv.rate() / a.rate(),
            sv.startup_secs,
            ms_per(sv.service_cpu, items),
            ms_per(a.model_cpu, items_f64(a.items)),
            ms_per(sv.model_cpu, items),
            ms_per(sv.postgres_cpu, items),
            mb(sv.rss.max())
        );
    }
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "Each service round embedded {} items in {} (the service's own counter, \
         `affinity_vectorizer_items_embedded_total`, said {}).\n",
        r.rounds.first().map_or(0, |x| x.1.items),
        r.rounds
            .iter()
            .map(|x| format!("{:.1} s", x.1.secs))
            .collect::<Vec<_>>()
            .join(", "),
        r.rounds
            .iter()
            .map(|x| x.1.counter.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );

    targets(w, r);
    if let Some(m) = &r.memory {
        memory_section(w, m);
    }
    s
}

fn targets(w: &mut String, r: &Report) {
    let (alone, service) = overall(&r.rounds);
    let ratio = service / alone;
    let worst = r
        .rounds
        .iter()
        .map(|x| x.1.rate() / x.0.rate())
        .fold(f64::INFINITY, f64::min);
    let items: f64 = r.rounds.iter().map(|x| x.1.items as f64).sum();
    let cpu: f64 = r.rounds.iter().map(|x| x.1.service_cpu).sum();
    let model_cpu: f64 = r.rounds.iter().map(|x| x.1.model_cpu).sum();
    let _ = writeln!(w, "### Targets\n");
    let _ = writeln!(w, "| target | measured | |");
    let _ = writeln!(w, "| --- | --- | --- |");
    let _ = writeln!(
        w,
        "| items embedded per second, service / model alone ≥ {RATIO_TARGET} | \
         **{ratio:.2}** over all rounds ({service:.1} vs {alone:.1} items/s); worst round {worst:.2} | {} |",
        met(ratio >= RATIO_TARGET)
    );
    let _ = writeln!(
        w,
        "| the service's CPU per embedded item (no target) | **{:.2} ms** per item \
         (the model's: {:.1} ms) | |",
        ms_per(cpu, items),
        ms_per(model_cpu, items)
    );
    if let Some(m) = &r.memory {
        let max = mb(m.rss.max());
        let ok = flat(m) && max < MEMORY_TARGET_MB;
        let _ = writeln!(
            w,
            "| service memory with {} items queued: flat, under {MEMORY_TARGET_MB:.0} MB | \
             {:.1} MB at SERVING, at most **{max:.1} MB**, {:.1} MB after {:.0} s ({}) | {} |",
            m.queued_start,
            mb(m.rss.first()),
            mb(m.rss.last()),
            m.secs,
            if flat(m) { "flat" } else { "growing" },
            met(ok)
        );
    }
    let _ = writeln!(w);
}

fn memory_section(w: &mut String, m: &MemoryPhase) {
    let _ = writeln!(w, "### Memory with a long queue\n");
    let _ = writeln!(
        w,
        "The posts' texts again as {} new items (type `bench_doc`), queued by the \
         table's trigger; the service then ran for {:.0} s from SERVING, embedding as \
         usual, its VmRSS read once a second. Queue: {} items at start, {} at the end \
         ({} embedded meanwhile, {:.2} ms of service CPU each). VmHWM at the end: {:.1} MB. \
         Flat means the second half's peak is within 5% (or 5 MB) of the first half's: \
         {:.1} MB vs {:.1} MB.\n",
        m.queued_start,
        m.secs,
        m.queued_start,
        m.queued_end,
        m.embedded,
        ms_per(m.service_cpu, m.embedded as f64),
        mb(m.hwm),
        mb(m.rss.max_between(m.secs / 2.0, f64::INFINITY)),
        mb(m.rss.max_between(0.0, m.secs / 2.0)),
    );
    let _ = write!(w, "| s |");
    let picks: Vec<&(f64, u64)> = m
        .rss
        .samples
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 10 == 0 || *i + 1 == m.rss.samples.len())
        .map(|(_, s)| s)
        .collect();
    for s in &picks {
        let _ = write!(w, " {:.0} |", s.0);
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "|{}", " --- |".repeat(picks.len() + 1));
    let _ = write!(w, "| RSS MB |");
    for s in &picks {
        let _ = write!(w, " {:.1} |", mb(s.1));
    }
    let _ = writeln!(w, "\n");
}
