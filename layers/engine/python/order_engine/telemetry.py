"""What an operator watches besides logs: X-Ray traces (Powertools Tracer) and, with
`step_span`, the time each step takes.

Tracing is on only where template.yaml's `Tracing` parameter turns it on: Lambda with
active tracing and POWERTOOLS_TRACE_DISABLED=false. Everywhere else (the local runtime,
tests, a Lambda without the parameter) Powertools disables the tracer, and a span
costs nothing. When on, botocore is patched (every SQS, API Gateway and Secrets Manager
call is a subsegment), and each step is a subsegment annotated with its order id, so
X-Ray finds an order's trace by `annotation.order_id`. In Lambda every thread of a batch
(consumers.py) joins the invocation's trace by itself: the X-Ray SDK builds each
thread's parent from the invocation's trace header.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from aws_lambda_powertools import Tracer

from order_engine.observability import SERVICE

tracer = Tracer(service=SERVICE, patch_modules=["botocore"])


@contextmanager
def step_span(step: str, order_id: str) -> Iterator[None]:
    """One step of one order: an X-Ray subsegment `## <step>` (when tracing is on)."""
    with tracer.provider.in_subsegment(f"## {step}") as subsegment:
        subsegment.put_annotation("order_id", order_id)
        yield
