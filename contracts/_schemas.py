"""JSON Schemas of the contracts, generated from the models and committed under schemas/."""

from __future__ import annotations

import json
from pathlib import Path

from . import EVENT_TYPES, DeadLetterHeaders
from ._common import Contract

SCHEMA_DIR = Path(__file__).parent / "schemas"


def render_all() -> dict[str, str]:
    """File name → schema text, exactly as committed."""
    models: dict[str, type[Contract]] = {
        f"{event_type}.json": model for event_type, model in EVENT_TYPES.items()
    }
    models["org.runbridge.dead-letter-headers.v1.json"] = DeadLetterHeaders
    rendered = {}
    for name, model in sorted(models.items()):
        schema = model.model_json_schema(by_alias=True)
        schema["$id"] = name.removesuffix(".json")
        rendered[name] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return rendered


def write_all(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_all().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
