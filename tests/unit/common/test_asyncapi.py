"""The AsyncAPI document of the public topics: current, valid, and v1-compatible."""

import copy
import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator, ValidationError
from typer.testing import CliRunner

from peepers_common.asyncapi import (
    CHANNELS,
    DEFAULT_BASELINE,
    DEFAULT_DOCUMENT,
    HEADERS_SCHEMA,
    build_document,
    cli,
    contract,
    incompatibilities,
    render,
    render_contract,
)
from peepers_common.events import (
    ClaimClosed,
    ClaimEscalated,
    ClaimOpened,
    ClaimSnapshot,
    ClaimSnapshotted,
    DomainEvent,
    FieldChange,
    ItemClosed,
    ItemCreated,
    ItemEvent,
    ItemPaused,
    ItemPriceChanged,
    ItemReactivated,
    ItemSnapshot,
    ItemSnapshotted,
    ItemStockChanged,
    ItemUpdated,
    MessageReceived,
    OrderCancelled,
    OrderCreated,
    OrderDelivered,
    OrderEvent,
    OrderLine,
    OrderNotDelivered,
    OrderPaid,
    OrderRefunded,
    OrderShipped,
    OrderSnapshotted,
    OrderSummary,
    QuestionAnswered,
    QuestionReceived,
    QuestionSnapshot,
    QuestionSnapshotted,
    SellerConnected,
    SellerDisconnected,
    SellerReauthRequired,
    SellerReconnected,
    TicketClosed,
    TicketNote,
    TicketOpened,
    TicketSnapshot,
    TicketUpdated,
    item_event_id,
    item_event_key,
    messages_event_key,
    order_event_id,
    order_event_key,
    seller_event_id,
    seller_event_key,
    stable_event_id,
)
from peepers_common.topics import TOPICS

ROOT = Path(__file__).resolve().parents[3]
REGENERATE = "uv run peepers-asyncapi generate"
REBASELINE = "uv run peepers-asyncapi baseline"

_WHEN = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
_SNAPSHOT = ItemSnapshot(
    id="MLB1234567890",
    seller_id=123456789,
    title="Camiseta Ação",
    category_id="MLB31447",
    price=Decimal("59.90"),
    currency_id="BRL",
    available_quantity=7,
    sold_quantity=3,
    status="active",
    sku="TRA-00123",
    last_updated=_WHEN,
)


def _seller(cls: type[DomainEvent], **fields: Any) -> DomainEvent:
    event_id = seller_event_id(123456789, cls.model_fields["type"].default, 4)
    return cls(event_id=event_id, occurred_at=_WHEN, seller_id=123456789, **fields)


def _item(cls: type[DomainEvent], **fields: Any) -> DomainEvent:
    event_id = item_event_id(_SNAPSHOT.id, cls.model_fields["type"].default, _WHEN)
    return cls(
        event_id=event_id,
        occurred_at=_WHEN,
        seller_id=_SNAPSHOT.seller_id,
        item_id=_SNAPSHOT.id,
        last_updated=_WHEN,
        **fields,
    )


_ORDER = OrderSummary(
    order_id=2000003508897196,
    state="paid",
    ml_status="paid",
    buyer_id=266272126,
    currency_id="BRL",
    total_amount=Decimal("50.00"),
    paid_amount=Decimal("50.00"),
    lines=(
        OrderLine(item_id="MLB2608564035", title="Camiseta", quantity=1, unit_price=Decimal("50")),
    ),
    pack_id=2000003508553677,
    shipment_id=41297142475,
    shipment_status="ready_to_ship",
    date_created=_WHEN,
    paid_at=_WHEN,
)


def _order(cls: type[DomainEvent], **fields: Any) -> DomainEvent:
    event_type = cls.model_fields["type"].default
    return cls(
        event_id=order_event_id(_ORDER.order_id, event_type, event_type),
        occurred_at=_WHEN,
        seller_id=123456789,
        order_id=_ORDER.order_id,
        order=_ORDER,
        revealed_by="notification:5da87eea5b35b865994cfd7d",
        **fields,
    )


