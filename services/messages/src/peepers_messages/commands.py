"""What sellers do through the API: answer a question, message a buyer.

Both are idempotent (ARCHITECTURE.md: answers a seller submitted are Peepers-owned state).
A submission is held in the submissions view (the first submitter wins, across replicas),
written to ``peepers.messages.submissions.changelog`` before ML is called, and written
again with its outcome. So:

* the same submission again (a double click, a retried request: same idempotency key,
  same text) waits for the first one's outcome and answers the same, without calling ML;
* the same key with another text is refused (409 ``idempotency_conflict``);
* an answer is one per question: a second submission for an answered (or being answered)
  question is refused (409) whatever its key;
* a submission left ``pending`` by a crash (or an ML call whose outcome is unknown) is
  resumed by its retry: an answer checks the question at ML first, a message the
  conversation, so nothing is posted twice.

The mirror is not written from ML's reply: it converges from ML's own notification.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from peepers_common.errors import MlBadRequest, MlForbidden, MlNotFound
from peepers_common.events import QuestionSnapshot
from peepers_messages import metrics
from peepers_messages.adapters.redis_views import RedisSubmissions, Submission
from peepers_messages.domain import (
    ANSWERED,
    BLOCKED,
    ConversationBlocked,
    IdempotencyConflict,
    MessagesError,
    NotFound,
    QuestionNotOpen,
    question_snapshot,
    validate_answer,
    validate_message,
)
from peepers_messages.handlers import Changelog, Messages, apply_question, message_view
from peepers_messages.ports import ConversationView

_POLL_S: Final = 0.05
_KEY_MAX: Final = 200


@dataclass(frozen=True)
class Submissions:
    view: RedisSubmissions
    log: Changelog
    wait_s: float
    message_max_chars: int


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _check_key(key: str) -> str:
    if not 0 < len(key) <= _KEY_MAX or not key.isprintable():
        msg = f"an idempotency key is 1 to {_KEY_MAX} printable characters"
        raise IdempotencyConflict(msg)
    return key


async def _record(submission: Submission, subs: Submissions) -> None:
    await subs.log.write(submission.id, submission.model_dump_json().encode())
    await subs.view.put(submission)


def _replay(submission: Submission) -> dict[str, Any]:
    """The stored outcome of a finished submission, as the first request got it."""
    if submission.state == "sent":
        return dict(submission.result or {})
    raise _stored_error(submission)


class _StoredRefusal(MessagesError):
    status = 409
    code = "submission_failed"


def _stored_error(submission: Submission) -> MessagesError:
    return _StoredRefusal(submission.error or "the submission failed")


async def _settled(submission_id: str, subs: Submissions) -> Submission | None:
    """Wait (bounded) until the submission is no longer pending; its last record."""
    deadline = time.monotonic() + subs.wait_s
    while True:
        current = await subs.view.get(submission_id)
        if current is None or current.state != "pending" or time.monotonic() > deadline:
            return current
        await asyncio.sleep(_POLL_S)


async def _hold(new: Submission, subs: Submissions) -> tuple[bool, Submission]:
    """Take the submission's slot; (True, new) if ours, else (False, what holds it)."""
    holder = await subs.view.claim(new)
    if holder is None:
        try:
            await subs.log.write(new.id, new.model_dump_json().encode())
        except Exception:
            await subs.view.release(new)
            raise
        return True, new
    if holder.state == "failed" and await subs.view.replace(holder, new):
        await subs.log.write(new.id, new.model_dump_json().encode())
        return True, new
    return False, holder


# --- answers ------------------------------------------------------------------------


async def _owned_question(question_id: int, seller_id: int, deps: Messages) -> QuestionSnapshot:
    cached = await deps.mirror.question(question_id)
    if cached is not None:
        if cached.seller_id != seller_id:
            msg = f"seller {seller_id} has no question {question_id}"
            raise NotFound(msg)
        return cached
    try:
        question = await deps.ml.get_question(question_id, seller_id=seller_id)
    except (MlNotFound, MlForbidden):
        question = None
    if question is None or question.seller_id != seller_id:
        msg = f"seller {seller_id} has no question {question_id}"
        raise NotFound(msg) from None
    await apply_question(question, deps)
    return question_snapshot(question)


