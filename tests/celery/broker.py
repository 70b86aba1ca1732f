"""Broker helpers of scripts/celery-interop, over kombu (the broker is read from `AMQP_URL`).

    python broker.py wait-queue billing_order --consumers 1 --timeout 30
        # until the queue exists and has a consumer
    python broker.py peek --exchange order --pattern 'order.#' -- python publisher.py --count 1
        # binds a temporary queue, runs the command, prints the first message it receives
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import kombu
from amqp.exceptions import NotFound

from event_manager import broker_url


def alive(pid: int) -> bool:
    """Whether process `pid` runs (an exited child its parent has not reaped is a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def wait_queue(name: str, consumers: int, timeout: float, pid: int | None) -> int:
    """Waits until queue `name` exists with at least `consumers` consumers: a consumer
    subscribes after its queue is declared and bound, so then nothing published is lost.
    Gives up early when process `pid` (the consumer) is gone."""
    deadline = time.monotonic() + timeout
    with kombu.Connection(broker_url()) as connection:
        while True:
            if pid is not None and not alive(pid):
                print(f"broker.py: process {pid} exited before consuming {name}", file=sys.stderr)
                return 1
            channel = connection.channel()
            try:
                ok = channel.queue_declare(name, passive=True)
                if ok.consumer_count >= consumers:
                    return 0
            except NotFound:
                pass
            finally:
                try:
                    channel.close()
                except Exception:
                    pass
            if time.monotonic() > deadline:
                print(
                    f"broker.py: queue {name} with {consumers} consumer(s) did not appear within {timeout} s",
                    file=sys.stderr,
                )
                return 1
            time.sleep(0.2)


def peek(exchange: str, pattern: str, command: list[str], timeout: float) -> int:
    with kombu.Connection(broker_url()) as connection:
        channel = connection.channel()
        ex = kombu.Exchange(exchange, type="topic", durable=True)
        queue = kombu.Queue("", exchange=ex, routing_key=pattern, exclusive=True, auto_delete=True)
        bound = queue(channel)
        bound.declare()
        if command:
            subprocess.run(command, check=True, stdout=sys.stderr)
        deadline = time.monotonic() + timeout
        while (message := bound.get(no_ack=True, accept=["json"])) is None:
            if time.monotonic() > deadline:
                print("broker.py: no message arrived", file=sys.stderr)
                return 1
            time.sleep(0.1)
        props = dict(message.properties)
        props.pop("application_headers", None)
        print(
            json.dumps(
                {
                    "delivery_info": {
                        k: message.delivery_info.get(k) for k in ("exchange", "routing_key")
                    },
                    "properties": props,
                    "headers": message.headers,
                    "body": json.loads(message.body),
                },
                indent=2,
                default=str,
            )
        )
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    wq = sub.add_parser("wait-queue")
    wq.add_argument("name")
    wq.add_argument("--consumers", type=int, default=0, help="wait for this many consumers too")
    wq.add_argument("--timeout", type=float, default=30)
    wq.add_argument("--pid", type=int, help="give up when this process exits")
    pk = sub.add_parser("peek")
    pk.add_argument("--exchange", default="order")
    pk.add_argument("--pattern", default="#")
    pk.add_argument("--timeout", type=float, default=10)
    pk.add_argument("command", nargs="*")
    args = parser.parse_args()
    if args.cmd == "wait-queue":
        return wait_queue(args.name, args.consumers, args.timeout, args.pid)
    return peek(args.exchange, args.pattern, args.command, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
