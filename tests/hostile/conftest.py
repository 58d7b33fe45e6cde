"""The hostile tests' kernel parts use the fixtures of tests/kernel (throwaway namespaces, none left behind)."""
from tests.kernel.conftest import kernel_ok, netns, no_namespace_left  # noqa: F401 -- fixtures