_QUESTION = QuestionSnapshot(
    id=13000000123,
    seller_id=123456789,
    item_id=_SNAPSHOT.id,
    buyer_id=4000000001,
    status="UNANSWERED",
    text="Tem na cor azul?",
    date_created=_WHEN,
    last_updated=_WHEN,
)
_CLAIM = ClaimSnapshot(
    id=5256749420,
    seller_id=123456789,
    order_id=2000007819609432,
    resource="order",
    status="opened",
    type="mediations",
    stage="claim",
    reason_id="PDD9549",
    due_date=_WHEN,
    action_responsible="seller",
    date_created=_WHEN,
    last_updated=_WHEN,
)
_TICKET = TicketSnapshot(
    claim_id=_CLAIM.id,
    seller_id=123456789,
    order_id=_CLAIM.order_id,
    status="in_progress",
    assignee="ana",
    notes=(TicketNote(author="ana", text="Pedi fotos ao comprador.", at=_WHEN),),
    claim_status="opened",
    claim_stage="claim",
    claim_type="mediations",
    due_date=_WHEN,
    action_responsible="seller",
    opened_at=_WHEN,
    updated_at=_WHEN,
    version=3,
)


def _messages(cls: type[DomainEvent], **fields: Any) -> DomainEvent:
    event_id = stable_event_id(cls.model_fields["type"].default, 1)
    return cls(event_id=event_id, occurred_at=_WHEN, seller_id=123456789, **fields)


def _event_key(event: DomainEvent) -> bytes:
    if isinstance(event, ItemEvent):
        return item_event_key(event)
    if isinstance(event, OrderEvent):
        return order_event_key(event)
    if event.type.startswith("seller."):
        return seller_event_key(event)
    return messages_event_key(event)


# One real instance of every event type (a new type without one fails a test below).
SAMPLES: dict[str, DomainEvent] = {
    event.type: event
    for event in (
        _seller(SellerConnected, nickname="LOJA_TESTE", site_id="MLB"),
        _seller(SellerReconnected, nickname="LOJA_TESTE", site_id="MLB"),
        _seller(SellerDisconnected),
        _seller(SellerReauthRequired, reason="invalid_grant"),
        _item(ItemCreated, item=_SNAPSHOT),
        _item(ItemSnapshotted, item=_SNAPSHOT),
        _item(
            ItemUpdated,
            changes={
                "title": FieldChange(old="Camiseta", new="Camiseta Ação"),
                "category_id": FieldChange(old=None, new="MLB31447"),
            },
        ),
        _item(
            ItemPriceChanged,
            old_price=Decimal("64.90"),
            new_price=Decimal("59.90"),
            currency_id="BRL",
        ),
        _item(ItemStockChanged, old_quantity=8, new_quantity=7),
        _item(ItemPaused, old_status="active", new_status="paused", sub_status=("out_of_stock",)),
        _item(ItemClosed, old_status="paused", new_status="closed"),
        _item(ItemReactivated, old_status="paused", new_status="active"),
        _order(OrderCreated),
        _order(OrderPaid),
        _order(OrderShipped),
        _order(OrderDelivered),
        _order(OrderCancelled),
        _order(OrderRefunded, partial=True),
        _order(OrderNotDelivered),
        _order(OrderSnapshotted),
        _messages(
            QuestionReceived,
            question_id=_QUESTION.id,
            item_id=_QUESTION.item_id,
            question=_QUESTION,
        ),
        _messages(
            QuestionAnswered,
            question_id=_QUESTION.id,
            item_id=_QUESTION.item_id,
            answer_text="Temos sim!",
            answered_at=_WHEN,
            seconds_to_answer=95.5,
        ),
        _messages(
            QuestionSnapshotted,
            question_id=_QUESTION.id,
            item_id=_QUESTION.item_id,
            question=_QUESTION,
        ),
        _messages(
            MessageReceived,
            message_id="2c92808469fea23a0169febf14580001",
            pack_id=2000000089077943,
            from_user_id=4000000001,
            to_user_id=123456789,
            text="Quando chega?",
            status="available",
            created_at=_WHEN,
        ),
        _messages(ClaimOpened, claim_id=_CLAIM.id, claim=_CLAIM),
        _messages(ClaimEscalated, claim_id=_CLAIM.id, claim=_CLAIM),
        _messages(ClaimClosed, claim_id=_CLAIM.id, claim=_CLAIM),
        _messages(ClaimSnapshotted, claim_id=_CLAIM.id, claim=_CLAIM),
        _messages(TicketOpened, claim_id=_CLAIM.id, ticket=_TICKET),
        _messages(TicketUpdated, claim_id=_CLAIM.id, ticket=_TICKET, changed=("assignee",)),
        _messages(TicketClosed, claim_id=_CLAIM.id, ticket=_TICKET, changed=("status",)),
    )
}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document()


