//! A list of broker URLs: every password masked, a dead node skipped, and a lost node (killed,
//! or silent with its sockets open) left for the next one with the consumer and the
//! unconfirmed publishes carried over.
//!
//! The "nodes" here are two TCP proxies in front of the one local RabbitMQ, so that a node can
//! be killed (its listener and every connection through it closed), go silent (nothing
//! passed on, every socket left open, as across a black-holed link) or answer a request late
//! (the client's frames from one method on held back for a while) while the broker and its
//! queues stay. The real three-node cluster runs in `scripts/cluster-failover`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use event_manager::message::Message;
use event_manager::transport::{AmqpOptions, AmqpTransport, QueueKind, QueueSpec, Transport};
use event_manager::{Bus, ConnectError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinSet;

/// A TCP proxy to the local broker; [`Proxy::kill`] closes it and every connection through it,
/// [`Proxy::silence`] stops passing bytes on while keeping every socket open,
/// [`Proxy::hold_next`] holds a client's frames back from one method on.
struct Proxy {
    port: u16,
    tasks: JoinSet<()>,
    silent: watch::Sender<bool>,
    hold: std::sync::Arc<Mutex<Option<Hold>>>,
}

/// Holds back what a client sends from its next frame of one AMQP method on, for a while.
#[derive(Clone, Copy, Debug)]
struct Hold {
    /// The method's class and method ids (`basic.consume` is 60, 20).
    method: (u16, u16),
    /// How long the frames are held before they are passed on, in order.
    for_: Duration,
    /// How many frames of the method are still to be held, each `for_`.
    times: u32,
}

/// `basic.consume`.
const BASIC_CONSUME: (u16, u16) = (60, 20);
/// `basic.get`.
const BASIC_GET: (u16, u16) = (60, 70);
/// `exchange.declare`.
const EXCHANGE_DECLARE: (u16, u16) = (40, 10);

impl Proxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let broker = broker_addr();
        let (silent, quiet) = watch::channel(false);
        let hold = std::sync::Arc::new(Mutex::new(None));
        let mut tasks = JoinSet::new();
        let holds = hold.clone();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&broker).await else {
                    continue;
                };
                let (client_in, client_out) = client.into_split();
                let (server_in, server_out) = server.into_split();
                let frames = Some((Frames::default(), holds.clone()));
                connections.spawn(pump(client_in, server_out, quiet.clone(), frames));
                connections.spawn(pump(server_in, client_out, quiet.clone(), None));
            }
        });
        Self {
            port,
            tasks,
            silent,
            hold,
        }
    }

    /// The next `times` frames of `method` a client sends through this proxy, and everything
    /// that client sends after each, reach the broker only `for_` later: the client waits
    /// that long for each answer, as with a queue electing its leader.
    async fn hold_next(&self, method: (u16, u16), for_: Duration, times: u32) {
        assert!(times >= 1, "hold at least one frame");
        *self.hold.lock().await = Some(Hold {
            method,
            for_,
            times,
        });
    }

    /// From now on nothing passes either way, and no socket is closed: the client hears
    /// nothing more from its broker, not even heartbeats, and its socket stays open.
    fn silence(&self) {
        self.silent.send_replace(true);
    }

    /// The URL of this proxy, with `query` added to the local broker's.
    fn url(&self, query: Option<&str>) -> String {
        let broker = common::amqp_url();
        let (head, tail) = broker.split_once('@').expect("credentials in AMQP_URL");
        let path = tail.find('/').map_or("", |at| &tail[at..]);
        let query = match query {
            Some(query) if path.contains('?') => format!("&{query}"),
            Some(query) => format!("?{query}"),
            None => String::new(),
        };
        format!("{head}@127.0.0.1:{}{path}{query}", self.port)
    }

    /// Closes the listener and every connection through it (the accept task owns them).
    fn kill(&mut self) {
        self.tasks.abort_all();
    }
}

/// Where a client's byte stream is: the method of each frame it sends is read, so that
/// [`Proxy::hold_next`] finds its frame.
#[derive(Default)]
struct Frames {
    /// Whether the protocol header (8 bytes, before the first frame) was read.
    started: bool,
    /// Bytes of the protocol header or of a frame's head read so far.
    head: Vec<u8>,
    /// Bytes left of the frame being passed.
    rest: usize,
}

