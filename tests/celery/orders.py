"""The order domain's contract, as the Python services declare it: `order.v1.submit` carries an
`Order`. The Rust example `examples/celery_interop.rs` declares the same shape."""

from __future__ import annotations

import attrs

from event_manager import Exchange, event

ORDER = Exchange("order")


@attrs.define
class Line:
    id: int
    quantity: int
    price: float


@event(ORDER, version="1.0.0", events=["submit"])
@attrs.define
class Order:
    id: int
    lines: list[Line]


def sample(order_id: int) -> Order:
    """A small order with two lines, prices with cents (JSON floats)."""
    return Order(
        id=order_id,
        lines=[
            Line(id=1, quantity=1 + order_id % 5, price=19.99),
            Line(id=2, quantity=1, price=float(order_id % 7) + 0.5),
        ],
    )
