"""Bytes from the wire into the inactive slot: written, hashed and read back as they land.

One ``fetch`` is one request (``net/download.py``) from the journaled offset. The slot is
fsynced at every checkpoint, the durable prefix is handed to the read-back
(``agent/readback.py``) and, at most every ``checkpoint_journal_seconds``, recorded in the
journal, so a journaled checkpoint is always on the flash. The running sha256 of what was
streamed is kept across requests of the same process and rebuilt from the slot after a reboot.
Each chunk is written, hashed and counted once, with no copy: this is the install's hot path.

A compressed artifact (``fetch_compressed``) is decompressed on its way into the slot
(``repo/compression.py``, bounded memory). Its decompressor's state lives only in memory, so
each request streams it from byte 0; the running sha256 is the artifact's (the signed hash),
and the slot's content is checked afterwards against the signed image hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import httpx

from otaguard.agent.config import AgentConfig
from otaguard.agent.journal_keeper import JournalKeeper
from otaguard.agent.readback import SlotReadBack
from otaguard.device.slots import Slots
from otaguard.errors import DownloadCancelled
from otaguard.net.download import WRITE_CHUNK, download_into, hash_prefix
from otaguard.repo.compression import Decompressor


class SlotStream:
    def __init__(self, slots: Slots, config: AgentConfig, keeper: JournalKeeper) -> None:
        self.slots = slots
        self.config = config
        self.keeper = keeper
        self._hash_state: tuple[str | None, int, Any] = (None, 0, None)
        # The slot being read back alongside the download: (slot, attempt, reader).
        self._readback: tuple[str, str, SlotReadBack] | None = None

    def fetch(
        self,
        client: httpx.Client,
        url: str,
        *,
        length: int,
        slot: str,
        offset: int,
        clock: Callable[[], float],
        cancelled: Callable[[], bool],
    ) -> None:
        """One request: bytes from ``offset`` into the slot, checkpointed in the journal (slot
        fsynced first). ``cancelled`` is asked at each checkpoint; True stops the transfer
        with ``DownloadCancelled``. Raises ``DownloadError`` as ``download_into`` does."""
        keeper, config = self.keeper, self.config
        with self.slots.open_write(slot, offset) as w:
            since_checkpoint = 0
            journaled_at = clock()
            hasher = self.hasher(slot, offset)
            readback = self.readback(slot, offset)

            def write(chunk: bytes) -> None:
                nonlocal since_checkpoint
                w.write(chunk)
                hasher.update(chunk)
                self._hash_state = (slot, self._hash_state[1] + len(chunk), hasher)
                since_checkpoint += len(chunk)

            def progress(total: int) -> None:
                nonlocal since_checkpoint, journaled_at
                if since_checkpoint >= config.checkpoint_bytes and total < length:
                    w.sync()
                    readback.durable(total)
                    since_checkpoint = 0
                    now = clock()
                    if now - journaled_at >= config.checkpoint_journal_seconds:
                        keeper.journal.bytes_written = total  # on the medium (synced above)
                        keeper.save()
                        journaled_at = now
                    if cancelled():
                        raise DownloadCancelled("the server cancelled the deployment")

            try:
                download_into(
                    client,
                    url,
                    length=length,
                    offset=offset,
                    write=write,
                    on_progress=progress,
                    # Checkpoints fall between writes: never write more than one apart.
                    write_size=min(WRITE_CHUNK, config.checkpoint_bytes),
                )
            finally:
                w.sync()
                keeper.journal.bytes_written = min(w.tell(), length)
                readback.durable(keeper.journal.bytes_written)
                keeper.save()

    def fetch_compressed(
        self,
        client: httpx.Client,
        url: str,
        *,
        length: int,
        slot: str,
        compression: tuple[str, int],
        cancelled: Callable[[], bool],
    ) -> None:
        """One request for a compressed artifact (``compression``: its kind and the signed
        image length): all of it from byte 0, decompressed into the slot from byte 0. Raises
        ``DownloadError`` as ``download_into`` does, ``VerificationError`` for a corrupt stream
        or more output than signed, ``DownloadCancelled``."""
        self.drop_readback()
        hasher = hashlib.sha256()
        received = 0
        with self.slots.open_write(slot, 0) as w:
            decompressor = Decompressor(compression[0], w.write, compression[1])

            def write(chunk: bytes) -> None:
                nonlocal received
                hasher.update(chunk)
                decompressor.feed(chunk)
                received += len(chunk)

            def progress(_total: int) -> None:
                if cancelled():
                    raise DownloadCancelled("the server cancelled the deployment")

            try:
                download_into(
                    client, url, length=length, offset=0, write=write, on_progress=progress
                )
                if received == length:
                    decompressor.finish()
            finally:
                w.sync()
                self._hash_state = (slot, received, hasher)
                self.keeper.journal.bytes_written = received
                self.keeper.save()

    def readback(self, slot: str, offset: int) -> SlotReadBack:
        """The read-back of this attempt's slot, continued (same process, same attempt) or
        started anew from byte 0 (after a reboot, or when the slot is rewritten from an
        earlier point); what is already durable below ``offset`` is read back at once."""
        attempt = self.keeper.journal.attempt or ""
        current = self._readback
        if current is None or current[:2] != (slot, attempt) or current[2].scheduled > offset:
            self.drop_readback()
            current = (slot, attempt, SlotReadBack(self.slots.path(slot)))
            self._readback = current
        current[2].durable(offset)
        return current[2]

    def read_back(self, slot: str, length: int) -> str | None:
        """The sha256 of the slot's first ``length`` bytes read back from the medium (mostly
        done while the download ran); None if the slot is shorter."""
        try:
            return self.readback(slot, length).digest(length)
        finally:
            self.drop_readback()

    def forget(self) -> None:
        """Forget the running hash and read-back: the slot was written around this stream
        (a delta rebuilt it), so both are rebuilt from the slot when next needed."""
        self.drop_readback()
        self._hash_state = (None, 0, None)

    def drop_readback(self) -> None:
        if self._readback is not None:
            self._readback[2].close()
            self._readback = None

    def hasher(self, slot: str, offset: int) -> Any:
        """The running sha256 of the slot's first ``offset`` bytes. Kept in memory while the
        download streams; after a reboot or a torn resume it is rebuilt from the slot."""
        cached_slot, upto, hasher = self._hash_state
        if cached_slot != slot or upto != offset or hasher is None:
            if offset:
                with self.slots.open_read(slot) as fh:
                    hasher = hash_prefix(fh.read, offset)
            else:
                hasher = hashlib.sha256()
            self._hash_state = (slot, offset, hasher)
        return hasher

    def streamed_digest(self, slot: str, length: int) -> str:
        return str(self.hasher(slot, length).hexdigest())
