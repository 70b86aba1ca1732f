//! Callbacks: what they receive ([`Delivery`]) and what they return ([`HandlerError`]).

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::envelope::{self, DeadLetterKind, ReceivedVersion};
use crate::message::{Headers, Message};

/// What a callback knows about the message besides its payload.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub(crate) message: Arc<Message>,
    pub(crate) version: ReceivedVersion,
    pub(crate) attempt: u32,
    pub(crate) redelivered: bool,
}

impl Delivery {
    /// The message id, stable across retries and redeliveries: use it to detect duplicates.
    /// Every event this library publishes has one; `None` when a foreign publisher set none
    /// (pika and kombu by default), in which case duplicates cannot be told apart by id: key
    /// deduplication on a business identifier of the payload instead.
    pub fn message_id(&self) -> Option<&str> {
        self.message
            .properties
            .message_id
            .as_deref()
            .or_else(|| envelope::celery::task_id(&self.message))
    }

    /// The correlation id, when the publisher set one.
    pub fn correlation_id(&self) -> Option<&str> {
        self.message.properties.correlation_id.as_deref()
    }

    /// The exchange the event was published to (also on retries).
    pub fn exchange(&self) -> &str {
        envelope::original_exchange(&self.message)
    }

    /// The routing key the event was published with (also on retries).
    pub fn routing_key(&self) -> &str {
        envelope::original_routing_key(&self.message)
    }

    /// The version the message claims: the full version from its header, or only the major
    /// from its routing key.
    pub fn version(&self) -> &ReceivedVersion {
        &self.version
    }

    /// Which attempt this is: 1 for the first delivery, 2 after one failure, and so on.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Whether the broker delivered this message before (e.g. after a consumer crashed or a
    /// connection was lost), so the callback may already have seen it.
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    /// The publishing service (AMQP `app_id`), when set.
    pub fn app_id(&self) -> Option<&str> {
        self.message.properties.app_id.as_deref()
    }

    /// The application headers.
    pub fn headers(&self) -> &Headers {
        &self.message.properties.headers
    }

    /// The raw body: the payload as JSON, or for a Celery task message the whole task body.
    pub fn body(&self) -> &[u8] {
        &self.message.body
    }
}

/// The error a callback returns. By default it is *retryable*: the message is delivered again
/// after a delay, and dead-lettered once the attempts are used up. A
/// [`permanent`](HandlerError::permanent) error is dead-lettered at once.
///
/// Whatever converts into a `Box<dyn Error + Send + Sync>` converts into a retryable
/// `HandlerError`, so `?` works in callbacks on any `std::error::Error`, on
/// `Box<dyn Error + Send + Sync>`, on `anyhow::Error` and on `String`. Mark an error permanent
/// with [`HandlerResultExt::permanent`] (`.permanent()?`) or [`HandlerError::permanent`].
pub struct HandlerError {
    error: Box<dyn std::error::Error + Send + Sync>,
    permanent: bool,
}

impl HandlerError {
    /// A retryable error.
    pub fn retry(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            error: error.into(),
            permanent: false,
        }
    }

    /// An error that no retry can fix (a business rule refused the event): dead-lettered at
    /// once.
    pub fn permanent(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            error: error.into(),
            permanent: true,
        }
    }

    /// Whether the error is permanent.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }
}

impl<E: Into<Box<dyn std::error::Error + Send + Sync>>> From<E> for HandlerError {
    fn from(error: E) -> Self {
        Self::retry(error)
    }
}

/// Says, where an error is passed up with `?`, whether a retry can fix it.
///
/// ```
/// use event_manager::{HandlerError, HandlerResultExt};
///
/// fn reserve(stock: u32, wanted: u32) -> Result<u32, String> {
///     stock.checked_sub(wanted).ok_or_else(|| format!("only {stock} in stock"))
/// }
///
/// fn handle(stock: u32) -> Result<(), HandlerError> {
///     // Out of stock: no retry fixes it, dead-letter at once.
///     let left = reserve(stock, 3).permanent()?;
///     // A failing write may work next time: retry with backoff (what `?` does anyway).
///     std::fs::write("/dev/null", left.to_string()).retryable()?;
///     Ok(())
/// }
///
/// assert!(handle(1).unwrap_err().is_permanent());
/// assert!(handle(5).is_ok());
/// ```
pub trait HandlerResultExt<T> {
    /// The error, if any, as a permanent [`HandlerError`]: dead-lettered at once.
    fn permanent(self) -> Result<T, HandlerError>;
    /// The error, if any, as a retryable [`HandlerError`] (what `?` does by default).
    fn retryable(self) -> Result<T, HandlerError>;
}

