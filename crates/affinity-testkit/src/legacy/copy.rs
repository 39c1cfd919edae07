//! The COPY text format: fields, escapes, and numbers and timestamps
//! printed without allocating.

use uuid::Uuid;

/// One line of COPY text format: tab-separated fields, `\N` for NULL.
pub(super) struct Line<'a> {
    buf: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Line<'a> {
    pub(super) fn new(buf: &'a mut Vec<u8>) -> Self {
        Self { buf, first: true }
    }

    fn sep(&mut self) {
        if !self.first {
            self.buf.push(b'\t');
        }
        self.first = false;
    }

    pub(super) fn null(&mut self) {
        self.sep();
        self.buf.extend_from_slice(b"\\N");
    }

    pub(super) fn text(&mut self, s: &str) {
        self.sep();
        escape_copy(self.buf, s);
    }

    pub(super) fn opt_text(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.text(s),
            None => self.null(),
        }
    }

    pub(super) fn uuid(&mut self, u: Uuid) {
        self.sep();
        let mut tmp = [0u8; uuid::fmt::Hyphenated::LENGTH];
        self.buf
            .extend_from_slice(u.hyphenated().encode_lower(&mut tmp).as_bytes());
    }

    pub(super) fn opt_uuid(&mut self, u: Option<Uuid>) {
        match u {
            Some(u) => self.uuid(u),
            None => self.null(),
        }
    }

    pub(super) fn int(&mut self, n: i64) {
        self.sep();
        push_int(self.buf, n);
    }

    pub(super) fn opt_int(&mut self, n: Option<i32>) {
        match n {
            Some(n) => self.int(n.into()),
            None => self.null(),
        }
    }

    pub(super) fn ts(&mut self, us: i64) {
        self.sep();
        push_ts(self.buf, us);
    }

    pub(super) fn opt_ts(&mut self, us: Option<i64>) {
        match us {
            Some(us) => self.ts(us),
            None => self.null(),
        }
    }

    /// numeric(6,3) from thousandths.
    pub(super) fn numeric3(&mut self, milli: Option<i32>) {
        match milli {
            Some(m) => {
                self.sep();
                push_numeric3(self.buf, m);
            }
            None => self.null(),
        }
    }

    pub(super) fn text_array(&mut self, items: &[String]) {
        self.sep();
        escape_copy(self.buf, &array_literal(items));
    }

    pub(super) fn vector(&mut self, v: &[f32]) {
        self.sep();
        push_vector(self.buf, v);
    }

    pub(super) fn end(self) {
        self.buf.push(b'\n');
    }
}

/// Escapes a value for the COPY text format (the characters that would
/// otherwise end the field, the row, or start an escape).
fn escape_copy(buf: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            _ => buf.push(b),
        }
    }
}

/// A PostgreSQL array literal of text. Every element is quoted, so commas,
/// braces, spaces and the word NULL stay plain text.
fn array_literal(items: &[String]) -> String {
    let mut s = String::with_capacity(2 + items.iter().map(|i| i.len() + 3).sum::<usize>());
    s.push('{');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push('"');
        for c in item.chars() {
            if c == '"' || c == '\\' {
                s.push('\\');
            }
            s.push(c);
        }
        s.push('"');
    }
    s.push('}');
    s
}

fn push_int(buf: &mut Vec<u8>, n: i64) {
    if n < 0 {
        buf.push(b'-');
    }
    push_uint(buf, n.unsigned_abs());
}