async def answer(
    seller_id: int,
    question_id: int,
    text: str,
    key: str,
    deps: Messages,
    subs: Submissions,
) -> dict[str, Any]:
    """Answer a question of ``seller_id`` once, however often it is submitted."""
    question = await _owned_question(question_id, seller_id, deps)
    validate_answer(text, None)  # the text's rules first: a refused text holds nothing
    new = Submission(
        id=f"answer:{question_id}",
        seller_id=seller_id,
        key=_check_key(key),
        body_sha256=_sha(text),
        state="pending",
        submitted_at=deps.now(),
    )
    held, holder = await _hold(new, subs)
    if not held:
        if holder.key == new.key and holder.body_sha256 != new.body_sha256:
            msg = f"idempotency key {key!r} was used for another answer"
            raise IdempotencyConflict(msg)
        if holder.key != new.key:
            if holder.state == "sent":
                msg = f"question {question_id} is already answered through Peepers"
                raise QuestionNotOpen(msg)
            taken = new.model_copy(update={"version": holder.version + 1})
            abandoned = (deps.now() - holder.submitted_at).total_seconds() >= subs.wait_s
            if abandoned and await subs.view.replace(holder, taken):
                # Its submitter never came back (a crash, a client that gave up): this
                # submission takes over, asking ML first whether the answer landed.
                await subs.log.write(taken.id, taken.model_dump_json().encode())
                return await _send_answer(taken, text, deps, subs, resume=True)
            msg = f"question {question_id} is being answered by another submission"
            raise IdempotencyConflict(msg)
        metrics.SUBMISSIONS.labels("answer", "replayed").inc()
        settled = await _settled(holder.id, subs)
        if settled is None or settled.state != "pending":
            return _replay(settled or holder)
        if (deps.now() - settled.submitted_at).total_seconds() < subs.wait_s:
            msg = f"the answer to question {question_id} is still being sent; retry"
            raise IdempotencyConflict(msg)
        return await _send_answer(settled, text, deps, subs, resume=True)
    try:
        validate_answer(text, question)
    except QuestionNotOpen as exc:
        await _fail(new, str(exc), subs)
        raise
    return await _send_answer(new, text, deps, subs, resume=False)


async def _send_answer(
    submission: Submission, text: str, deps: Messages, subs: Submissions, *, resume: bool
) -> dict[str, Any]:
    question_id = int(submission.id.split(":", 1)[1])
    seller_id = submission.seller_id
    if resume:
        # Left pending by a crash or an unknown outcome: is the answer at ML already?
        current = await deps.ml.get_question(question_id, seller_id=seller_id)
        if current.status == ANSWERED and current.answer is not None:
            return await _finish_answer(submission, current.answer.text, deps, subs)
    try:
        answered = await deps.ml.answer_question(question_id, text, seller_id=seller_id)
    except MlBadRequest as exc:
        await _record(
            submission.model_copy(
                update={"state": "failed", "error": str(exc), "version": submission.version + 1}
            ),
            subs,
        )
        metrics.SUBMISSIONS.labels("answer", "refused").inc()
        msg = f"ML refused the answer to question {question_id}: {exc}"
        raise QuestionNotOpen(msg) from exc
    answer_text = answered.answer.text if answered.answer is not None else text
    return await _finish_answer(submission, answer_text, deps, subs)


async def _finish_answer(
    submission: Submission, text: str, deps: Messages, subs: Submissions
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "question_id": int(submission.id.split(":", 1)[1]),
        "status": ANSWERED,
        "answer": text,
        "idempotency_key": submission.key,
    }
    await _record(
        submission.model_copy(
            update={"state": "sent", "result": result, "version": submission.version + 1}
        ),
        subs,
    )
    metrics.SUBMISSIONS.labels("answer", "sent").inc()
    return result


# --- messages -----------------------------------------------------------------------


async def _owned_conversation(pack_id: int, seller_id: int, deps: Messages) -> ConversationView:
    """The conversation with ML's current status (blocked ones change without notice)."""
    try:
        page = await deps.ml.get_pack_messages(pack_id, seller_id=seller_id, limit=50)
    except (MlNotFound, MlForbidden):
        msg = f"seller {seller_id} has no conversation in pack {pack_id}"
        raise NotFound(msg) from None
    cached = await deps.mirror.conversation(pack_id)
    if cached is not None and cached.seller_id != seller_id:
        msg = f"seller {seller_id} has no conversation in pack {pack_id}"
        raise NotFound(msg)
    buyer = cached.buyer_id if cached is not None else None
    for message in page.messages:
        view = message_view(message, pack_id)
        other = view.to_user_id if view.from_user_id == seller_id else view.from_user_id
        buyer = buyer or other
    status = page.conversation_status
    fresh = ConversationView(
        pack_id=pack_id,
        seller_id=seller_id,
        buyer_id=buyer,
        status=status.status if status else "active",
        substatus=status.substatus if status else None,
        claim_id=status.claim_id if status else None,
    )
    if cached is not None and _head(cached) != fresh:
        # ML blocks (and unblocks) a conversation without a notification: what it just
        # said goes into the mirror's head, so the inbox and the web page stop showing a
        # blocked conversation as active. Its messages stay as they are.
        await deps.mirror.put_conversation(fresh, None, pending=None)
    return fresh


