"""The ``http:`` section of the inventory::

    http:
      listen: 127.0.0.1:8470                # host:port; `dbfleet serve --http ADDR` overrides
      tokens_file: /etc/dbfleet/tokens.yaml # default: <inventory>.tokens.yaml next to it
      metrics_public: false                 # /metrics needs a viewer token unless true

``dbfleet serve`` serves HTTP when ``listen`` is set (or ``--http`` is
given); ``dbfleet web`` always does. Like :mod:`dbfleet.schedule.config`, this
module imports nothing from :mod:`dbfleet.config`, which uses
:class:`HttpConfig` as the type of its ``http`` field.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

INVENTORY_KEYS = ("http",)
"""The top-level inventory keys this module defines."""

DEFAULT_LISTEN = "127.0.0.1:8470"


def parse_listen(text: str) -> tuple[str, int]:
    """``"127.0.0.1:8470"`` -> ``("127.0.0.1", 8470)``; ``"[::1]:80"``,
    ``":8470"`` (all interfaces) and port 0 (any free port) too.
    ``ValueError`` with the reason otherwise."""
    value = text.strip()
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"listen address {text!r}: use HOST:PORT, e.g. {DEFAULT_LISTEN}")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"listen address {text!r}: port must be 0-65535 (0: any free port)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)  # ValueError names the problem
    return host or "0.0.0.0", port


class HttpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    listen: str | None = Field(
        default=None, description="HOST:PORT to serve HTTP on (dbfleet serve); off when unset"
    )
    tokens_file: Path | None = Field(
        default=None,
        description="the API tokens (hashes only); default <inventory>.tokens.yaml next to it",
    )
    metrics_public: bool = Field(
        default=False, description="serve /metrics without a token (e.g. for a local Prometheus)"
    )

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen(value)
        return value


def tokens_path(http: HttpConfig, inventory: Path) -> Path:
    """``http.tokens_file`` (relative to the inventory's directory), else
    ``<inventory stem>.tokens.yaml`` next to the inventory."""
    configured = http.tokens_file
    if configured is None:
        return inventory.with_name(f"{inventory.stem}.tokens.yaml")
    configured = configured.expanduser()
    return configured if configured.is_absolute() else inventory.parent / configured
