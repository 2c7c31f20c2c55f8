"""Catalog search over a 100,000-item seller: the Redis index against a naive Python filter.

Loads N synthetic items (Portuguese and Spanish titles with accents, ~20 categories, 3
statuses, SKUs) into a scratch key scope through `RedisItemStore.put`, then times a mix
of queries two ways in the same run: the Redis index (`RedisItemStore.search`, one Lua
script per page) and the baseline, the same query answered by filtering and sorting the
items held in a Python list. Prints load throughput, the Redis memory the index takes and
p50/p99 per query kind; deletes its keys at the end.

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


def naive_search(items: list[ItemSnapshot], query: SearchQuery) -> tuple[list[str], int]:
    """The baseline: the page's ids and total, by filtering and sorting a list."""
    words = terms(query.q or "")
    matches = [
        item
        for item in items
        if (query.status is None or item.status == query.status)
        and (query.category is None or item.category_id == query.category)
        and (query.price_min is None or item.price >= query.price_min)
        and (query.price_max is None or item.price <= query.price_max)
        and all(any(t.startswith(w) for t in item_terms(item.title, item.sku)) for w in words)
    ]
    field = query.sort.lstrip("-")
    key: Callable[[ItemSnapshot], tuple[Any, str]] = {
        "price": lambda i: (i.price, i.id),
        "updated": lambda i: (i.last_updated, i.id),
        "sold": lambda i: (i.sold_quantity, i.id),
    }[field]
    matches.sort(key=key, reverse=query.sort.startswith("-"))
    return [item.id for item in matches[: query.limit]], len(matches)


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


async def main(count: int, rounds: int) -> None:
    settings = Settings()
    namespace = Namespace("catalog", scope=unique("bench"))
    redis = connect_redis(settings.redis)
    admin = connect_redis(StackSettings().redis)
    store = RedisItemStore(redis, namespace)
    items = synthetic_items(count, random.Random(7))
    try:
        before = await used_memory(admin)
        start = time.perf_counter()
        semaphore = asyncio.Semaphore(32)

        async def put(item: ItemSnapshot) -> None:
            async with semaphore:
                await store.put(item, expected=None)

        await asyncio.gather(*(put(item) for item in items))
        load_s = time.perf_counter() - start
        memory = await used_memory(admin) - before
        print(f"loaded {count:,} items in {load_s:.1f} s ({count / load_s:,.0f} puts/s)")
        print(f"index memory: {memory / 2**20:.1f} MiB ({memory / count:.0f} bytes/item)")
        version_key = namespace.key("seller", SELLER, "version")

        async def invalidate() -> None:
            # What any write to the seller does: results cached under the old version go.
            await redis.incr(version_key)

        print(f"{'query':<28}{'total':>8}  redis p50/p99 ms  cold p50/p99 ms  python p50/p99 ms")
        for name, query in {
            **QUERIES,
            "no q, page 200 (-updated)": await deep_page(store, QUERIES["no q, -updated"], 199),
            "category, page 50": await deep_page(store, QUERIES["category (5%)"], 49),
            "q one word, page 20": await deep_page(store, QUERIES["q one word"], 19),
        }.items():
            page: SearchPage = await store.search(query)
            if query.cursor is None:
                expected, total = naive_search(items, query)
                if [i.id for i in page.items] != expected or page.total != total:
                    msg = f"{name}: the index and the baseline disagree"
                    raise SystemExit(msg)
            redis_ms = await timed(lambda q=query: store.search(q), rounds)  # type: ignore[misc]
            cold_ms = await timed(
                lambda q=query: store.search(q),  # type: ignore[misc]
                max(20, rounds // 4),
                invalidate,
            )
            python_ms = await timed(
                lambda q=query: asyncio.to_thread(naive_search, items, q),  # type: ignore[misc]
                max(5, rounds // 40),
            )
            print(
                f"{name:<28}{page.total:>8}  {quantiles(redis_ms)}  {quantiles(cold_ms)}"
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
