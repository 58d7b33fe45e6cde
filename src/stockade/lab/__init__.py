"""Throwaway network namespaces for tests and demonstrations that need the real kernel."""
from .netns import Netns, NetnsError, namespaces, unavailable

__all__ = ["Netns", "NetnsError", "namespaces", "unavailable"]