def _validator(document: dict[str, Any], ref: str) -> Draft202012Validator:
    # The schemas' $refs point into #/components, so validate against the whole document.
    schema = {"$ref": ref, "components": document["components"]}
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _message_of(document: dict[str, Any], event_type: str) -> dict[str, Any]:
    messages = document["components"]["messages"].values()
    (message,) = (m for m in messages if m["name"] == event_type)
    assert isinstance(message, dict)
    return message


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref} is not a local reference"
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


class TestCheckedInDocument:
    def test_checked_in_document_is_what_the_models_produce(self, document) -> None:
        path = ROOT / DEFAULT_DOCUMENT
        assert path.exists(), f"{DEFAULT_DOCUMENT} is missing: run `{REGENERATE}`"
        assert path.read_text() == render(document, "yaml"), (
            f"{DEFAULT_DOCUMENT} is stale: the event models changed; run `{REGENERATE}` "
            "and commit the result"
        )

    def test_yaml_file_loads_back_to_the_same_document(self, document) -> None:
        assert yaml.safe_load((ROOT / DEFAULT_DOCUMENT).read_text()) == document

    def test_events_module_names_the_document(self) -> None:
        events = ROOT / "libs/common/src/peepers_common/events.py"
        assert str(DEFAULT_DOCUMENT) in events.read_text()


class TestDocumentShape:
    def test_it_is_asyncapi_3(self, document) -> None:
        assert document["asyncapi"] == "3.0.0"
        assert document["defaultContentType"] == "application/json"

    def test_every_reference_resolves(self, document) -> None:
        for ref in _refs(document):
            assert _resolve(document, ref) is not None

    def test_every_domain_topic_is_a_channel(self, document) -> None:
        addresses = {channel["address"] for channel in document["channels"].values()}
        assert addresses == {
            "peepers.sellers.v1",
            "peepers.catalog.v1",
            "peepers.orders.v1",
            "peepers.messages.v1",
        }

    def test_channels_carry_the_registry_partitions(self, document) -> None:
        for channel in document["channels"].values():
            binding = channel["bindings"]["kafka"]
            assert binding["partitions"] == TOPICS[channel["address"]].partitions

    def test_every_channel_has_one_send_operation_with_all_its_messages(self, document) -> None:
        for channel_id, channel in document["channels"].items():
            (operation,) = (
                op
                for op in document["operations"].values()
                if op["channel"]["$ref"] == f"#/channels/{channel_id}"
            )
            assert operation["action"] == "send"
            sent = {ref["$ref"].rsplit("/", 1)[1] for ref in operation["messages"]}
            assert sent == set(channel["messages"])

    def test_each_event_type_is_one_message_on_its_topic(self, document) -> None:
        for spec in CHANNELS:
            channel = document["channels"][spec.domain]
            names = {
                _resolve(document, ref["$ref"])["name"] for ref in channel["messages"].values()
            }
            assert names == {model.model_fields["type"].default for model in spec.models}

    def test_type_is_required_because_it_is_the_discriminator(self, document) -> None:
        for message in document["components"]["messages"].values():
            payload = _resolve(document, message["payload"]["$ref"])
            assert payload["properties"]["type"]["const"] == message["name"]
            assert {"type", "event_id", "occurred_at", "seller_id"} <= set(payload["required"])

    def test_the_json_format_is_the_same_document(self, document) -> None:
        assert json.loads(render(document, "json")) == document


