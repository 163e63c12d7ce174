"""REST API route matching, as API Gateway chooses a resource for a request path.

Templates come from the functions' Api events: literal segments, `{param}` segments and
a final greedy `{proxy+}`. When several match, the most specific wins, segment by
segment: a literal beats `{param}`, which beats `{proxy+}`; an exact method beats ANY.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

_LITERAL, _PARAM, _GREEDY = 0, 1, 2


@dataclass(frozen=True)
class Route:
    path: str  # the template, e.g. /orders/{id}
    method: str  # GET, POST... or ANY
    function: str  # logical id of the function
    rest_api: str = "ServerlessRestApi"


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    path_parameters: dict[str, str]


def _segments(path: str) -> list[str]:
    return [s for s in path.strip("/").split("/") if s != ""]


class _CompiledRoute:
    def __init__(self, route: Route) -> None:
        self.route = route
        self.parts = _segments(route.path)
        kinds = []
        for index, part in enumerate(self.parts):
            if part.startswith("{") and part.endswith("+}"):
                if index != len(self.parts) - 1:
                    raise ValueError(f"{route.path}: a greedy {{name+}} must be the last segment")
                kinds.append(_GREEDY)
            elif part.startswith("{") and part.endswith("}"):
                kinds.append(_PARAM)
            else:
                kinds.append(_LITERAL)
        self.kinds = kinds

    def match(self, segments: list[str]) -> dict[str, str] | None:
        params: dict[str, str] = {}
        for index, (part, kind) in enumerate(zip(self.parts, self.kinds, strict=True)):
            if kind == _GREEDY:
                rest = segments[index:]
                if not rest:
                    return None  # {proxy+} needs at least one segment
                params[part[1:-2]] = "/".join(rest)
                return params
            if index >= len(segments):
                return None
            if kind == _PARAM:
                params[part[1:-1]] = segments[index]
            elif part != segments[index]:
                return None
        return params if len(segments) == len(self.parts) else None

    def rank(self) -> tuple[tuple[int, ...], int, int]:
        # Lower sorts first: more specific kinds, then longer templates, exact method.
        return (tuple(self.kinds), -len(self.parts), 1 if self.route.method == "ANY" else 0)


class RouteTable:
    def __init__(self, routes: Iterable[Route]) -> None:
        self._routes = sorted((_CompiledRoute(r) for r in routes), key=_CompiledRoute.rank)

    @property
    def routes(self) -> list[Route]:
        return [compiled.route for compiled in self._routes]

    def match(self, method: str, path: str) -> RouteMatch | None:
        segments = _segments(path)
        method = method.upper()
        best: tuple[tuple[int, ...], RouteMatch] | None = None
        for compiled in self._routes:
            if compiled.route.method not in (method, "ANY"):
                continue
            params = compiled.match(segments)
            if params is None:
                continue
            # Compare segment kinds position by position, then exact method over ANY.
            key = (*compiled.kinds, 1 if compiled.route.method == "ANY" else 0)
            if best is None or key < best[0]:
                best = (key, RouteMatch(compiled.route, params))
        return best[1] if best else None
