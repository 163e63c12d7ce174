"""Bad order bodies, sent to POST /api/orders/execute (tests/e2e/bad_input/) and, the ones
the engine refuses with 422, in `execute` frames on the WebSocket API."""

from __future__ import annotations

from tests.support.bad_input import (
    DEEP,
    HUGE_DEEP,
    OBJECTS_DEEP,
    HttpCase,
    order_text,
    order_with,
)

BAD_BODIES = [
    # not JSON, or not an object
    HttpCase("not JSON", 400, "malformed_request", body=b"{"),
    HttpCase("empty body", 400, "malformed_request", body=b""),
    HttpCase("only whitespace", 400, "malformed_request", body=b" \n\t "),
    HttpCase("a JSON array", 400, "malformed_request", body=b"[]"),
    HttpCase("a JSON string", 400, "malformed_request", body=b'"order"'),
    HttpCase("a JSON number", 400, "malformed_request", body=b"42"),
    HttpCase("JSON null", 400, "malformed_request", body=b"null"),
    HttpCase("JSON true", 400, "malformed_request", body=b"true"),
    HttpCase("NaN literal", 400, "malformed_request", body=order_text(amount="NaN")),
    HttpCase("Infinity literal", 400, "malformed_request", body=order_text(amount="Infinity")),
    HttpCase("-Infinity literal", 400, "malformed_request", body=order_text(slippage="-Infinity")),
    HttpCase("invalid UTF-8", 400, "malformed_request", body=b"\xff\xfe{\x80}"),
    HttpCase("a raw NUL between tokens", 400, "malformed_request", body=b'{"type":\x00"market"}'),
    HttpCase(
        "a raw NUL in a string",
        400,
        "malformed_request",
        body=order_with(tokenIn="SO").replace(b'"SO"', b'"SO\x00L"'),
    ),
    HttpCase("arrays nested 5000 deep", 400, "malformed_request", body=b"[" * DEEP + b"]" * DEEP),
    HttpCase(
        "objects nested 2500 deep",
        400,
        "malformed_request",
        body=b'{"a":' * OBJECTS_DEEP + b"1" + b"}" * OBJECTS_DEEP,
    ),
    HttpCase(
        "an amount nested 5000 deep",
        400,
        "malformed_request",
        body=order_text(amount="[" * DEEP + "]" * DEEP),
    ),
    HttpCase(
        "a number of 5000 digits",
        400,
        "malformed_request",
        body=order_text(amount="9" * 5000),
    ),
    # too big
    HttpCase(
        "arrays nested 100k deep",
        413,
        "payload_too_large",
        body=b"[" * HUGE_DEEP + b"]" * HUGE_DEEP,
    ),
    HttpCase("just over 16 KB", 413, "payload_too_large", body=order_with(pad="x" * 16_384)),
    HttpCase("over 1 MB", 413, "payload_too_large", body=order_with(pad="x" * 1_100_000)),
    HttpCase("over 1 MB of garbage", 413, "payload_too_large", body=b"\xff" * 1_100_000),
    # wrong types and values
    HttpCase(
        "negative amount", 422, "validation_error", body=order_with(amount=-1), field="amount"
    ),
    HttpCase("zero amount", 422, "validation_error", body=order_with(amount="0"), field="amount"),
    HttpCase("minus zero", 422, "validation_error", body=order_text(amount="-0"), field="amount"),
    HttpCase(
        "amount 1e309 (a float's infinity)",
        422,
        "validation_error",
        body=order_text(amount="1e309"),
        field="amount",
    ),
    HttpCase(
        "amount '1e309'", 422, "validation_error", body=order_with(amount="1e309"), field="amount"
    ),
    HttpCase(
        "amount 1e999999999",
        422,
        "validation_error",
        body=order_text(amount="1e999999999"),
        field="amount",
    ),
    HttpCase(
        "amount 1e-999999999",
        422,
        "validation_error",
        body=order_text(amount="1e-999999999"),
        field="amount",
    ),
    HttpCase(
        "amount of 29 significant digits",
        422,
        "validation_error",
        body=order_with(amount="1.0000000000000000000000000001"),
        field="amount",
    ),
    HttpCase(
        "amount 'NaN'", 422, "validation_error", body=order_with(amount="NaN"), field="amount"
    ),
    HttpCase(
        "amount '-Infinity'",
        422,
        "validation_error",
        body=order_with(amount="-Infinity"),
        field="amount",
    ),
    HttpCase(
        "amount as a boolean", 422, "validation_error", body=order_with(amount=True), field="amount"
    ),
    HttpCase("amount null", 422, "validation_error", body=order_with(amount=None), field="amount"),
    HttpCase(
        "amount as an object",
        422,
        "validation_error",
        body=order_with(amount={"$gt": 0}),
        field="amount",
    ),
    HttpCase(
        "amount with a comma",
        422,
        "validation_error",
        body=order_with(amount="1,5"),
        field="amount",
    ),
    HttpCase(
        "amount in hex", 422, "validation_error", body=order_with(amount="0x10"), field="amount"
    ),
    HttpCase(
        "amount with SQL",
        422,
        "validation_error",
        body=order_with(amount="1; DROP TABLE orders;--"),
        field="amount",
    ),
    HttpCase(
        "amount with a NUL",
        422,
        "validation_error",
        body=order_with(amount="1\u0000"),
        field="amount",
    ),
    HttpCase(
        "slippage 1e999999999",
        422,
        "validation_error",
        body=order_text(slippage="1e999999999"),
        field="slippageBps",
    ),
    HttpCase(
        "slippage -1e999999999",
        422,
        "validation_error",
        body=order_text(slippage="-1e999999999"),
        field="slippageBps",
    ),
    HttpCase(
        "slippage of 4000 digits",
        422,
        "validation_error",
        body=order_text(slippage="9" * 4000),
        field="slippageBps",
    ),
    HttpCase(
        "slippage as a string",
        422,
        "validation_error",
        body=order_with(slippageBps="100"),
        field="slippageBps",
    ),
    HttpCase(
        "fractional slippage",
        422,
        "validation_error",
        body=order_with(slippageBps=1.5),
        field="slippageBps",
    ),
    HttpCase(
        "slippage true",
        422,
        "validation_error",
        body=order_with(slippageBps=True),
        field="slippageBps",
    ),
    HttpCase("type 'stop'", 422, "validation_error", body=order_with(type="stop"), field="type"),
    HttpCase(
        "type with SQL",
        422,
        "validation_error",
        body=order_with(type="market'; DELETE FROM orders;--"),
        field="type",
    ),
    HttpCase(
        "type with a NUL",
        422,
        "validation_error",
        body=order_with(type="market\u0000"),
        field="type",
    ),
    HttpCase(
        "token as a number", 422, "validation_error", body=order_with(tokenIn=5), field="tokenIn"
    ),
    HttpCase(
        "token as a list",
        422,
        "validation_error",
        body=order_with(tokenOut=["USDC"]),
        field="tokenOut",
    ),
    HttpCase(
        "unknown token", 422, "validation_error", body=order_with(tokenOut="DOGE"), field="tokenOut"
    ),
    HttpCase(
        "the same token twice",
        422,
        "validation_error",
        body=order_with(tokenOut="sol"),
        field="tokenOut",
    ),
    HttpCase(
        "SQL in a token",
        422,
        "validation_error",
        body=order_with(tokenIn="'; DROP TABLE orders;--"),
        field="tokenIn",
    ),
    HttpCase(
        "SQL tautology in a token",
        422,
        "validation_error",
        body=order_with(tokenOut="' OR '1'='1"),
        field="tokenOut",
    ),
    HttpCase(
        "NUL in a token",
        422,
        "validation_error",
        body=order_with(tokenIn="SOL\u0000"),
        field="tokenIn",
    ),
    HttpCase(
        "emoji token",
        422,
        "validation_error",
        body=order_with(tokenIn="\U0001f680"),
        field="tokenIn",
    ),
    HttpCase(
        "right-to-left override in a token",
        422,
        "validation_error",
        body=order_with(tokenOut="\u202eCDSU"),
        field="tokenOut",
    ),
    HttpCase(
        "zero-width space in a token",
        422,
        "validation_error",
        body=order_with(tokenIn="S\u200bOL"),
        field="tokenIn",
    ),
    HttpCase(
        "fullwidth letters",
        422,
        "validation_error",
        body=order_with(tokenIn="\uff33\uff2f\uff2c"),
        field="tokenIn",
    ),
    HttpCase(
        "long s, upper-cased to S",
        422,
        "validation_error",
        body=order_with(tokenIn="\u017fol"),
        field="tokenIn",
    ),
    HttpCase(
        "dotless i, upper-cased to I",
        422,
        "validation_error",
        body=order_with(tokenOut="usdt", tokenIn="\u0131nvalid"),
        field="tokenIn",
    ),
    HttpCase(
        "a lone surrogate in a token",
        422,
        "validation_error",
        body=order_text().replace(b'"SOL"', b'"\\ud800"'),
        field="tokenIn",
    ),
    HttpCase(
        "a 10 KB token",
        422,
        "validation_error",
        body=order_with(tokenIn="A" * 10_000),
        field="tokenIn",
    ),
    HttpCase("an extra field", 422, "validation_error", body=order_with(price=1), field="price"),
    HttpCase(
        "__proto__",
        422,
        "validation_error",
        body=order_with(__proto__={"admin": True}),
        field="__proto__",
    ),
    HttpCase(
        "an emoji field",
        422,
        "validation_error",
        body=order_with(**{"\U0001f4a5": 1}),
        field="\U0001f4a5",
    ),
    HttpCase(
        "a NUL field", 422, "validation_error", body=order_with(**{"\u0000": 1}), field="\u0000"
    ),
    HttpCase(
        "a lone surrogate field",
        422,
        "validation_error",
        body=order_text().replace(b'"type"', b'"\\udfff":1,"type"'),
        field="\udfff",
    ),
    HttpCase(
        "SQL in a field name",
        422,
        "validation_error",
        body=order_with(**{'amount" = 0; --': 1}),
        field='amount" = 0; --',
    ),
    # limit orders: the same rules, naming limitPrice or expiresAt
    *(
        HttpCase(f"limit order, {name}", 422, "validation_error", body=body, field=field)
        for name, body, field in (
            ("no limitPrice", order_with(type="limit"), "limitPrice"),
            ("limitPrice 0", order_with(type="limit", limitPrice="0"), "limitPrice"),
            ("limitPrice negative", order_with(type="limit", limitPrice="-160"), "limitPrice"),
            (
                "limitPrice 13 decimals",
                order_with(type="limit", limitPrice="1." + "1" * 13),
                "limitPrice",
            ),
            (
                "limitPrice absurd",
                order_with(type="limit", limitPrice="1" + "0" * 12),
                "limitPrice",
            ),
            (
                "limitPrice 1e999999999",
                order_text(slippage='500,"type":"limit","limitPrice":1e999999999').replace(
                    b'"type":"market",', b""
                ),
                "limitPrice",
            ),
            (
                "expiresAt past",
                order_with(type="limit", limitPrice="160", expiresAt="2020-01-01T00:00:00Z"),
                "expiresAt",
            ),
            (
                "expiresAt a year ahead",
                order_with(type="limit", limitPrice="160", expiresAt="2099-01-01T00:00:00Z"),
                "expiresAt",
            ),
            (
                "expiresAt not ISO 8601",
                order_with(type="limit", limitPrice="160", expiresAt="tomorrow"),
                "expiresAt",
            ),
            ("a market order with a limitPrice", order_with(limitPrice="160"), "limitPrice"),
        )
    ),
]
