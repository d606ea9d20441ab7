"""Follow the compacted ``items`` topic from the start and keep the worker's item index current."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from model.embedding.encoder import TextEncoder
from model.embedding.item_index import ItemIndex, ItemInfo
from model.embedding.item_text import render_item_text
from stream.kafka.follow import open_from_start
from stream.metrics import ITEMS_INDEXED
from stream.schemas import InvalidEvent, Item, parse_item

log = logging.getLogger(__name__)

DeadLetterSink = Callable[[bytes | None, InvalidEvent, str, int, int], Awaitable[None]]


def item_text(item: Item) -> str:
    return render_item_text(item.title, item.category, item.description, item.tags)


class CatalogueFollower:
    """Reads every partition of ``items`` (no consumer group: each worker needs all items),
    embeds new or changed items in batches off the event loop, and removes deleted ones.
    :meth:`use_space` swaps encoder and index together when an adapter is promoted.

    ``ready`` is set once the topic has been read up to the end offsets seen at start.
    ``on_new_items`` is called with the ids that just became servable.
    """

    def __init__(self, client_config: dict, topic: str, encoder_factory: Callable[[], TextEncoder],
                 dead_letter: DeadLetterSink, on_new_items: Callable[[list[str]], Awaitable[None]]) -> None:
        self.client_config = client_config
        self.topic = topic
        self.encoder_factory = encoder_factory
        self.dead_letter = dead_letter
        self.on_new_items = on_new_items
        self.base_encoder: TextEncoder | None = None  # the frozen encoder adapters are trained on
        self.encoder = None  # in use: the base encoder, or an AdaptedEncoder once one is promoted
        self.index: ItemIndex | None = None
        self.texts: dict[str, str] = {}  # item_id -> the text its vector was embedded from
        self.ready = asyncio.Event()

    def use_space(self, encoder, index: ItemIndex) -> None:
        """Serve from ``index`` (same rows as the current index, see :meth:`ItemIndex.respaced`),
        embedded by ``encoder``. Items added or removed while it was prepared are caught up."""
        for info in self.index.infos[: len(index)]:
            if not self.index.available[self.index.row_of(info.item_id)]:
                index.remove(info.item_id)
        added = self.index.infos[len(index):]
        if added:
            index.upsert(added, encoder.encode([self.texts[i.item_id] for i in added]),
                         [bool(self.index.available[self.index.row_of(i.item_id)]) for i in added])
        self.encoder, self.index = encoder, index
        ITEMS_INDEXED.set(index.n_available)

    async def load_encoder(self) -> None:
        loop = asyncio.get_running_loop()
        self.encoder = self.base_encoder = await loop.run_in_executor(None, self.encoder_factory)
        self.index = ItemIndex(dim=self.encoder.dim)

    async def run(self) -> None:
        if self.encoder is None:
            await self.load_encoder()
        consumer, tps = await open_from_start(self.client_config, self.topic)
        try:
            end = await consumer.end_offsets(tps)
            log.info("catalogue: reading %s (%d records at start)", self.topic, sum(end.values()))
            while True:
                if not self.ready.is_set() and all([await consumer.position(tp) >= end[tp] for tp in tps]):
                    log.info("catalogue: caught up, %d items servable", self.index.n_available)
                    self.ready.set()
                batch = await consumer.getmany(timeout_ms=300, max_records=512)
                records = [r for rs in batch.values() for r in rs]
                if records:
                    await self._apply(records)
        finally:
            await consumer.stop()

    async def _apply(self, records) -> None:
        latest: dict[str, Item | None] = {}
        for r in records:
            key = r.key.decode("utf-8", errors="replace") if r.key else None
            if r.value is None:  # tombstone
                if key:
                    latest[key] = None
                continue
            try:
                item = parse_item(r.value)
            except InvalidEvent as err:
                await self.dead_letter(r.value, err, r.topic, r.partition, r.offset)
                continue
            latest[item.item_id] = None if item.deleted else item
        removed = [i for i, item in latest.items() if item is None]
        for item_id in removed:
            self.index.remove(item_id)
        changed = [item for item in latest.values() if item is not None]
        if changed:
            loop = asyncio.get_running_loop()
            texts = [item_text(i) for i in changed]
            while True:  # an adapter swap during the encoding: encode again in the new space
                encoder = self.encoder
                vectors = await loop.run_in_executor(None, encoder.encode, texts)
                if encoder is self.encoder:
                    break
            self.texts.update((i.item_id, text) for i, text in zip(changed, texts))
            infos = [ItemInfo(i.item_id, i.title, i.category) for i in changed]
            new_ids = [i.item_id for i in changed if i.item_id not in self.index]
            self.index.upsert(infos, vectors, [i.available for i in changed])
            if new_ids:
                await self.on_new_items(new_ids)
        ITEMS_INDEXED.set(self.index.n_available)
