"""Output that survives its reader: `preservarium up 2>&1 | tee up.log`, then Ctrl-C.

Ctrl-C reaches `tee` too, so `up` is left writing its shutdown progress into a closed
pipe. Were that write to raise, the shutdown would stop halfway and leave the services
running. Once the reader has gone, output is dropped: the descriptor is pointed at
/dev/null, so that the interpreter's last flush cannot fail either.
"""

from __future__ import annotations

import errno
import io
import os
from typing import TextIO, cast

# EPIPE: the reader closed the pipe; EIO: the terminal hung up.
GONE = {errno.EPIPE, errno.EIO}


class PipeSafeStream(io.TextIOBase):
    """A text stream that drops writes, instead of raising, once its reader is gone."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream
        self.reader_gone = False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        """The wrapped stream's encoding."""
        return self._stream.encoding

    def write(self, text: str) -> int:
        """Write `text`, or drop it when nobody reads any more."""
        if not self.reader_gone:
            try:
                self._stream.write(text)
            except OSError as exc:
                self._gone(exc)
        return len(text)

    def flush(self) -> None:
        """Flush, or drop what is buffered when nobody reads any more."""
        if not self.reader_gone:
            try:
                self._stream.flush()
            except OSError as exc:
                self._gone(exc)

    def isatty(self) -> bool:
        """Whether the wrapped stream is a terminal (rich asks, to choose its styling)."""
        return not self.reader_gone and self._stream.isatty()

    def fileno(self) -> int:
        """The wrapped stream's descriptor."""
        return self._stream.fileno()

    def _gone(self, exc: OSError) -> None:
        if exc.errno not in GONE:
            raise exc
        self.reader_gone = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)


def pipe_safe(stream: TextIO) -> TextIO:
    """`stream`, made safe (typed as the text stream it stands in for)."""
    return cast(TextIO, PipeSafeStream(stream))
