import json
import logging

import pytest

from peepers_common.logs import configure_logging, redact
from peepers_common.tracing import TraceContext, bind_trace, current_trace


class TestTraceContext:
    def test_a_valid_traceparent_round_trips(self) -> None:
        header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        trace = TraceContext.parse(header)
        assert trace is not None
        assert trace.traceparent == header

    @pytest.mark.parametrize(
        "header",
        [
            None,
            "",
            "garbage",
            "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01",
            "00-xyz-abc-01",
        ],
    )
    def test_a_malformed_traceparent_is_ignored(self, header: str | None) -> None:
        assert TraceContext.parse(header) is None

    def test_a_child_span_keeps_the_trace(self) -> None:
        parent = TraceContext.new()
        child = parent.child()
        assert child.trace_id == parent.trace_id
        assert child.span_id != parent.span_id


@pytest.fixture(autouse=True)
def _restore_root_logger():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


class TestJsonLogging:
    def test_log_lines_are_json_with_service_and_trace_ids(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        configure_logging("ingest")
        trace = TraceContext.new()
        token = bind_trace(trace)
        try:
            logging.getLogger("peepers.test").info("hello %s", "world")
        finally:
            current_trace.reset(token)
        line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
        assert line["message"] == "hello world"
        assert line["service"] == "ingest"
        assert line["trace_id"] == trace.trace_id
        assert line["level"] == "INFO"

    def test_ml_tokens_never_reach_the_log(self, capsys: pytest.CaptureFixture[str]) -> None:
        configure_logging("auth")
        access = "APP_USR-1234567890123456-112913-8f3e1c2a9b7d4e5f6a7b8c9d0e1f2a3b-202593498"
        logging.getLogger("peepers.test").warning(
            "got %s and TG-5f0a1b2c3d4e5f60718293a4-202593498", access
        )
        err = capsys.readouterr().err
        assert "8f3e1c2a9b7d" not in err
        assert "5f0a1b2c3d4e" not in err
        assert "APP_USR-***" in err

    def test_redact_leaves_ordinary_text_alone(self) -> None:
        assert redact("order 2000003508 changed") == "order 2000003508 changed"
