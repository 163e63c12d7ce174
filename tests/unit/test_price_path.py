"""The simulation's prices move over time: the same for every process at the same
second, different from one minute to the next, and settable by a test."""

from __future__ import annotations

from decimal import Decimal

from order_engine.dex.market import Market
from order_engine.dex.price_path import ScriptedPath, SeededWalk
from order_engine.tokens import get_token

SOL, USDC = get_token("SOL"), get_token("USDC")
NOON = 1_796_472_000.0  # any second will do


def test_two_processes_with_one_seed_see_the_same_price_at_the_same_second() -> None:
    one, other = SeededWalk(7), SeededWalk(7)
    other.factor("SOL", "USDC", NOON - 50)  # a different history in this process
    assert one.factor("SOL", "USDC", NOON) == other.factor("SOL", "USDC", NOON)


def test_the_walk_moves_per_pair_and_stays_near_the_pools_price() -> None:
    walk = SeededWalk(7)
    path = [walk.factor("SOL", "USDC", NOON + second) for second in range(0, 600, 10)]
    assert len(set(path)) > 50, "the price moves"
    assert all(Decimal("0.9") < factor < Decimal("1.1") for factor in path)
    assert walk.factor("JUP", "USDC", NOON) != walk.factor("SOL", "USDC", NOON)


def test_a_scripted_path_sets_the_quoted_price_from_each_given_second_on() -> None:
    flat = Market.generate(3)
    scripted = Market.generate(
        3, ScriptedPath({"SOL/USDC": ((0, Decimal("1.1")), (4e9, Decimal("0.5")))})
    )
    one = Decimal(1)
    sell = scripted.quote("raydium", SOL.pool_mint, USDC.pool_mint, one).price
    assert sell / flat.quote("raydium", SOL.pool_mint, USDC.pool_mint, one).price > Decimal("1.09")
    buy = scripted.quote("raydium", USDC.pool_mint, SOL.pool_mint, Decimal(150)).price
    flat_buy = flat.quote("raydium", USDC.pool_mint, SOL.pool_mint, Decimal(150)).price
    assert buy < flat_buy, "SOL dearer in USDC means less SOL per USDC"


def test_a_scripted_path_survives_its_json_form() -> None:
    path = ScriptedPath({"SOL/USDC": ((NOON, Decimal("1.05")),)})
    assert ScriptedPath.from_json(path.to_json()).factor("SOL", "USDC", NOON + 1) == Decimal("1.05")
