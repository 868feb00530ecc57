"""The settings class the live-settings tests use."""

from __future__ import annotations

from typing import Self

from pydantic import model_validator
from pydantic_settings import SettingsConfigDict

from kit.config import ClientSettings
from kit.liveconfig import live_field


class DemoSettings(ClientSettings):
    """A process with two live limits that must stay ordered, and a restart-only port."""

    model_config = SettingsConfigDict(env_prefix="WEBOOK_DEMO_", extra="ignore", frozen=True)

    soft_limit: int = live_field(10, ge=1)
    hard_limit: int = live_field(20, ge=1)
    port: int = 8000

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.soft_limit > self.hard_limit:
            raise ValueError("soft_limit cannot exceed hard_limit")
        return self
