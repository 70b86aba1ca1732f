"""Publishes `--count N` orders (ids 1..=N) with `Order(...).submit()`, then prints `published N`.

    AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f python publisher.py --count 200
"""

from __future__ import annotations

import argparse

from event_manager import app
from orders import sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=10, help="how many orders to publish")
    args = parser.parse_args()
    # Celery's producer pool keeps one connection for all publishes; each `submit()` returns
    # once the broker confirmed the message (`confirm_publish`).
    for order_id in range(1, args.count + 1):
        sample(order_id).submit()
    app.close()
    print(f"published {args.count}", flush=True)


if __name__ == "__main__":
    main()
