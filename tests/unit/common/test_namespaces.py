import pytest

from peepers_common.errors import ConfigurationError, NamespaceViolation
from peepers_common.namespaces import Namespace


class TestNamespace:
    def test_keys_are_prefixed_with_the_service(self) -> None:
        assert Namespace("catalog").key("item", "MLB1") == "catalog:item:MLB1"

    def test_a_scope_isolates_keys_inside_the_service_namespace(self) -> None:
        ns = Namespace("orders", scope="test-1234")
        assert ns.key("order", 42) == "orders:test-1234:order:42"
        assert not Namespace("orders", scope="test-9999").owns(ns.key("order", 42))

    def test_a_key_of_another_service_is_refused(self) -> None:
        with pytest.raises(NamespaceViolation, match="outside the 'catalog:' namespace"):
            Namespace("catalog").check("orders:order:1")

    def test_a_similar_prefix_is_not_the_namespace(self) -> None:
        assert not Namespace("auth").owns("authx:key")

    def test_unknown_service_is_refused(self) -> None:
        with pytest.raises(ConfigurationError):
            Namespace("billing")

    @pytest.mark.parametrize("scope", ["", "a:b"])
    def test_a_scope_cannot_escape_its_level(self, scope: str) -> None:
        with pytest.raises(ConfigurationError):
            Namespace("auth", scope=scope)
