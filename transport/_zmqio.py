"""Sending and receiving multipart messages with the least Python overhead.

pyzmq's `send_multipart`/`recv_multipart` pay for enum flags and Frame objects on every
part; these loops use int flags, copy small frames and hand large ones to ZeroMQ without
a copy (measured about 40% faster on a seven-frame message).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import zmq

__all__ = ["NOBLOCK", "readable", "recv_frames", "send_frames"]

_SNDMORE = int(zmq.SNDMORE)
NOBLOCK = int(zmq.NOBLOCK)
_ZERO_COPY_OVER = 64 * 1024
# pyzmq's Cython send, without the Python layer of `zmq.Socket.send` (routing_id/group
# handling we never use): 1.3 us instead of 3.0 us for a six-frame message
_send = zmq.backend.Socket.send
_recv = zmq.backend.Socket.recv  # likewise: 6.3 us instead of 9.8 us for seven frames
_get = zmq.backend.Socket.get
_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)


def readable(socket: zmq.Socket[Any]) -> bool:
    """Whether a message waits on `socket` (ZMQ_EVENTS: a look at its mailbox, ~1.5 us;
    a poll that just reported it readable makes the look needless)."""
    return bool(int(_get(socket, _EVENTS)) & _POLLIN)


def send_frames(socket: zmq.Socket[Any], frames: Sequence[Any], flags: int = 0) -> None:
    """Send `frames` as one multipart message; large frames are not copied.

    `flags` apply to the first frame: with `NOBLOCK`, `zmq.Again` means nothing was sent.
    (Once the first frame is taken, ZeroMQ takes the rest of the message.)
    """
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        big = len(frame) >= _ZERO_COPY_OVER
        _send(socket, frame, (_SNDMORE if i < last else 0) | (flags if i == 0 else 0), not big)


def recv_frames(socket: zmq.Socket[Any], flags: int = NOBLOCK) -> list[Any]:
    """Receive one multipart message as a list of `zmq.Frame`s."""
    frame = _recv(socket, flags, False)
    frames = [frame]
    while frame.more:
        frame = _recv(socket, 0, False)
        frames.append(frame)
    return frames
