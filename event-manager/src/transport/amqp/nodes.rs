//! The broker nodes a connection may use: the URLs of a cluster, and the order in which a
//! connection and each reconnect try them.
//!
//! Every connection is opened through a connect function of ours, so a reconnect is not
//! bound to the node that was lost: it starts with the node after the one the connection was
//! on and tries each in turn, the lost node last. lapin's own recovery is not used: the
//! transport's link opens the new connection, and its consumers and publisher take it up.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lapin::uri::AMQPUri;

use crate::error::ConnectError;
use crate::transport::urls;

/// How long one node may take to accept the TCP (and TLS) connection.
pub(super) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// No node connected yet: the first attempt starts at the first URL.
const NONE: usize = usize::MAX;

/// The nodes, in the order they are tried, and the one the connection is on.
#[derive(Debug)]
pub(super) struct Nodes {
    uris: Vec<AMQPUri>,
    /// The same URLs without passwords, for logs and errors.
    shown: Vec<String>,
    current: AtomicUsize,
}

impl Nodes {
    /// Parses `list` (one URL or several, comma-separated), shuffled when `shuffle` is set.
    /// The URLs of a list must share user, password, virtual host and connection settings:
    /// a connection authenticates with those of the first, whatever node it reaches.
    pub(super) fn parse(list: &str, shuffle: bool) -> Result<Arc<Self>, ConnectError> {
        let mut entries = Vec::new();
        for url in urls::split(list) {
            let uri: AMQPUri = url.parse().map_err(|e| ConnectError::Config {
                reason: format!("broker URL {} does not parse: {e}", urls::redact(url)),
            })?;
            entries.push((uri, urls::redact(url)));
        }
        let Some((first, first_shown)) = entries.first() else {
            return Err(ConnectError::Config {
                reason: "no broker URL given".to_owned(),
            });
        };
        for (uri, shown) in &entries[1..] {
            let same = uri.authority.userinfo == first.authority.userinfo
                && uri.vhost == first.vhost
                && uri.query == first.query;
            if !same {
                return Err(ConnectError::Config {
                    reason: format!(
                        "the URLs of a list must share user, password, virtual host and query \
                         settings, but {shown} differs from {first_shown}"
                    ),
                });
            }
        }
        if shuffle {
            fastrand::shuffle(&mut entries);
        }
        let (uris, shown) = entries.into_iter().unzip();
        Ok(Arc::new(Self {
            uris,
            shown,
            current: AtomicUsize::new(NONE),
        }))
    }

    /// The URL the connection authenticates with (user, password, vhost, settings).
    /// How many nodes there are.
    pub(super) fn len(&self) -> usize {
        self.uris.len()
    }

    pub(super) fn first(&self) -> AMQPUri {
        self.uris[0].clone()
    }

    /// Whether one of the URLs is `amqps://`.
    pub(super) fn any_secure(&self) -> bool {
        self.uris
            .iter()
            .any(|uri| uri.scheme == lapin::uri::AMQPScheme::AMQPS)
    }

    /// Whether one of the URLs is plain `amqp://`.
    pub(super) fn any_plain(&self) -> bool {
        self.uris
            .iter()
            .any(|uri| uri.scheme == lapin::uri::AMQPScheme::AMQP)
    }

    /// Every URL, without passwords, in the order tried.
    pub(super) fn shown(&self) -> String {
        self.shown.join(",")
    }

    /// The node the connection is on, or was on last, without password.
    pub(super) fn current(&self) -> Option<&str> {
        self.shown
            .get(self.current.load(Ordering::Relaxed))
            .map(String::as_str)
    }

    /// Runs `attempt` (opening a TCP and TLS stream) on the first node that accepts: from
    /// the first URL for a new connection (`fresh`), else from the node after the current
    /// one, the current one last. Each attempt has [`ATTEMPT_TIMEOUT`]. The error names
    /// every node tried.
    pub(super) async fn connect<S, F, Fut>(&self, fresh: bool, mut attempt: F) -> std::io::Result<S>
    where
        F: FnMut(AMQPUri) -> Fut,
        Fut: Future<Output = std::io::Result<S>>,
    {
        let count = self.uris.len();
        let start = match self.current.load(Ordering::Relaxed) {
            _ if fresh => 0,
            NONE => 0,
            current => current + 1,
        };
        let mut failures = Vec::with_capacity(count);
        for step in 0..count {
            let index = (start + step) % count;
            let tried = attempt(self.uris[index].clone());
            let failure = match tokio::time::timeout(ATTEMPT_TIMEOUT, tried).await {
                Ok(Ok(stream)) => {
                    let previous = self.current.swap(index, Ordering::Relaxed);
                    if previous != index && previous != NONE {
                        tracing::warn!(node = %self.shown[index], "connected to another node");
                    } else {
                        tracing::debug!(node = %self.shown[index], "connected");
                    }
                    return Ok(stream);
                }
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!("no answer within {ATTEMPT_TIMEOUT:?}"),
            };
            tracing::debug!(node = %self.shown[index], %failure, "node unreachable");
            failures.push(format!("{}: {failure}", self.shown[index]));
        }
        Err(std::io::Error::other(failures.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_shares_its_credentials() {
        let nodes = Nodes::parse(
            "amqp://guest:pw@127.0.0.1:5691/%2f,amqp://guest:pw@127.0.0.1:5692/%2f",
            false,
        )
        .unwrap();
        assert_eq!(
            nodes.shown(),
            "amqp://guest:***@127.0.0.1:5691/%2f,amqp://guest:***@127.0.0.1:5692/%2f"
        );
        assert_eq!(nodes.current(), None);
        let err = Nodes::parse(
            "amqp://guest:pw@127.0.0.1:5691/%2f,amqp://other:secret@127.0.0.1:5692/%2f",
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("must share user, password"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        let err = Nodes::parse("amqp://guest:pw@h1/a,amqp://guest:pw@h2/b", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("virtual host"), "{err}");
        let err = Nodes::parse("", false).unwrap_err().to_string();
        assert!(err.contains("no broker URL"), "{err}");
        let err = Nodes::parse("amqp://guest:pw@h1:port/", false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("does not parse") && !err.contains("pw"),
            "{err}"
        );
    }

    #[test]
    fn shuffling_keeps_every_node() {
        let list: Vec<String> = (1..=8).map(|i| format!("amqp://h{i}:5672/%2f")).collect();
        let nodes = Nodes::parse(&list.join(","), true).unwrap();
        let mut shown: Vec<&str> = nodes.shown.iter().map(String::as_str).collect();
        shown.sort_unstable();
        assert_eq!(shown, list);
    }

    #[tokio::test]
    async fn every_node_is_tried_and_named_in_the_error() {
        // Two closed ports: both attempts fail, and the error names both, without password.
        let closed = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (a, b) = (closed(), closed());
        let list = format!(
            "amqp://u:hunter22@{},amqp://u:hunter22@{}",
            a.local_addr().unwrap(),
            b.local_addr().unwrap()
        );
        drop((a, b));
        let nodes = Nodes::parse(&list, false).unwrap();
        let err = nodes
            .connect(true, |uri| async move {
                tokio::net::TcpStream::connect((uri.authority.host, uri.authority.port)).await
            })
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(err.matches("amqp://u:***@127.0.0.1").count(), 2, "{err}");
        assert!(!err.contains("hunter22"), "{err}");
    }
}
