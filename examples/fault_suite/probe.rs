//! What the suite observes of its own process: CPU time spent (a hot loop shows there), and
//! its TCP connections to the broker (a connection the broker killed is replaced by a new one
//! on a new local port).

use std::collections::BTreeSet;
use std::time::Duration;

/// CPU time (user + system) this process has used.
pub fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Fields here start at the 3rd (state), so utime (14th) is index 11.
    let total = ticks(11) + ticks(12);
    // Linux reports in USER_HZ, 100 on every mainstream configuration.
    Duration::from_millis(total * 10)
}

/// The local ports of this process's TCP connections to `broker_port`.
pub fn broker_connections(broker_port: u16) -> BTreeSet<u16> {
    let inodes = socket_inodes();
    let mut ports = BTreeSet::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(state), Some(inode)) =
                (cols.get(1), cols.get(2), cols.get(3), cols.get(9))
            else {
                continue;
            };
            // 01 = ESTABLISHED.
            if *state != "01" || !inodes.contains(*inode) || port(remote) != Some(broker_port) {
                continue;
            }
            if let Some(p) = port(local) {
                ports.insert(p);
            }
        }
    }
    ports
}

fn port(address: &str) -> Option<u16> {
    let (_, hex) = address.rsplit_once(':')?;
    u16::from_str_radix(hex, 16).ok()
}

fn socket_inodes() -> BTreeSet<String> {
    let mut inodes = BTreeSet::new();
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return inodes;
    };
    for fd in fds.flatten() {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let target = target.to_string_lossy();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
            {
                inodes.insert(inode.to_owned());
            }
        }
    }
    inodes
}

/// The TCP port of an AMQP URL (5672 by default).
pub fn broker_port(url: &str) -> u16 {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    host_port
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(5672)
}
