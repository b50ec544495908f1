"""Settings of the SUT, read once from the environment (SUT_*), so that `sut up`, gunicorn
workers and tests build services from one place."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sut import SERVICES

DEFAULT_BASE_PORT = 8080
DEFAULT_HOST = "127.0.0.1"
DEFAULT_DATA_DIR = ".sut"
TOKEN_FILE = "admin-token"
BUGS_FILE = "bugs.json"


def split_names(value: str | None) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


@dataclass
class Settings:
    """Everything a service needs to know; `from_env` is the one place that reads SUT_*."""

    data_dir: Path = field(default_factory=lambda: Path(DEFAULT_DATA_DIR))
    db_url: str = ""
    cache_url: str = "memory"
    cache_ttl: float = 60.0
    cache_prefix: str = "sut:"
    bugs: list[str] = field(default_factory=list)
    admin_token: str = ""
    host: str = DEFAULT_HOST
    base_port: int = DEFAULT_BASE_PORT
    urls: dict[str, str] = field(default_factory=dict)
    http_timeout: float = 5.0

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if not self.db_url:
            self.db_url = str(self.data_dir / "sut.db")
        for name, offset in SERVICES.items():
            self.urls.setdefault(name, f"http://{self.host}:{self.base_port + offset}")

    def port(self, service: str) -> int:
        return self.base_port + SERVICES[service]

    @property
    def bugs_path(self) -> Path:
        return self.data_dir / BUGS_FILE

    @property
    def token_path(self) -> Path:
        return self.data_dir / TOKEN_FILE

    def token(self) -> str:
        """The admin token: the setting, else the file `sut up` wrote into the data dir."""
        if self.admin_token:
            return self.admin_token
        try:
            return self.token_path.read_text().strip()
        except OSError:
            return ""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        host = env.get("SUT_HOST") or DEFAULT_HOST
        # a service listening on 0.0.0.0 still reaches its peers through loopback
        peer_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        urls = peer_urls_from_env(env)
        settings = cls(
            data_dir=Path(env.get("SUT_DATA_DIR") or DEFAULT_DATA_DIR),
            db_url=env.get("SUT_DB", ""),
            cache_url=env.get("SUT_CACHE") or "memory",
            cache_ttl=float(env.get("SUT_CACHE_TTL") or 60.0),
            cache_prefix=env.get("SUT_CACHE_PREFIX") or "sut:",
            bugs=split_names(env.get("SUT_BUGS")),
            admin_token=env.get("SUT_ADMIN_TOKEN", ""),
            host=peer_host,
            base_port=int(env.get("SUT_BASE_PORT") or DEFAULT_BASE_PORT),
            urls=urls,
        )
        return settings


def peer_urls_from_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The services whose URL the environment sets (SUT_USER_URL, ...): peers on other hosts,
    e.g. one container per service; the others sit at the base port's offsets."""
    env = os.environ if env is None else env
    urls = {}
    for name in SERVICES:
        key = "SUT_" + name.split("-")[0].upper() + "_URL"
        if env.get(key):
            urls[name] = env[key].rstrip("/")
    return urls
