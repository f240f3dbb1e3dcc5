"""The private channel between the supervisor and one stage process.

A Unix stream socket pair made per stage start: the supervisor keeps one end,
the stage inherits the other (and nothing else can reach it: it has no name in
the file system). Over it the supervisor sends the stage's start handshake
(the resolved configuration and the current control state) and every later
change of that state; the stage sends heartbeats from its main loop and its
stats. The end closing tells either side that the other is gone, portably
(no parent-death signal needed).

Messages are msgpack maps, each behind a 4-byte big-endian length; a length
over MAX_MESSAGE_BYTES ends the channel (the peer is not a stage of ours).
Message kinds and their fields are pipeline.schemas' channel messages.
"""

from __future__ import annotations

import errno
import select
import socket
import struct
import time
from typing import Any

import msgpack

#: Largest message either side accepts: the handshake's configuration is a few kB.
MAX_MESSAGE_BYTES = 1 << 20
_LEN = struct.Struct(">I")


class ChannelClosed(ConnectionError):
    """The other end is gone (or sent something that is not this protocol)."""


class Channel:
    """One end of a channel. Sends never block for long: the socket buffer
    holds far more than the few small messages in flight, and a peer that
    stops reading (SIGSTOP) makes sends fail with ChannelClosed after the
    buffer fills instead of stalling the sender."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.setblocking(False)
        self._buf = bytearray()
        self._out = bytearray()
        self._pending: list[Any] = []
        self._eof = False

    @classmethod
    def pair(cls) -> tuple[Channel, socket.socket]:
        """A channel for this process and the socket to pass to a child
        (inheritable: give its fileno() to the child's pass_fds)."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        theirs.set_inheritable(True)
        return cls(mine), theirs

    @classmethod
    def from_fd(cls, fd: int) -> Channel:
        return cls(socket.socket(fileno=fd))

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, msg: dict[str, Any]) -> None:
        data = msgpack.packb(msg, use_bin_type=True)
        if len(data) > MAX_MESSAGE_BYTES:
            raise ValueError(f"channel message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
        self._out += _LEN.pack(len(data)) + data
        self.flush()

    def flush(self) -> None:
        """Writes what the socket takes now; the rest waits for the next send.
        A backlog past the limit means the peer stopped reading for good."""
        while self._out:
            try:
                n = self.sock.send(self._out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                raise ChannelClosed(f"channel closed: {exc.strerror or exc}") from None
            del self._out[:n]
        if len(self._out) > 4 * MAX_MESSAGE_BYTES:
            raise ChannelClosed("the peer stopped reading its channel")

    def receive(self) -> list[Any]:
        """Every whole message readable now (never blocks); one that is not
        msgpack comes as None, for the caller to count. ChannelClosed at end
        of file or on a message too large to be ours."""
        while not self._eof:
            try:
                chunk = self.sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno != errno.ECONNRESET:
                    raise ChannelClosed(f"channel closed: {exc.strerror or exc}") from None
                chunk = b""
            if not chunk:
                self._eof = True  # the whole messages before it are still delivered
                break
            self._buf += chunk
            if len(chunk) < 1 << 16:
                break
        out, self._pending = self._pending, []
        while len(self._buf) >= _LEN.size:
            (size,) = _LEN.unpack_from(self._buf)
            if size > MAX_MESSAGE_BYTES:
                raise ChannelClosed(f"a channel message of {size} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")
            if len(self._buf) < _LEN.size + size:
                break
            data = bytes(self._buf[_LEN.size : _LEN.size + size])
            del self._buf[: _LEN.size + size]
            try:
                out.append(msgpack.unpackb(data, raw=False, strict_map_key=True))
            except Exception:  # msgpack raises several unrelated types; the caller counts it
                out.append(None)
        if self._eof and not out:
            raise ChannelClosed("the peer closed the channel" + (" within a message" if self._buf else ""))
        return out

    def receive_one(self, timeout_s: float) -> Any:
        """Blocks until a message arrives (the stage's handshake); later ones
        stay for the next receive()."""
        deadline = time.monotonic() + timeout_s
        got = self.receive()
        while not got:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                raise ChannelClosed(f"no message within {timeout_s:g} s")
            got = self.receive()
        self._pending = got[1:]
        return got[0]

    def close(self) -> None:
        self.sock.close()
