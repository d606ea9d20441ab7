"""Keep the worker's item index current from the compacted ``items`` topic, read from its start
by a :class:`~stream.kafka.follow.TopicFollower`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import numpy as np

from model.embedding.encoder import TextEncoder
from model.embedding.item_index import ItemIndex, ItemInfo
from stream.kafka.follow import TopicFollower
from stream.metrics import ITEMS_INDEXED
from stream.schemas import InvalidEvent, Item, read_item_record

if TYPE_CHECKING:
    from model.finetune.adapter import AdaptedEncoder

log = logging.getLogger(__name__)

DeadLetterSink = Callable[[bytes | None, InvalidEvent, str, int, int], Awaitable[None]]


class CatalogueFollower:
    """Reads every partition of ``items`` (no consumer group: each worker needs all items),
    embeds new or changed items in batches off the event loop, and removes deleted ones; a
    malformed record goes to the dead-letter topic.
    :meth:`use_space` swaps encoder and index together when an adapter is promoted.

    ``ready`` is set once the topic has been read up to the end offsets seen at start.
    ``on_new_items`` is called with the ids that just became servable.
    """

    def __init__(
        self,
        client_config: dict,
        topic: str,
        encoder_factory: Callable[[], TextEncoder],
        dead_letter: DeadLetterSink,
        on_new_items: Callable[[list[str]], Awaitable[None]],
        exact_search_below: int = 50_000,
        vector_dtype: type = np.float32,
    ) -> None:
        self.exact_search_below = exact_search_below
        self.vector_dtype = vector_dtype
        self.client_config = client_config
        self.topic = topic
        self.encoder_factory = encoder_factory
        self.dead_letter = dead_letter
        self.on_new_items = on_new_items
        self.base_encoder: TextEncoder | None = None  # the frozen encoder adapters are trained on
        # in use: the base encoder, or an AdaptedEncoder once one is promoted
        self.encoder: TextEncoder | AdaptedEncoder | None = None
        self.index: ItemIndex | None = None
        self.texts: dict[str, str] = {}  # item_id -> the text its vector was embedded from
        self.ready = asyncio.Event()

    def use_space(self, encoder, index: ItemIndex) -> None:
        """Serve from ``index`` (same rows as the current index, see :meth:`ItemIndex.respaced`),
        embedded by ``encoder``. Items added or removed while it was prepared are caught up."""
        assert self.index is not None  # an adapter space is prepared from the loaded index
        for info in self.index.infos[: len(index)]:
            if not self.index.available[self.index.row_of(info.item_id)]:
                index.remove(info.item_id)
        added = self.index.infos[len(index) :]
        if added:
            index.upsert(
                added,
                encoder.encode([self.texts[i.item_id] for i in added]),
                [bool(self.index.available[self.index.row_of(i.item_id)]) for i in added],
            )
        self.encoder, self.index = encoder, index
        ITEMS_INDEXED.set(index.n_available)

    async def load_encoder(self) -> None:
        loop = asyncio.get_running_loop()
        self.encoder = self.base_encoder = await loop.run_in_executor(None, self.encoder_factory)
        self.index = ItemIndex(dim=self.encoder.dim, exact_below=self.exact_search_below, dtype=self.vector_dtype)

    async def run(self) -> None:
        """Load the encoder, then follow ``items`` for ever."""
        if self.encoder is None:
            await self.load_encoder()
        await TopicFollower(
            self.client_config, {self.topic: self}, client_id="streamrec-catalogue", max_records=512
        ).run()

    async def caught_up(self) -> None:
        assert self.index is not None  # run() loads the encoder and index before following
        log.info("catalogue: caught up, %d items servable", self.index.n_available)
        self.ready.set()

    async def apply(self, records) -> None:
        assert self.index is not None  # run() loads the encoder and index before following
        latest: dict[str, Item | None] = {}
        for r in records:
            try:
                change = read_item_record(r.key, r.value)
            except InvalidEvent as err:
                await self.dead_letter(r.value, err, r.topic, r.partition, r.offset)
                continue
            if change is not None:
                latest[change.item_id] = change.item
        removed = [i for i, item in latest.items() if item is None]
        for item_id in removed:
            self.index.remove(item_id)
        changed = [item for item in latest.values() if item is not None]
        if changed:
            loop = asyncio.get_running_loop()
            texts = [i.text for i in changed]
            while True:  # an adapter swap during the encoding: encode again in the new space
                encoder = self.encoder
                assert encoder is not None  # loaded with the index
                vectors = await loop.run_in_executor(None, encoder.encode, texts)
                if encoder is self.encoder:
                    break
            self.texts.update((i.item_id, text) for i, text in zip(changed, texts, strict=True))
            infos = [ItemInfo(i.item_id, i.title, i.category) for i in changed]
            new_ids = [i.item_id for i in changed if i.item_id not in self.index]
            self.index.upsert(infos, vectors, [i.available for i in changed])
            if new_ids:
                await self.on_new_items(new_ids)
        ITEMS_INDEXED.set(self.index.n_available)
