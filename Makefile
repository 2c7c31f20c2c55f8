# Quick start: `make run` (the main job) and `make test` (every test, real Kafka and Redis).
.PHONY: run check test test-unit lint stack-up stack-down

run:
	scripts/run

# Beside a running `make run`: does Peepers hold what the sandbox holds? (docs/proof.md)
check:
	scripts/check

test:
	scripts/test

test-unit:
	scripts/bootstrap && scripts/install-prometheus && scripts/install-kubectl && \
	uv run pytest -m "not integration and not e2e"

lint:
	uv run ruff check . && uv run ruff format --check . && \
	uv run mypy libs/common/src services/*/src tools/*/src tests bench

stack-up:
	scripts/stack up

stack-down:
	scripts/stack down
