"""Schedule/ScheduleV2 events: fire the function as EventBridge would, optionally faster.

`speed` runs a virtual clock: with speed=60 a virtual minute lasts one real second, so
rate(1 minute) fires every second and cron(*/5 * * * ? *) every five seconds. The
event's `time` is the virtual time it was scheduled for. Each firing runs on its own
thread, so a slow invocation never delays the next one (EventBridge does not wait
either).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from local_runtime.functions import LambdaFunction
from local_runtime.schedule_expressions import Rate, parse_schedule
from local_runtime.specs import ScheduleEventSpec

log = logging.getLogger(__name__)


def scheduled_event(*, account_id: str, region: str, rule_arn: str, at: datetime) -> dict[str, Any]:
    """The event EventBridge sends a Lambda target for a scheduled rule."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id,
        "time": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


class VirtualClock:
    def __init__(self, speed: float) -> None:
        if speed <= 0:
            raise ValueError("schedule speed must be positive")
        self.speed = speed
        self._real_start = time.monotonic()
        self._virtual_start = datetime.now(UTC)

    def now(self) -> datetime:
        elapsed = (time.monotonic() - self._real_start) * self.speed
        return self._virtual_start + timedelta(seconds=elapsed)

    def real_seconds_until(self, moment: datetime) -> float:
        return max(0.0, (moment - self.now()).total_seconds() / self.speed)


class Schedule:
    def __init__(
        self,
        function: LambdaFunction,
        spec: ScheduleEventSpec,
        *,
        clock: VirtualClock,
        account_id: str,
        region: str,
    ) -> None:
        self.function = function
        self.spec = spec
        self.expression = parse_schedule(spec.expression)
        self._clock = clock
        self._account_id = account_id
        self._region = region
        self._rule_arn = f"arn:aws:events:{region}:{account_id}:rule/{spec.rule_name}"
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"schedule-{function.name}-{spec.name}", daemon=True
        )
        self.fired = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _next(self, after: datetime, start: datetime) -> datetime:
        if isinstance(self.expression, Rate):
            return self.expression.next_after(after, start)
        return self.expression.next_after(after)

    def _loop(self) -> None:
        start = self._clock.now()
        due = self._next(start, start)
        while not self._stopping.wait(self._clock.real_seconds_until(due)):
            event = (
                self.spec.input
                if self.spec.input is not None
                else scheduled_event(
                    account_id=self._account_id,
                    region=self._region,
                    rule_arn=self._rule_arn,
                    at=due,
                )
            )
            self.fired += 1
            threading.Thread(
                target=self.function.invoke,
                args=(event,),
                daemon=True,
                name=f"fire-{self.function.name}",
            ).start()
            due = self._next(due, start)
