"""Catalog search over a 100,000-item seller: the Redis index against a naive Python filter.

Loads N synthetic items (Portuguese and Spanish titles with accents, ~20 categories, 3
statuses, SKUs) into a scratch key scope through `RedisItemStore.put`, then times a mix
of queries two ways in the same run: the Redis index (`RedisItemStore.search`, one Lua
script per page) and the baseline, the same query answered by filtering and sorting the
items held in a Python list. Before the queries it updates 10% of the items (new price,
half of them a new title word) and marks 1% gone, timing both, so the queries run on an
index that has seen changes. Prints load and update throughput, the Redis memory the index
takes and, per query kind, p50/p99 warm (the same query again: later pages reuse what the
first page cached), cold (the seller's index version bumped before every call, as any
write does: the first page after a write) and of the baseline. The first page of each
query is checked against the baseline (ids, total and facets). Deletes its keys at the end.

    uv run python -m bench.catalog_search [--items 100000] [--rounds 200]

Needs Redis from scripts/stack with .stack/env sourced (it logs in as the catalog user).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis

from peepers_catalog.adapters import RedisItemStore
from peepers_catalog.ports import SearchPage, SearchQuery
from peepers_catalog.search_text import item_terms, terms
from peepers_catalog.settings import Settings
from peepers_common.events import ItemSnapshot
from peepers_common.namespaces import Namespace, connect_redis
from peepers_common.settings import StackSettings
from tests.support import unique

SELLER = 424242
NOUNS = (
    "Café",
    "Camiseta",
    "Cafeteira",
    "Ação",
    "Niño",
    "Mesa",
    "Cadeira",
    "Tênis",
    "Zapatilla",
    "Canción",
    "Bolsa",
    "Relógio",
    "Pantalón",
    "Cámara",
    "Fone",
    "Teclado",
    "Mochila",
    "Sartén",
    "Caneca",
    "Lámpara",
    "Colchão",
    "Toalha",
    "Piñata",
    "Jarrón",
)
ADJECTIVES = (
    "Azul",
    "Vermelho",
    "Rojo",
    "Elétrica",
    "Eléctrico",
    "Pequeño",
    "Grande",
    "Orgânico",
    "Algodón",
    "Couro",
    "Cerâmica",
    "Inoxidável",
    "Térmica",
    "Ajustável",
    "Portátil",
    "Clásico",
    "Infantil",
    "Económico",
    "Premium",
    "Decoração",
)
BRANDS = (
    "Tramontina",
    "Mondial",
    "Oster",
    "Nike",
    "Adidas",
    "Philips",
    "Samsung",
    "Brastemp",
    "Fagor",
    "Taurus",
)
LINKS = ("de", "com", "para", "sem", "con", "y")
STATUSES = ("active", "active", "active", "active", "paused", "closed")
CATEGORIES = [f"MLB{1000 + i}" for i in range(20)]


def synthetic_items(count: int, rng: random.Random) -> list[ItemSnapshot]:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    items = []
    for n in range(count):
        title = " ".join(
            [
                rng.choice(NOUNS),
                rng.choice(ADJECTIVES),
                rng.choice(LINKS),
                rng.choice(NOUNS).lower(),
                rng.choice(BRANDS),
                f"{rng.randint(1, 500)}{rng.choice(['ml', 'cm', 'g', 'un'])}",
            ]
        )
        items.append(
            ItemSnapshot(
                id=f"MLB{5_000_000_000 + n}",
                seller_id=SELLER,
                title=title,
                category_id=rng.choice(CATEGORIES),
                price=Decimal(rng.randint(100, 500_000)) / 100,
                currency_id="BRL",
                available_quantity=rng.randint(0, 50),
                sold_quantity=rng.choice([0, 0, 0, rng.randint(1, 5000)]),
                status=rng.choice(STATUSES),
                sku=f"{rng.choice(BRANDS)[:3].upper()}-{n:06d}",
                last_updated=start + timedelta(seconds=rng.randint(0, 90 * 86400)),
            )
        )
    return items


def naive_search(
    items: list[ItemSnapshot], query: SearchQuery
) -> tuple[list[str], int, dict[str, dict[str, int]]]:
    """The baseline: the page's ids, total and facets, by filtering and sorting a list."""
    words = terms(query.q or "")
    base = [
        item
        for item in items
        if (query.price_min is None or item.price >= query.price_min)
        and (query.price_max is None or item.price <= query.price_max)
        and all(any(t.startswith(w) for t in item_terms(item.title, item.sku)) for w in words)
    ]
    facets: dict[str, dict[str, int]] = {"status": {}, "category": {}}
    matches = []
    for item in base:
        status_ok = query.status is None or item.status == query.status
        category_ok = query.category is None or item.category_id == query.category
        if category_ok:
            facets["status"][item.status] = facets["status"].get(item.status, 0) + 1
        if status_ok and item.category_id is not None:
            by_category = facets["category"]
            by_category[item.category_id] = by_category.get(item.category_id, 0) + 1
        if status_ok and category_ok:
            matches.append(item)
    field = query.sort.lstrip("-")
    key: Callable[[ItemSnapshot], tuple[Any, str]] = {
        "price": lambda i: (i.price, i.id),
        "updated": lambda i: (i.last_updated, i.id),
        "sold": lambda i: (i.sold_quantity, i.id),
    }[field]
    matches.sort(key=key, reverse=query.sort.startswith("-"))
    return [item.id for item in matches[: query.limit]], len(matches), facets