def _head(conversation: ConversationView) -> ConversationView:
    return conversation.model_copy(update={"messages": ()})


def _blocked(conversation: ConversationView) -> ConversationBlocked:
    msg = (
        f"the conversation of pack {conversation.pack_id} is blocked "
        f"({conversation.substatus or 'no reason given'}): ML takes no message into it"
    )
    return ConversationBlocked(msg, substatus=conversation.substatus)


async def send(
    seller_id: int,
    pack_id: int,
    text: str,
    key: str,
    deps: Messages,
    subs: Submissions,
) -> dict[str, Any]:
    """Send ``text`` to the buyer of ``pack_id`` once per idempotency key."""
    validate_message(text, subs.message_max_chars)
    new = Submission(
        id=f"message:{pack_id}:{_check_key(key)}",
        seller_id=seller_id,
        key=key,
        body_sha256=_sha(text),
        state="pending",
        submitted_at=deps.now(),
    )
    existing = await subs.view.get(new.id)
    if existing is not None and existing.seller_id != seller_id:
        msg = f"seller {seller_id} has no conversation in pack {pack_id}"
        raise NotFound(msg)
    conversation = await _owned_conversation(pack_id, seller_id, deps)
    held, holder = await _hold(new, subs)
    if not held:
        if holder.body_sha256 != new.body_sha256:
            msg = f"idempotency key {key!r} was used for another message"
            raise IdempotencyConflict(msg)
        metrics.SUBMISSIONS.labels("message", "replayed").inc()
        settled = await _settled(holder.id, subs)
        if settled is None or settled.state != "pending":
            return _replay(settled or holder)
        if (deps.now() - settled.submitted_at).total_seconds() < subs.wait_s:
            msg = f"the message with key {key!r} is still being sent; retry"
            raise IdempotencyConflict(msg)
        sent = await _already_sent(conversation, text, settled.submitted_at, deps)
        if sent is not None:
            return await _finish_message(settled, sent, subs)
        new = settled
    if conversation.status == BLOCKED:
        await _fail(new, str(_blocked(conversation)), subs)
        raise _blocked(conversation)
    if conversation.buyer_id is None:
        await _fail(new, "no buyer message yet", subs)
        msg = (
            f"pack {pack_id} has no message from the buyer yet: a seller starts a "
            "conversation only through ML's action guide"
        )
        raise ConversationBlocked(msg, substatus="seller_cannot_initiate")
    try:
        message = await deps.ml.send_message(
            pack_id, text, seller_id=seller_id, buyer_id=conversation.buyer_id
        )
    except (MlForbidden, MlBadRequest) as exc:
        await _fail(new, str(exc), subs)
        if exc.error == "blocked_conversation":
            msg = f"ML refused the message: {exc}"
            raise ConversationBlocked(msg, substatus=None) from exc
        msg = f"ML refused the message: {exc}"
        raise _StoredRefusal(msg) from exc
    return await _finish_message(new, message.id, subs)


async def _already_sent(
    conversation: ConversationView, text: str, since: datetime, deps: Messages
) -> str | None:
    page = await deps.ml.get_pack_messages(
        conversation.pack_id, seller_id=conversation.seller_id, limit=50
    )
    for message in page.messages:
        view = message_view(message, conversation.pack_id)
        if (
            view.from_user_id == conversation.seller_id
            and view.text == text
            and (view.created_at is None or view.created_at >= since)
        ):
            return view.id
    return None


async def _fail(submission: Submission, error: str, subs: Submissions) -> None:
    await _record(
        submission.model_copy(
            update={"state": "failed", "error": error, "version": submission.version + 1}
        ),
        subs,
    )
    metrics.SUBMISSIONS.labels(submission.id.split(":", 1)[0], "refused").inc()


async def _finish_message(
    submission: Submission, message_id: str, subs: Submissions
) -> dict[str, Any]:
    pack_id = int(submission.id.split(":")[1])
    result: dict[str, Any] = {
        "pack_id": pack_id,
        "message_id": message_id,
        "idempotency_key": submission.key,
    }
    await _record(
        submission.model_copy(
            update={"state": "sent", "result": result, "version": submission.version + 1}
        ),
        subs,
    )
    metrics.SUBMISSIONS.labels("message", "sent").inc()
    return result


__all__ = ["Submissions", "answer", "send"]
