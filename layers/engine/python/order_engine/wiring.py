"""Builds the engine's objects once per process (one Lambda container, or the local runtime).

Handlers call `engine()`; the first call reads Settings.from_env() and opens the
pool and clients, every later invocation reuses them, as Lambda containers should.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import boto3
from botocore.config import Config

from order_engine.accounts import Accounts, RateLimiter
from order_engine.dex.router import Router
from order_engine.dex.simulation import simulated_venues
from order_engine.errors import InfrastructureError
from order_engine.messaging import NOTIFY_TOPIC, Publisher
from order_engine.notify import ConnectionSender, Notifier
from order_engine.observability import setup_logging
from order_engine.pipeline import Pipeline
from order_engine.service import OrderService
from order_engine.settings import Settings
from order_engine.store import PostgresLedger, Store
from order_engine.sweeper import Sweeper

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


@dataclass
class Engine:
    settings: Settings

    @cached_property
    def store(self) -> Store:
        if not self.settings.database_url:
            raise InfrastructureError("DATABASE_URL is not set")
        return Store.from_settings(self.settings)

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
        return Publisher(self.sqs, urls)

    @cached_property
    def router(self) -> Router:
        venues = simulated_venues(self.settings.dex, PostgresLedger(self.store))
        return Router(venues, quote_timeout=self.settings.dex.quote_timeout)

    @cached_property
    def sender(self) -> ConnectionSender:
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
        return Notifier(self.store, self.sender)

    @cached_property
    def accounts(self) -> Accounts:
        return Accounts(self.store)

    @cached_property
    def rate_limiter(self) -> RateLimiter:
        return RateLimiter(self.store, per_minute=self.settings.rate_limit_per_minute)

    @cached_property
    def orders(self) -> OrderService:
        # The notifier is built on first use: the HTTP API never posts to connections,
        # so it must not need WEBSOCKET_MANAGEMENT_URL.
        return OrderService(self.store, self.publisher, lambda: self.notifier, self.rate_limiter)

    @cached_property
    def pipeline(self) -> Pipeline:
        return Pipeline(
            self.store,
            self.router,
            self.publisher,
            max_attempts=self.settings.max_attempts,
            retry_base_seconds=self.settings.retry_base_seconds,
        )

    @cached_property
    def sweeper(self) -> Sweeper:
        return Sweeper(
            self.store,
            self.publisher,
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
        if _engine is not None and "store" in _engine.__dict__:
            _engine.store.close()
        _engine = None
