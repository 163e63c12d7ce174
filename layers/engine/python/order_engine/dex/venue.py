"""The venue interface a real Solana DEX adapter implements, and the values it trades in.

Amounts are `Decimal` in UI units (1.5 SOL, not 1_500_000_000 lamports): they come from
the order request that way and go back to users that way, and a Decimal never rounds
behind our back. Every value type is a frozen dataclass with `to_dict`/`from_dict`, because
the pipeline stores them as JSON in PostgreSQL between steps (Decimals become strings).

The lifecycle of a swap, one pipeline step per call:

    quote   -> Quote              (route step; the router asks every venue)
    build   -> SignedTransaction  (build step; its signature is fixed from here on)
    submit  -> Submission         (submit step; idempotent by signature, like Solana)
    lookup  -> Submission | None  (submit step, when a submit's answer was lost)
    confirm -> Confirmation       (confirm step; blocks until the swap is final)

`submit` being idempotent is what makes "at most one swap per order" hold: a redelivered
submit message sends the *same* signed transaction again and the venue recognises it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any, Protocol

# --- value types ---------------------------------------------------------------------


@dataclass(frozen=True)
class Quote:
    venue: str
    input_mint: str
    output_mint: str
    amount_in: Decimal
    # Net of fees, rounded DOWN to the output token's decimals: never promise more.
    amount_out: Decimal
    fee_bps: int
    # What the fee costs, in OUTPUT token units (amount_out + fee_amount = gross output),
    # so quotes of different venues compare "before fees" and "after fees" directly.
    fee_amount: Decimal
    # Net output per input unit.
    price: Decimal
    # How much worse than the pool's mid price the gross output is, from pool depth.
    price_impact_bps: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "venue": self.venue,
            "input_mint": self.input_mint,
            "output_mint": self.output_mint,
            "amount_in": _dec(self.amount_in),
            "amount_out": _dec(self.amount_out),
            "fee_bps": self.fee_bps,
            "fee_amount": _dec(self.fee_amount),
            "price": _dec(self.price),
            "price_impact_bps": self.price_impact_bps,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Quote:
        return cls(
            venue=d["venue"],
            input_mint=d["input_mint"],
            output_mint=d["output_mint"],
            amount_in=Decimal(d["amount_in"]),
            amount_out=Decimal(d["amount_out"]),
            fee_bps=int(d["fee_bps"]),
            fee_amount=Decimal(d["fee_amount"]),
            price=Decimal(d["price"]),
            price_impact_bps=int(d["price_impact_bps"]),
        )


@dataclass(frozen=True)
class SignedTransaction:
    # base58 of 64 bytes, derived from the order and the route only, so rebuilding the
    # same order gives the same signature (and the venue dedupes a resend).
    signature: str
    order_id: str
    venue: str
    input_mint: str
    output_mint: str
    amount_in: Decimal
    min_amount_out: Decimal
    # Human-readable instruction list, e.g. ("createAssociatedTokenAccount wSOL",
    # "syncNative wSOL", "swap raydium ...", "closeAccount wSOL").
    instructions: tuple[str, ...]
    # The quote's net output. Not part of the signed message (so not in the signature):
    # the venue needs it at confirm time to know what the swap was expected to return.
    quoted_amount_out: Decimal

    def to_dict(self) -> dict[str, Any]:
        return {
            "signature": self.signature,
            "order_id": self.order_id,
            "venue": self.venue,
            "input_mint": self.input_mint,
            "output_mint": self.output_mint,
            "amount_in": _dec(self.amount_in),
            "min_amount_out": _dec(self.min_amount_out),
            "instructions": list(self.instructions),
            "quoted_amount_out": _dec(self.quoted_amount_out),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SignedTransaction:
        return cls(
            signature=d["signature"],
            order_id=d["order_id"],
            venue=d["venue"],
            input_mint=d["input_mint"],
            output_mint=d["output_mint"],
            amount_in=Decimal(d["amount_in"]),
            min_amount_out=Decimal(d["min_amount_out"]),
            instructions=tuple(d["instructions"]),
            quoted_amount_out=Decimal(d["quoted_amount_out"]),
        )


@dataclass(frozen=True)
class Submission:
    signature: str
    venue: str
    # When the venue FIRST saw this signature (a resend reports the original time).
    submitted_at: datetime
    # False when the venue already had this signature: nothing was swapped this time.
    first_submission: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "signature": self.signature,
            "venue": self.venue,
            "submitted_at": self.submitted_at.isoformat(),
            "first_submission": self.first_submission,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Submission:
        return cls(
            signature=d["signature"],
            venue=d["venue"],
            submitted_at=datetime.fromisoformat(d["submitted_at"]),
            first_submission=bool(d["first_submission"]),
        )


@dataclass(frozen=True)
class Confirmation:
    signature: str
    success: bool
    amount_out: Decimal | None
    executed_price: Decimal | None
    # Why the swap did not happen (e.g. "slippage exceeded: ..."); None on success.
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "signature": self.signature,
            "success": self.success,
            "amount_out": None if self.amount_out is None else _dec(self.amount_out),
            "executed_price": None if self.executed_price is None else _dec(self.executed_price),
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Confirmation:
        return cls(
            signature=d["signature"],
            success=bool(d["success"]),
            amount_out=None if d.get("amount_out") is None else Decimal(d["amount_out"]),
            executed_price=(
                None if d.get("executed_price") is None else Decimal(d["executed_price"])
            ),
            reason=d.get("reason"),
        )


class Venue(Protocol):
    """A DEX, as the router and the pipeline steps see it."""

    name: str

    def quote(self, input_mint: str, output_mint: str, amount_in: Decimal) -> Quote:
        """The venue's price for this swap now. Raises NoRoute without a pool for the
        pair, VenueTimeout/VenueUnavailable on transient faults."""
        ...

    def build(
        self,
        order_id: str,
        quote: Quote,
        min_amount_out: Decimal,
        *,
        wrap_sol: bool,
        unwrap_sol: bool,
    ) -> SignedTransaction:
        """The signed swap transaction; deterministic, so a rebuild gives the same one."""
        ...

    def submit(self, tx: SignedTransaction) -> Submission:
        """Send `tx`; idempotent by signature: a resend never swaps twice."""
        ...

    def confirm(self, signature: str) -> Confirmation:
        """Block until the transaction is final. Raises VenueTimeout/VenueUnavailable on
        transient faults, VenueUnavailable when the signature is unknown."""
        ...

    def lookup(self, signature: str) -> Submission | None:
        """What the chain knows of `signature` now, without waiting for finality
        (Solana's getSignatureStatuses): its submission, or None if it never landed.
        Raises VenueTimeout/VenueUnavailable when it cannot tell."""
        ...


# --- the chain's memory of signatures --------------------------------------------------


@dataclass(frozen=True)
class LedgerEntry:
    signature: str
    venue: str
    order_id: str
    submitted_at: datetime
    # True only for the call that recorded the signature first.
    first: bool
    # The transaction as recorded (SignedTransaction.to_dict()). A ledger must return it:
    # confirm, possibly in another process, computes the swap's outcome from it.
    payload: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


class SubmissionLedger(Protocol):
    """The simulated chain's memory of signatures: must outlive a process, so production
    uses PostgreSQL (someone else writes that one)."""

    def record(
        self, signature: str, venue: str, order_id: str, payload: dict[str, Any]
    ) -> LedgerEntry:
        """Record `signature` unless already there; either way return the stored entry,
        with first=True only the first time (and the original submitted_at and payload)."""
        ...

    def get(self, signature: str) -> LedgerEntry | None: ...


class InMemoryLedger:
    """A thread-safe SubmissionLedger for tests and single-process runs."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        # The clock is injectable so tests can backdate a submission.
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._entries: dict[str, LedgerEntry] = {}

    def record(
        self, signature: str, venue: str, order_id: str, payload: dict[str, Any]
    ) -> LedgerEntry:
        with self._lock:
            existing = self._entries.get(signature)
            if existing is not None:
                return LedgerEntry(
                    existing.signature,
                    existing.venue,
                    existing.order_id,
                    existing.submitted_at,
                    first=False,
                    payload=existing.payload,
                )
            entry = LedgerEntry(signature, venue, order_id, self._clock(), True, dict(payload))
            self._entries[signature] = entry
            return entry

    def get(self, signature: str) -> LedgerEntry | None:
        with self._lock:
            return self._entries.get(signature)

    def entries(self) -> list[LedgerEntry]:
        with self._lock:
            return list(self._entries.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


# --- helpers shared by venues -----------------------------------------------------------

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58encode(data: bytes) -> str:
    """Bitcoin/Solana base58: how Solana writes signatures and public keys."""
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, rem = divmod(number, 58)
        digits.append(_B58_ALPHABET[rem])
    # Each leading zero byte is written as a leading "1".
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(digits))


def round_down(amount: Decimal, decimals: int) -> Decimal:
    """`amount` truncated to a token's decimals: amounts we promise never round up."""
    return amount.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_DOWN)


def format_amount(amount: Decimal) -> str:
    """An amount for people: all its digits, no exponent, at least two decimals."""
    text = format(amount.normalize(), "f")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def _dec(value: Decimal) -> str:
    # Plain notation: "0.000000133" rather than "1.33E-7", for people reading the JSON.
    return format(value, "f")
