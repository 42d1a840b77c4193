"""Page numbers for long lists (pure)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Paging:
    number: int  # from 1
    size: int

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size

    def of(self, total: int) -> PageInfo:
        last = max(1, -(-total // self.size))
        first_shown = min(total, self.offset + 1)
        return PageInfo(
            number=self.number,
            last=last,
            first_item=first_shown,
            last_item=min(total, self.offset + self.size),
            previous=self.number - 1 if self.number > 1 else None,
            next=self.number + 1 if self.number < last else None,
        )


@dataclass(frozen=True)
class PageInfo:
    number: int
    last: int
    first_item: int
    last_item: int
    previous: int | None
    next: int | None
