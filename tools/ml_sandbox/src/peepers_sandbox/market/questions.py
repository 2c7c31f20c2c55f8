"""Questions on items and their answers."""

from __future__ import annotations

from peepers_sandbox.clock import iso_brt, iso_z
from peepers_sandbox.errors import SandboxError, bad_request, not_found
from peepers_sandbox.market.core import Json
from peepers_sandbox.market.items import Items

_QUESTIONS = [
    "Olá, tem disponível para entrega imediata?",
    "Qual o prazo de entrega para o CEP 01310-100?",
    "Esse produto tem garantia?",
    "Vocês emitem nota fiscal?",
    "Tem na cor azul?",
    "Serve no modelo anterior?",
    "Qual a voltagem?",
    "Aceita troca se não servir?",
]
ANSWERS = [
    "Olá! Sim, temos disponível. Obrigado pela pergunta!",
    "Bom dia! Emitimos nota fiscal, sim.",
    "Olá! Garantia de 90 dias contra defeitos de fabricação.",
]


# Every question status (FACTS.md §5.1, the search's available_filters).
QUESTION_STATUSES = (
    "ANSWERED",
    "BANNED",
    "CLOSED_UNANSWERED",
    "DELETED",
    "DISABLED",
    "UNANSWERED",
    "UNDER_REVIEW",
)
# Moderation moves (FACTS.md §5.1): the status a question may reach, and from where.
MODERATION: dict[str, tuple[str, ...]] = {
    "UNDER_REVIEW": ("UNANSWERED",),
    "UNANSWERED": ("UNDER_REVIEW",),
    "BANNED": ("UNANSWERED", "UNDER_REVIEW"),
    "DELETED": ("UNANSWERED", "UNDER_REVIEW", "ANSWERED", "BANNED", "CLOSED_UNANSWERED"),
    "DISABLED": ("ANSWERED",),
    "CLOSED_UNANSWERED": ("UNANSWERED",),
}
ANSWER_MAX_LEN = 2000


class Questions(Items):
    def new_question(
        self,
        *,
        item_id: str | None = None,
        seller_id: int | None = None,
        buyer_id: int | None = None,
        text: str | None = None,
    ) -> Json:
        item = self._pick_seller_item(seller_id, item_id)
        buyer_id = buyer_id if buyer_id is not None else self.rng.choice(self.buyers)
        stamp = iso_z(self._stamp())
        qid = self._next_question
        self._next_question += self.rng.randint(1, 97)
        question: Json = {
            "id": qid,
            "seller_id": item["seller_id"],
            "buyer_id": buyer_id,
            "item_id": item["id"],
            "deleted_from_listing": False,
            "suspected_spam": False,
            "status": "UNANSWERED",
            "hold": False,
            "text": text or self.rng.choice(_QUESTIONS),
            "app_id": None,
            "date_created": stamp,
            "last_updated": stamp,
            "answer": None,
            "from": {"id": buyer_id},
        }
        self.questions[qid] = question
        self.questions_by_seller[item["seller_id"]].append(qid)
        self.questions_by_item.setdefault(item["id"], []).append(qid)
        self.questions_by_buyer.setdefault(buyer_id, []).append(qid)
        self._emit("questions", item["seller_id"], f"/questions/{qid}")
        return question

    def question(self, question_id: int) -> Json:
        question = self.questions.get(question_id)
        if question is None:
            msg = f"Question {question_id} not found"
            raise not_found(msg)
        return question

    def answer_question(self, question_id: int, text: str, seller_id: int) -> Json:
        question = self.question(question_id)
        if question["seller_id"] != seller_id:
            raise SandboxError(403, "forbidden", "The user is not the owner of the question")
        if question["status"] != "UNANSWERED":
            msg = f"Question {question_id} is {question['status']}"
            raise bad_request(msg, "invalid_question")
        if not text or len(text) > ANSWER_MAX_LEN:
            msg = f"text must have between 1 and {ANSWER_MAX_LEN} characters"
            raise bad_request(msg, "invalid_post_body")
        stamp = self._stamp()
        question["answer"] = {"text": text, "status": "ACTIVE", "date_created": iso_brt(stamp)}
        question["status"] = "ANSWERED"
        question["last_updated"] = iso_z(stamp)
        self._emit("questions", seller_id, f"/questions/{question_id}")
        return question

    def moderate_question(self, question_id: int, status: str) -> Json:
        """ML's moderation moves a question (``MODERATION``); ``UNDER_REVIEW`` holds it."""
        question = self.question(question_id)
        sources = MODERATION.get(status)
        if sources is None:
            msg = f"status must be one of {', '.join(MODERATION)}"
            raise bad_request(msg)
        if question["status"] not in sources:
            msg = f"Question {question_id} is {question['status']}; it cannot become {status}"
            raise bad_request(msg, "invalid_question")
        question["status"] = status
        question["hold"] = status == "UNDER_REVIEW"
        if status == "DELETED":
            question["deleted_from_listing"] = True
        self._touch_question(question)
        return question

    def ban_answer(self, question_id: int) -> Json:
        """Moderation bans an answer: its text comes back empty (FACTS.md §5.1)."""
        question = self.question(question_id)
        answer = question["answer"]
        if question["status"] != "ANSWERED" or answer is None or answer["status"] != "ACTIVE":
            msg = f"Question {question_id} has no active answer"
            raise bad_request(msg, "invalid_question")
        answer["status"], answer["text"] = "BANNED", ""
        self._touch_question(question)
        return question

    def delete_question(self, question_id: int, user_id: int) -> Json:
        """``DELETE /questions/{id}`` by the asker or the seller."""
        question = self.question(question_id)
        if user_id not in (question["seller_id"], question["buyer_id"]):
            raise SandboxError(403, "forbidden", "The user cannot delete this question")
        return self.moderate_question(question_id, "DELETED")

    def _touch_question(self, question: Json) -> None:
        question["last_updated"] = iso_z(self._stamp())
        self._emit("questions", question["seller_id"], f"/questions/{question['id']}")

    def set_item_status(self, item_id: str, status: str) -> Json:
        """Closing an item closes its unanswered questions (``CLOSED_UNANSWERED``)."""
        item = super().set_item_status(item_id, status)
        if status == "closed":
            for qid in self.questions_by_item.get(item_id, []):
                if self.questions[qid]["status"] == "UNANSWERED":
                    self.moderate_question(qid, "CLOSED_UNANSWERED")
        return item

    def _silent_question(self, question: Json) -> Json:
        old_status, old_hold, old_stamp = (
            question["status"],
            question["hold"],
            question["last_updated"],
        )
        # Moderation holds an unanswered question and releases it; others toggle the spam flag.
        flips = {"UNANSWERED": "UNDER_REVIEW", "UNDER_REVIEW": "UNANSWERED"}
        changed: Json = {}
        if old_status in flips:
            question["status"] = flips[old_status]
            question["hold"] = question["status"] == "UNDER_REVIEW"
            changed["status"] = [old_status, question["status"]]
            if question["hold"] != old_hold:
                changed["hold"] = [old_hold, question["hold"]]
        else:
            old_spam = question["suspected_spam"]
            question["suspected_spam"] = not old_spam
            changed["suspected_spam"] = [old_spam, question["suspected_spam"]]
        question["last_updated"] = iso_z(self._stamp())
        changed["last_updated"] = [old_stamp, question["last_updated"]]
        return {"resource": f"/questions/{question['id']}", "changed": changed}
