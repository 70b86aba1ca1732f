//! The outbox and the inbox on the in-memory store and the in-memory broker.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::bus::Bus;
use crate::envelope::ReceivedVersion;
use crate::message::Message;
use crate::service::{Delivery, HandlerError};

use crate::test_probe::{PING, Probe};

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The ids and message ids a service handled.
type Handled = Arc<Mutex<Vec<(u64, String)>>>;

/// A service on `bus` recording the ids it handled, through an inbox on `store`.
fn recording_service(bus: &Bus, store: &MemoryStore) -> (crate::Service, Handled) {
    let handled = Arc::new(Mutex::new(Vec::new()));
    let mut service = bus.service("inbox_probe");
    let seen = handled.clone();
    service.on_tx(
        &Inbox::new(store.clone()),
        PING,
        move |probe: Probe, ctx, tx| {
            let seen = seen.clone();
            Box::pin(async move {
                let id = ctx.message_id().unwrap_or_default().to_owned();
                tx.on_commit(move || seen.lock().unwrap().push((probe.id, id)));
                Ok(())
            })
        },
    );
    (service, handled)
}

async fn write_pings(bus: &Bus, store: &MemoryStore, count: u64) {
    for id in 0..count {
        let mut tx = store.begin();
        bus.outbox(&mut tx)
            .publish(PING, &Probe { id })
            .await
            .unwrap();
        tx.commit();
    }
}

/// Rows no queue is bound for, a batch of them at the head of the outbox, under the default
/// policy (`Unroutable::Error`): they used to stop the relay at their place, so that rows of
/// every other event waited until someone bound a queue. They are held back instead.
#[tokio::test]
async fn rows_no_queue_is_bound_for_do_not_stop_the_relay() {
    let bus = Bus::in_memory();
    let store = MemoryStore::new();
    let (service, handled) = recording_service(&bus, &MemoryStore::new());
    let running = service.start().await.unwrap();
    write_pings(&bus, &store, 4).await;
    store.edit_rows(2, |row| row.routing_key = "probe.v1.nobody".to_owned());
    let relay = Relay::new(&bus, store.clone()).batch_size(2);
    let drained = relay.drain().await;
    assert!(
        matches!(
            &drained,
            Err(StoreError::Publish(PublishError::Unroutable { routing_key, .. })) if routing_key == "probe.v1.nobody"
        ),
        "{drained:?}"
    );
    assert_eq!(
        store.pending().await.unwrap(),
        2,
        "the routable rows went out"
    );
    wait_for("2 handled", || handled.lock().unwrap().len() == 2).await;
    running.shutdown().await.unwrap();
}

/// Many rows of an event no queue is bound for, ahead of others: one of them is tried, and
/// the event is held back with all its rows. Each used to be published (and refused) in
/// turn, and left out of the claims one by one, at a cost that grew with their number.
#[cfg(feature = "testing")]
#[tokio::test]
async fn rows_of_an_event_no_queue_is_bound_for_are_held_back_together() {
    let harness = crate::testing::Harness::new();
    let bus = harness.bus().clone();
    let store = MemoryStore::new();
    let (service, handled) = recording_service(&bus, &MemoryStore::new());
    let running = service.start().await.unwrap();
    write_pings(&bus, &store, 53).await;
    store.edit_rows(50, |row| row.routing_key = "probe.v1.nobody".to_owned());
    let relay = Relay::new(&bus, store.clone()).batch_size(10);
    assert!(relay.drain().await.is_err(), "the held rows are reported");
    assert_eq!(store.pending().await.unwrap(), 50);
    wait_for("3 handled", || handled.lock().unwrap().len() == 3).await;
    let refused = harness
        .sent()
        .iter()
        .filter(|s| s.outcome == crate::testing::PublishOutcome::Unroutable)
        .count();
    assert_eq!(refused, 1, "one row of the event tried");
    running.shutdown().await.unwrap();
}

