//! The benchmark's texts: the Lee corpus with its human ratings, and the
//! project's own exact-term set (posts carrying a name, handle, hashtag or
//! code among decoys on the same topic), generated from a seed.

#[path = "corpus_words.rs"]
mod words;

use std::path::Path;

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng as StdRng;

use words::{FIRST, LAST, PLACES, SYLLABLES, TEMPLATES, TOPICS};

/// The Lee corpus: 50 documents and the mean human rating of each pair.
pub struct Lee {
    pub docs: Vec<String>,
    /// ratings[i][j] for i != j, symmetric, in [0, 1].
    pub ratings: Vec<Vec<f64>>,
}

impl Lee {
    /// Reads `lee.cor` (latin-1, one document a line) and
    /// `similarities0-1.txt` (50 x 50, upper triangle) from `dir`
    /// (scripts/install-deps.sh puts them in .deps/lee).
    pub fn load(dir: &Path) -> Result<Lee> {
        let raw = std::fs::read(dir.join("lee.cor"))
            .with_context(|| format!("{}/lee.cor: run scripts/install-deps.sh", dir.display()))?;
        // Latin-1: every byte is the code point of the same value.
        let text: String = raw.iter().map(|&b| char::from(b)).collect();
        let docs: Vec<String> = text
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        let matrix = std::fs::read_to_string(dir.join("similarities0-1.txt"))?;
        let rows: Vec<Vec<f64>> = matrix
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.split_whitespace().map(str::parse).collect())
            .collect::<Result<_, _>>()
            .context("similarities0-1.txt: not a matrix of numbers")?;
        let n = docs.len();
        if n != 50 || rows.len() != n || rows.iter().any(|r| r.len() != n) {
            bail!(
                "the Lee corpus should be 50 documents and a 50 x 50 matrix; got {n} and {}",
                rows.len()
            );
        }
        let mut ratings = vec![vec![0.0; n]; n];
        for i in 0..n {
            for j in 0..n {
                ratings[i][j] = if i < j { rows[i][j] } else { rows[j][i] };
            }
        }
        Ok(Lee { docs, ratings })
    }
}

/// What kind of exact term a carrier post holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Handle,
    Hashtag,
    Code,
    Name,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Handle, Kind::Hashtag, Kind::Code, Kind::Name];

    pub fn label(self) -> &'static str {
        match self {
            Kind::Handle => "handle",
            Kind::Hashtag => "hashtag",
            Kind::Code => "code",
            Kind::Name => "name",
        }
    }
}

/// A post of the exact-term set: caption and hashtags as the application
/// writes them.
pub struct Post {
    pub caption: String,
    pub hashtags: Vec<String>,
}

/// One query and the index (in `posts`) of the one post it should find.
pub struct Query {
    pub text: String,
    pub kind: Kind,
    pub relevant: usize,
}

pub struct Terms {
    pub posts: Vec<Post>,
    pub queries: Vec<Query>,
}

/// A new term of `kind`, never one of `used`.
fn term(rng: &mut StdRng, kind: Kind, used: &mut std::collections::HashSet<String>) -> String {
    for _ in 0..100_000 {
        let pick =
            |rng: &mut StdRng, list: &[&str]| list[rng.random_range(0..list.len())].to_string();
        let t = match kind {
            Kind::Handle => format!(
                "@{}{}_{}",
                pick(rng, &SYLLABLES),
                pick(rng, &SYLLABLES),
                pick(rng, &PLACES)
            ),
            Kind::Hashtag => format!(
                "#{}{}{}",
                pick(rng, &SYLLABLES),
                pick(rng, &SYLLABLES),
                rng.random_range(2..99)
            ),
            Kind::Code => match rng.random_range(0..3) {
                0 => format!("SKU-{}", rng.random_range(1000..9999)),
                1 => format!(
                    "v{}.{}.{}",
                    rng.random_range(1..9),
                    rng.random_range(0..20),
                    rng.random_range(0..20)
                ),
                _ => format!(
                    "RX{}-{}",
                    rng.random_range(10..99),
                    rng.random_range(100..999)
                ),
            },
            Kind::Name => format!("{} {}", pick(rng, &FIRST), pick(rng, &LAST)),
        };
        if used.insert(t.to_lowercase()) {
            return t;
        }
    }
    panic!(
        "fewer distinct {} terms than asked for: lower --carriers or --decoys",
        kind.label()
    )
}

