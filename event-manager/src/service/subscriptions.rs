//! A service consumes two queues: its own, and the one its wait queues hand retries to. This
//! merges their subscriptions into one stream of deliveries, taking from each in turn.

use std::task::{Context, Poll};

use async_trait::async_trait;

use crate::error::ConsumeError;
use crate::topology::ServiceTopology;
use crate::transport::{Incoming, Subscription};

/// The subscriptions of one service, polled in turn; it ends when one of them ends.
pub(super) struct Merged {
    parts: Vec<Box<dyn Subscription>>,
    next: usize,
    ended: Option<String>,
}

/// Subscribes to the service queue and to its retry queue.
pub(super) async fn subscribe(
    topology: &ServiceTopology,
    prefetch: u16,
) -> Result<Box<dyn Subscription>, ConsumeError> {
    let parts = topology.subscribe(prefetch).await?;
    Ok(Box::new(Merged {
        parts: Vec::from(parts),
        next: 0,
        ended: None,
    }))
}

#[async_trait]
impl Subscription for Merged {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        if self.ended.is_some() {
            return Poll::Ready(None);
        }
        let count = self.parts.len();
        for offset in 0..count {
            let index = (self.next + offset) % count;
            match self.parts[index].poll_next(cx) {
                Poll::Ready(Some(incoming)) => {
                    self.next = (index + 1) % count;
                    return Poll::Ready(Some(incoming));
                }
                Poll::Ready(None) => {
                    self.ended = Some(
                        self.parts[index]
                            .end_reason()
                            .unwrap_or_else(|| "a subscription ended".to_owned()),
                    );
                    return Poll::Ready(None);
                }
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }

    async fn cancel(&mut self) {
        futures_util::future::join_all(self.parts.iter_mut().map(|p| p.cancel())).await;
    }

    fn end_reason(&self) -> Option<String> {
        self.ended.clone()
    }
}
