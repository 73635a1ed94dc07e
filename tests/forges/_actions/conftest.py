from tests.forges.forgejo.conftest import io_clock

__all__ = ["io_clock"]
