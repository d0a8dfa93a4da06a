"""The start/stop contract every sandbox service follows, and the with-statement on top of it."""

from types import TracebackType
from typing import Self


class Service:
    """Something started and stopped by hand or by ``with``. ``close`` is what ``with`` calls on
    the way out: ``stop`` unless a service has more to clean up (Prometheus's work directory)."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc_value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