QUERIES: dict[str, SearchQuery] = {
    "no q, -updated": SearchQuery(SELLER),
    "no q, price": SearchQuery(SELLER, sort="price"),
    "no q, -price": SearchQuery(SELLER, sort="-price"),
    "no q, sold": SearchQuery(SELLER, sort="sold"),
    "no q, -sold": SearchQuery(SELLER, sort="-sold"),
    "no q, updated": SearchQuery(SELLER, sort="updated"),
    "status=paused": SearchQuery(SELLER, status="paused"),
    "category (5%)": SearchQuery(SELLER, category=CATEGORIES[3]),
    "status+category": SearchQuery(SELLER, status="closed", category=CATEGORIES[7]),
    "q one word": SearchQuery(SELLER, q="cafe"),
    "q two words": SearchQuery(SELLER, q="camiseta azul"),
    "q prefix 2 chars": SearchQuery(SELLER, q="ca"),
    "q + status + price": SearchQuery(
        SELLER, q="nino", status="active", price_min=Decimal(100), price_max=Decimal(2000)
    ),
    "price range only": SearchQuery(SELLER, price_min=Decimal(100), price_max=Decimal(300)),
    "q sku": SearchQuery(SELLER, q="TRA-0123"),
}


async def timed(
    call: Callable[[], Awaitable[object]],
    rounds: int,
    before: Callable[[], Awaitable[object]] | None = None,
) -> list[float]:
    samples = []
    for _ in range(rounds):
        if before is not None:
            await before()
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def quantiles(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return f"{statistics.median(samples):7.2f} {cuts[98]:7.2f}"


async def deep_page(store: RedisItemStore, query: SearchQuery, pages: int) -> SearchQuery:
    """The query for page ``pages + 1``, reached by following cursors."""
    for _ in range(pages):
        page = await store.search(query)
        query = replace(query, cursor=page.next_cursor)
    return query


async def used_memory(admin: aioredis.Redis) -> int:
    info = await admin.info("memory")
    return int(info["used_memory"])


async def cleanup(admin: aioredis.Redis, prefix: str) -> int:
    deleted = 0
    async for key in admin.scan_iter(match=f"{prefix}*", count=5000):
        deleted += await admin.unlink(key)
    return deleted


async def load(store: RedisItemStore, items: list[ItemSnapshot]) -> float:
    """Put every item (nothing cached yet), 32 in flight; puts per second."""
    start = time.perf_counter()
    semaphore = asyncio.Semaphore(32)

    async def put(item: ItemSnapshot) -> None:
        async with semaphore:
            await store.put(item, expected=None)

    await asyncio.gather(*(put(item) for item in items))
    return len(items) / (time.perf_counter() - start)


async def update(
    store: RedisItemStore, items: list[ItemSnapshot], rng: random.Random
) -> tuple[list[ItemSnapshot], float]:
    """Re-put 10% of the items a day later with a new price (half also a new first word),
    32 in flight; the new list and the updates per second."""
    chosen = set(rng.sample(range(len(items)), len(items) // 10))
    changed: dict[int, ItemSnapshot] = {}
    for n in chosen:
        old = items[n]
        title = old.title if n % 2 else " ".join([rng.choice(NOUNS), *old.title.split()[1:]])
        changed[n] = old.model_copy(
            update={
                "title": title,
                "price": Decimal(rng.randint(100, 500_000)) / 100,
                "last_updated": old.last_updated + timedelta(days=1),
            }
        )
    semaphore = asyncio.Semaphore(32)

    async def put(n: int) -> None:
        async with semaphore:
            if not await store.put(changed[n], expected=items[n].last_updated):
                msg = f"update of {items[n].id} lost its compare-and-set"
                raise SystemExit(msg)

    start = time.perf_counter()
    await asyncio.gather(*(put(n) for n in changed))
    rate = len(changed) / (time.perf_counter() - start)
    return [changed.get(n, item) for n, item in enumerate(items)], rate


async def mark_some_gone(
    store: RedisItemStore, items: list[ItemSnapshot], rng: random.Random
) -> tuple[list[ItemSnapshot], float]:
    """Mark 1% of the items gone, 100 per call; the remaining list and items per second."""
    gone = rng.sample([item.id for item in items], len(items) // 100)
    start = time.perf_counter()
    for i in range(0, len(gone), 100):
        await store.mark_gone(SELLER, gone[i : i + 100])
    rate = len(gone) / (time.perf_counter() - start)
    left = set(gone)
    return [item for item in items if item.id not in left], rate


async def main(count: int, rounds: int) -> None:
    settings = Settings()
    namespace = Namespace("catalog", scope=unique("bench"))
    redis = connect_redis(settings.redis)
    admin = connect_redis(StackSettings().redis)
    store = RedisItemStore(redis, namespace)
    rng = random.Random(7)
    items = synthetic_items(count, rng)
    try:
        before = await used_memory(admin)
        rate = await load(store, items)
        memory = await used_memory(admin) - before
        print(f"loaded {count:,} items ({rate:,.0f} puts/s)")
        print(f"index memory: {memory / 2**20:.1f} MiB ({memory / count:.0f} bytes/item)")
        items, rate = await update(store, items, rng)
        print(f"updated {count // 10:,} items ({rate:,.0f} puts/s)")
        items, rate = await mark_some_gone(store, items, rng)
        print(f"marked {count // 100:,} items gone ({rate:,.0f} items/s)")
        memory = await used_memory(admin) - before
        print(f"index memory after: {memory / 2**20:.1f} MiB ({memory / count:.0f} bytes/item)")
        version_key = namespace.key("seller", SELLER, "version")

        async def invalidate() -> None:
            # What any write to the seller does: results cached under the old version go.
            await redis.incr(version_key)

        print(f"{'query':<28}{'total':>8}  warm p50/p99 ms  cold p50/p99 ms  python p50/p99 ms")
        for name, query in {
            **QUERIES,
            "no q, page 200 (-updated)": await deep_page(store, QUERIES["no q, -updated"], 199),
            "category, page 50": await deep_page(store, QUERIES["category (5%)"], 49),
            "q one word, page 20": await deep_page(store, QUERIES["q one word"], 19),
        }.items():
            await invalidate()
            page: SearchPage = await store.search(query)
            if query.cursor is None:
                expected, total, facets = naive_search(items, query)
                got = ([i.id for i in page.items], page.total, page.facets)
                if got != (expected, total, facets):
                    msg = f"{name}: the index and the baseline disagree"
                    raise SystemExit(msg)
            warm_ms = await timed(lambda q=query: store.search(q), rounds)  # type: ignore[misc]
            cold_ms = await timed(
                lambda q=query: store.search(q),  # type: ignore[misc]
                rounds,
                invalidate,
            )
            python_ms = await timed(
                lambda q=query: asyncio.to_thread(naive_search, items, q),  # type: ignore[misc]
                max(5, rounds // 40),
            )
            print(
                f"{name:<28}{page.total:>8}  {quantiles(warm_ms)}  {quantiles(cold_ms)}"
                f"  {quantiles(python_ms)}"
            )
    finally:
        print(f"cleaned up {await cleanup(admin, namespace.prefix):,} keys")
        await redis.aclose()
        await admin.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.items, args.rounds))
