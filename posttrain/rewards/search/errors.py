"""What a search backend fails with when it gives no answer, shared by the backends and the rewards."""

from __future__ import annotations

import logging
import threading

from posttrain.errors import PosttrainError

log = logging.getLogger("posttrain.rewards.search")  # the name the study-search warnings always had
_warned: set[str] = set()  # the kinds of failure warned about in this process
_warned_lock = threading.Lock()


class SearchUnavailable(PosttrainError):
    """The backend gave no answer (network, timeouts, the service down): not the query's fault.

    The study-search rewards score it 0, as the seed scores a failed search,
    and `warn_once` logs it so that a broken backend does not pass unseen.
    """

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind

    def __reduce__(self):  # picklable across processes despite the two-argument constructor
        return type(self), (self.kind, str(self))

    def warn_once(self) -> None:
        """Log this failure, once per process for each kind, so a flaky backend does not flood the log."""
        with _warned_lock:
            if self.kind in _warned:
                return
            _warned.add(self.kind)
        log.warning("study search: %s; scored 0 (further %s failures are scored 0 without a warning)", self, self.kind)
