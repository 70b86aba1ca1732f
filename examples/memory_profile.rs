//! A harness for profiling the in-memory publish → callback path: publishes `N` events
//! (default 300 000) through one queue on a single-threaded runtime and prints the time and
//! the heap allocations per event, counted by a counting global allocator. The payload is
//! the one of the criterion bench `memory_broker`.
//!
//! ```text
//! cargo run --release --example memory_profile -- 300000
//! valgrind --tool=callgrind target/release/examples/memory_profile 20000   # instructions
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use event_manager::{Bus, Event, Exchange};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// The system allocator, counting allocations.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SHOP: Exchange = Exchange::topic("shop");

/// About 90 bytes of JSON, two of its fields owned strings.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Event)]
#[event(exchange = SHOP, version = "1.2.0", events(submit))]
struct Purchase {
    id: u64,
    customer: String,
    sku: String,
    quantity: u32,
    unit_price_cents: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let events: u64 = match std::env::args().nth(1) {
        Some(n) => n.parse().map_err(|e| format!("events `{n}`: {e}"))?,
        None => 300_000,
    };
    if events < 2 {
        return Err("publish at least 2 events".into());
    }
    let bus = Bus::in_memory();
    let handled = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Notify::new());
    let mut service = bus.service("profile");
    service.bind(SHOP, "shop.*.submit")?;
    service.prefetch(1000).concurrency(1000);
    let (counter, finished) = (handled.clone(), done.clone());
    service.on(Purchase::SUBMIT, move |_: Purchase, _| {
        let (counter, finished) = (counter.clone(), finished.clone());
        async move {
            if counter.fetch_add(1, Ordering::Relaxed) + 1 == events {
                finished.notify_one();
            }
            Ok(())
        }
    });
    let running = service.start().await?;
    let purchase = Purchase {
        id: 1,
        customer: "customer-42".into(),
        sku: "sku-7".into(),
        quantity: 3,
        unit_price_cents: 1999,
    };
    // The first event declares the exchange; measure the steady state after it.
    purchase.submit(&bus).await?;
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    let started = Instant::now();
    for _ in 1..events {
        purchase.submit(&bus).await?;
    }
    done.notified().await;
    let elapsed = started.elapsed();
    let measured = (events - 1) as f64;
    let per_event = (ALLOCATIONS.load(Ordering::Relaxed) - allocations) as f64 / measured;
    println!(
        "{} events: {:.0} ns/event ({:.0} events/s), {per_event:.2} allocations/event",
        events - 1,
        elapsed.as_nanos() as f64 / measured,
        measured / elapsed.as_secs_f64(),
    );
    running.shutdown().await?;
    Ok(())
}
