"""Repository test helpers: an in-memory metadata store with the server's ``put`` rules (a name
is written once unless ``replace``), so the online repository runs without a database."""

from __future__ import annotations

from otaguard.errors import ConflictError


class DictStore:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def names(self) -> list[str]:
        return sorted(self.files)

    def get(self, name: str) -> bytes | None:
        return self.files.get(name)

    def put(self, name: str, data: bytes, *, replace: bool = False) -> None:
        if name in self.files and not replace:
            raise ConflictError(name)
        self.files[name] = data