impl Frames {
    /// Reads `bytes`, the next the client sent, and tells whether a frame of `method` was
    /// recognised in them (its head may have begun in the bytes read before).
    fn starts(&mut self, mut bytes: &[u8], method: (u16, u16)) -> bool {
        let mut found = false;
        loop {
            let skipped = self.rest.min(bytes.len());
            self.rest -= skipped;
            bytes = &bytes[skipped..];
            if bytes.is_empty() {
                return found;
            }
            // The protocol header, else a frame's head: type, channel, size, and for a
            // method frame its class and method.
            let wanted = if !self.started {
                8
            } else if self.head.len() >= 7 && self.head[0] == 1 {
                11
            } else {
                7
            };
            let taken = (wanted - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..taken]);
            bytes = &bytes[taken..];
            if self.head.len() < wanted {
                return found;
            }
            if !self.started {
                self.started = true;
                self.head.clear();
                continue;
            }
            let size = u32::from_be_bytes(self.head[3..7].try_into().unwrap()) as usize;
            if self.head[0] == 1 && wanted == 7 && size >= 4 {
                continue; // a method frame: read its class and method too
            }
            if wanted == 11 {
                let class = u16::from_be_bytes([self.head[7], self.head[8]]);
                let id = u16::from_be_bytes([self.head[9], self.head[10]]);
                found |= (class, id) == method;
            }
            // The payload not read yet, and the frame-end octet.
            self.rest = size + 1 - (self.head.len() - 7);
            self.head.clear();
        }
    }
}

/// Passes bytes from `from` to `to` until either closes, holding them while the proxy is
/// silent. With `frames` (a client's stream), holds them too from the frame a
/// [`Proxy::hold_next`] waits for.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut silent: watch::Receiver<bool>,
    mut frames: Option<(Frames, std::sync::Arc<Mutex<Option<Hold>>>)>,
) {
    let mut buffer = vec![0; 64 * 1024];
    loop {
        if silent.wait_for(|s| !*s).await.is_err() {
            return;
        }
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            _ = silent.wait_for(|s| *s) => continue,
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Some((frames, hold)) = &mut frames {
            let mut hold = hold.lock().await;
            let method = hold.map_or((0, 0), |h| h.method);
            if frames.starts(&buffer[..n], method)
                && let Some(held) = hold.as_mut()
            {
                let for_ = held.for_;
                held.times -= 1;
                if held.times == 0 {
                    *hold = None;
                }
                drop(hold);
                tokio::time::sleep(for_).await;
            }
        }
        // Bytes read just before the silence are held with the rest.
        if silent.wait_for(|s| !*s).await.is_err() || to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

fn broker_addr() -> String {
    let url = common::amqp_url();
    let (_, rest) = url.split_once("://").unwrap();
    let authority = rest.split('/').next().unwrap();
    let host_port = authority.rsplit('@').next().unwrap();
    if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5672")
    }
}

#[tokio::test]
async fn every_password_of_a_url_list_is_masked() {
    // The report: a list read as one URL printed the later passwords in clear.
    let list =
        "amqp://guest:first-s3cret@127.0.0.1:1/%2f,amqp://guest:first-s3cret@127.0.0.1:2/%2f";
    let err = Bus::connect(list).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ConnectError::Broker { .. }), "{err:?}");
    assert!(!text.contains("s3cret"), "{text}");
    assert!(!format!("{err:?}").contains("s3cret"));
    assert!(text.contains("amqp://guest:***@127.0.0.1:1/%2f"), "{text}");
    assert!(text.contains("amqp://guest:***@127.0.0.1:2/%2f"), "{text}");
    // URLs with different credentials cannot share one connection: a named error, no
    // password either.
    let list = "amqp://a:pw-one-1@127.0.0.1:1/%2f, amqp://b:pw,two-2@127.0.0.1:2/%2f";
    let err = Bus::connect(list).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(matches!(err, ConnectError::Config { .. }), "{err:?}");
    assert!(
        !text.contains("pw-one") && !text.contains("two-2"),
        "{text}"
    );
}

