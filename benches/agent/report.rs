//! The AI context benchmark's Markdown section, judged against the issue's
//! targets.

use std::fmt::Write as _;

use crate::phases::{pct, Export, Feedback, Pages};
use crate::procfs::mb;
use crate::provenance;
use crate::Args;

pub struct Report<'a> {
    pub args: &'a Args,
    pub database: &'a str,
    pub load_secs: f64,
    pub pages: &'a Pages,
    /// The service's VmRSS after the pages, before any export.
    pub idle_rss: u64,
    /// (service export, COPY, whether the service went first).
    pub exports: &'a [(Export, Export, bool)],
    pub slow: &'a Export,
    pub feedback: &'a Feedback,
    /// Records/s of the same INSERT from as many connections, no service.
    pub feedback_sql: f64,
    pub minutes: f64,
}

const RSS_TARGET_MB: f64 = 300.0;
const RATIO_TARGET: f64 = 0.5;
const FEEDBACK_TARGET: f64 = 10_000.0;

fn met(ok: bool) -> &'static str {
    if ok {
        "**met**"
    } else {
        "**missed**"
    }
}

pub fn render(r: &Report) -> String {
    let a = r.args;
    let mut s = String::new();
    let w = &mut s;
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let _ = writeln!(
        w,
        "## AI context: session pages, export, feedback ({date})\n"
    );
    let _ = writeln!(
        w,
        "Produced by `benches/agent.rs` (its header says how each part is measured): \
         the release `affinity serve` as a child process, a private durable PostgreSQL, \
         one organization of **{}** entries (100 users; loaded by SQL in {:.0} s), \
         a session of **{}** turns spread over the whole table's time.\n",
        a.entries, r.load_secs, a.turns
    );
    let _ = writeln!(w, "- Command: `{}`", provenance::command_line("agent"));
    let _ = writeln!(w, "- Date: {date}; code: {}", provenance::git_version());
    let _ = writeln!(
        w,
        "- Machine: {}",
        provenance::machine("the benchmark, the service and PostgreSQL share it")
    );
    let _ = writeln!(w, "- Database: {}", r.database);
    let _ = writeln!(w, "- Whole run: {:.1} minutes\n", r.minutes);

    let p = r.pages;
    let _ = writeln!(w, "### Session pages\n");
    let _ = writeln!(
        w,
        "ListAiContext by session, {} a page ({} pages a walk), {} walks after a warm-up \
         one, every walk checked to see every turn in order: p50 **{:.2} ms**, p95 \
         **{:.2} ms**, max {:.2} ms per page ({} pages).\n",
        a.page_size,
        p.per_round,
        a.page_rounds.max(2) - 1,
        pct(&p.ms, 0.5),
        pct(&p.ms, 0.95),
        pct(&p.ms, 1.0),
        p.ms.len()
    );

    let _ = writeln!(w, "### Export against COPY\n");
    let _ = writeln!(
        w,
        "The service's export read as fast as the client can (tonic), against `COPY \
         (the export's columns, filter and order) TO STDOUT` through one sqlx connection \
         of the same database, rows counted; the export also reads each batch's \
         feedback (none here). The service's VmRSS every 50 ms; idle before the exports: \
         {:.0} MB.\n",
        mb(r.idle_rss)
    );
    let _ = writeln!(
        w,
        "| round | first | export entries | export entries/s | COPY rows | COPY rows/s | ratio | service peak RSS | export CPU s (service / client / PostgreSQL) | COPY CPU s (client / PostgreSQL) |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|");
    let (mut e_all, mut e_secs, mut c_all, mut c_secs, mut peak) = (0, 0.0, 0, 0.0, 0);
    for (i, (e, c, service_first)) in r.exports.iter().enumerate() {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {:.0} | {} | {:.0} | {:.2} | {:.0} MB | {:.1} / {:.1} / {:.1} | {:.1} / {:.1} |",
            i + 1,
            if *service_first { "export" } else { "COPY" },
            e.entries,
            e.rate(),
            c.entries,
            c.rate(),
            e.rate() / c.rate(),
            mb(e.rss.max()),
            e.cpu.0,
            e.cpu.1,
            e.cpu.2,
            c.cpu.1,
            c.cpu.2
        );
        (e_all, e_secs) = (e_all + e.entries, e_secs + e.secs);
        (c_all, c_secs) = (c_all + c.entries, c_secs + c.secs);
        peak = peak.max(e.rss.max());
    }
    let ratio = (e_all as f64 / e_secs) / (c_all as f64 / c_secs);
    let complete = r
        .exports
        .iter()
        .all(|(e, c, _)| e.entries == a.entries && c.entries == a.entries);
    let sl = r.slow;
    let slow_ok = sl.rss.max() <= peak.max(r.idle_rss) + (peak / 20).max(5 << 20);
    let _ = writeln!(
        w,
        "\n- Every export and COPY had all {} entries: **{}**",
        a.entries,
        if complete { "yes" } else { "no" }
    );
    let _ = writeln!(
        w,
        "- Overall ratio (all entries over all seconds, per side): **{ratio:.2}** \
         (target ≥ {RATIO_TARGET}): {}",
        met(ratio >= RATIO_TARGET && complete)
    );
    let _ = writeln!(
        w,
        "- The service's peak RSS during the fast exports: **{:.0} MB** (target < \
         {RSS_TARGET_MB:.0} MB): {}",
        mb(peak),
        met(mb(peak) < RSS_TARGET_MB)
    );
    let _ = writeln!(
        w,
        "- A slow client ({} entries/s, {} entries in {:.0} s, then cancelled): peak \
         **{:.0} MB**, first {:.0} MB, last {:.0} MB; not above the fast exports' peak \
         (within 5% or 5 MB): {}\n",
        a.slow_rate,
        sl.entries,
        sl.secs,
        mb(sl.rss.max()),
        mb(sl.rss.first()),
        mb(sl.rss.last()),
        met(slow_ok)
    );

    let f = r.feedback;
    let rate = f.stored as f64 / f.secs;
    let per_k = |cpu: f64| cpu / (f.stored.max(1) as f64 / 1_000.0);
    let _ = writeln!(w, "### Feedback\n");
    let _ = writeln!(
        w,
        "RecordAiFeedback, {} callers for {:.0} s, each a new feedback_id on one of the \
         session's turns (service_role token): **{:.0} records/s** (target {:.0}): {}; \
         {} stored, {} failed{}; p50 {:.2} ms, p95 {:.2} ms per call. CPU per 1,000 \
         records: service {:.2} s, PostgreSQL (all its processes) {:.2} s; over the \
         phase the two used {:.0}% of the machine's {} cores.\n",
        a.concurrency,
        f.secs,
        rate,
        FEEDBACK_TARGET,
        met(rate >= FEEDBACK_TARGET && f.failed == 0),
        f.stored,
        f.failed,
        f.first_error
            .as_deref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
        pct(&f.ms, 0.5),
        pct(&f.ms, 0.95),
        per_k(f.service_cpu),
        per_k(f.postgres_cpu),
        100.0 * (f.service_cpu + f.postgres_cpu) / f.secs / crate::procfs::host().0 as f64,
        crate::procfs::host().0
    );
    let _ = writeln!(
        w,
        "The same INSERT (the store's `record`) from {} connections without the \
         service, right after: **{:.0} records/s**; the service reached {:.0}% of it.\n",
        a.concurrency,
        r.feedback_sql,
        100.0 * rate / r.feedback_sql
    );
    s
}
