"""Builds the engine's objects once per process (one Lambda container, or the local runtime).

Handlers call `engine()`; the first call reads Settings.from_env() and opens the
pool and clients, every later invocation reuses them, as Lambda containers should.

Each part imports its module when it is first built, not when this module is imported:
every function imports this module, and each uses only some of the parts (a notifier
neither routes nor lists orders, a step worker serves no HTTP API), so a cold start
imports only the engine modules its function uses. A module's import is CPU that each
new container (and each sandbox of the local runtime) pays before its first answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeAlias

import boto3
from botocore.config import Config

from order_engine.errors import InfrastructureError
from order_engine.messaging import NOTIFY_TOPIC, WATCH_TOPIC, Publisher
from order_engine.observability import setup_logging
from order_engine.settings import Settings

if TYPE_CHECKING:
    from order_engine.account_store import AccountStore
    from order_engine.accounts import Accounts, RateLimiter
    from order_engine.database import Database
    from order_engine.dex.ledger import PostgresLedger
    from order_engine.dex.router import Router
    from order_engine.dex.venue import SubmissionLedger, Venue
    from order_engine.notify import ConnectionSender, Notifier
    from order_engine.order_list import OrderList
    from order_engine.outbox import Outbox, OutboxStore
    from order_engine.pipeline import Pipeline
    from order_engine.service import OrderService
    from order_engine.store import Store
    from order_engine.subscriptions import SubscriptionStore
    from order_engine.sweeper import Sweeper
    from order_engine.watch import PriceWatch, WatchStore

# Fail fast and let SQS redelivery or the sweeper retry, rather than hang a handler.
# One client serves every thread of the process: the records of a batch run at once
# (consumers.py), and in the local runtime all functions share the process. botocore
# keeps 10 connections and opens, then drops, a new one for each caller beyond that (a
# TCP handshake on both sides, per call); kept connections cost nothing until used.
#
# SQS is asked after the commit that made a message necessary, on the answer's path
# (POST /api/orders/execute, every step), and the sweeper relays whatever that left
# behind: a stalled SQS must cost such an answer at most about 4 s (connect 1 + read
# 3, no retry), never the function's whole timeout. /health asks the same client.
_SQS_CONFIG = Config(
    connect_timeout=1, read_timeout=3, retries={"total_max_attempts": 1}, max_pool_connections=100
)
# The database secret is read at cold start (and again on a refused login), off any
# answer's path, so it may wait longer and retry once.
_SECRETS_CONFIG = Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 2})
# A post to a WebSocket connection is quick unless its client is not reading: then
# the gateway holds it (the local runtime answers GoneException after 2 s). The
# notifier waits a little longer, once, then drops the connection. Each such wait
# holds a notifier invocation, so it is kept short.
_POST_CONFIG = Config(
    connect_timeout=1,
    read_timeout=3,
    retries={"total_max_attempts": 1},
    max_pool_connections=100,
)

# Secrets Manager is read once, at cold start: worth a retry, never worth a hang.
_CLIENT_CONFIG = Config(
    connect_timeout=3, read_timeout=10, retries={"max_attempts": 2}, max_pool_connections=100
)


# Builds the venues the router chooses between, over the chain's ledger.
VenueFactory: TypeAlias = "Callable[[Settings, SubmissionLedger], Sequence[Venue]]"


def _simulated(settings: Settings, ledger: SubmissionLedger) -> Sequence[Venue]:
    from order_engine.dex.simulation import simulated_venues

    return simulated_venues(settings.dex, ledger)


@dataclass
class Engine:
    settings: Settings
    venues: VenueFactory = _simulated

    @cached_property
    def database(self) -> Database:
        from order_engine.database import Database
        from order_engine.database_secret import DatabaseSecret

        if self.settings.database_url:
            return Database.from_settings(self.settings)
        if self.settings.database_secret_arn:
            client = boto3.client(
                "secretsmanager", region_name=self.settings.aws_region, config=_SECRETS_CONFIG
            )
            secret = DatabaseSecret.from_settings(self.settings, client)
            secret()  # read at cold start: an unreadable secret fails here, saying why
            return Database(
                secret, max_size=self.settings.db_pool_max, timeout=self.settings.db_pool_timeout
            )
        raise InfrastructureError("neither DATABASE_URL nor DATABASE_SECRET_ARN is set")

    @cached_property
    def store(self) -> Store:
        from order_engine.store import Store

        return Store(self.database)

    @cached_property
    def order_list(self) -> OrderList:
        from order_engine.order_list import OrderList

        return OrderList(self.database)

    @cached_property
    def outbox_store(self) -> OutboxStore:
        from order_engine.outbox import OutboxStore

        return OutboxStore(self.database)

    @cached_property
    def subscriptions(self) -> SubscriptionStore:
        from order_engine.subscriptions import SubscriptionStore

        return SubscriptionStore(self.database)

    @cached_property
    def account_store(self) -> AccountStore:
        from order_engine.account_store import AccountStore

        return AccountStore(self.database)

    @cached_property
    def ledger(self) -> PostgresLedger:
        from order_engine.dex.ledger import PostgresLedger

        return PostgresLedger(self.database)

    @cached_property
    def sqs(self) -> Any:
        return boto3.client(
            "sqs",
            region_name=self.settings.aws_region,
            endpoint_url=self.settings.sqs_endpoint_url,
            config=_SQS_CONFIG,
        )

    @cached_property
    def publisher(self) -> Publisher:
        urls = {step.value: url for step, url in self.settings.step_queue_urls.items()}
        if self.settings.notify_queue_url:
            urls[NOTIFY_TOPIC] = self.settings.notify_queue_url
        if self.settings.watch_queue_url:
            urls[WATCH_TOPIC] = self.settings.watch_queue_url
        return Publisher(lambda: self.sqs, urls)

    @cached_property
    def outbox(self) -> Outbox:
        from order_engine.outbox import Outbox

        return Outbox(self.outbox_store, self.publisher)

    @cached_property
    def router(self) -> Router:
        from order_engine.dex.router import Router

        venues = self.venues(self.settings, self.ledger)
        return Router(venues, quote_timeout=self.settings.dex.quote_timeout)

    def use_venues(self, venues: VenueFactory) -> None:
        """Route through the venues `venues` builds from now on (tests: venues with
        faults, as a flaky network would have). The router and the pipeline over it
        are built anew on next use."""
        self.venues = venues
        for built in ("router", "pipeline", "watch"):
            self.__dict__.pop(built, None)

    @cached_property
    def sender(self) -> ConnectionSender:
        from order_engine.notify import ConnectionSender

        if not self.settings.websocket_management_url:
            raise LookupError("WEBSOCKET_MANAGEMENT_URL is not set")
        client = boto3.client(
            "apigatewaymanagementapi",
            region_name=self.settings.aws_region,
            endpoint_url=self.settings.websocket_management_url,
            config=_POST_CONFIG,
        )
        return ConnectionSender(client)

    @cached_property
    def notifier(self) -> Notifier:
        from order_engine.notify import Notifier

        return Notifier(self.subscriptions, self.sender)

    @cached_property
    def accounts(self) -> Accounts:
        from order_engine.accounts import Accounts

        return Accounts(self.account_store)

    @cached_property
    def rate_limiter(self) -> RateLimiter:
        from order_engine.accounts import RateLimiter

        return RateLimiter(self.account_store, per_minute=self.settings.rate_limit_per_minute)

    @cached_property
    def orders(self) -> OrderService:
        from order_engine.service import OrderService

        # The notifier is built on first use: the HTTP API never posts to connections,
        # so it must not need WEBSOCKET_MANAGEMENT_URL.
        return OrderService(
            self.store,
            self.subscriptions,
            self.outbox,
            lambda: self.notifier,
            self.rate_limiter,
            self.order_list,
            accounts=self.accounts,
            # Opened on first use: answering an order must not need it before then.
            best_price=lambda token_in, token_out: self.watch_store.best_price(token_in, token_out),
        )

    @cached_property
    def delivering_outbox(self) -> Outbox:
        """The outbox of the pipeline's transitions: their events go straight to the
        order's subscribers after commit, the notify queue only carrying what that
        missed (outbox.py). Without a WebSocket API to post to, every notify row is
        published as it is anywhere else."""
        from order_engine.outbox import Outbox

        if not self.settings.websocket_management_url:
            return self.outbox
        return Outbox(self.outbox_store, self.publisher, deliver=self.notifier.deliver)

    @cached_property
    def pipeline(self) -> Pipeline:
        from order_engine.pipeline import Pipeline

        return Pipeline(
            self.store,
            self.router,
            self.delivering_outbox,
            max_attempts=self.settings.max_attempts,
            retry_base_seconds=self.settings.retry_base_seconds,
            # The watch is built when a limit order first waits: most steps never need it.
            on_watching=lambda: self.watch.ensure_running(),
        )

    @cached_property
    def watch_store(self) -> WatchStore:
        from order_engine.watch import WatchStore

        return WatchStore(self.database)

    @cached_property
    def watch(self) -> PriceWatch:
        from order_engine.watch import PriceWatch

        def send_tick(payload: dict[str, Any], delay_seconds: int) -> None:
            self.publisher.send(WATCH_TOPIC, payload, delay_seconds=delay_seconds)

        return PriceWatch(
            self.watch_store,
            self.store,
            self.outbox_store,
            self.outbox,
            lambda: self.router,
            send_tick,
            tick_seconds=self.settings.watch_tick_seconds,
        )

    @cached_property
    def sweeper(self) -> Sweeper:
        from order_engine.sweeper import Sweeper

        return Sweeper(
            self.outbox_store,
            self.outbox,
            outbox_grace_seconds=self.settings.outbox_grace_seconds,
            stuck_after_seconds=self.settings.stuck_after_seconds,
        )


_lock = threading.Lock()
_engine: Engine | None = None


def engine() -> Engine:
    """The process's engine, built on first use from the environment."""
    global _engine
    with _lock:
        if _engine is None:
            setup_logging()
            _engine = Engine(Settings.from_env())
        return _engine


def reset_engine() -> None:
    """Forget the process's engine (tests that change the environment use this)."""
    global _engine
    with _lock:
        if _engine is not None and "database" in _engine.__dict__:
            _engine.database.close()
        _engine = None