class TestMessagesValidateRealEvents:
    def test_every_message_has_a_sample_event(self, document) -> None:
        names = {m["name"] for m in document["components"]["messages"].values()}
        assert names == set(SAMPLES), "add a sample of each new event type to SAMPLES"

    @pytest.mark.parametrize("event_type", sorted(SAMPLES))
    def test_payload_schema_accepts_the_event_as_producers_write_it(
        self, document, event_type: str
    ) -> None:
        event = SAMPLES[event_type]
        message = _message_of(document, event_type)
        validator = _validator(document, message["payload"]["$ref"])
        validator.validate(event.model_dump(mode="json"))
        validator.validate(json.loads(event.model_dump_json()))

    @pytest.mark.parametrize("event_type", sorted(SAMPLES))
    def test_headers_and_key_schemas_accept_what_producers_send(
        self, document, event_type: str
    ) -> None:
        event = SAMPLES[event_type]
        message = _message_of(document, event_type)
        headers = {"ce_id": str(event.event_id), "ce_type": event.type}
        _validator(document, message["headers"]["$ref"]).validate(headers)
        key = _event_key(event)
        key_schema = message["bindings"]["kafka"]["key"]
        Draft202012Validator(key_schema).validate(key.decode())
        assert re.fullmatch(key_schema["pattern"].strip("^$"), key_schema["examples"][0])

    @pytest.mark.parametrize(
        ("event_type", "break_it"),
        [
            ("seller.connected", lambda v: v.pop("seller_id")),
            ("seller.connected", lambda v: v.update(seller_id="123")),
            ("item.created", lambda v: v["item"].pop("price")),
            ("item.price_changed", lambda v: v.update(new_price=59.9)),
            ("item.paused", lambda v: v.update(type="item.closed")),
            ("item.updated", lambda v: v.update(event_id="not-a-uuid")),
        ],
    )
    def test_payload_schema_refuses_a_broken_event(
        self, document, event_type: str, break_it: Any
    ) -> None:
        value = SAMPLES[event_type].model_dump(mode="json")
        break_it(value)
        validator = _validator(document, _message_of(document, event_type)["payload"]["$ref"])
        with pytest.raises(ValidationError):
            validator.validate(value)

    def test_headers_schema_requires_the_cloudevents_id_and_type(self, document) -> None:
        validator = _validator(document, f"#/components/schemas/{HEADERS_SCHEMA}")
        with pytest.raises(ValidationError):
            validator.validate({"ce_type": "item.paused"})


