"""Names shared by the release package's modules: the generated files' names and the chunk size
for reading and writing. Imports nothing from the package, so every module can import it."""

from __future__ import annotations

REVISION = "REVISION"
MANIFEST = "MANIFEST"
_CHUNK = 1 << 20
