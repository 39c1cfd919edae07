//! The types of the settings' values: where to listen, a schedule, and
//! URLs with their password hidden.

use std::net::SocketAddr;
use std::path::PathBuf;

/// `url` with the password (userinfo after `:`, or a `password=` query
/// parameter) replaced by `<redacted>`, for logs and diagnostics.
pub fn redact_url_password(url: &str) -> String {
    let mut out = url.to_string();
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[authority_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| authority_start + i);
    if let Some(at) = url[authority_start..authority_end].rfind('@') {
        let userinfo = &url[authority_start..authority_start + at];
        if let Some(colon) = userinfo.find(':') {
            out = format!(
                "{}<redacted>{}",
                &url[..authority_start + colon + 1],
                &url[authority_start + at..]
            );
        }
    }
    if let Some(q) = out.find('?') {
        let (base, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=<redacted>"),
                _ => kv.to_string(),
            })
            .collect();
        out = format!("{base}{}", query.join("&"));
    }
    out
}

/// Where the gRPC server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    /// A Unix domain socket: for clients on the same host (a BFF or agents
    /// beside the service); the socket file's permissions say who may
    /// connect.
    Unix(PathBuf),
}

impl std::str::FromStr for ListenAddr {
    type Err = String;

    /// `HOST:PORT`, or `unix:PATH` (also `unix://PATH`, as gRPC clients
    /// write it).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("unix:") {
            Some(path) => {
                let path = path.strip_prefix("//").unwrap_or(path);
                if path.is_empty() {
                    return Err(
                        "`unix:` needs the socket's path, as in unix:/run/affinity.sock".into(),
                    );
                }
                Ok(ListenAddr::Unix(PathBuf::from(path)))
            }
            None => s.parse().map(ListenAddr::Tcp).map_err(|e| {
                format!("{e}: expected HOST:PORT (as in 127.0.0.1:50051) or unix:PATH")
            }),
        }
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A maintenance job's schedule: a cron expression (UTC), or `off`.
#[derive(Debug, Clone)]
pub struct Schedule(Option<croner::Cron>);

impl Schedule {
    pub fn off() -> Self {
        Schedule(None)
    }

    /// The first time the schedule names strictly after `after`; None when
    /// off (or when the expression names no future time).
    pub fn next_after(
        &self,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        self.0.as_ref()?.find_next_occurrence(&after, false).ok()
    }

    pub fn is_off(&self) -> bool {
        self.0.is_none()
    }
}

impl std::str::FromStr for Schedule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("off") {
            return Ok(Schedule(None));
        }
        croner::Cron::from_str(s)
            .map(|c| Schedule(Some(c)))
            .map_err(|e| format!("not a cron expression (or `off`): {e}"))
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(c) => f.write_str(c.as_str()),
            None => f.write_str("off"),
        }
    }
}

/// A number in [0, 1] (a share, a weight).
pub fn unit_interval(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number: {e}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{s} is not in [0, 1]"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacting_a_url_hides_the_password_and_keeps_the_rest() {
        for (url, want) in [
            (
                "postgres://app:s3cr%40t@db.example:5432/affinity?sslmode=require",
                "postgres://app:<redacted>@db.example:5432/affinity?sslmode=require",
            ),
            (
                "postgres://app@db/x?password=hunter2&sslmode=disable",
                "postgres://app@db/x?password=<redacted>&sslmode=disable",
            ),
            ("postgres://app@db/x", "postgres://app@db/x"),
            ("postgres://db/x?host=/tmp", "postgres://db/x?host=/tmp"),
        ] {
            assert_eq!(redact_url_password(url), want);
        }
    }

    #[test]
    fn a_listen_address_is_a_tcp_address_or_a_unix_socket_path() {
        let parse = |s: &str| s.parse::<ListenAddr>();
        assert_eq!(
            parse("127.0.0.1:50051"),
            Ok(ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 50051))))
        );
        assert_eq!(
            parse("unix:/run/affinity.sock"),
            Ok(ListenAddr::Unix("/run/affinity.sock".into()))
        );
        assert_eq!(
            parse("unix:///run/affinity.sock"),
            Ok(ListenAddr::Unix("/run/affinity.sock".into()))
        );
        assert_eq!(
            parse("unix:relative.sock"),
            Ok(ListenAddr::Unix("relative.sock".into()))
        );
        assert!(parse("unix:").unwrap_err().contains("path"));
        assert!(parse("localhost").unwrap_err().contains("unix:PATH"));
        assert_eq!(
            ListenAddr::Unix("/run/a.sock".into()).to_string(),
            "unix:/run/a.sock"
        );
    }
}