class TestV1Compatibility:
    def test_models_keep_every_promise_of_the_v1_baseline(self, document) -> None:
        baseline = json.loads((ROOT / DEFAULT_BASELINE).read_text())
        problems = incompatibilities(baseline, contract(document))
        assert not problems, (
            "v1 topics never change incompatibly; these changes break consumers:\n  "
            + "\n  ".join(problems)
            + "\nKeep the field (add a new optional one instead) or publish a v2 topic. "
            f"Only if nobody consumes v1 yet: `{REBASELINE} --allow-breaking`."
        )

    def test_baseline_records_every_current_field(self, document) -> None:
        # Compatible additions must be recorded too, or removing them later goes unseen.
        baseline = (ROOT / DEFAULT_BASELINE).read_text()
        assert baseline == render_contract(contract(document)), (
            f"new event types or optional fields are not in {DEFAULT_BASELINE} yet: "
            f"run `{REBASELINE}` (it refuses incompatible changes) and commit it"
        )

    @pytest.fixture
    def baseline(self, document) -> dict[str, Any]:
        return contract(document)

    def _changed(self, document: dict[str, Any], schema: str, edit: Any) -> dict[str, Any]:
        changed = copy.deepcopy(document)
        edit(changed["components"]["schemas"][schema])
        return contract(changed)

    def test_removing_a_field_is_incompatible(self, document, baseline) -> None:
        current = self._changed(document, "ItemSnapshot", lambda s: s["properties"].pop("sku"))
        assert incompatibilities(baseline, current) == ["ItemSnapshot.sku was removed"]

    def test_changing_a_field_type_is_incompatible(self, document, baseline) -> None:
        def edit(schema: dict[str, Any]) -> None:
            schema["properties"]["seller_id"] = {"type": "string"}

        problems = incompatibilities(baseline, self._changed(document, "SellerConnected", edit))
        assert len(problems) == 1
        assert problems[0].startswith("SellerConnected.seller_id changed type")

    def test_a_new_required_field_is_incompatible(self, document, baseline) -> None:
        def edit(schema: dict[str, Any]) -> None:
            schema["properties"]["channel"] = {"type": "string"}
            schema["required"].append("channel")

        current = self._changed(document, "ItemPaused", edit)
        assert incompatibilities(baseline, current) == ["ItemPaused.channel is newly required"]

    def test_a_new_optional_field_is_compatible(self, document, baseline) -> None:
        def edit(schema: dict[str, Any]) -> None:
            schema["properties"]["channel"] = {"anyOf": [{"type": "string"}, {"type": "null"}]}

        assert incompatibilities(baseline, self._changed(document, "ItemPaused", edit)) == []

    def test_rewording_a_description_is_compatible(self, document, baseline) -> None:
        def edit(schema: dict[str, Any]) -> None:
            schema["properties"]["reason"]["description"] = "why ML refused the token"

        current = self._changed(document, "SellerReauthRequired", edit)
        assert incompatibilities(baseline, current) == []

    def test_dropping_an_event_type_is_incompatible(self, document, baseline) -> None:
        changed = copy.deepcopy(document)
        changed["channels"]["catalog"]["messages"].pop("ItemClosed")
        problems = incompatibilities(baseline, contract(changed))
        assert problems == ["peepers.catalog.v1: event type item.closed is gone"]


class TestCli:
    def test_generate_writes_yaml_or_json_by_suffix(self, tmp_path: Path, document) -> None:
        runner = CliRunner()
        assert runner.invoke(cli, ["generate", str(tmp_path / "e.yaml")]).exit_code == 0
        assert runner.invoke(cli, ["generate", str(tmp_path / "e.json")]).exit_code == 0
        assert yaml.safe_load((tmp_path / "e.yaml").read_text()) == document
        assert json.loads((tmp_path / "e.json").read_text()) == document

    def test_check_passes_on_a_current_file(self, tmp_path: Path) -> None:
        path = tmp_path / "events.asyncapi.yaml"
        runner = CliRunner()
        runner.invoke(cli, ["generate", str(path)])
        result = runner.invoke(cli, ["generate", "--check", str(path)])
        assert result.exit_code == 0, result.output

    def test_check_fails_on_a_stale_file_and_shows_the_diff(self, tmp_path: Path) -> None:
        path = tmp_path / "events.asyncapi.yaml"
        runner = CliRunner()
        runner.invoke(cli, ["generate", str(path)])
        path.write_text(path.read_text().replace("seller_id", "sellerId", 1))
        before = path.read_text()
        result = runner.invoke(cli, ["generate", "--check", str(path)])
        assert result.exit_code == 1
        assert "-" in result.output
        assert "sellerId" in result.output
        assert "peepers-asyncapi generate" in result.output
        assert path.read_text() == before

    def test_baseline_refuses_an_incompatible_change(self, tmp_path: Path, document) -> None:
        path = tmp_path / "baseline.json"
        promised = contract(document)
        promised["schemas"]["ItemSnapshot"]["properties"]["color"] = {"type": "string"}
        path.write_text(render_contract(promised))
        result = CliRunner().invoke(cli, ["baseline", str(path)])
        assert result.exit_code == 1
        assert "ItemSnapshot.color was removed" in result.output
        assert json.loads(path.read_text()) == promised

    def test_baseline_records_compatible_additions(self, tmp_path: Path, document) -> None:
        path = tmp_path / "baseline.json"
        promised = contract(document)
        del promised["schemas"]["ItemSnapshot"]["properties"]["thumbnail"]
        path.write_text(render_contract(promised))
        result = CliRunner().invoke(cli, ["baseline", str(path)])
        assert result.exit_code == 0, result.output
        assert json.loads(path.read_text()) == contract(document)
