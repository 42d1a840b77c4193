"""Reading a slot back from the storage medium while the download still writes it.

The installer must read the slot back and check it against the maker-signed sha256 before it
switches slots (a write the flash got wrong is caught here, not at the next boot). Doing that
after the download doubles the time the install spends on the image. ``SlotReadBack`` does it
alongside instead: each time the agent has made a prefix of the slot durable (``fsync`` at a
checkpoint), that region is read back on a worker thread and fed into a running sha256, while
the main thread goes on receiving and writing the next region. ``hashlib`` releases the
interpreter lock for large buffers, so the two hashes run on two cores.

The pages of a durable region are dropped from the page cache first
(``posix_fadvise(DONTNEED)``), so the read comes from the medium, not from the copy the kernel
still holds of what was written. (Where the file system keeps no page cache of its own, such as
tmpfs, this is a no-op and the read is from memory.)

Nothing here is journaled: after a reboot the agent starts a new read-back from byte 0.
"""

from __future__ import annotations

import hashlib
import os
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

READ_CHUNK = 1 << 20


class SlotReadBack:
    """Read-back of ``path``'s first bytes as they become durable (see the module text)."""

    def __init__(self, path: Path, *, drop_cache: bool = True) -> None:
        self.path = path
        self.drop_cache = drop_cache
        self._fd = os.open(path, os.O_RDONLY)
        self._hash = hashlib.sha256()
        self._scheduled = 0  # bytes handed to the worker so far
        self._read = 0  # bytes the worker has read back and hashed
        self._short = False  # the slot ended before a region did
        self._error: OSError | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="otaguard-readback")
        self._last: Future[None] | None = None
        # An agent dropped without close() (a simulated power cut) must not leak the fd.
        self._finalizer = weakref.finalize(self, _release, self._pool, self._fd)

    @property
    def scheduled(self) -> int:
        return self._scheduled

    def durable(self, upto: int) -> None:
        """The slot's first ``upto`` bytes are on the medium: read back what is new."""
        if upto > self._scheduled:
            start, self._scheduled = self._scheduled, upto
            self._last = self._pool.submit(self._read_region, start, upto)

    def digest(self, length: int) -> str | None:
        """The sha256 (hex) of the slot's first ``length`` bytes as read back, once every
        region is read; None if the slot holds fewer bytes. Raises what a read raised."""
        self.durable(length)
        if self._last is not None:
            self._last.result()
        if self._error is not None:
            raise self._error
        if self._short or self._read < length or self._scheduled != length:
            return None
        return self._hash.hexdigest()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._finalizer()

    def __enter__(self) -> SlotReadBack:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _read_region(self, start: int, end: int) -> None:
        if self._error is not None or self._short:
            return
        try:
            if self.drop_cache:
                os.posix_fadvise(self._fd, start, end - start, os.POSIX_FADV_DONTNEED)
            pos = start
            while pos < end:
                chunk = os.pread(self._fd, min(READ_CHUNK, end - pos), pos)
                if not chunk:
                    self._short = True
                    return
                self._hash.update(chunk)
                pos += len(chunk)
        except OSError as exc:  # reported by digest(), on the caller's thread
            self._error = exc
            return
        self._read = end


def _release(pool: ThreadPoolExecutor, fd: int) -> None:
    pool.shutdown(wait=False)
    os.close(fd)


def read_back_digest(path: Path, length: int, *, drop_cache: bool = True) -> str | None:
    """The read-back sha256 of ``path``'s first ``length`` bytes, in one go (None if short)."""
    with SlotReadBack(path, drop_cache=drop_cache) as rb:
        return rb.digest(length)
