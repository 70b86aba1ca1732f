"""A small Python `event_manager`, the side the Rust library interoperates with.

Written the way the Python services are built (issue #20):

* messages are attrs classes, converted to and from JSON-ready data with cattrs;
* every event is a Celery task named after its routing key, `<exchange>.v<major>.<event>`
  (`order.v1.submit`), that takes the message as its `instance` keyword argument;
* `Order(...).submit()` publishes it to a durable topic exchange named after the domain
  (`order`), routed by the same key;
* consumers bind a durable queue with `consumer_queue('billing_order', ORDER, 'order.*.submit')`
  and register callbacks with `on(Order.submit, callback)`.

    ORDER = Exchange("order")

    @event(ORDER, version="1.0.0", events=["submit"])
    @attrs.define
    class Order:
        id: int

    Order(id=1).submit()                 # publish
    on(Order.submit, lambda order: ...)  # consume, in the worker

The broker is read from `AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`).
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, Iterable
from urllib.parse import quote, unquote, urlsplit

import cattrs
import kombu
from celery import Celery

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2f"


def broker_url(url: str | None = None) -> str:
    """`AMQP_URL` as kombu wants it.

    The Rust side (and the AMQP URI spec) spell the default vhost `/` as `%2f`; kombu spells it
    as an empty-named path after the first slash: `amqp://guest:guest@127.0.0.1:5672//`.
    """
    url = url or os.environ.get("AMQP_URL") or DEFAULT_AMQP_URL
    parts = urlsplit(url)
    vhost = unquote(parts.path[1:]) if parts.path.startswith("/") else unquote(parts.path)
    if vhost in ("", "/"):
        path = "//"
    else:
        path = "/" + quote(vhost, safe="")
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}{path}{query}"


app = Celery("event_manager", broker=broker_url(), set_as_current=True)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    result_backend=None,
    # Wait for the broker's confirm of every publish: `submit()` returning means it is stored.
    broker_transport_options={"confirm_publish": True},
    broker_connection_retry_on_startup=True,
    # The Rust side declares its service queues as classic queues without arguments; so must
    # we, or the two declarations of `billing_order` conflict (PRECONDITION_FAILED).
    task_default_queue_type="classic",
    worker_prefetch_multiplier=16,
)

converter = cattrs.Converter()


class Exchange:
    """A domain's durable topic exchange, such as `order`."""

    def __init__(self, name: str, durable: bool = True) -> None:
        self.name = name
        self.kombu = kombu.Exchange(name, type="topic", durable=durable)

    def __repr__(self) -> str:
        return f"Exchange({self.name!r})"


class Event:
    """One event of a message class: a Celery task named after its routing key.

    On the class (`Order.submit`) it is the event, to register callbacks on; on an instance
    (`order.submit`) it is the method publishing that instance.
    """

    def __init__(self, cls: type, exchange: Exchange, major: int, name: str) -> None:
        self.cls = cls
        self.exchange = exchange
        self.name = name
        self.routing_key = f"{exchange.name}.v{major}.{name}"
        self.callbacks: list[Callable[[Any], Any]] = []
        self.task = app.task(name=self.routing_key, ignore_result=True)(self._run)

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return functools.partial(self.publish, instance)

    def publish(self, instance: Any) -> Any:
        """Sends `instance` as a task message `<routing key>(instance=...)`."""
        if not isinstance(instance, self.cls):
            raise TypeError(f"{self.routing_key} carries {self.cls.__name__}, not {type(instance).__name__}")
        return app.send_task(
            self.routing_key,
            kwargs={"instance": converter.unstructure(instance)},
            exchange=self.exchange.kombu,
            exchange_type="topic",
            routing_key=self.routing_key,
            # Declare the exchange, not Celery's default queue.
            declare=[self.exchange.kombu],
        )

    def on(self, callback: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """Calls `callback(message)` for every message of this event the worker receives."""
        self.callbacks.append(callback)
        return callback

    def _run(self, instance: dict) -> None:
        message = converter.structure(instance, self.cls)
        for callback in self.callbacks:
            callback(message)

    def __repr__(self) -> str:
        return f"Event({self.routing_key!r})"


def event(exchange: Exchange, version: str, events: Iterable[str]) -> Callable[[type], type]:
    """Class decorator: the (attrs) class carries `events` of `exchange` at `version`.

    Adds one `Event` per name, which is both the publish method (`Order(...).submit()`) and the
    event to register callbacks on (`on(Order.submit, callback)`).
    """
    major = int(version.split(".")[0])

    def wrap(cls: type) -> type:
        cls.__event_version__ = version
        for name in events:
            setattr(cls, name, Event(cls, exchange, major, name))
        return cls

    return wrap


def on(event: Event, callback: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Registers `callback` for `event`."""
    return event.on(callback)


def consumer_queue(name: str, exchange: Exchange, pattern: str) -> kombu.Queue:
    """A consumer's durable queue `name`, bound to `exchange` by the topic `pattern`.

    Declared exactly as the Rust library declares a service queue: durable, classic, not
    exclusive, not auto-deleted, no arguments.
    """
    return kombu.Queue(
        name,
        exchange=exchange.kombu,
        routing_key=pattern,
        durable=True,
        exclusive=False,
        auto_delete=False,
    )
