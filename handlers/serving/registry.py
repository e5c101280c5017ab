"""The registry reads serving needs, as a protocol and bound to the database."""
from __future__ import annotations

from typing import Any, Protocol


class Registry(Protocol):
    """The registry reads serving needs (db.registry, bound to an engine)."""

    def production(self, model: str, dataset: str) -> Any:
        """The production ModelVersion of (model, dataset) with its artifact, or None."""

    def get_version(self, model: str, dataset: str, version: int) -> Any:
        """One ModelVersion with its artifact, or None."""

    def aliases(self) -> dict[tuple[str, str], int]:
        """(model, dataset) -> production version."""

    def alias_generation(self) -> int:
        """A number that changes whenever any alias moves."""


class DbRegistry:
    """db.registry's functions bound to one engine."""

    def __init__(self, engine):
        self.engine = engine

    def production(self, model: str, dataset: str):
        """The production version of (model, dataset), or None."""
        from modelbus.db import registry

        return registry.production(self.engine, model, dataset)

    def get_version(self, model: str, dataset: str, version: int):
        """One version, or None."""
        from modelbus.db import registry

        return registry.get_version(self.engine, model, dataset, version)

    def aliases(self) -> dict[tuple[str, str], int]:
        """Every production alias."""
        from modelbus.db import registry

        return registry.aliases(self.engine)

    def alias_generation(self) -> int:
        """The alias generation counter."""
        from modelbus.db import registry

        return registry.alias_generation(self.engine)

    def list_versions(self, model: str | None = None, dataset: str | None = None) -> list:
        """Versions without artifacts, by model, dataset and version."""
        from modelbus.db import registry

        return registry.list_versions(self.engine, model, dataset)

    def automatic_promotions(self, model: str | None = None, dataset: str | None = None) -> dict[tuple, dict]:
        """(model, dataset, version) -> what its automatic promotion decided."""
        from modelbus.db import registry

        return registry.automatic_promotions(self.engine, model, dataset)

    def builds(self, model: str | None = None, dataset: str | None = None, limit: int = 50) -> list[dict]:
        """Build attempts, newest first."""
        from modelbus.db import registry

        return registry.builds(self.engine, model, dataset, limit)
