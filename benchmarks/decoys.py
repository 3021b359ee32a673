"""What bots' forms cost the guard's store (issue 15, item 6): memory for the bounded number of decoys it remembers.

A bot's form with a token of ours is remembered like a person's, so that sending it again answers alike; at most
`DECOY_RECORDS` are kept. This sends `--forms` (twice that) bots' forms through `Guard.admit` and reports what the
store holds and the memory it takes: in this process (tracemalloc, the memory store) and, with `--redis URL`
(e.g. redis://127.0.0.1:6379/9, a database it may empty), Redis's `used_memory` before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tracemalloc

from app.guard import DECOY_RECORDS, HONEYPOT_FIELD, TOKEN_FIELD, Guard
from app.posts import Post
from app.settings import load_settings


async def _fill(guard: Guard, post: Post, forms: int) -> int:
    for number in range(forms):
        _, token = guard.form_token(post)
        screening = guard.screen(post, {TOKEN_FIELD: token, HONEYPOT_FIELD: "http://spam.example"})
        ticket = await guard.admit(post, screening, {"what": f"spam {number}"}, [], None)
        assert ticket.status == "decoy", ticket
    return len(await guard.store.keys())


async def _redis_memory(url: str) -> int:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url)
    info = await client.info("memory")
    await client.aclose()
    return int(info["used_memory"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forms", type=int, default=2 * DECOY_RECORDS)
    parser.add_argument("--redis", help="also measure a Redis store (its database is flushed first)")
    args = parser.parse_args(argv)
    settings = load_settings(secret_key=secrets.token_urlsafe(32), min_fill_seconds=3)
    post = next(iter(settings.load_posts().values()))

    tracemalloc.start()
    guard = Guard(settings)
    before = tracemalloc.take_snapshot()
    held = asyncio.run(_fill(guard, post, args.forms))
    grown = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    print(f"memory store: {args.forms} bots' forms sent, {held} kept (cap {DECOY_RECORDS}); "
          f"{grown / 1e6:.1f} MB of Python objects ({grown / max(1, held):.0f} bytes each)")
    if args.redis:
        import redis

        redis.Redis.from_url(args.redis).flushdb()
        settings = settings.model_copy(update={"limits_storage": args.redis})
        empty = asyncio.run(_redis_memory(args.redis))

        async def fill_redis() -> int:
            shared = Guard(settings)
            try:
                return await _fill(shared, post, args.forms)
            finally:
                await shared.close()

        held = asyncio.run(fill_redis())
        used = asyncio.run(_redis_memory(args.redis)) - empty
        print(f"Redis store: {held} keys (the kept forms and their list); used_memory grew {used / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