#[tokio::test]
async fn a_dead_node_first_in_the_list_is_skipped() {
    let dead = "amqp://guest:guest@127.0.0.1:1/%2f";
    let list = format!("{dead},{}", common::amqp_url());
    let transport = AmqpTransport::connect(&list).await.unwrap();
    assert_eq!(
        transport.node().as_deref(),
        Some(event_manager::transport::urls::redact(&common::amqp_url()).as_str())
    );
    let queue = common::unique("skip_dead");
    transport
        .declare_queue(&QueueSpec::durable(&queue))
        .await
        .unwrap();
    transport.publish(addressed(&queue, 1)).await.unwrap();
    let got = transport.get(&queue).await.unwrap().expect("the message");
    got.ack().await.unwrap();
    transport.delete_queue(&queue).await.unwrap();
    transport.close().await;
}

/// How the first node is lost mid-stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loss {
    /// Its listener and every connection through it closed.
    Killed,
    /// Silent with every socket open: only the missing heartbeats tell (`heartbeat=2`).
    Silent,
    /// Silent, with the heartbeat interval the transport asks for by default.
    SilentDefaultHeartbeat,
}

/// The connection's node is killed while a publisher and a consumer run: the transport
/// reconnects to the other node of the list, the consumer resumes there, every publish is
/// confirmed, and every message arrives (duplicates allowed, lost = 0).
#[tokio::test]
async fn a_lost_node_is_left_for_the_next_one_without_loss() {
    fail_over(Loss::Killed).await;
}

/// The connection's node goes silent with its sockets open (a black-holed link, a frozen
/// VM): no error, no closed socket. The heartbeats the URLs ask for (`heartbeat=2`) find it
/// out, and the transport moves to the next node as for a killed one: every publish is
/// confirmed and every message arrives. Without heartbeats this would be a zombie service,
/// connected and idle for good.
#[tokio::test]
async fn a_silent_node_is_left_after_missed_heartbeats() {
    fail_over(Loss::Silent).await;
}

/// The same with URLs that set no heartbeat: the transport asks for 10 s (the broker's own
/// 60 s would leave a silent node unnoticed for 2 minutes), so it moves about 20 s after the
/// node went silent.
#[tokio::test]
async fn a_silent_node_is_left_with_the_default_heartbeat() {
    fail_over(Loss::SilentDefaultHeartbeat).await;
}

/// The heartbeat interval agreed with the broker: 10 s unless the URL or the options say
/// otherwise (the lower of the client's and the broker's wins; a fraction of a second counts
/// as a whole one).
#[tokio::test]
async fn the_heartbeat_is_ten_seconds_unless_set() {
    let url = common::amqp_url();
    assert!(
        !url.contains("heartbeat="),
        "AMQP_URL sets a heartbeat: {url}"
    );
    let with = |query: &str| {
        if url.contains('?') {
            format!("{url}&{query}")
        } else {
            format!("{url}?{query}")
        }
    };
    let agreed = |transport: &AmqpTransport| transport.heartbeat().map(|h| h.as_secs());
    // Zero takes the broker's interval (60 s unless configured otherwise; none if it turned
    // heartbeats off).
    let transport = AmqpTransport::connect(&with("heartbeat=0")).await.unwrap();
    let broker = agreed(&transport);
    transport.close().await;
    let expected = |client: u64| Some(broker.map_or(client, |b| b.min(client)));
    let transport = AmqpTransport::connect(&url).await.unwrap();
    assert_eq!(agreed(&transport), expected(10));
    transport.close().await;
    let transport = AmqpTransport::connect(&with("heartbeat=3")).await.unwrap();
    assert_eq!(agreed(&transport), expected(3));
    transport.close().await;
    for (interval, seconds) in [(Duration::from_secs(4), 4), (Duration::from_millis(500), 1)] {
        let options = AmqpOptions::default().heartbeat(interval);
        let transport = AmqpTransport::connect_with(&url, &options).await.unwrap();
        assert_eq!(agreed(&transport), expected(seconds), "{interval:?}");
        transport.close().await;
    }
}

