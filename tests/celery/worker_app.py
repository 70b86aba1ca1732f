"""The Celery worker of the billing service, written with the Python event_manager:

    CELERY_INTEROP_OUT=/tmp/ids celery -A worker_app worker -Q billing_order --concurrency 1 --pool solo

consumes queue `billing_order` bound to `order.*.submit` on exchange `order`, and appends the id
of every order it handles to the file named by `CELERY_INTEROP_OUT`, one per line.
"""

from __future__ import annotations

import os

from event_manager import app, consumer_queue, on
from orders import ORDER, Line, Order

OUT = os.environ.get("CELERY_INTEROP_OUT", "celery-interop-handled.txt")

app.conf.task_queues = [consumer_queue("billing_order", ORDER, "order.*.submit")]
# Only the billing queue on the broker: no remote-control (pidbox) queue beside it.
app.conf.worker_enable_remote_control = False


def record(order: Order) -> None:
    """Checks the order came through with its types, then records its id."""
    if not isinstance(order.id, int) or not order.lines:
        raise ValueError(f"malformed order {order!r}")
    for line in order.lines:
        if not isinstance(line, Line) or not isinstance(line.price, float):
            raise ValueError(f"malformed line {line!r} in order {order.id}")
    with open(OUT, "a", encoding="utf-8") as out:
        out.write(f"{order.id}\n")


on(Order.submit, record)

__all__ = ["app"]
