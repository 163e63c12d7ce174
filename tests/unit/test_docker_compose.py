"""docker-compose.yml, checked for structure (this machine has no Docker engine): the
services people start with `docker compose up -d` are pinned, private and usable with the
DATABASE_URL its header tells them to export."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, in either of Compose's two spellings."""
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def test_compose_runs_postgres_and_localstack(compose: dict[str, Any]) -> None:
    assert {"postgres", "localstack"} <= set(compose["services"])


def test_every_image_is_pinned_to_an_explicit_tag(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        last = image.rsplit("/", 1)[-1]
        assert "@sha256:" in image or ":" in last, f"{name}: {image} has no tag"
        tag = last.split("@", 1)[0].partition(":")[2]
        assert tag and tag != "latest", f"{name}: {image} is not pinned"
        assert re.search(r"\d", tag), f"{name}: {image} names no version"


def test_every_port_is_bound_to_localhost_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            if isinstance(port, dict):  # the long syntax
                assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"
            else:
                assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is open to the network"


def test_localstack_runs_sqs(compose: dict[str, Any]) -> None:
    services = environment(compose["services"]["localstack"]).get("SERVICES", "")
    assert "sqs" in [s.strip() for s in services.split(",")]


def test_postgres_has_a_healthcheck(compose: dict[str, Any]) -> None:
    check = compose["services"]["postgres"].get("healthcheck", {})
    test = check.get("test")
    assert test, "postgres has no healthcheck"
    assert "pg_isready" in (test if isinstance(test, str) else " ".join(test))


def test_the_header_database_url_matches_the_postgres_service(compose: dict[str, Any]) -> None:
    header = "\n".join(
        line for line in COMPOSE.read_text().splitlines() if line.lstrip().startswith("#")
    )
    match = re.search(r"DATABASE_URL=(\S+)", header)
    assert match, "the header comment does not say which DATABASE_URL to export"
    url = urlsplit(match.group(1))
    postgres = compose["services"]["postgres"]
    env = environment(postgres)

    assert url.scheme in ("postgresql", "postgres")
    assert url.username == env["POSTGRES_USER"]
    assert url.password == env["POSTGRES_PASSWORD"]
    assert url.path.lstrip("/") == env.get("POSTGRES_DB", env["POSTGRES_USER"])
    # …and reaches the container's 5432 through the port the service publishes.
    published = [str(port) for port in postgres.get("ports", [])]
    assert f"{url.hostname}:{url.port or 5432}:5432" in published