fn push_uint(buf: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// `n` zero-padded to `width` digits.
fn push_padded(buf: &mut Vec<u8>, n: u64, width: usize) {
    let mut tmp = [b'0'; 20];
    let mut n = n;
    let mut i = tmp.len();
    while n > 0 {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let start = (tmp.len() - width).min(i);
    buf.extend_from_slice(&tmp[start..]);
}

fn push_numeric3(buf: &mut Vec<u8>, milli: i32) {
    if milli < 0 {
        buf.push(b'-');
    }
    let m = u64::from(milli.unsigned_abs());
    push_uint(buf, m / 1000);
    buf.push(b'.');
    push_padded(buf, m % 1000, 3);
}

/// A pgvector literal, each component rounded to 6 decimals (about 4 to 6
/// significant digits for unit vectors of this size) and printed without
/// trailing zeros.
fn push_vector(buf: &mut Vec<u8>, v: &[f32]) {
    buf.push(b'[');
    for (i, &x) in v.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        let n = (f64::from(x) * 1e6).round() as i64;
        if n < 0 {
            buf.push(b'-');
        }
        let a = n.unsigned_abs();
        push_uint(buf, a / 1_000_000);
        let mut frac = a % 1_000_000;
        if frac != 0 {
            let mut width = 6;
            while frac % 10 == 0 {
                frac /= 10;
                width -= 1;
            }
            buf.push(b'.');
            push_padded(buf, frac, width);
        }
    }
    buf.push(b']');
}

/// A timestamptz literal in UTC with microseconds, independent of the
/// session's TimeZone.
fn push_ts(buf: &mut Vec<u8>, us: i64) {
    let (y, mo, d, h, mi, s, micro) = civil(us);
    push_padded(buf, y as u64, 4);
    buf.push(b'-');
    push_padded(buf, mo.into(), 2);
    buf.push(b'-');
    push_padded(buf, d.into(), 2);
    buf.push(b' ');
    push_padded(buf, h.into(), 2);
    buf.push(b':');
    push_padded(buf, mi.into(), 2);
    buf.push(b':');
    push_padded(buf, s.into(), 2);
    buf.push(b'.');
    push_padded(buf, micro.into(), 6);
    buf.extend_from_slice(b"+00");
}

/// ISO 8601 text for timestamps inside JSON payloads.
pub(super) fn iso(us: i64) -> String {
    let (y, mo, d, h, mi, s, _) = civil(us);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Splits microseconds since the Unix epoch into UTC calendar fields
/// (Howard Hinnant's days-to-civil algorithm).
fn civil(us: i64) -> (i64, u32, u32, u32, u32, u32, u32) {
    let secs = us.div_euclid(1_000_000);
    let micro = us.rem_euclid(1_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, sod / 3600, sod / 60 % 60, sod % 60, micro)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn render(s: &str) -> String {
        let mut b = Vec::new();
        escape_copy(&mut b, s);
        String::from_utf8(b).expect("utf8")
    }

    #[test]
    fn copy_escaping() {
        assert_eq!(render("a\\b\tc\nd\re"), "a\\\\b\\tc\\nd\\re");
        assert_eq!(render("😀 \"q\""), "😀 \"q\"");
    }

    #[test]
    fn array_literals_quote_everything() {
        let items: Vec<String> = ["a,b", "say \"hi\"", "back\\slash", "NULL", "{x}", ""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            array_literal(&items),
            r#"{"a,b","say \"hi\"","back\\slash","NULL","{x}",""}"#
        );
        assert_eq!(array_literal(&[]), "{}");
    }

    #[test]
    fn numbers_and_vectors() {
        let mut b = Vec::new();
        push_numeric3(&mut b, 12_345);
        b.push(b' ');
        push_numeric3(&mut b, 7);
        b.push(b' ');
        push_numeric3(&mut b, -999_999);
        b.push(b' ');
        push_vector(&mut b, &[0.5, -0.0123456, 0.0, 1.0, -0.000_000_4]);
        assert_eq!(
            String::from_utf8(b).expect("utf8"),
            "12.345 0.007 -999.999 [0.5,-0.012346,0,1,0]"
        );
    }

    #[test]
    fn timestamps_match_chrono() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..1000 {
            let us = rng.random_range(-2_000_000_000_000_000i64..4_000_000_000_000_000);
            let mut b = Vec::new();
            push_ts(&mut b, us);
            let expected = chrono::DateTime::from_timestamp_micros(us)
                .expect("in range")
                .format("%Y-%m-%d %H:%M:%S%.6f+00")
                .to_string();
            assert_eq!(String::from_utf8(b).expect("utf8"), expected);
        }
    }
}
