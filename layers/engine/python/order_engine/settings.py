"""The one configuration object, read from the environment once per process.

Standard names where they exist (DATABASE_URL, AWS_REGION, AWS_ENDPOINT_URL[_SQS]);
everything else is prefixed by what it configures. template.yaml sets these on AWS,
the local runtime sets them from the same template.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from order_engine.orders import Step


@dataclass(frozen=True)
class DexSettings:
    # Multiplies every simulated delay: 1.0 is realistic, 0 is instant (fast tests).
    latency_scale: float = 1.0
    # Seed of the simulation's RNG; None draws one, so runs differ.
    seed: int | None = None
    # Probability that one venue call fails with a transient error / times out.
    failure_rate: float = 0.0
    timeout_rate: float = 0.0
    # How long the router waits for a quote before using the other venue (seconds).
    quote_timeout: float = 1.0
    # Prices move over time (a seeded walk per pair, price_path.py); off, they stand still.
    price_walk: bool = False
    # A test's price path, JSON (price_path.ScriptedPath); it replaces the walk.
    price_path: str | None = None


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    # On AWS instead of database_url: a Secrets Manager secret with the credentials
    # (order_engine.database_secret), so no password sits in the environment.
    database_secret_arn: str | None = None
    # Where to connect with the secret's credentials, when not (only) where the secret
    # says: RDS Proxy's endpoint, or for RDS's own master-user secret, which holds only
    # a username and a password. libpq's standard names.
    database_host: str | None = None
    database_port: str | None = None
    database_name: str | None = None
    aws_region: str = "us-east-1"
    sqs_endpoint_url: str | None = None
    # SQS queue URL per pipeline step, plus the notifier's.
    step_queue_urls: Mapping[Step, str] = field(default_factory=dict)
    notify_queue_url: str | None = None
    # The price watch's tick queue, and its tick (whole seconds: SQS's DelaySeconds).
    watch_queue_url: str | None = None
    watch_tick_seconds: int = 2
    # What clients connect to (wss://…), and where the notifier posts (https://…/stage).
    websocket_url: str | None = None
    websocket_management_url: str | None = None
    dex: DexSettings = field(default_factory=DexSettings)
    # Transient step failures are retried this many times in all, with exponential
    # backoff starting at retry_base_seconds (1 s, 2 s, 4 s…).
    max_attempts: int = 3
    retry_base_seconds: float = 1.0
    # The sweeper re-drives orders that made no progress for this long.
    stuck_after_seconds: float = 120.0
    # …and publishes outbox rows left unsent for this long.
    outbox_grace_seconds: float = 10.0
    # Connections per process, at least 2: a sweep holds one connection for its turn
    # (sweep_turn) and claims rows on another. Unset, see LAMBDA_DB_POOL.
    db_pool_max: int = 4
    # How long a statement waits for a pooled connection before it fails as "database
    # unavailable". Under load a connection comes free within moments, and waiting is
    # better than failing a subscribe or a step that a second more would have served:
    # so most of the functions' 10 s Timeout (template.yaml), leaving the rest for the
    # statement and the answer, so a database that is down still fails cleanly before
    # Lambda kills the invocation.
    db_pool_timeout: float = 6.0
    # Orders one API key may place per minute (HTTP and WebSocket together), counted in
    # PostgreSQL so the limit holds across Lambda containers; 0 turns it off.
    rate_limit_per_minute: int = 600

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        step_urls = {step: url for step in Step if (url := env.get(f"{step.name}_QUEUE_URL"))}
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            database_secret_arn=env.get("DATABASE_SECRET_ARN") or None,
            database_host=env.get("PGHOST") or None,
            database_port=env.get("PGPORT") or None,
            database_name=env.get("PGDATABASE") or None,
            aws_region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            sqs_endpoint_url=env.get("AWS_ENDPOINT_URL_SQS") or env.get("AWS_ENDPOINT_URL"),
            step_queue_urls=step_urls,
            notify_queue_url=env.get("NOTIFY_QUEUE_URL") or None,
            websocket_url=env.get("WEBSOCKET_URL") or None,
            websocket_management_url=env.get("WEBSOCKET_MANAGEMENT_URL") or None,
            dex=DexSettings(
                latency_scale=_float(env, "DEX_LATENCY_SCALE", 1.0),
                seed=int(env["DEX_SEED"]) if env.get("DEX_SEED") else None,
                failure_rate=_float(env, "DEX_FAILURE_RATE", 0.0),
                timeout_rate=_float(env, "DEX_TIMEOUT_RATE", 0.0),
                quote_timeout=_float(env, "DEX_QUOTE_TIMEOUT", 1.0),
                price_walk=env.get("DEX_PRICE_WALK", "1") != "0",
                price_path=env.get("DEX_PRICE_PATH") or None,
            ),
            watch_queue_url=env.get("WATCH_QUEUE_URL") or None,
            watch_tick_seconds=_count(env, "WATCH_TICK_SECONDS", 2, minimum=1),
            max_attempts=int(env.get("ORDER_MAX_ATTEMPTS", "3")),
            retry_base_seconds=_float(env, "ORDER_RETRY_BASE_SECONDS", 1.0),
            stuck_after_seconds=_float(env, "ORDER_STUCK_AFTER_SECONDS", 120.0),
            outbox_grace_seconds=_float(env, "OUTBOX_GRACE_SECONDS", 10.0),
            db_pool_max=_count(env, "DB_POOL_MAX", _default_pool(env), minimum=2),
            db_pool_timeout=_float(env, "DB_POOL_TIMEOUT", 6.0),
            rate_limit_per_minute=_count(env, "RATE_LIMIT_PER_MINUTE", 600),
        )


# The pool when DB_POOL_MAX is unset. A Lambda container runs one invocation at a time,
# whose batch records hold a connection only for their statements: 2 serve it, and
# docs/deploy.md multiplies that by each function's concurrency to size the database. A
# process that runs many invocations at once (the local runtime, tests) shares its pool
# among them, so it keeps more.
LAMBDA_DB_POOL = 2
PROCESS_DB_POOL = Settings.db_pool_max


def _default_pool(env: Mapping[str, str]) -> int:
    return LAMBDA_DB_POOL if env.get("AWS_LAMBDA_FUNCTION_NAME") else PROCESS_DB_POOL


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None


def _count(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ValueError(f"{name}={raw!r} is not a whole number >= {minimum}")
    return value
