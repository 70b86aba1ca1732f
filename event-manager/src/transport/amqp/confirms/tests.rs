//! The pairing of confirms and returns, with fake writes and confirms standing in for
//! lapin: each test plays one order in which lapin's thread can resolve them.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::time::{Duration, Instant};

use super::*;
use crate::message::Properties;

/// A value handed over once, waking whoever waits for it.
struct Gate<T>(Arc<Mutex<(Option<T>, Option<Waker>)>>);

impl<T> Clone for Gate<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Gate<T> {
    fn new() -> Self {
        Self(Arc::new(Mutex::new((None, None))))
    }

    fn open(&self, value: T) {
        let mut inner = self.0.lock().unwrap();
        inner.0 = Some(value);
        if let Some(waker) = inner.1.take() {
            waker.wake();
        }
    }
}

struct Wait<T>(Gate<T>);

impl<T> Future for Wait<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut inner = (self.0).0.lock().unwrap();
        match inner.0.take() {
            Some(value) => Poll::Ready(value),
            None => {
                inner.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

type FakeConfirm = Wait<Answer<String>>;
type FakeWrite = Wait<Result<FakeConfirm, String>>;
type Fake = Confirms<Message, FakeWrite, FakeConfirm, String>;

/// One publish: its message, the gate of its write and the gate of its confirm.
struct Publish {
    message: Message,
    write: Gate<Result<FakeConfirm, String>>,
    confirm: Gate<Answer<String>>,
}

impl Publish {
    fn new(id: &str) -> Self {
        let message = Message {
            exchange: "order".into(),
            routing_key: "order.v1.submit".into(),
            body: Bytes::from_static(b"{}"),
            properties: Properties {
                message_id: Some(id.to_owned()),
                ..Properties::default()
            },
        };
        Self {
            message,
            write: Gate::new(),
            confirm: Gate::new(),
        }
    }

    fn identity(&self) -> Identity {
        identity_of(&self.message)
    }

    fn track(&self, confirms: &mut Fake, deadline: Instant) {
        let write = Wait(self.write.clone());
        let tracked = confirms.insert(self.message.clone(), deadline, write, 0);
        assert!(tracked.is_ok(), "the write failed at once");
    }

    /// lapin's thread writes the frames.
    fn written(&self) {
        self.write.open(Ok(Wait(self.confirm.clone())));
    }

    /// lapin's thread resolves the confirm with an ack, carrying `returned` if any.
    fn acked(&self, returned: Option<&Publish>) {
        self.confirm
            .open(Answer::Ack(returned.map(Publish::identity)));
    }
}

fn later() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

/// Polls once, with `sync` standing in for taking the acknowledgement lock.
fn poll(
    confirms: &mut Fake,
    sync: impl FnMut() -> Vec<Identity>,
) -> Poll<Vec<(String, Decision<String>)>> {
    let mut cx = Context::from_waker(Waker::noop());
    confirms.poll_decided(&mut cx, |m| m, sync).map(|decided| {
        decided
            .into_iter()
            .map(|(m, d)| (m.properties.message_id.unwrap(), d))
            .collect()
    })
}

fn no_sync() -> Vec<Identity> {
    Vec::new()
}

/// Polls until a poll decides nothing more; `at_first_sync` runs when the acknowledgement
/// lock is first taken (what lapin's thread finishes before it is free).
fn decide_all(
    confirms: &mut Fake,
    at_first_sync: impl FnOnce(),
) -> Vec<(String, Decision<String>)> {
    let mut pending = Some(at_first_sync);
    let mut sync = || {
        if let Some(finish) = pending.take() {
            finish();
        }
        Vec::new()
    };
    let mut decided = Vec::new();
    while let Poll::Ready(more) = poll(confirms, &mut sync) {
        decided.extend(more);
    }
    decided
}

fn is(decided: &[(String, Decision<String>)], id: &str, unroutable: bool) -> bool {
    decided.iter().any(|(i, d)| {
        i == id
            && if unroutable {
                matches!(d, Decision::Unroutable)
            } else {
                matches!(d, Decision::Routed)
            }
    })
}

#[test]
fn a_return_carried_by_the_confirm_itself_makes_it_unroutable() {
    let mut confirms = Fake::new();
    let x = Publish::new("x");
    x.track(&mut confirms, later());
    x.written();
    x.acked(Some(&x));
    let Poll::Ready(decided) = poll(&mut confirms, no_sync) else {
        panic!("undecided")
    };
    assert!(is(&decided, "x", true), "{decided:?}");
    assert_eq!(confirms.len(), 0);
}

/// One `basic.ack` with `multiple` resolves `x` and `c`; lapin gives `x`'s return to `c`,
/// and its thread is still resolving `c` when the publisher first sees `x` answered. The
/// decision must wait for the sync (the acknowledgement lock), not for a second sweep.
#[test]
fn a_return_on_a_confirm_lapin_is_still_resolving_is_not_missed() {
    let mut confirms = Fake::new();
    let (x, c) = (Publish::new("x"), Publish::new("c"));
    x.track(&mut confirms, later());
    c.track(&mut confirms, later());
    x.written();
    c.written();
    x.acked(None);
    // lapin's thread finishes the ack before the lock is free.
    let decided = decide_all(&mut confirms, || c.acked(Some(&x)));
    assert!(is(&decided, "x", true), "{decided:?}");
    assert!(is(&decided, "c", false), "{decided:?}");
}

/// `c` was published after `x`, and its write completed (which wakes it) but was not seen
/// before the ack covering both resolved `x`; `x`'s return went to `c`.
#[test]
fn a_return_on_a_publish_whose_write_was_not_seen_is_not_missed() {
    let mut confirms = Fake::new();
    let (x, c) = (Publish::new("x"), Publish::new("c"));
    x.track(&mut confirms, later());
    x.written();
    c.track(&mut confirms, later());
    x.acked(None);
    let decided = decide_all(&mut confirms, || {
        c.written();
        c.acked(Some(&x));
    });
    assert!(is(&decided, "x", true), "{decided:?}");
    assert!(is(&decided, "c", false), "{decided:?}");
}

/// `c` timed out (its caller was answered) but its confirm, resolved later, carries `x`'s
/// return: it is still watched.
#[test]
fn a_return_on_a_publish_given_up_is_not_missed() {
    let mut confirms = Fake::new();
    let (c, x) = (Publish::new("c"), Publish::new("x"));
    let soon = Instant::now();
    c.track(&mut confirms, soon);
    x.track(&mut confirms, later());
    assert_eq!(confirms.expire(soon, |m| m).len(), 1);
    assert_eq!(confirms.len(), 1);
    assert!(poll(&mut confirms, no_sync).is_pending());
    c.written();
    x.written();
    c.acked(Some(&x));
    x.acked(None);
    let decided = decide_all(&mut confirms, || ());
    assert_eq!(decided.len(), 1, "{decided:?}");
    assert!(is(&decided, "x", true), "{decided:?}");
    assert!(
        !confirms.watches(0),
        "the given-up publish is dropped once answered"
    );
}

/// lapin keeps the returns of confirms dropped unpolled; the sync hands them over.
#[test]
fn a_return_handed_over_by_the_sync_counts() {
    let mut confirms = Fake::new();
    let x = Publish::new("x");
    x.track(&mut confirms, later());
    x.written();
    x.acked(None);
    let identity = x.identity();
    let Poll::Ready(decided) = poll(&mut confirms, || vec![identity.clone()]) else {
        panic!("undecided")
    };
    assert!(is(&decided, "x", true), "{decided:?}");
}

#[test]
fn a_failed_write_is_decided_failed() {
    let mut confirms = Fake::new();
    let x = Publish::new("x");
    x.track(&mut confirms, later());
    x.write.open(Err("channel closed".to_owned()));
    let Poll::Ready(decided) = poll(&mut confirms, no_sync) else {
        panic!("undecided")
    };
    assert!(
        matches!(&decided[..], [(id, Decision::Failed(e))] if id == "x" && e == "channel closed"),
        "{decided:?}"
    );
}

#[test]
fn a_write_failing_at_once_is_handed_back_untracked() {
    let mut confirms = Fake::new();
    let x = Publish::new("x");
    x.write.open(Err("not connected".to_owned()));
    let write = Wait(x.write.clone());
    let Err((message, error)) = confirms.insert(x.message.clone(), later(), write, 0) else {
        panic!("tracked")
    };
    assert_eq!((message, error.as_str()), (x.message, "not connected"));
    assert_eq!(confirms.len(), 0);
    assert!(!confirms.watches(0));
}

#[test]
fn nothing_answered_is_pending_and_the_window_counts_it() {
    let mut confirms = Fake::new();
    let x = Publish::new("x");
    x.track(&mut confirms, later());
    assert!(poll(&mut confirms, no_sync).is_pending());
    x.written();
    assert!(poll(&mut confirms, no_sync).is_pending());
    assert_eq!(confirms.len(), 1);
    assert_eq!(confirms.take_all().len(), 1);
    assert_eq!(confirms.len(), 0);
}

/// A publish given up whose own return comes later: the return goes with it, and a later
/// publish of the same message (a relay trying the row again) is not taken for unroutable.
#[test]
fn the_return_of_a_publish_given_up_goes_with_it() {
    let mut confirms = Fake::new();
    let soon = Instant::now();
    let first = Publish::new("x");
    first.track(&mut confirms, soon);
    assert_eq!(confirms.expire(soon, |m| m).len(), 1);
    first.written();
    first.acked(Some(&first));
    assert!(
        poll(&mut confirms, no_sync).is_pending(),
        "nothing left to answer"
    );
    let again = Publish::new("x");
    again.track(&mut confirms, later());
    again.written();
    again.acked(None);
    let Poll::Ready(decided) = poll(&mut confirms, no_sync) else {
        panic!("undecided")
    };
    assert!(is(&decided, "x", false), "{decided:?}");
}
