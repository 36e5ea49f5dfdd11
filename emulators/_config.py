"""The base of every emulator's settings: frozen, and changed at run time only by a PATCH."""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import BaseModel


class PatchableConfig(BaseModel):
    """Settings that the admin API replaces with a patched copy, never edits in place."""

    patchable: ClassVar[frozenset[str]] = frozenset()
    """What a PATCH may change; identity settings (tenant, clients, org...) may not."""

    def patched(self, changes: dict[str, object]) -> Self:
        """A copy with ``changes`` applied and validated; unknown or fixed names fail."""
        unknown = set(changes) - self.patchable
        if unknown:
            raise ValueError(f"not patchable: {', '.join(sorted(unknown))}")
        return self.model_validate({**self.model_dump(), **changes})
