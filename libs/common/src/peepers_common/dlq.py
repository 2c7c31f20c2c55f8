"""``peepers-dlq``: list the records consumers gave up on, and replay them.

``list`` reads ``<topic>.dlq`` from its start to its current end and prints one line a
record: where it came from, which consumer failed, and why. ``replay`` sends chosen
records (by DLQ offset, or all of one consumer's) to ``<topic>.retry`` as due now and
at attempt 0, so only the consumer that failed takes them again, through its normal
handler and failure policy. Handlers are idempotent, so replaying a record twice is
harmless; the DLQ itself is never modified (it is the audit log of what failed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import typer

from peepers_common.consuming import (
    H_ATTEMPT,
    H_CONSUMER,
    H_ERROR,
    H_ERROR_DETAIL,
    H_ERROR_KIND,
    H_FAILED_AT,
    H_NOT_BEFORE,
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
    H_SOURCE_TOPIC,
    InboundRecord,
)
from peepers_common.errors import InfrastructureError
from peepers_common.kafka import AIOKafkaEventPublisher, Headers, read_to_end
from peepers_common.settings import KafkaSettings, StackSettings
from peepers_common.topics import dlq_topic, retry_topic


@dataclass(frozen=True)
class DeadLetter:
    offset: int
    record: InboundRecord

    def header(self, name: str) -> str:
        return self.record.headers.get(name, b"").decode("utf-8", "replace")

    @property
    def failed_at(self) -> datetime | None:
        raw = self.header(H_FAILED_AT)
        return datetime.fromtimestamp(int(raw) / 1000, tz=UTC) if raw.isdigit() else None

    def line(self) -> str:
        when = self.failed_at.isoformat(timespec="seconds") if self.failed_at else "?"
        source = f"{self.header(H_SOURCE_PARTITION)}@{self.header(H_SOURCE_OFFSET)}"
        key = (self.record.key or b"").decode("utf-8", "replace")
        return (
            f"{self.offset:>8}  {when}  {self.header(H_CONSUMER):<10} "
            f"{self.header(H_ERROR_KIND):<9} {self.header(H_ERROR):<24} "
            f"from {source:<10} key={key}  {self.header(H_ERROR_DETAIL)}"
        )


async def read_dead_letters(
    kafka: KafkaSettings, topic: str, *, consumer: str | None = None
) -> list[DeadLetter]:
    """Every record of ``<topic>.dlq`` up to its end now (optionally one consumer's)."""
    letters = [
        DeadLetter(
            message.offset,
            InboundRecord.from_kafka(
                topic,
                message.partition,
                message.offset,
                message.key,
                message.value,
                list(message.headers),
            ),
        )
        for message in await read_to_end(kafka, [dlq_topic(topic)])
    ]
    return [
        letter
        for letter in sorted(letters, key=lambda letter: letter.offset)
        if consumer is None or letter.record.consumer == consumer
    ]


def replay_headers(letter: DeadLetter) -> Headers:
    """The record as its consumer first saw it, marked for that consumer, due now."""
    record = letter.record
    return [
        *record.passthrough_headers(),
        (H_CONSUMER, record.headers.get(H_CONSUMER, b"")),
        (H_SOURCE_TOPIC, record.source_topic.encode()),
        (H_SOURCE_PARTITION, record.headers.get(H_SOURCE_PARTITION, b"")),
        (H_SOURCE_OFFSET, record.headers.get(H_SOURCE_OFFSET, b"")),
        (H_ATTEMPT, b"0"),
        (H_NOT_BEFORE, b"0"),
    ]


async def replay(
    kafka: KafkaSettings,
    topic: str,
    *,
    consumer: str,
    offsets: Sequence[int] = (),
) -> list[DeadLetter]:
    """Send one consumer's dead letters (all, or those at ``offsets``) to the retry topic."""
    letters = await read_dead_letters(kafka, topic, consumer=consumer)
    if offsets:
        wanted = set(offsets)
        letters = [letter for letter in letters if letter.offset in wanted]
    async with AIOKafkaEventPublisher(kafka) as publisher:
        for letter in letters:
            await publisher.publish(
                retry_topic(letter.record.source_topic),
                key=letter.record.key or b"",
                value=letter.record.value,
                headers=replay_headers(letter),
            )
    return letters


app = typer.Typer(add_completion=False, help=__doc__, pretty_exceptions_enable=False)

TopicArg = Annotated[str, typer.Argument(help="the consumed topic, e.g. ml.notifications.items")]


@app.command("list")
def list_letters(
    topic: TopicArg,
    consumer: Annotated[str | None, typer.Option(help="only this consumer's")] = None,
) -> None:
    """Print the dead letters of TOPIC, oldest first."""
    try:
        letters = asyncio.run(read_dead_letters(StackSettings().kafka, topic, consumer=consumer))
    except InfrastructureError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    for letter in letters:
        typer.echo(letter.line())
    typer.echo(f"{len(letters)} dead letter(s) in {dlq_topic(topic)}", err=True)


@app.command("replay")
def replay_letters(
    topic: TopicArg,
    consumer: Annotated[str, typer.Option(help="the consumer that should retry them")],
    offset: Annotated[
        list[int] | None, typer.Option(help="DLQ offsets to replay (repeat); default all")
    ] = None,
) -> None:
    """Send dead letters of TOPIC back to CONSUMER through the retry topic."""
    try:
        sent = asyncio.run(
            replay(StackSettings().kafka, topic, consumer=consumer, offsets=offset or ())
        )
    except InfrastructureError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if offset and len(sent) < len(set(offset)):
        missing = sorted(set(offset) - {letter.offset for letter in sent})
        typer.echo(f"warning: no dead letter of {consumer} at offsets {missing}", err=True)
    typer.echo(f"replayed {len(sent)} record(s) to {retry_topic(topic)}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