/// A post on `topic`, with `term` woven in when given.
fn post(rng: &mut StdRng, topic: usize, term: Option<(Kind, &str)>) -> Post {
    let (name, words) = TOPICS[topic];
    let mut w: Vec<&str> = words.to_vec();
    w.shuffle(rng);
    let fill = |t: &str| {
        t.replace("{0}", w[0])
            .replace("{1}", w[1])
            .replace("{2}", w[2])
    };
    let mut caption = fill(TEMPLATES[rng.random_range(0..TEMPLATES.len())]);
    caption.push(' ');
    caption.push_str(&fill(TEMPLATES[rng.random_range(0..TEMPLATES.len())]));
    let mut hashtags = vec![name.to_string()];
    match term {
        Some((Kind::Handle, t)) => caption.push_str(&format!(" Shot with {t}.")),
        Some((Kind::Code, t)) => caption.push_str(&format!(" Model {t} in the bio.")),
        Some((Kind::Name, t)) => caption.push_str(&format!(" Thanks to {t} for the tips.")),
        Some((Kind::Hashtag, t)) => hashtags.push(t.trim_start_matches('#').to_string()),
        None => {}
    }
    Post { caption, hashtags }
}

/// How a person types the term of a carrier post (`style` 0-2): as
/// written, without its sigil (or in lower case), or with a topic word the
/// post has.
fn typed(kind: Kind, term: &str, style: usize, caption: &str, topic: usize) -> String {
    match style {
        0 => term.to_string(),
        1 => match kind {
            Kind::Handle | Kind::Hashtag => term[1..].to_string(),
            Kind::Code | Kind::Name => term.to_lowercase(),
        },
        _ => {
            let word = TOPICS[topic]
                .1
                .iter()
                .find(|w| caption.contains(*w))
                .copied()
                .unwrap_or(TOPICS[topic].0);
            format!("{term} {word}")
        }
    }
}

/// `carriers` posts each carrying a term of its own (the kinds in turn),
/// `decoys` posts per carrier on its topic with another term of the same
/// kind, and plain posts on every topic up to `total`; one query per
/// carrier. Posts are shuffled.
pub fn terms(seed: u64, carriers: usize, decoys: usize, total: usize) -> Terms {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut used = std::collections::HashSet::new();
    let mut posts = Vec::with_capacity(total);
    let mut queries = Vec::with_capacity(carriers);
    for c in 0..carriers {
        let kind = Kind::ALL[c % Kind::ALL.len()];
        let topic = rng.random_range(0..TOPICS.len());
        let t = term(&mut rng, kind, &mut used);
        let p = post(&mut rng, topic, Some((kind, &t)));
        let text = typed(kind, &t, (c / Kind::ALL.len()) % 3, &p.caption, topic);
        queries.push(Query {
            text,
            kind,
            relevant: posts.len(),
        });
        posts.push(p);
        for _ in 0..decoys {
            let other = term(&mut rng, kind, &mut used);
            posts.push(post(&mut rng, topic, Some((kind, &other))));
        }
    }
    while posts.len() < total {
        let topic = rng.random_range(0..TOPICS.len());
        posts.push(post(&mut rng, topic, None));
    }
    // Shuffle, keeping each query pointed at its post.
    let mut order: Vec<usize> = (0..posts.len()).collect();
    order.shuffle(&mut rng);
    let mut at = vec![0; posts.len()];
    for (new, &old) in order.iter().enumerate() {
        at[old] = new;
    }
    let mut slots: Vec<Option<Post>> = posts.into_iter().map(Some).collect();
    let posts = order
        .iter()
        .map(|&old| slots[old].take().expect("each post once"))
        .collect();
    for q in &mut queries {
        q.relevant = at[q.relevant];
    }
    Terms { posts, queries }
}

/// Texts for the speed part's many items: plain posts on every topic.
pub fn plain_captions(seed: u64, n: usize) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let topic = rng.random_range(0..TOPICS.len());
            post(&mut rng, topic, None).caption
        })
        .collect()
}