async fn fail_over(loss: Loss) {
    let first = Proxy::start().await;
    let second = Proxy::start().await;
    let query = match loss {
        Loss::Killed | Loss::SilentDefaultHeartbeat => None,
        Loss::Silent => Some("heartbeat=2"),
    };
    let list = format!("{},{}", first.url(query), second.url(query));
    let transport = std::sync::Arc::new(AmqpTransport::connect(&list).await.unwrap());
    assert!(transport.node().unwrap().contains(&first.port.to_string()));
    let queue = common::unique("failover");
    let mut spec = QueueSpec::durable(&queue);
    spec.kind = QueueKind::Quorum;
    transport.declare_queue(&spec).await.unwrap();
    let mut subscription = transport.subscribe(&queue, 50).await.unwrap();

    const COUNT: u64 = 3000;
    let publisher = {
        let transport = transport.clone();
        let queue = queue.clone();
        tokio::spawn(async move {
            let mut confirmed = 0;
            let mut pending = JoinSet::new();
            for id in 0..COUNT {
                let transport = transport.clone();
                let message = addressed(&queue, id);
                pending.spawn(async move { transport.publish(message).await });
                if id % 100 == 99 {
                    while let Some(done) = pending.join_next().await {
                        done.unwrap().expect("every publish is confirmed");
                        confirmed += 1;
                    }
                }
            }
            while let Some(done) = pending.join_next().await {
                done.unwrap().expect("every publish is confirmed");
                confirmed += 1;
            }
            confirmed
        })
    };

    let mut seen = BTreeSet::new();
    let mut deliveries = 0u64;
    let mut first = Some(first);
    let mut moved = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < COUNT as usize {
        let next = tokio::time::timeout_at(deadline, subscription.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {COUNT} arrived within 60 s", seen.len()));
        let incoming = next.expect("the subscription survives the lost node");
        deliveries += 1;
        let id: u64 = std::str::from_utf8(&incoming.message.body)
            .unwrap()
            .parse()
            .unwrap();
        seen.insert(id);
        let _ = incoming.ack().await;
        if seen.len() >= COUNT as usize / 3
            && let Some(mut node) = first.take()
        {
            match loss {
                Loss::Killed => node.kill(),
                Loss::Silent | Loss::SilentDefaultHeartbeat => node.silence(),
            }
            moved = Some(tokio::spawn(moved_after(
                transport.clone(),
                second.port,
                node,
            )));
        }
    }
    let confirmed = publisher.await.unwrap();
    let moved_after = moved.expect("the node was lost mid-stream").await.unwrap();
    assert!(
        transport.node().unwrap().contains(&second.port.to_string()),
        "{:?}",
        transport.node()
    );
    println!(
        "failover ({loss:?}): published={COUNT} confirmed={confirmed} handled={} deliveries={deliveries} lost={} moved_after_s={:.1}",
        seen.len(),
        COUNT - seen.len() as u64,
        moved_after.as_secs_f64()
    );
    assert_eq!(confirmed, COUNT);
    subscription.cancel().await;
    transport.delete_queue(&queue).await.unwrap();
    transport.close().await;
    if loss == Loss::SilentDefaultHeartbeat {
        // Two missed heartbeats of 10 s, not of the broker's 60 s (2 minutes).
        assert!(
            moved_after < Duration::from_secs(45),
            "left the silent node only after {moved_after:?}"
        );
    }
}

/// The lost node's consumer resumes on the next node, where `basic.consume` is answered only
/// after the transport stopped waiting (a quorum queue electing its leader, in the cluster
/// run). The late answer must not leave a consumer behind: one left on the queue, on a
/// channel nobody reads, took up to a prefetch of messages and held them unacknowledged
/// until the process ended (496 orders in a cluster run). Every message arrives, and one
/// consumer is left on the queue.
#[tokio::test]
async fn a_consume_answered_too_late_leaves_no_consumer_behind() {
    let TwoNodes {
        mut first,
        second,
        transport,
        direct,
        queue,
        mut subscription,
    } = TwoNodes::subscribed("late_consume", AmqpOptions::default()).await;
    // Consuming again on the second node waits 7 s for each of its first three answers,
    // longer than the 5 s the transport waits: it tries again, as it did in a cluster whose
    // queues were electing their leaders, and every attempt must leave nothing behind.
    second
        .hold_next(BASIC_CONSUME, Duration::from_secs(7), 3)
        .await;
    first.kill();

    const COUNT: u64 = 200;
    for id in 0..COUNT {
        direct.publish(addressed(&queue, id)).await.unwrap();
    }
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < COUNT as usize {
        let Ok(next) = tokio::time::timeout_at(deadline, subscription.next()).await else {
            break;
        };
        let incoming = next.expect("the subscription survives the lost node");
        let id: u64 = std::str::from_utf8(&incoming.message.body)
            .unwrap()
            .parse()
            .unwrap();
        seen.insert(id);
        incoming.ack().await.unwrap();
    }
    let consumers = consumer_count(&queue).await;
    println!(
        "late consume: published={COUNT} handled={} lost={} consumers={consumers}",
        seen.len(),
        COUNT - seen.len() as u64
    );
    subscription.cancel().await;
    direct.delete_queue(&queue).await.unwrap();
    transport.close().await;
    direct.close().await;
    assert_eq!(
        seen.len() as u64,
        COUNT,
        "messages held by a consumer left behind"
    );
    assert_eq!(consumers, 1, "a consumer was left behind");
}

/// A broker that never answers `basic.consume` again, on a connection that is up: the
/// subscription used to try again every 5 s for ever, while its service looked alive
/// (consuming, connected). It now ends once consuming has kept failing for twice the
/// confirm timeout, at least 30 s, so that the service declares its topology again and
/// subscribes anew, or fails.
#[tokio::test]
async fn a_consume_never_answered_ends_the_subscription() {
    // Held frames hold the heartbeats that follow them too: a heartbeat interval longer
    // than the test keeps the broker from closing the connection meanwhile.
    let options = AmqpOptions::default()
        .confirm_timeout(Duration::from_secs(3))
        .heartbeat(Duration::from_secs(120));
    let TwoNodes {
        mut first,
        second,
        transport: _transport,
        direct,
        queue,
        mut subscription,
    } = TwoNodes::subscribed("never_answered", options).await;
    second
        .hold_next(BASIC_CONSUME, Duration::from_secs(60), 100)
        .await;
    first.kill();
    let started = tokio::time::Instant::now();
    let next = tokio::time::timeout(Duration::from_secs(60), subscription.next()).await;
    let reason = subscription.end_reason();
    println!(
        "never answered: ended after {:.1?}: {reason:?}",
        started.elapsed()
    );
    direct.delete_queue(&queue).await.unwrap();
    direct.close().await;
    assert!(
        matches!(next, Ok(None)),
        "the subscription went on trying (or took a delivery)"
    );
    let reason = reason.expect("a reason");
    assert!(reason.contains("kept failing"), "{reason}");
}

/// A `basic.get` answered after the transport stopped waiting must not leave its message
/// unacknowledged on a channel nobody settles: the message goes back to the queue, and the
/// next get has it.
#[tokio::test]
async fn a_get_answered_too_late_leaves_its_message_in_the_queue() {
    let proxy = Proxy::start().await;
    let transport = impatient(&proxy, Duration::from_secs(1)).await;
    let queue = common::unique("late_get");
    transport
        .declare_queue(&QueueSpec::durable(&queue))
        .await
        .unwrap();
    transport.publish(addressed(&queue, 7)).await.unwrap();
    proxy.hold_next(BASIC_GET, Duration::from_secs(2), 1).await;
    let err = transport.get(&queue).await.err();
    assert!(
        err.is_some(),
        "the held get is answered after 2 s, past the 1 s deadline"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = transport.get(&queue).await.unwrap();
    let body = got.as_ref().map(|g| g.message.body.to_vec());
    if let Some(got) = got {
        got.ack().await.unwrap();
    }
    transport.delete_queue(&queue).await.unwrap();
    transport.close().await;
    assert_eq!(
        body.as_deref(),
        Some(&b"7"[..]),
        "the message was held by the late get"
    );
}

/// How long after the loss of the first node the transport was on the second; `lost` (the
/// lost node's proxy) lives until then, so that a silent node stays silent.
async fn moved_after(
    transport: std::sync::Arc<AmqpTransport>,
    second: u16,
    lost: Proxy,
) -> Duration {
    let started = tokio::time::Instant::now();
    while !transport
        .node()
        .is_some_and(|node| node.contains(&second.to_string()))
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(lost);
    started.elapsed()
}

/// How many consumers the broker has on `queue` (a passive declare on a connection of its
/// own).
async fn consumer_count(queue: &str) -> u32 {
    let connection = lapin::Connection::connect(&common::amqp_url(), Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let declared = channel
        .queue_declare(queue.into(), passive, Default::default())
        .await
        .unwrap();
    connection.close(200, "OK".into()).await.unwrap();
    declared.consumer_count()
}

/// A topology operation queued behind one that took the whole confirm timeout is not sent
/// with no time left (it would time out too, and close the channel for nothing): it fails at
/// once, saying so.
#[tokio::test]
async fn an_operation_that_waited_out_its_timeout_in_line_is_not_sent() {
    let proxy = Proxy::start().await;
    // 2 s: the second operation is refused if it took the channel with less than 0.2 s left.
    let transport = impatient(&proxy, Duration::from_secs(2)).await;
    let (first, second) = (
        common::unique("held_exchange"),
        common::unique("queued_exchange"),
    );
    proxy
        .hold_next(EXCHANGE_DECLARE, Duration::from_secs(4), 1)
        .await;
    let (held, queued) = tokio::join!(transport.declare_exchange(&first, false), async {
        // Starts just after the held declaration took the channel.
        tokio::time::sleep(Duration::from_millis(10)).await;
        transport.declare_exchange(&second, false).await
    });
    // The held declaration reaches the broker 4 s after it was sent; delete after it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let direct = AmqpTransport::connect(&common::amqp_url()).await.unwrap();
    for name in [&first, &second] {
        direct.delete_exchange(name).await.unwrap();
    }
    direct.close().await;
    transport.close().await;
    assert!(held.is_err(), "the held declaration got its answer in time");
    let error = queued
        .expect_err("the queued declaration had no time left")
        .to_string();
    assert!(error.contains("not sent"), "{error}");
}

/// A transport on two "nodes" (proxies to the local broker), subscribed to a fresh queue
/// (prefetch 10) through the first, and a transport straight to the broker.
struct TwoNodes {
    first: Proxy,
    second: Proxy,
    transport: AmqpTransport,
    direct: AmqpTransport,
    queue: String,
    subscription: Box<dyn event_manager::transport::Subscription>,
}

impl TwoNodes {
    async fn subscribed(base: &str, options: AmqpOptions) -> Self {
        let first = Proxy::start().await;
        let second = Proxy::start().await;
        let list = format!("{},{}", first.url(None), second.url(None));
        let transport = AmqpTransport::connect_with(&list, &options).await.unwrap();
        let direct = AmqpTransport::connect(&common::amqp_url()).await.unwrap();
        let queue = common::unique(base);
        direct
            .declare_queue(&QueueSpec::durable(&queue))
            .await
            .unwrap();
        let subscription = transport.subscribe(&queue, 10).await.unwrap();
        Self {
            first,
            second,
            transport,
            direct,
            queue,
            subscription,
        }
    }
}

/// A transport through `proxy` that waits `patience` for an answer to a topology operation.
async fn impatient(proxy: &Proxy, patience: Duration) -> AmqpTransport {
    let options = AmqpOptions::default().confirm_timeout(patience);
    AmqpTransport::connect_with(&proxy.url(None), &options)
        .await
        .unwrap()
}

/// A message to `queue` through the default exchange, its body the decimal `id`.
fn addressed(queue: &str, id: u64) -> Message {
    Message {
        exchange: "".into(),
        routing_key: queue.to_owned().into(),
        body: id.to_string().into_bytes().into(),
        properties: event_manager::message::Properties {
            message_id: Some(format!("failover-{id}")),
            ..Default::default()
        },
    }
}
