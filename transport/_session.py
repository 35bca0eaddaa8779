"""The wire format: framing, HMAC signing, replay protection and decoding of messages.

A message on the wire is::

    [routing ids..., b"<IDS|MSG>", signature, header, parent_header, metadata, content, buffers...]

`header`, `parent_header` and `metadata` are JSON; `content` is the pickled list of the
messages it carries (protocol 5) and `buffers` are their out-of-band pickle buffers
(numpy arrays, large bytes), each a frame of its own so they travel without copies.

The signature is the hex HMAC-SHA256 of header, parent_header, metadata and content; the
header's `buffers` lists the BLAKE3 digest of each buffer frame (see `digest`), so the
signature covers the buffers too. A receiver that uses the buffers checks them against
their digests before anything is unpickled; a relay that only forwards them (the
controller) checks the signature, forwards the buffers untouched with their signed
digests, and never reads nor hashes bulk data: a 100 MB array is hashed twice end to end
(by its sender and its user), not once per hop.

One wire message carries one or more items: the header's `items` lists, for each, the
recipient's name, the correlation id of an ask (or null) and the message type; the header's
`msg_type` is the first item's type. Sending many small messages in one wire message pays
the signature, header and system calls once.

`Session.unpack` checks, in this order: structure and sizes, signature, replay, header
decoding, message type, content. Nothing is unpickled before the signature passed, and a
digest is remembered only once it verified, so a forged message carrying a captured
signature cannot block the genuine one.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import itertools
import logging
import pickle
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
from actorcluster.transport._digest import digest
from actorcluster.transport._message import Message
from actorcluster.transport._serialize import incoming_digests, outgoing_digests

logger = logging.getLogger(__name__)

DELIM = b"<IDS|MSG>"
_DELIM_LEN = len(DELIM)
PROTOCOL_VERSION = "1"
SIGNATURE_SCHEME = "hmac-sha256"
_INBAND_LIMIT = 64 * 1024  # pickle buffers smaller than this stay inside `content`

Frame = (
    bytes | memoryview | Any
)  # bytes, memoryview or zmq.Frame: anything with the buffer protocol


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps applied to every incoming message before it is verified."""

    max_idents: int = 16
    max_frames: int = 4096
    max_header_bytes: int = 64 * 1024
    max_frame_bytes: int = 4 * 1024**3
    replay_window: float = 300.0
    replay_history: int = 200_000


class WireError(Exception):
    """An incoming message was refused; `reason` is a short counter key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


class Item(NamedTuple):
    """One message in a wire message: its recipient's name, ask correlation id, message."""

    to: str
    cid: str | None
    message: Message


_item = functools.partial(tuple.__new__, Item)  # Item(*fields) without Python-level __new__
_classes = Message.registry  # msg_type -> class


@dataclass(slots=True)
class Incoming:
    """A verified, decoded wire message: its items and the envelope they came in."""

    idents: list[bytes]
    header: dict[str, Any]
    parent: dict[str, Any]
    metadata: dict[str, Any]
    items: list[Item]
    content: Frame = b""  # the signed pickle of the items' messages
    buffers: int = 0  # how many out-of-band buffer frames came with it


# Where a message came from: the signed content of its wire message (the pickle of every
# item's message) and its place there. Keeping these bytes is the cheap way to store a
# received message again: no pickling (the task database journals them). A plain tuple:
# the garbage collector soon stops tracking it, and it pickles without a Python call.
Received = tuple[bytes, int]


def received_message(
    received: Received, unpickled: dict[int, list[Message]] | None = None
) -> Message:
    """The message `received` stands for, unpickled again from its content; `unpickled`
    keeps the contents unpickled so far (by id), for many messages of one content."""
    content, at = received
    if unpickled is None:
        message: Message = pickle.loads(content)[at]
        return message
    messages = unpickled.get(id(content))
    if messages is None:
        messages = unpickled[id(content)] = pickle.loads(content)
    return messages[at]


class ReplayGuard:
    """Refuse a message seen before, with bounded memory.

    Digests are kept for `window` seconds of message dates. When more than `capacity`
    arrive within the window, the oldest are forgotten and messages dated at or before
    the newest forgotten one are refused as stale, so no replay can slip through.
    """

    def __init__(self, window: float, capacity: int) -> None:
        self.window = window
        self.capacity = capacity
        self._order: deque[tuple[float, bytes]] = deque()
        self._seen: set[bytes] = set()
        self._floor = float("-inf")
        # checking and forgetting must not interleave: a thread could forget a digest
        # another just kept, and raise the floor over messages still to come
        self._lock = threading.Lock()

    def check(self, digest: bytes, date: float) -> None:
        """Raise `WireError` for a stale or repeated message; remember it otherwise."""
        now = time.time()
        if abs(now - date) > self.window:
            raise WireError("stale", f"message date is {now - date:.0f} s from ours")
        with self._lock:  # threads of one client share its session
            if date <= self._floor:
                raise WireError("stale", "message older than the replay history")
            seen = self._seen
            if digest in seen:
                raise WireError("replay", "message seen before")
            seen.add(digest)
            order = self._order
            order.append((date, digest))
            horizon = now - self.window
            if order[0][0] < horizon or len(order) > self.capacity:
                self._forget(horizon)

    def _forget(self, horizon: float) -> None:
        """Drop digests older than `horizon`, and the oldest beyond `capacity`."""
        order = self._order
        while order and (order[0][0] < horizon or len(order) > self.capacity):
            old_date, old = order.popleft()
            self._seen.discard(old)
            if old_date >= horizon:
                self._floor = max(self._floor, old_date)

    def __len__(self) -> int:
        return len(self._seen)


