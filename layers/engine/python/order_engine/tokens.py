"""The tokens the engine trades, by symbol and by mint address.

Native SOL is not an SPL token: DEX pools hold wrapped SOL (the wSOL mint), so the
router wraps SOL before a swap and unwraps it after (see dex/router.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

WSOL_MINT = "So11111111111111111111111111111111111111112"


@dataclass(frozen=True)
class Token:
    symbol: str
    mint: str
    decimals: int
    # The largest amount one market order may move: larger sizes are typos or abuse.
    max_amount: Decimal
    # True for native SOL, which must be wrapped into wSOL to reach a pool.
    native: bool = False

    @property
    def pool_mint(self) -> str:
        """The mint a DEX pool holds for this token (wSOL for native SOL)."""
        return WSOL_MINT if self.native else self.mint


TOKENS: tuple[Token, ...] = (
    Token("SOL", WSOL_MINT, 9, Decimal("100000"), native=True),
    Token("USDC", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", 6, Decimal("10000000")),
    Token("USDT", "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB", 6, Decimal("10000000")),
    Token("BONK", "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263", 5, Decimal("1000000000000")),
    Token("JUP", "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN", 6, Decimal("10000000")),
    Token("RAY", "4k3Dyjzvzp8eMZWUXbBCjEvwSkkk59S5iCNLY3QrkX6R", 6, Decimal("5000000")),
)

_BY_SYMBOL = {token.symbol: token for token in TOKENS}
# The wSOL mint names native SOL: callers that pass the mint mean "SOL".
_BY_MINT = {token.mint: token for token in TOKENS}


def find_token(name: str) -> Token | None:
    """The token called `name`: a symbol (any case) or a mint address (exact).

    Only ASCII letters change case: str.upper() also maps "\u017f" (long s) to "S" and
    "\u0131" (dotless i) to "I", which would make "\u017fol" mean SOL."""
    symbol = name.upper() if name.isascii() else name
    return _BY_SYMBOL.get(symbol) or _BY_MINT.get(name)


def get_token(symbol: str) -> Token:
    """The token with this symbol; a KeyError is a bug, since symbols come from us."""
    return _BY_SYMBOL[symbol]
