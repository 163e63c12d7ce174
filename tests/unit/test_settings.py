"""Settings.from_env: defaults, and a clear error naming the variable for a bad value."""

from __future__ import annotations

import pytest

from order_engine.settings import Settings


def test_unset_variables_take_the_defaults() -> None:
    settings = Settings.from_env({})

    assert (settings.db_pool_max, settings.rate_limit_per_minute) == (4, 600)


def test_on_lambda_a_container_keeps_a_pool_of_two() -> None:
    """docs/deploy.md's sizing multiplies this by each function's concurrency."""
    on_lambda = Settings.from_env({"AWS_LAMBDA_FUNCTION_NAME": "order-engine-RouteFunction"})

    assert on_lambda.db_pool_max == 2
    assert Settings.from_env({"AWS_LAMBDA_FUNCTION_NAME": "f", "DB_POOL_MAX": "6"}).db_pool_max == 6


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("DB_POOL_MAX", "1", "DB_POOL_MAX='1' is not a whole number >= 2"),
        ("DB_POOL_MAX", "many", "DB_POOL_MAX='many' is not a whole number >= 2"),
        ("RATE_LIMIT_PER_MINUTE", "-5", "RATE_LIMIT_PER_MINUTE='-5' is not a whole number >= 0"),
        ("ORDER_RETRY_BASE_SECONDS", "soon", "ORDER_RETRY_BASE_SECONDS='soon' is not a number"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(name: str, raw: str, expected: str) -> None:
    with pytest.raises(ValueError) as refused:
        Settings.from_env({name: raw})

    assert str(refused.value) == expected


def test_a_pool_of_two_is_enough_for_a_sweep() -> None:
    assert Settings.from_env({"DB_POOL_MAX": "2"}).db_pool_max == 2