class _DropLog:
    """Count dropped messages and log them without flooding the log."""

    def __init__(self, interval: float = 10.0) -> None:
        self.counts: Counter[str] = Counter()
        self._interval = interval
        self._last = float("-inf")
        self._since = 0

    def __call__(self, error: WireError, where: str) -> None:
        self.counts[error.reason] += 1
        self._since += 1
        now = time.monotonic()
        if now - self._last >= self._interval:
            logger.warning(
                "%s: dropped %d bad message(s); last: %s %s (totals %s)",
                where,
                self._since,
                error.reason,
                error.detail,
                dict(self.counts),
            )
            self._last, self._since = now, 0


_EMPTY = b"{}"


def _json(obj: dict[str, Any] | None) -> bytes:
    return orjson.dumps(obj, default=str) if obj else _EMPTY


def _object(frame: Frame) -> dict[str, Any]:
    if len(frame) == 2 and bytes(frame) == _EMPTY:
        return {}
    value = orjson.loads(bytes(frame))
    if type(value) is not dict:
        raise TypeError("header, parent and metadata must be JSON objects")
    return value


class Session:
    """Sign, frame and decode messages with one shared key.

    Args:
        key: the HMAC key shared by every part of a cluster (bytes; must not be empty).
        session: this party's uuid; a new one by default.
        limits: caps on incoming messages.
    """

    def __init__(
        self,
        key: bytes,
        *,
        session: str | None = None,
        limits: Limits | None = None,
    ) -> None:
        if not key:
            raise ValueError("a session key must not be empty: messages would go unsigned")
        self.key = key
        self.session = session or uuid.uuid4().hex
        self.limits = limits or Limits()
        mac = hmac.new(key, digestmod=hashlib.sha256)
        # the C HMAC object under hmac.HMAC where there is one: its copy/update skip a
        # Python layer (about 0.5 us per message)
        self._hmac: Any = getattr(mac, "_hmac", None) or mac
        self._ids = itertools.count()
        self.replay = ReplayGuard(self.limits.replay_window, self.limits.replay_history)
        self.drops = _DropLog()

    @property
    def dropped(self) -> Counter[str]:
        """Counts of refused messages by reason."""
        return self.drops.counts

    def new_msg_id(self) -> str:
        """Return a msg_id unique to this session."""
        return f"{self.session}_{next(self._ids)}"

    def sign(self, frames: Sequence[Frame]) -> bytes:
        """Return the hex HMAC-SHA256 of `frames`."""
        h = self._hmac.copy()
        for frame in frames:
            h.update(frame)
        hexdigest: str = h.hexdigest()
        return hexdigest.encode()

    def pack(
        self,
        items: Sequence[Item],
        *,
        header: dict[str, Any] | None = None,
        parent: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> list[Frame]:
        """Return the frames of a message carrying `items`, from the delimiter on.

        Args:
            items: what to send, each an `Item(to, cid, message)`; several items share
                one header and one signature.
            header: extra header fields (`from`: the sender's node).
            parent: the header of the message this one answers.
            metadata: free-form JSON metadata.
        """
        buffers: list[memoryview] = []
        digests: list[str] = []
        known: dict[int, tuple[Any, str]] = {}

        def out_of_band(buf: pickle.PickleBuffer) -> bool:
            raw = buf.raw()
            if raw.nbytes < _INBAND_LIMIT:
                return True
            buffers.append(raw)
            forwarded = known.get(id(buf))
            digests.append(forwarded[1] if forwarded is not None else digest(raw))
            return False

        token = outgoing_digests.set(known)
        try:
            content = pickle.dumps(
                [item.message for item in items], protocol=5, buffer_callback=out_of_band
            )
        finally:
            outgoing_digests.reset(token)
        routing = [[item.to, item.cid, type(item.message).__name__] for item in items]
        head: dict[str, Any] = {
            "msg_id": self.new_msg_id(),
            "msg_type": routing[0][2],
            "session": self.session,
            "date": time.time(),
            "version": PROTOCOL_VERSION,
            "items": routing,
        }
        if digests:
            head["buffers"] = digests
        if header:
            head.update(header)
        frames: list[Frame] = [_json(head), _json(parent), _json(metadata), content]
        signature = self.sign(frames)
        frames.extend(buffers)
        return [DELIM, signature, *frames]

    def unpack(self, frames: Sequence[Frame], *, verify_buffers: bool = True) -> Incoming:
        """Verify and decode a received message.

        Args:
            frames: the multipart message.
            verify_buffers: check the buffers against their signed digests (False for a
                relay that forwards them unread: the `Payload`s keep their digests).

        Raises:
            WireError: the message is malformed, unsigned, replayed or of an unknown type.
        """
        limits = self.limits
        count = len(frames)
        if count > limits.max_frames:
            raise WireError("too_many_frames", f"{count} frames")
        at = _find_delim(frames, limits.max_idents)
        if count - at < 6:
            raise WireError("too_few_frames", f"{count - at - 2} frames after the signature")
        head, parent_frame, meta_frame, content = frames[at + 2 : at + 6]
        cap = limits.max_header_bytes
        for i, frame in enumerate((head, parent_frame, meta_frame)):
            if len(frame) > cap:
                raise WireError("oversized", f"frame {i} has {len(frame)} bytes (cap {cap})")
        cap = limits.max_frame_bytes
        for i in range(at + 5, count):
            if len(frames[i]) > cap:
                size = len(frames[i])
                raise WireError("oversized", f"frame {i - at - 2} has {size} bytes (cap {cap})")
        mac = self._hmac.copy()
        mac.update(head)
        mac.update(parent_frame)
        mac.update(meta_frame)
        mac.update(content)
        signature = bytes(frames[at + 1])
        if not hmac.compare_digest(signature, mac.hexdigest().encode()):
            raise WireError("bad_signature", "signature does not match")
        buffers = [b if type(b) is memoryview else memoryview(b) for b in frames[at + 6 :]]
        try:
            header = _object(head)
            parent = _object(parent_frame)
            metadata = _object(meta_frame)
            if type(header["msg_type"]) is not str:
                raise TypeError("msg_type must be a string")
            date = header["date"]
            if type(date) is not float:
                raise TypeError("date must be a float (seconds since the epoch)")
            routing: list[list[Any]] = header["items"]
            classes = []
            for to, _cid, kind in routing:
                if type(to) is not str or type(kind) is not str:
                    raise TypeError("an item's recipient and type must be strings")
                classes.append(_classes.get(kind))
            digests = [str(d) for d in header.get("buffers", ())]
            if len(digests) != len(buffers):
                raise ValueError(f"{len(buffers)} buffers but {len(digests)} digests")
        except (ValueError, KeyError, TypeError) as e:
            raise WireError("bad_header", f"{type(e).__name__}: {e}") from None
        if verify_buffers:
            for i, (buffer, expected) in enumerate(zip(buffers, digests, strict=True)):
                if not hmac.compare_digest(digest(buffer), expected):
                    raise WireError("bad_buffer", f"buffer {i} does not match its signed digest")
        self.replay.check(signature, date)
        if not routing or None in classes:
            unknown = sorted(
                {kind for (_, _, kind), c in zip(routing, classes, strict=True) if c is None}
            )
            raise WireError("unknown_type", f"msg_type {unknown or header['msg_type']!r}")
        messages = self._messages(content, buffers, None if verify_buffers else digests)
        if type(messages) is not list or len(messages) != len(routing):
            raise WireError("bad_content", "content does not match the header's items")
        items = []
        for (to, cid, kind), cls, message in zip(routing, classes, messages, strict=True):
            if type(message) is not cls:
                raise WireError("bad_content", f"content is {type(message).__name__}, not {kind}")
            items.append(_item((to, cid if type(cid) is str else None, message)))
        idents = [bytes(f) for f in frames[:at]] if at else []
        return Incoming(idents, header, parent, metadata, items, content, len(buffers))

    @staticmethod
    def _messages(content: Frame, buffers: list[memoryview], digests: list[str] | None) -> Any:
        """Unpickle the content; `digests`: attach them to the buffers' `Payload`s."""
        token = None
        if buffers and digests is not None:  # without buffers, no Payload has digests
            token = incoming_digests.set({id(b): d for b, d in zip(buffers, digests, strict=True)})
        try:
            return pickle.loads(content, buffers=buffers)
        except Exception as e:  # noqa: BLE001 - a signed but undecodable content is still dropped
            raise WireError("bad_content", f"{type(e).__name__}: {e}") from None
        finally:
            if token is not None:
                incoming_digests.reset(token)

    def drop(self, error: WireError, where: str) -> None:
        """Count and (rate-limited) log a refused message."""
        self.drops(error, where)


def _find_delim(frames: Sequence[Frame], max_idents: int) -> int:
    for i, frame in enumerate(frames[: max_idents + 1]):
        # bytes, zmq.Frame and PickleBuffer.raw() memoryviews all have len() in bytes
        if len(frame) == _DELIM_LEN and bytes(frame) == DELIM:
            return i
    raise WireError("no_delimiter", "no <IDS|MSG> delimiter")
