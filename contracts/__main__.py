"""``python -m contracts``: regenerate the committed JSON Schemas."""

from ._schemas import write_all

for path in write_all():
    print(path)