impl<T, E: Into<Box<dyn std::error::Error + Send + Sync>>> HandlerResultExt<T> for Result<T, E> {
    fn permanent(self) -> Result<T, HandlerError> {
        self.map_err(HandlerError::permanent)
    }

    fn retryable(self) -> Result<T, HandlerError> {
        self.map_err(HandlerError::retry)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("error", &self.error)
            .field("permanent", &self.permanent)
            .finish()
    }
}

/// A callback with its decoding step: bytes in, a future out, or why the message cannot be
/// handled (the dead-letter kind and reason).
pub(crate) type ErasedHandler = Arc<
    dyn Fn(
            &[u8],
            Delivery,
        )
            -> Result<BoxFuture<'static, Result<(), HandlerError>>, (DeadLetterKind, String)>
        + Send
        + Sync,
>;

/// A typed callback after decoding.
pub(crate) type Callback<T> =
    Arc<dyn Fn(T, Delivery) -> BoxFuture<'static, Result<(), HandlerError>> + Send + Sync>;

/// Wraps `callback` with the decoding of `U` and its conversion into `T`.
///
/// Panics are caught here, per message: one while decoding or upcasting becomes the reason to
/// dead-letter the message (no retry can fix it); one in the synchronous part of the callback
/// (before it returns its future) becomes a retryable error, as a panic inside the future does.
pub(crate) fn erase<U, T>(
    type_name: &'static str,
    convert: impl Fn(U) -> T + Send + Sync + 'static,
    callback: Callback<T>,
) -> ErasedHandler
where
    U: serde::de::DeserializeOwned + 'static,
    T: 'static,
{
    Arc::new(move |body, delivery| {
        let payload: U = match catch_unwind(AssertUnwindSafe(|| envelope::from_json(body))) {
            Ok(Ok(payload)) => payload,
            Ok(Err(e)) => {
                return Err((
                    DeadLetterKind::Undecodable,
                    format!("the body does not decode as `{type_name}`: {e}"),
                ));
            }
            Err(panic) => {
                return Err((
                    DeadLetterKind::Panicked,
                    format!(
                        "panicked while decoding the body as `{type_name}`: {}",
                        panic_text(&*panic)
                    ),
                ));
            }
        };
        let payload = catch_unwind(AssertUnwindSafe(|| convert(payload))).map_err(|panic| {
            (
                DeadLetterKind::Panicked,
                format!(
                    "panicked while upcasting `{type_name}` to `{}`: {}",
                    std::any::type_name::<T>(),
                    panic_text(&*panic)
                ),
            )
        })?;
        Ok(
            catch_unwind(AssertUnwindSafe(|| callback(payload, delivery))).unwrap_or_else(
                |panic| Box::pin(std::future::ready(Err(callback_panicked(&*panic)))),
            ),
        )
    })
}

/// Runs a callback's future, turning a panic into a retryable error.
pub(crate) async fn guarded(
    future: BoxFuture<'static, Result<(), HandlerError>>,
) -> Result<(), HandlerError> {
    AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| Err(callback_panicked(&*panic)))
}

/// The outcome of several callbacks of one message, all run to completion: the first error,
/// made permanent when any of the errors is permanent.
pub(crate) fn combine(results: Vec<Result<(), HandlerError>>) -> Result<(), HandlerError> {
    let permanent = results
        .iter()
        .any(|r| r.as_ref().is_err_and(HandlerError::is_permanent));
    match results.into_iter().find_map(Result::err) {
        None => Ok(()),
        Some(mut first) => {
            first.permanent |= permanent;
            Err(first)
        }
    }
}

fn callback_panicked(panic: &(dyn std::any::Any + Send)) -> HandlerError {
    HandlerError::retry(format!("callback panicked: {}", panic_text(panic)))
}

/// The message of a caught panic.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failures(permanent: &[bool]) -> Vec<Result<(), HandlerError>> {
        permanent
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let text = format!("error {i}");
                Err(if *p {
                    HandlerError::permanent(text)
                } else {
                    HandlerError::retry(text)
                })
            })
            .collect()
    }

    #[test]
    fn combined_outcome_is_the_first_error_permanent_if_any_is() {
        assert!(combine(vec![Ok(()), Ok(())]).is_ok());
        let retry = combine(failures(&[false, false])).unwrap_err();
        assert_eq!(
            (retry.to_string(), retry.is_permanent()),
            ("error 0".into(), false)
        );
        let permanent = combine(failures(&[false, true])).unwrap_err();
        assert_eq!(
            (permanent.to_string(), permanent.is_permanent()),
            ("error 0".into(), true)
        );
        let mut mixed = vec![Ok(())];
        mixed.extend(failures(&[true]));
        assert!(combine(mixed).unwrap_err().is_permanent());
    }
}
