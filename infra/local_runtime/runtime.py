"""LocalRuntime: a SAM template running on this machine, start to stop.

    with LocalRuntime("template.yaml", RuntimeOptions(sqs="moto")) as runtime:
        print(runtime.http_url, runtime.ws_url, runtime.queue_url("OrdersQueue"))
        runtime.run_forever()  # until SIGINT/SIGTERM

Start: SQS (and the template's queues, dead-letter queues first) -> environments ->
on_start hooks -> functions (one warm sandbox each, with `preload`) -> HTTP/WebSocket
servers -> SQS pollers -> schedules. This process runs no handler code: every
invocation runs in a sandbox of its function (sandboxes.py).
Stop runs the other way: no more polling or firing, WebSocket clients closed with 1001
(their $disconnect runs), running invocations may finish (bounded), sandboxes, servers
and the SQS we started stopped. A message whose invocation did not finish is not lost:
it was never deleted, so it comes back after its visibility timeout.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from local_runtime.emf_metrics import EmfMetrics
from local_runtime.environment import (
    AppliedEnvironment,
    LocalEndpoint,
    function_environment,
    localize_environment,
)
from local_runtime.event_source_mapping import SqsPoller, check_visibility_timeouts
from local_runtime.event_sources import start_pollers, start_schedules
from local_runtime.function_sandboxes import make_functions, runtime_budget
from local_runtime.functions import InFlight, InvocationResult, LambdaFunction
from local_runtime.gateways import build_gateways
from local_runtime.options import RuntimeOptions
from local_runtime.processes import free_port
from local_runtime.reloader import Reloader
from local_runtime.resources import TemplatePlanner
from local_runtime.sandboxes import SandboxPool, start_all
from local_runtime.schedules import Schedule
from local_runtime.servers import AsgiServers
from local_runtime.specs import FunctionSpec, QueueSpec, RestApiSpec, WebSocketApiSpec
from local_runtime.sqs_backends import (
    DUMMY_CREDENTIALS,
    SqsBackend,
    SqsTarget,
    create_or_update_queue,
)
from local_runtime.template import SamTemplate, TemplateError
from local_runtime.websocket_gateway import WebSocketGateway

log = logging.getLogger("local_runtime")


class LocalRuntime:
    def __init__(self, template_path: str | Path, options: RuntimeOptions | None = None) -> None:
        self.template_path = Path(template_path)
        self.options = options or RuntimeOptions()
        self.sqs: SqsTarget | None = None
        self.queues: dict[str, QueueSpec] = {}
        self.function_specs: dict[str, FunctionSpec] = {}
        self.functions: dict[str, LambdaFunction] = {}
        self.websocket_apis: list[WebSocketApiSpec] = []
        self.rest_apis: list[RestApiSpec] = []
        self.environment: dict[str, str] = {}  # what every function gets beyond its own
        self.function_environments: dict[str, dict[str, str]] = {}
        self.http_port = self.options.http_port
        self.ws_ports: dict[str, int] = {}
        self.pollers: list[SqsPoller] = []
        self.schedules: list[Schedule] = []
        self.websocket_gateways: list[WebSocketGateway] = []
        self.in_flight = InFlight()
        # What the functions printed as CloudWatch EMF, served at METRICS_PATH.
        self.metrics = EmfMetrics()
        self._backend: SqsBackend | None = None
        self._servers: AsgiServers | None = None
        self._applied_env: AppliedEnvironment | None = None
        self._reloader: Reloader | None = None
        # The sandboxes' compiled modules (sandbox_process.use_bytecode_cache), kept
        # from one run to the next like the runtime's other state.
        self.bytecode_cache = self.options.data_dir.absolute() / "bytecode"
        # The Unix sockets on which the WebSocket gateways answer the sandboxes'
        # @connections calls (asgi_channel.py), made at start, removed at stop.
        self._channel_dir: Path | None = None
        self._started = False
        self._stop_requested = threading.Event()

    # -- what callers need ---------------------------------------------------------------

    @property
    def http_url(self) -> str:
        return f"http://{self.options.host}:{self.http_port}"

    def ws_url(self, api: str | None = None) -> str:
        """ws://host:port/stage of a WebSocket API (the first one by default)."""
        spec = self._ws_api(api)
        return f"ws://{self.options.host}:{self.ws_ports[spec.logical_id]}/{spec.stage}"

    def management_url(self, api: str | None = None) -> str:
        """The @connections endpoint (endpoint_url for boto3's apigatewaymanagementapi)."""
        spec = self._ws_api(api)
        return f"http://{self.options.host}:{self.ws_ports[spec.logical_id]}/{spec.stage}"

    @property
    def sqs_endpoint(self) -> str | None:
        return self.sqs.endpoint_url if self.sqs else None

    def queue_url(self, logical_id: str) -> str:
        return self._queue(logical_id).url

    def queue_arn(self, logical_id: str) -> str:
        return self._queue(logical_id).arn

    @property
    def started_pids(self) -> list[int]:
        """Processes this runtime started (and will stop): the SQS server, if any, and
        the sandboxes running now."""
        pid = self._backend.pid if self._backend is not None else None
        sandboxes = [pid for pool in self._pools for pid in pool.pids]
        return ([pid] if pid is not None else []) + sandboxes

    @property
    def _pools(self) -> list[SandboxPool]:
        return [function.sandboxes for function in self.functions.values()]

    def sqs_client(self) -> Any:
        if self.sqs is None:
            raise RuntimeError("the runtime is not started")
        return self.sqs.client(self.options.region)

    def invoke(self, logical_id: str, event: Any) -> InvocationResult:
        """Invoke a function directly (like `aws lambda invoke`), waiting for its result."""
        if logical_id not in self.functions:
            raise KeyError(f"no function {logical_id!r}; functions: {sorted(self.functions)}")
        return self.functions[logical_id].invoke(event)

    def update_function_environment(self, logical_id: str, variables: dict[str, str]) -> None:
        """Set some of a function's variables, as `aws lambda update-function-configuration
        --environment` would: invocations from now on run in fresh sandboxes that see them
        (those running finish as they were)."""
        if logical_id not in self.functions:
            raise KeyError(f"no function {logical_id!r}; functions: {sorted(self.functions)}")
        environment = {**self.function_environments[logical_id], **variables}
        self.function_environments[logical_id] = environment
        pool = self.functions[logical_id].sandboxes
        pool.replan(replace(pool.plan, environment=environment))

    def _queue(self, logical_id: str) -> QueueSpec:
        if logical_id not in self.queues:
            raise KeyError(f"no queue {logical_id!r}; queues: {sorted(self.queues)}")
        return self.queues[logical_id]

    def _ws_api(self, logical_id: str | None) -> WebSocketApiSpec:
        for spec in self.websocket_apis:
            if logical_id in (None, spec.logical_id):
                return spec
        raise KeyError(f"no WebSocket API {logical_id or ''!r} in the template")

    # -- start ----------------------------------------------------------------------------

    def start(self) -> LocalRuntime:
        if self._started:
            return self
        self._started = True
        self._stop_requested.clear()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        options = self.options
        template = SamTemplate(self.template_path, options.parameters)
        self._backend = SqsBackend(
            options.sqs, data_dir=options.data_dir.absolute(), region=options.region
        )
        self.sqs = self._backend.start()
        self._announce(f"SQS: {self.sqs.description}")
        planner = TemplatePlanner(
            template,
            region=options.region,
            account_id=self.sqs.account_id,
            stack_name=options.stack_name,
        )
        client = self.sqs_client()
        self.queues = planner.create_queues(
            lambda name, attrs: create_or_update_queue(client, name, attrs)
        )
        self.function_specs = planner.functions()
        check_visibility_timeouts(self.function_specs, self.queues.values())
        self.websocket_apis = planner.websocket_apis(self.function_specs)
        self.rest_apis = planner.rest_apis()
        self._choose_ports()
        self._apply_environment()
        self._make_functions()
        for hook in options.on_start:
            hook(self)
        if options.preload:
            start_all(self._pools, SandboxPool.warm_up)
        self._start_servers()
        if options.pollers:
            self.pollers = start_pollers(
                self.functions,
                self.queues,
                self.sqs,
                region=options.region,
                wait_seconds=options.poll_wait_seconds,
            )
        if options.schedules:
            self.schedules = start_schedules(
                self.functions,
                speed=options.schedule_speed,
                account_id=self.sqs.account_id,
                region=options.region,
            )
        if options.reload:
            self._reloader = Reloader(self.functions.values(), self.bytecode_cache)
            self._reloader.start()
        self._announce(self.describe())

    def _choose_ports(self) -> None:
        if self.http_port == 0:
            self.http_port = free_port(self.options.host)
        for index, spec in enumerate(self.websocket_apis):
            port = self.options.ws_port + index if self.options.ws_port else 0
            self.ws_ports[spec.logical_id] = port or free_port(self.options.host)

    def _apply_environment(self) -> None:
        assert self.sqs is not None
        host, region = self.options.host, self.options.region
        endpoints = [
            LocalEndpoint.websocket(spec.api_id, host, self.ws_ports[spec.logical_id])
            for spec in self.websocket_apis
        ] + [LocalEndpoint.rest(spec.api_id, self.http_url) for spec in self.rest_apis]
        base = {"AWS_REGION": region, "AWS_DEFAULT_REGION": region, **self.sqs.environment()}
        if self.sqs.emulated:
            base.update({k: v for k, v in DUMMY_CREDENTIALS.items() if k not in os.environ})
        if len(self.websocket_apis) == 1:
            # For boto3 clients created without endpoint_url (an explicit one wins).
            base["AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"] = self.management_url()
        host_env = dict(os.environ)  # before this runtime changes it
        self.environment = {**base, **self.options.extra_env}
        self.function_specs = localize_environment(self.function_specs, endpoints, region)
        self.function_environments = {
            logical_id: function_environment(
                spec, host=host_env, overrides=self.environment, region=region
            )
            for logical_id, spec in self.function_specs.items()
        }
        # The parent runs no handler, but on_start hooks (migrations...) read these.
        self._applied_env = AppliedEnvironment(self.environment)
        self._applied_env.apply()

    def _check_runtimes(self) -> None:
        here = f"python{sys.version_info.major}.{sys.version_info.minor}"
        runtimes = {spec.runtime for spec in self.function_specs.values()}
        foreign = sorted(r for r in runtimes if not r.startswith("python"))
        if foreign:
            raise TemplateError(
                f"only Python functions run locally; the template also uses {foreign}"
            )
        if runtimes - {here}:
            log.warning(
                "functions declare %s; they run here on %s", ", ".join(sorted(runtimes)), here
            )

    def _make_functions(self) -> None:
        self._check_runtimes()
        self.functions = make_functions(
            self.function_specs.values(),
            self.function_environments,
            self.in_flight,
            correlation_keys=self.options.correlation_keys,
            websocket_endpoint=self._websocket_endpoint(),
            channels={
                self.management_url(spec.logical_id).rsplit("/", 1)[0]: self._channel(spec)
                for spec in self.websocket_apis
            },
            sqs_servers=self._local_sqs_servers(),
            runtime_cap=self.options.max_sandboxes,
            emf_sink=self.metrics.add_lines,
            budget=runtime_budget(self.options.max_sandboxes_total),
            bytecode_cache=self.bytecode_cache,
        )

    def _local_sqs_servers(self) -> tuple[str, ...]:
        """The SQS server the sandboxes reach over kept-alive connections: an emulator
        over plain HTTP (kept_alive_http.py); the real SQS keeps botocore's session."""
        sqs = self.sqs
        if sqs is None or not sqs.emulated or not sqs.endpoint_url:
            return ()
        return (sqs.endpoint_url,) if sqs.endpoint_url.startswith("http://") else ()

    def _channel(self, spec: WebSocketApiSpec) -> str:
        """The socket of a WebSocket API's channel: short, as a Unix socket's path must
        be (about 100 bytes), whatever the data directory's path."""
        if self._channel_dir is None:
            self._channel_dir = Path(tempfile.mkdtemp(prefix="local-runtime-"))
        index = self.websocket_apis.index(spec)
        return str(self._channel_dir / f"ws{index}.sock")

    def _websocket_endpoint(self) -> str | None:
        """Where a handler's Chalice websocket_api posts: the local @connections."""
        return self.management_url() if self.websocket_apis else None

    def _start_servers(self) -> None:
        http_gateway, ws_gateways = build_gateways(
            self.rest_apis,
            self.websocket_apis,
            self.function_specs,
            self.functions,
            account_id=self.sqs.account_id if self.sqs else "",
            host=self.options.host,
            http_port=self.http_port,
            ws_ports=self.ws_ports,
            idle_timeout=self.options.idle_timeout,
            metrics_text=self.metrics.prometheus_text,
        )
        self.websocket_gateways = ws_gateways
        if http_gateway is None and not ws_gateways:
            return
        self._servers = AsgiServers()
        if http_gateway is not None:
            self._servers.add("the HTTP API", http_gateway, self.options.host, self.http_port)
        for gateway in ws_gateways:
            port = self.ws_ports[gateway.spec.logical_id]
            self._servers.add(
                f"the WebSocket API {gateway.spec.logical_id}", gateway, self.options.host, port
            )
            self._servers.add_channel(gateway, self._channel(gateway.spec))
        self._servers.start()

    def _announce(self, text: str) -> None:
        # Printed, so it shows without any logging set up; logged instead when the
        # caller shows its own banner (announce=False).
        if self.options.announce:
            print(text, file=sys.stderr, flush=True)
        else:
            log.info("%s", text)

    def describe(self) -> str:
        lines = [f"local runtime for {self.template_path} ({len(self.functions)} functions)"]
        if any(f.spec.api_events for f in self.functions.values()):
            lines.append(f"  HTTP API        {self.http_url}")
        for spec in self.websocket_apis:
            lines.append(
                f"  WebSocket API   {self.ws_url(spec.logical_id)}  "
                f"(@connections at {self.management_url(spec.logical_id)})"
            )
        if self.sqs is not None:
            lines.append(f"  SQS             {self.sqs.description}")
        for poller in self.pollers:
            lines.append(f"  poller          {poller.name}")
        limits = ", ".join(f"{f.name} {f.sandboxes.limit}" for f in self.functions.values())
        lines.append(f"  sandboxes       at most: {limits}")
        for schedule in self.schedules:
            lines.append(f"  schedule        {schedule.function.name}: {schedule.spec.expression}")
        return "\n".join(lines)

    # -- stop -----------------------------------------------------------------------------

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        timeout = self.options.shutdown_timeout
        for poller in self.pollers:
            poller.stop_polling()
        for schedule in self.schedules:
            schedule.stop()
        if self._reloader is not None:
            self._reloader.stop()
        if self._servers is not None and self._servers.running:
            for gateway in self.websocket_gateways:
                try:
                    self._servers.call(gateway.shutdown(timeout), timeout + 1)
                except Exception as error:
                    log.warning("closing WebSocket connections: %s", error)
        if not self.in_flight.wait_idle(timeout):
            log.warning(
                "%d invocation(s) still running after %.0f s; leaving them",
                self.in_flight.count,
                timeout,
            )
        for poller in self.pollers:
            poller.join(timeout=2)
        for pool in self._pools:
            pool.stop(timeout=1)  # what still runs after the wait above is stopped
        if self._servers is not None:
            self._servers.stop()
        if self._channel_dir is not None:
            shutil.rmtree(self._channel_dir, ignore_errors=True)
            self._channel_dir = None
        for hook in self.options.on_stop:
            try:
                hook(self)
            except Exception:
                log.exception("on_stop hook failed")
        if self._backend is not None:
            self._backend.stop()
        # A receive loop still inside a long poll ends once its SQS is gone: its receive
        # fails, is retried once after a backoff, and fails again.
        for poller in self.pollers:
            poller.join(timeout=2, loops_within=2)
        for schedule in self.schedules:
            schedule.join(timeout=1)
        self.pollers, self.schedules = [], []
        if self._applied_env is not None:
            self._applied_env.restore()
        self._stop_requested.set()

    def run_forever(self) -> None:
        """Serve until SIGINT/SIGTERM (or stop() from another thread), then stop."""
        self.start()
        previous = {}

        def request_stop(signum: int, frame: FrameType | None) -> None:
            log.warning("stopping (signal %d)", signum)
            self._stop_requested.set()

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, request_stop)
        try:
            while not self._stop_requested.wait(0.5):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop()

    def __enter__(self) -> LocalRuntime:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