/// The bus's policy for an event applies to the relay's publishes of its rows.
#[tokio::test]
async fn the_relay_follows_the_bus_policy_for_unroutable_events() {
    let bus = Bus::in_memory();
    let store = MemoryStore::new();
    write_pings(&bus, &store, 3).await;
    let lenient = bus.with_unroutable(PING, crate::Unroutable::Log);
    let relay = Relay::new(&lenient, store.clone());
    assert_eq!(relay.drain().await.unwrap(), 3);
    assert_eq!(store.pending().await.unwrap(), 0);
    assert_eq!(lenient.unroutable_count(), 3);
}

/// More unreadable rows than a batch holds, at the head of the outbox: they are left out
/// of the following claims, so that the rows after them are published.
#[tokio::test]
async fn a_batch_of_unreadable_rows_does_not_stop_the_relay() {
    let bus = Bus::in_memory();
    let store = MemoryStore::new();
    write_pings(&bus, &store, 5).await;
    store.edit_rows(3, |row| {
        row.properties = r#"{"headers": [["odd", {"q": 1}]]}"#.to_owned();
    });
    let relay = Relay::new(&bus, store.clone())
        .batch_size(2)
        .unroutable(crate::Unroutable::Ignore);
    let drained = relay.drain().await;
    assert!(
        matches!(&drained, Err(StoreError::Corrupt { reason, .. }) if reason.contains("odd")),
        "{drained:?}"
    );
    assert_eq!(
        store.pending().await.unwrap(),
        3,
        "the two readable rows went out"
    );
    // Left out of the claims: a second drain finds nothing else to do.
    assert_eq!(relay.drain().await.unwrap(), 0);
}

#[tokio::test]
async fn committed_events_are_relayed_once_rolled_back_ones_never() {
    let bus = Bus::in_memory();
    let store = MemoryStore::new();
    let consumer_store = MemoryStore::new();
    let (service, handled) = recording_service(&bus, &consumer_store);
    let running = service.start().await.unwrap();

    let mut ids = Vec::new();
    for id in 0..3 {
        let mut tx = store.begin();
        ids.push(
            bus.outbox(&mut tx)
                .publish(PING, &Probe { id })
                .await
                .unwrap(),
        );
        tx.commit();
    }
    let mut dropped = store.begin();
    bus.outbox(&mut dropped)
        .publish(PING, &Probe { id: 99 })
        .await
        .unwrap();
    drop(dropped);

    let relay = Relay::new(&bus, store.clone()).batch_size(2);
    assert_eq!(relay.drain().await.unwrap(), 3);
    assert_eq!(store.pending().await.unwrap(), 0);
    // A relay that died before marking its rows: everything is published again.
    store.resend_all();
    assert_eq!(relay.drain().await.unwrap(), 3);
    wait_for("3 handled", || handled.lock().unwrap().len() >= 3).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let handled = handled.lock().unwrap().clone();
    let expected: Vec<(u64, String)> = (0..3).zip(ids).collect();
    assert_eq!(
        handled, expected,
        "each event handled once, with its stored id"
    );
    assert_eq!(consumer_store.inbox_len(), 3);
    assert_eq!(relay.retention(Duration::ZERO).purge().await.unwrap(), 3);
    running.shutdown().await.unwrap();
}

fn delivery(message_id: Option<&str>, body: &[u8]) -> Delivery {
    let mut message = Message {
        exchange: "probe".into(),
        routing_key: "probe.v1.ping".into(),
        body: body.to_vec().into(),
        properties: Default::default(),
    };
    message.properties.message_id = message_id.map(str::to_owned);
    Delivery {
        message: Arc::new(message),
        version: ReceivedVersion::Major(1),
        attempt: 1,
        redelivered: false,
    }
}

