"""What the APIs offer: place an order, read it, list them, cancel it, subscribe to it,
check health.

Free of HTTP and WebSocket framing: functions/ turns requests into these calls and
their results (or errors.RequestError subclasses) into responses. Every call but
health acts for a `Caller` (accounts.py): orders are placed for the caller's account,
and another account's order answers exactly like an unknown one (NotFound), so order
ids cannot be probed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from order_engine import telemetry
from order_engine.accounts import (
    Accounts,
    Caller,
    NewConnection,
    RateLimiter,
    connection_unauthorized,
)
from order_engine.errors import InfrastructureError, NotCancellable, NotFound, ValidationError
from order_engine.notify import Notifier, accepted_message
from order_engine.order_list import OrderList, OrderPage, PageRequest
from order_engine.order_request import parse_json, validate_order_request
from order_engine.orders import CANCELLABLE, Status, as_order_id
from order_engine.outbox import Outbox, first_messages, transition_messages
from order_engine.records import Order
from order_engine.store import Outcome, Store
from order_engine.subscriptions import SubscriptionStore

log = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY_CHARS = 200
# API Gateway refuses (410) posts to a connection whose $connect has not returned, so a
# subscription asked for during $connect starts this long after it (see below).
CONNECT_SUBSCRIBE_DELAY_SECONDS = 1


@dataclass(frozen=True)
class PlacedOrder:
    order: Order
    created: bool  # False when an idempotency key returned an existing order


def parse_order_id(raw: object, field: str = "orderId") -> UUID:
    order_id = as_order_id(raw)
    if order_id is None:
        raise ValidationError(f"{field} is not a valid order id", field=field)
    return order_id


def _is_control(char: str) -> bool:
    """C0 (NUL, tab, CR...), DEL and C1: never part of a key a client meant to send."""
    return ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F


class OrderService:
    def __init__(
        self,
        store: Store,
        subscriptions: SubscriptionStore,
        outbox: Outbox,
        notifier: Callable[[], Notifier],
        rate_limiter: RateLimiter,
        order_list: OrderList,
        *,
        accounts: Accounts,
        best_price: Callable[[str, str], dict[str, Any] | None] | None = None,
    ) -> None:
        self._accounts = accounts
        # The price watch's latest best price of a pair, shown with a waiting order.
        self._best_price = best_price
        self._store = store
        self._order_list = order_list
        self._subscriptions = subscriptions
        self._outbox = outbox
        self._notifier = notifier
        self._rate_limiter = rate_limiter

    def admit(self, key: str | None, *, count: bool = True) -> Caller:
        """The caller `key` speaks for, come to place an order: Unauthorized as
        `Accounts.authenticate`; with `count`, this request is counted against the
        key's rate limit (then RateLimited) by the statement that checks the key. A key
        that is not live counts nothing. Counted before any parsing: bad requests spend
        the budget too, so a client cannot make the service parse for free."""
        if not count:
            return self._accounts.authenticate(key)
        return self._accounts.authenticate_counted(key, self._rate_limiter)

    def place_order_json(
        self, caller: Caller, body: str | bytes, *, idempotency_key: str | None
    ) -> PlacedOrder:
        """Place an order from a raw request body (its size checked, and the request
        counted against the rate limit, by `admit`)."""
        return self._place(caller, parse_json(body), idempotency_key)

    def place_order(self, caller: Caller, data: Any, *, idempotency_key: str | None) -> PlacedOrder:
        """Place an order from already-parsed JSON (the WebSocket `execute` action)."""
        self._rate_limiter.check(caller)
        return self._place(caller, data, idempotency_key)

    def execute(self, caller: Caller, connection_id: str, data: Any) -> PlacedOrder:
        """The WebSocket `execute` action: place the order, tell the connection it was
        accepted, then subscribe it, so its snapshot and events follow in that order."""
        placed = self.place_order(caller, data, idempotency_key=None)
        self._notifier().send(connection_id, accepted_message(placed.order.id))
        self.subscribe(caller, connection_id, placed.order.id)
        return placed

    def _place(self, caller: Caller, data: Any, idempotency_key: str | None) -> PlacedOrder:
        request = validate_order_request(data)
        if idempotency_key is not None and (
            not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY_CHARS
            or any(_is_control(char) for char in idempotency_key)
        ):
            raise ValidationError(
                f"the idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters, "
                "none of them a control character",
                field="idempotencyKey",
            )
        order_id = uuid.uuid4()
        created = self._store.create_order(
            order_id,
            request,
            account_id=caller.account_id,
            outbox=first_messages(order_id),
            idempotency_key=idempotency_key,
        )
        if created.created:
            self._outbox.publish(created.outbox)
            log.info("order %s placed: %s", created.order.id, request.to_dict())
            telemetry.order_placed(created.order.id)
        return PlacedOrder(order=created.order, created=created.created)

    def get_order(self, caller: Caller, raw_order_id: str) -> dict[str, Any]:
        """The caller's order with its route decision and full event timeline; while it
        is watching, the price watch's latest best price of its pair (else null)."""
        order_id = parse_order_id(raw_order_id, field="id")
        order = self._store.get_order(order_id, account_id=caller.account_id)
        if order is None:
            raise NotFound(f"order {order_id} not found", field="id")
        events = self._store.get_events(order_id)
        best = None
        if order.status is Status.WATCHING and self._best_price is not None:
            best = self._best_price(order.token_in.symbol, order.token_out.symbol)
        return {
            **order.to_dict(),
            "events": [event.to_dict() for event in events],
            "bestPrice": best,
        }

    def list_orders(self, caller: Caller, query: Mapping[str, str] | None) -> OrderPage:
        """A page of the caller's orders, newest first (order_list.py); a bad query
        parameter raises ValidationError naming it."""
        return self._order_list.page(caller.account_id, PageRequest.from_query(query))

    def cancel_order(self, caller: Caller, raw_order_id: str, *, field: str = "id") -> Order:
        """Cancel the caller's order while it is cancellable (orders.CANCELLABLE): it
        ends `cancelled`, and its subscribers are told through the outbox like after
        any transition. Later, NotCancellable names the status it is in; another
        account's order is NotFound, like an unknown one.

        Racing a step, exactly one wins: both are conditional transitions of the same
        row, so a step that comes second finds the order cancelled and does nothing,
        and a cancel that comes second finds it past cancelling and is refused."""
        order_id = parse_order_id(raw_order_id, field=field)
        result = self._store.cancel(
            order_id,
            account_id=caller.account_id,
            outbox=transition_messages(order_id, Status.CANCELLED),
        )
        if result.outcome is Outcome.NOT_FOUND or result.order is None:
            raise NotFound(f"order {order_id} not found", field=field)
        if not result.applied:
            status = result.order.status
            allowed = " or ".join(sorted(CANCELLABLE))
            raise NotCancellable(
                f"order {order_id} is {status}; only an order that is {allowed} can be cancelled",
                status=status.value,
            )
        self._outbox.publish(result.outbox, due=result.due)
        log.info("order %s cancelled", order_id)
        return result.order

    # --- WebSocket subscriptions -------------------------------------------------------

    def connect(
        self,
        key: str | None,
        connection_id: str,
        metadata: dict[str, Any],
        *,
        subscribe_to: str | None = None,
    ) -> Caller:
        """Accept a WebSocket connection for the caller `key` speaks for (whom its later
        messages act for) and, with `subscribe_to`, a subscription to that order,
        started once the socket is open; that caller. Refusing (Unauthorized, then
        NotFound or ValidationError) writes nothing.

        Without `subscribe_to` it is one statement: the one that checks the key records
        the connection. With it, the key is checked, then the order, and only then is
        the connection recorded.

        While $connect runs the connection cannot receive, so a subscription row written
        now would make the notifier post to it, get GoneException and drop it. Instead
        the order is checked now (an unknown one, or another account's, refuses the
        handshake) and a delayed notify message carries the subscription: the notifier
        writes it, then sends the snapshot, so nothing committed meanwhile is missed.
        """
        if subscribe_to is None:
            return self._accounts.authenticate(
                key, connection=NewConnection(connection_id, metadata)
            )
        caller = self._accounts.authenticate(key)
        order_id = self._owned_order_id(caller, subscribe_to)
        self._subscriptions.add_connection(connection_id, metadata, caller=caller)
        self._outbox.subscribe_later(
            order_id, connection_id, delay_seconds=CONNECT_SUBSCRIBE_DELAY_SECONDS
        )
        return caller

    def subscribe(self, caller: Caller, connection_id: str, raw_order_id: str | UUID) -> None:
        """Subscribe an open connection to one of the caller's orders and send its
        snapshot now."""
        order_id = parse_order_id(raw_order_id)
        # The subscription row comes first, the snapshot after: an event committed in
        # between is then past the cursor and delivered, never skipped. Its statement
        # also checks that the order is the caller's (no read of the order before it).
        if not self._subscriptions.subscribe(connection_id, order_id, account_id=caller.account_id):
            raise NotFound(f"order {order_id} not found", field="orderId")
        self._notifier().deliver(order_id)

    def subscribe_connection(self, connection_id: str, order_id: UUID) -> None:
        """`subscribe` for whomever the connection acts for, checked by the statement
        that writes the subscription and reads its snapshot: Unauthorized when the
        connection is not open under a live key (as `Accounts.authenticate_connection`
        would have said first), then NotFound as `subscribe`. Then the snapshot, sent
        now to the new subscriber (to every subscriber the order has, when the
        statement's snapshot was short and is read anew)."""
        done = self._subscriptions.subscribe_connection(connection_id, order_id)
        if done.caller is None:
            raise connection_unauthorized()
        if not done.subscribed:
            raise NotFound(f"order {order_id} not found", field="orderId")
        self._notifier().deliver(order_id, due=done.due)

    def _owned_order_id(self, caller: Caller, raw_order_id: str | UUID) -> UUID:
        order_id = parse_order_id(raw_order_id)
        if self._store.get_order(order_id, account_id=caller.account_id) is None:
            raise NotFound(f"order {order_id} not found", field="orderId")
        return order_id

    def disconnect(self, connection_id: str) -> None:
        self._subscriptions.remove_connection(connection_id)

    # --- health -----------------------------------------------------------------------

    def health(self) -> dict[str, str]:
        """'ok' or what is wrong, per dependency."""
        checks: dict[str, str] = {}
        try:
            self._store.database.ping()
            checks["postgres"] = "ok"
        except InfrastructureError as exc:
            checks["postgres"] = f"down: {exc}"
        try:
            self._outbox.check()
            checks["sqs"] = "ok"
        except Exception as exc:
            checks["sqs"] = f"down: {type(exc).__name__}: {exc}"
        return checks
