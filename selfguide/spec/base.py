"""Shared base for every spec model: camelCase on the wire, unknown fields rejected, frozen."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class SpecModel(BaseModel):
    """Base of all manifest models.

    Field names are snake_case in Python and camelCase in manifests (as in every Kubernetes API);
    unknown fields are errors, so a typo never silently falls back to a default.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        validate_default=True,
    )

    def to_camel_dict(self) -> dict[str, Any]:
        """The document form (as in a manifest): camelCase keys, defaults included, unset optionals left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