#[tokio::test]
async fn a_failed_callback_leaves_no_mark_and_runs_again() {
    let store = MemoryStore::new();
    let inbox = Inbox::new(store.clone());
    let effects = Arc::new(AtomicU32::new(0));
    let calls = Arc::new(AtomicU32::new(0));
    let (e, c) = (effects.clone(), calls.clone());
    let callback: TxCallback<Probe, MemoryTx> = Arc::new(move |_probe, _ctx, tx| {
        let (e, c) = (e.clone(), c.clone());
        Box::pin(async move {
            tx.on_commit(move || {
                e.fetch_add(1, Ordering::SeqCst);
            });
            if c.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err(HandlerError::retry("first call fails"));
            }
            Ok(())
        })
    });
    let run = |d| inbox.handle("q", Probe { id: 1 }, d, &callback);
    assert!(run(delivery(Some("m1"), b"{}")).await.is_err());
    assert_eq!(effects.load(Ordering::SeqCst), 0, "rolled back");
    run(delivery(Some("m1"), b"{}")).await.unwrap();
    run(delivery(Some("m1"), b"{}")).await.unwrap();
    assert_eq!(
        (calls.load(Ordering::SeqCst), effects.load(Ordering::SeqCst)),
        (2, 1)
    );

    // Without a message id: keyed by routing key and body.
    run(delivery(None, br#"{"id":1}"#)).await.unwrap();
    run(delivery(None, br#"{"id":1}"#)).await.unwrap();
    run(delivery(None, br#"{"id":2}"#)).await.unwrap();
    assert_eq!(effects.load(Ordering::SeqCst), 3);
    assert_eq!(store.inbox_len(), 3);
    // Past the dedup window the messages are forgotten.
    let forgetful = Inbox::new(store.clone()).window(Duration::ZERO);
    assert_eq!(forgetful.purge().await.unwrap(), 3);
}

#[tokio::test]
async fn a_key_in_flight_elsewhere_is_a_retryable_error() {
    let store = MemoryStore::new();
    let mut first = InboxStore::begin(&store).await.unwrap();
    assert!(store.mark_handled(&mut first, "q", "k").await.unwrap());
    let mut second = InboxStore::begin(&store).await.unwrap();
    let busy = store.mark_handled(&mut second, "q", "k").await;
    assert!(matches!(busy, Err(StoreError::InFlight { .. })), "{busy:?}");
    drop(first);
    assert!(store.mark_handled(&mut second, "q", "k").await.unwrap());
    InboxStore::commit(&store, second).await.unwrap();
    let mut third = InboxStore::begin(&store).await.unwrap();
    assert!(!store.mark_handled(&mut third, "q", "k").await.unwrap());
    assert!(
        store
            .mark_handled(&mut third, "other queue", "k")
            .await
            .unwrap()
    );
}

#[test]
fn table_names_are_identifiers() {
    for ok in ["event_outbox", "s1.t_2", "T"] {
        assert!(check_table_name(ok).is_ok(), "{ok}");
    }
    for bad in ["", "a;drop", "1t", "a.b.c", "a.", "x y", "t\""] {
        assert!(check_table_name(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn a_running_relay_publishes_rows_as_they_commit_and_stops_on_shutdown() {
    let bus = Bus::in_memory();
    let store = MemoryStore::new();
    let (service, handled) = recording_service(&bus, &MemoryStore::new());
    let running = service.start().await.unwrap();
    let relay = Relay::new(&bus, store.clone())
        .poll_interval(Duration::from_millis(5))
        .in_flight(8);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        relay
            .run_until(async {
                stopped.await.ok();
            })
            .await
    });
    write_pings(&bus, &store, 20).await;
    wait_for("20 handled", || handled.lock().unwrap().len() == 20).await;
    stop.send(()).unwrap();
    assert_eq!(task.await.unwrap(), 20);
    assert_eq!(store.pending().await.unwrap(), 0);
    running.shutdown().await.unwrap();
}

#[test]
fn a_row_is_held_back_longer_each_time_up_to_a_minute() {
    let pauses: Vec<u64> = [0, 1, 2, 3, 6, 7, 8, u32::MAX]
        .into_iter()
        .map(|times| hold_back_pause(times).as_secs())
        .collect();
    assert_eq!(pauses, [1, 1, 2, 4, 32, 60, 60, 60]);
}
