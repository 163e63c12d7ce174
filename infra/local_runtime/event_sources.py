"""Starting what invokes functions without a client: SQS pollers and schedules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from local_runtime.event_source_mapping import SqsPoller
from local_runtime.functions import LambdaFunction
from local_runtime.queue_restore import QueueRestorer
from local_runtime.schedules import Schedule, VirtualClock
from local_runtime.specs import QueueSpec
from local_runtime.sqs_backends import SqsTarget
from local_runtime.template import TemplateError


def start_pollers(
    functions: Mapping[str, LambdaFunction],
    queues: Mapping[str, QueueSpec],
    sqs: SqsTarget,
    *,
    region: str,
    wait_seconds: int,
) -> list[SqsPoller]:
    """One started poller per enabled SQS event of every function."""
    by_arn = {queue.arn: queue for queue in queues.values()}
    restorer = QueueRestorer(queues.values(), lambda: sqs.client(region, max_attempts=2))

    pollers = []
    for logical_id, function in functions.items():
        for mapping in function.spec.sqs_events:
            if not mapping.enabled:
                continue
            queue = by_arn.get(mapping.queue_arn)
            if queue is None:
                raise TemplateError(
                    f"{logical_id}: event {mapping.name} polls {mapping.queue_arn}, "
                    "which is not a queue of this template"
                )
            # One client per poller, shared by its receive loop and the threads of its
            # running batches (each deletes what succeeded): a connection for each.
            connections = mapping.maximum_concurrency + 1

            def client_factory(connections: int = connections) -> Any:
                return sqs.poll_client(region, max_connections=connections)

            poller = SqsPoller(
                function,
                mapping,
                queue,
                client_factory,
                region=region,
                wait_seconds=wait_seconds,
                restorer=restorer,
            )
            poller.start()
            pollers.append(poller)
    return pollers


def start_schedules(
    functions: Mapping[str, LambdaFunction],
    *,
    speed: float,
    account_id: str,
    region: str,
) -> list[Schedule]:
    """One started schedule per enabled Schedule/ScheduleV2 event, on one virtual clock."""
    clock = VirtualClock(speed)
    schedules = []
    for function in functions.values():
        for spec in function.spec.schedule_events:
            if spec.enabled:
                schedule = Schedule(
                    function, spec, clock=clock, account_id=account_id, region=region
                )
                schedule.start()
                schedules.append(schedule)
    return schedules
