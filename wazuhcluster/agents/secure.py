"""The codec of Wazuh's "secure" agent channel (TCP 1514): framing, keys, encryption, counters.

Facts taken from Wazuh 4.x (``msgs.c``, ``keys.c``, ``aes_op.c``, ``netbuffer.c``):

* TCP framing: a 4-byte little-endian length, then the payload; a length above
  :data:`MAX_FRAME` (``OS_MAXSTR``, 64 KiB) is refused and the socket closed.
* Payload from an agent: ``!<id>!#AES:<ciphertext>`` (the ``!<id>!`` prefix is present
  when the agent's registered IP is not a single host); from the manager: ``#AES:<ciphertext>``.
* Key: ``md5hex(key) + md5hex(md5hex(name) + md5hex(id))[:15]``; AES-256-CBC uses its first
  32 bytes, with the fixed IV ``FEDCBA0987654321`` and PKCS#7 padding (OpenSSL's default).
* Plaintext before AES: ``'!' * (pad + 1) + zlib(md5hex(inner) + inner)``, with ``pad`` making
  the whole a multiple of 8 and ``inner = "%05u%010u:%04u:" % (random, global, local) + message``.
* The sender's local counter runs 1..9997, then the global counter steps and it restarts.

This module is pure: no reactor, no I/O except :meth:`KeyStore.load`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import os
import re
import struct
import threading
import zlib
from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

from attrs import define, field, frozen
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

#: Wazuh's OS_MAXSTR: the largest frame and the largest decompressed message.
MAX_FRAME = 65536
#: OS_HEADER_SIZE: room Wazuh keeps for the header; a message is at most MAX_FRAME - 128.
HEADER_SIZE = 128
MAX_MESSAGE = MAX_FRAME - HEADER_SIZE
#: Fixed AES initialisation vector (aes_op.c).
IV = b"FEDCBA0987654321"
AES_TOKEN = b"#AES:"
#: md5 (32) + random (5) + global (10) + ':' + local (4) + ':'
MSG_OVERHEAD = 32 + 5 + 10 + 1 + 4 + 1
#: The sender wraps its local counter after this value (msgs.c).
LOCAL_COUNTER_WRAP = 9997
MAX_GLOBAL_COUNTER = 2**32 - 1
_LENGTH = struct.Struct("<I")
_AGENT_ID = re.compile(rb"^!(\d{1,8})!")
#: Where the fields of a decompressed body are: MD5 (32), random (5), the global counter
#: (10), ':', the local counter (4), ':', then the message at MSG_OVERHEAD.
_GLOBAL_DIGITS = slice(37, 47)
_LOCAL_DIGITS = slice(48, 52)
_COLONS = (47, 52)
_COLON = ord(":")


class SecureError(Exception):
    """A frame that must be dropped; ``code`` is Wazuh's message number (1403, 1404...)."""

    code = 0

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FrameTooLarge(SecureError):
    """A length prefix above the maximum frame size."""


class BadFormat(SecureError):
    """The payload does not have Wazuh's layout (``(1403)``)."""

    code = 1403


class WrongKey(SecureError):
    """AES decryption or its padding failed, or the plaintext does not start with ``!`` (1404)."""

    code = 1404


class UnsupportedCipher(WrongKey):
    """A legacy Blowfish payload (``:`` instead of ``#AES:``): only AES agents are served."""


class UncompressError(SecureError):
    """The decrypted body is not valid zlib (``(2202)``)."""

    code = 2202


class MessageTooLarge(SecureError):
    """The decompressed message is larger than ``OS_MAXSTR``."""


class TooShort(SecureError):
    """The decompressed message is shorter than the checksum and counters."""


class ChecksumMismatch(SecureError):
    """The MD5 inside the message does not match its content (``(1406)``)."""

    code = 1406


class ReplayedCounter(SecureError):
    """The message counters are not newer than the last accepted ones (``(1407)``)."""

    code = 1407


class KeyFileError(Exception):
    """A client.keys file that cannot be used (too large, unreadable)."""


def md5hex(data: bytes | memoryview | str) -> str:
    """Lower-case hex MD5 of ``data`` (str is encoded as UTF-8)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def derive_key_string(agent_id: str, name: str, key: str) -> str:
    """Wazuh's 47-character per-agent key string (``OS_AddKey``)."""
    name_id = md5hex(md5hex(name) + md5hex(agent_id))[:15]
    return md5hex(key) + name_id


def derive_key(agent_id: str, name: str, key: str) -> bytes:
    """The 32-byte AES-256 key for an agent: the first 32 bytes of the key string.

    Those are exactly ``md5hex(key)``: the name/ID part of the 47-character string never
    reaches AES-256, so it is not computed here (it matters when loading 50,000 keys).
    """
    del agent_id, name
    return md5hex(key).encode("ascii")


# --------------------------------------------------------------------------- framing


def frame(payload: bytes, max_frame: int = MAX_FRAME) -> bytes:
    """Prefix ``payload`` with its 4-byte little-endian length."""
    if len(payload) > max_frame:
        raise FrameTooLarge(f"payload of {len(payload)} bytes exceeds {max_frame}")
    return _LENGTH.pack(len(payload)) + payload


@define
class FrameDecoder:
    """Splits a TCP byte stream into frames; holds at most one frame plus a header."""

    max_frame: int = MAX_FRAME
    _buffer: bytearray = field(factory=bytearray, init=False)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes and return every complete frame.

        Raises :class:`FrameTooLarge` as soon as a header announces more than ``max_frame``;
        the stream cannot be resynchronised after that, so the caller must close it.
        """
        if not self._buffer:
            return self._feed_fresh(data)
        self._buffer += data
        frames: list[bytes] = []
        offset = 0
        while len(self._buffer) - offset >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self._buffer, offset)
            if length > self.max_frame:
                raise FrameTooLarge(f"frame of {length} bytes exceeds {self.max_frame}")
            end = offset + _LENGTH.size + length
            if end > len(self._buffer):
                break
            frames.append(bytes(self._buffer[offset + _LENGTH.size : end]))
            offset = end
        del self._buffer[:offset]
        return frames

    def _feed_fresh(self, data: bytes) -> list[bytes]:
        """:meth:`feed` with nothing buffered (the usual case): frames are sliced from
        ``data`` itself, and only an incomplete tail is buffered."""
        frames: list[bytes] = []
        offset = 0
        size = len(data)
        header = _LENGTH.size
        while size - offset >= header:
            (length,) = _LENGTH.unpack_from(data, offset)
            if length > self.max_frame:
                raise FrameTooLarge(f"frame of {length} bytes exceeds {self.max_frame}")
            end = offset + header + length
            if end > size:
                break
            frames.append(data[offset + header : end])
            offset = end
        if offset < size:
            self._buffer += data[offset:]
        return frames

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buffer)


# --------------------------------------------------------------------------- counters


@define
class SendCounter:
    """The sender's (global, local) counter pair; ``local`` wraps after 9997."""

    global_count: int = 0
    local_count: int = 0

    def next(self) -> tuple[int, int]:
        """Advance and return the pair to stamp on the next message."""
        if self.local_count >= LOCAL_COUNTER_WRAP:
            self.local_count = 0
            self.global_count = (self.global_count + 1) % (MAX_GLOBAL_COUNTER + 1)
        self.local_count += 1
        return self.global_count, self.local_count


@define
class ReceiveCounter:
    """The last (global, local) pair accepted from one agent."""

    global_count: int = 0
    local_count: int = 0

    def accept(self, global_count: int, local_count: int, verify: bool) -> None:
        """Record a received pair; with ``verify``, refuse one that is not newer.

        Wazuh's ``remoted.verify_msg_id`` (default off) decides whether replays are refused;
        without it the pair is only recorded.
        """
        if verify and (global_count, local_count) <= (self.global_count, self.local_count):
            raise ReplayedCounter(
                f"counter {global_count}:{local_count} is not newer than "
                f"{self.global_count}:{self.local_count}"
            )
        self.global_count = global_count
        self.local_count = local_count


# --------------------------------------------------------------------------- encryption


#: The one CBC mode object every context shares (it only holds the IV): a node keeps an
#: encryptor and a decryptor per connected agent, and each object the cycle collector
#: tracks lengthens every full collection.
_CBC = modes.CBC(IV)
#: Per thread: one AES-CBC encryptor per key, with the last ciphertext block it produced.
_ENCRYPTORS = threading.local()
#: Keys whose encryptor a thread keeps (then it starts again from none).
_MAX_ENCRYPTORS = 65536
_IV_INT = int.from_bytes(IV, "big")


class _Encryptor:
    """A reused CBC encryptor and the block it chains the next message to (as an int)."""

    __slots__ = ("context", "last")

    def __init__(self, key: bytes) -> None:
        self.context: CipherContext = Cipher(algorithms.AES(key), _CBC).encryptor()
        self.last = _IV_INT


def _encryptor(key: bytes) -> _Encryptor:
    """This thread's AES-CBC encryptor of ``key`` (see :func:`encrypt_body`)."""
    cache: dict[bytes, _Encryptor] | None = getattr(_ENCRYPTORS, "cache", None)
    if cache is None or len(cache) >= _MAX_ENCRYPTORS:
        cache = _ENCRYPTORS.cache = {}
    encryptor = cache.get(key)
    if encryptor is None:
        encryptor = cache[key] = _Encryptor(key)
    return encryptor


def encrypt_body(plaintext: bytes, key: bytes) -> bytes:
    """AES-256-CBC with the fixed IV and PKCS#7 padding.

    The key's encryptor is reused (the key schedule is computed once, not per message). A
    CBC context XORs each plaintext block with the ciphertext block it produced before,
    whatever message that was, where a fresh context uses the IV: so the message's first
    block is XORed beforehand with the IV and with that last block, which cancels the
    context's chaining and leaves the IV's. The output is that of a fresh context.
    """
    pad = 16 - len(plaintext) % 16
    padded = plaintext + bytes((pad,)) * pad
    encryptor = _encryptor(key)
    first = int.from_bytes(padded[:16], "big") ^ _IV_INT ^ encryptor.last
    ciphertext = encryptor.context.update(first.to_bytes(16, "big") + padded[16:])
    encryptor.last = int.from_bytes(ciphertext[-16:], "big")
    return ciphertext


#: Per thread: one AES-CBC decryptor per key (a context is not shared between threads).
_DECRYPTORS = threading.local()
#: Keys whose decryptor a thread keeps (then it starts again from none).
_MAX_DECRYPTORS = 65536


def _decryptor(key: bytes) -> CipherContext:
    """This thread's AES-CBC decryptor of ``key``, reused for every message of the key so
    the key schedule is computed once instead of once per message (a third of the cost of
    opening one). See :func:`decrypt_body` for how each message starts from the IV."""
    cache: dict[bytes, CipherContext] | None = getattr(_DECRYPTORS, "cache", None)
    if cache is None or len(cache) >= _MAX_DECRYPTORS:
        cache = _DECRYPTORS.cache = {}
    context = cache.get(key)
    if context is None:
        context = cache[key] = Cipher(algorithms.AES(key), _CBC).decryptor()
    return context


def decrypt_body(ciphertext: bytes, key: bytes) -> bytes:
    """Reverse :func:`encrypt_body`; raises :class:`WrongKey` when it cannot.

    The key's decryptor is reused, and a CBC context chains each block to the block it
    decrypted before, whatever message that was: so the fixed IV is fed first as a block of
    its own. Its output is thrown away, and the message's first block is then decrypted
    against the IV, as if the context were new (CBC: plaintext = D(block) XOR the block
    before it).
    """
    if not _whole_blocks(ciphertext):
        raise _bad_length(ciphertext)
    return _unpad(_decryptor(key).update(IV + ciphertext)[16:])


def _whole_blocks(ciphertext: bytes) -> bool:
    return bool(ciphertext) and not len(ciphertext) % 16


def _bad_length(ciphertext: bytes) -> WrongKey:
    return WrongKey(f"ciphertext length {len(ciphertext)} is not a multiple of 16")


#: PKCS#7 padding of each length, as it ends a padded plaintext.
_PADDINGS = tuple(bytes((size,)) * size for size in range(17))


def _unpad(padded: bytes) -> bytes:
    pad = padded[-1]
    if not 1 <= pad <= 16 or not padded.endswith(_PADDINGS[pad]):
        raise WrongKey("bad AES padding")
    return padded[:-pad]


#: deflate's window (2 ** bits bytes) and hash memory for one message. zlib's defaults (32 KiB
#: window, memory level 8) make setting up a stream cost about 50 µs, more than compressing a
#: message of a few hundred bytes, and a manager seals one per keep-alive answer and per
#: 900-byte chunk of a shared file. A 4 KiB window with a small hash costs 4-13 µs for the
#: same output size; any inflater (an agent's ``uncompress()``) reads a smaller window.
COMPRESS_WINDOW_BITS = 12
COMPRESS_MEMORY_LEVEL = 3


def compress_message(data: bytes) -> bytes:
    """``data`` as one zlib stream (best compression, a 4 KiB window)."""
    stream = zlib.compressobj(9, zlib.DEFLATED, COMPRESS_WINDOW_BITS, COMPRESS_MEMORY_LEVEL)
    return stream.compress(data) + stream.flush()


def deflate_body(message: bytes) -> bytes:
    """``message`` as raw deflate blocks (no zlib header or trailer, the last block final),
    with :func:`compress_message`'s settings: what :func:`seal_deflated` splices into the
    stream of every agent a shared-file chunk goes to."""
    stream = zlib.compressobj(9, zlib.DEFLATED, -COMPRESS_WINDOW_BITS, COMPRESS_MEMORY_LEVEL)
    return stream.compress(message) + stream.flush()


#: The two-byte zlib header :func:`compress_message` writes (window and level flags).
_ZLIB_HEADER = compress_message(b"")[:2]
_STORED_BLOCK = struct.Struct("<BHH")
_ADLER = struct.Struct(">I")


def _check_size(message: bytes) -> None:
    if not 1 <= len(message) <= MAX_MESSAGE:
        raise MessageTooLarge(f"message of {len(message)} bytes is outside 1..{MAX_MESSAGE}")


def _counters(counter: tuple[int, int], random16: int) -> bytes:
    global_count, local_count = counter
    return b"%05d%010d:%04d:" % (random16 & 0xFFFF, global_count, local_count)


def _pad_and_encrypt(compressed: bytes, key: bytes) -> bytes:
    pad = -(len(compressed) + 1) % 8
    return encrypt_body(b"!" * (pad + 1) + compressed, key)


def seal(message: bytes, key: bytes, counter: tuple[int, int], random16: int) -> bytes:
    """Build the ciphertext of one message: checksum, counters, zlib, ``!`` padding, AES."""
    _check_size(message)
    inner = _counters(counter, random16) + message
    return _pad_and_encrypt(compress_message(md5hex(inner).encode("ascii") + inner), key)


def seal_deflated(
    message: bytes, deflated: bytes, key: bytes, counter: tuple[int, int], random16: int
) -> bytes:
    """:func:`seal` for a message already deflated once (``deflated``, from
    :func:`deflate_body`) for many agents: the same plaintext for the agent to read.

    Only the checksum and counters differ between agents, so they go first as a stored
    (uncompressed) block; the message's blocks follow as they are, then the zlib checksum of
    the whole. Any inflater reads the stream, and it costs a copy where compressing each
    agent's copy again cost most of sending a 900-byte chunk.
    """
    _check_size(message)
    counters = _counters(counter, random16)
    head = md5hex(counters + message).encode("ascii") + counters
    adler = zlib.adler32(message, zlib.adler32(head))
    compressed = b"".join(
        (
            _ZLIB_HEADER,
            _STORED_BLOCK.pack(0, len(head), len(head) ^ 0xFFFF),
            head,
            deflated,
            _ADLER.pack(adler),
        )
    )
    return _pad_and_encrypt(compressed, key)


class Opened(NamedTuple):
    """A decrypted, verified message and its counters (a tuple: one is built per message
    the agents send)."""

    global_count: int
    local_count: int
    message: bytes


def _bounded_inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_FRAME + 1)
    except zlib.error as exc:
        raise UncompressError(f"zlib: {exc}") from None
    if len(out) > MAX_FRAME or inflater.unconsumed_tail:
        raise MessageTooLarge(f"decompressed message exceeds {MAX_FRAME} bytes")
    if not inflater.eof:
        raise UncompressError("truncated zlib stream")
    return out


def open_sealed(ciphertext: bytes, key: bytes) -> Opened:
    """Decrypt, strip the ``!`` padding, inflate and check the MD5 and counter fields."""
    body = _checked_body(decrypt_body(ciphertext, key))
    return Opened(int(body[_GLOBAL_DIGITS]), int(body[_LOCAL_DIGITS]), body[MSG_OVERHEAD:])


def open_messages(ciphertexts: list[bytes], key: bytes) -> Iterator[bytes]:
    """The messages of ``ciphertexts`` (one key's), in order, checked as
    :func:`open_sealed` checks them (their counters are not read): raises
    :class:`SecureError` at the first that cannot be opened, once those before it are out."""
    # One call into the cipher for all of them, each preceded by the IV as a block of its
    # own, as in decrypt_body.
    whole = list(itertools.takewhile(_whole_blocks, ciphertexts))
    if whole:
        plaintext = _decryptor(key).update(IV + IV.join(whole))
        start = 16
        for ciphertext in whole:
            end = start + len(ciphertext)
            yield _checked_body(_unpad(plaintext[start:end]))[MSG_OVERHEAD:]
            start = end + 16
    if len(whole) < len(ciphertexts):
        raise _bad_length(ciphertexts[len(whole)])


def _checked_body(plaintext: bytes) -> bytes:
    """A decrypted plaintext's body (MD5, random, counters, message): the ``!`` padding
    stripped, inflated, the MD5 and the counters' layout checked."""
    if not plaintext.startswith(b"!"):
        raise WrongKey("plaintext does not start with the '!' padding")
    body = _bounded_inflate(plaintext.lstrip(b"!"))
    if len(body) < MSG_OVERHEAD:
        raise TooShort(f"decompressed message of {len(body)} bytes is too short")
    inner = memoryview(body)[32:]
    if md5hex(inner).encode("ascii") != body[:32]:
        raise ChecksumMismatch("MD5 does not match the message")
    if (
        body[_COLONS[0]] != _COLON
        or body[_COLONS[1]] != _COLON
        or not (body[_GLOBAL_DIGITS].isdigit() and body[_LOCAL_DIGITS].isdigit())
    ):
        raise BadFormat("counters are not in the <global>:<local>: layout")
    return body


def split_agent_id(payload: bytes) -> tuple[str | None, bytes]:
    """Split an optional ``!<id>!`` prefix from a payload: ``(agent_id or None, rest)``."""
    if not payload.startswith(b"!"):
        return None, payload
    match = _AGENT_ID.match(payload)
    if match is None:
        raise BadFormat("agent ID prefix is not '!<digits>!'")
    return match.group(1).decode("ascii"), payload[match.end() :]


def strip_token(rest: bytes) -> bytes:
    """Remove the ``#AES:`` token and return the ciphertext."""
    if rest.startswith(AES_TOKEN):
        return rest[len(AES_TOKEN) :]
    if rest.startswith(b":"):
        raise UnsupportedCipher("legacy Blowfish payloads are not supported")
    raise BadFormat("payload does not start with '#AES:'")


def encode_payload(
    message: bytes,
    key: bytes,
    counter: tuple[int, int],
    random16: int,
    agent_id: str | None = None,
) -> bytes:
    """A complete payload: ``[!<id>!]#AES:`` followed by the sealed message."""
    prefix = b"!" + agent_id.encode("ascii") + b"!" if agent_id is not None else b""
    return prefix + AES_TOKEN + seal(message, key, counter, random16)


def random16() -> int:
    """A random 16-bit number for the message's 5-digit random field."""
    return int.from_bytes(os.urandom(2), "little")


# --------------------------------------------------------------------------- keys


@frozen
class AgentKey:
    """One client.keys entry: ``ID NAME IP KEY``, with its derived AES key."""

    agent_id: str
    name: str
    ip: str
    key: str = field(repr=False)
    cipher_key: bytes = field(init=False, repr=False, eq=False)
    #: How this agent's frames start when they carry its id (``!<id>!#AES:``).
    sealed_prefix: bytes = field(init=False, repr=False, eq=False)
    _network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = field(
        init=False, repr=False, eq=False
    )

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "cipher_key", derive_key(self.agent_id, self.name, self.key))
        object.__setattr__(self, "sealed_prefix", f"!{self.agent_id}!".encode() + AES_TOKEN)
        network = None
        if self.ip.lower() != "any":
            try:
                network = ipaddress.ip_network(self.ip, strict=False)
            except ValueError:
                raise ValueError(f"invalid IP {self.ip!r} for agent {self.agent_id}") from None
        object.__setattr__(self, "_network", network)

    @property
    def single_host(self) -> bool:
        """True when the registered IP is one address (then agents omit the ``!id!`` prefix)."""
        return self._network is not None and self._network.num_addresses == 1

    def allows(self, source_ip: str) -> bool:
        """Whether a message from ``source_ip`` may use this key (``any`` allows all)."""
        if self._network is None:
            return True
        try:
            address = ipaddress.ip_address(source_ip)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return address in self._network

    def line(self) -> str:
        """The client.keys line for this entry."""
        return f"{self.agent_id} {self.name} {self.ip} {self.key}"


#: Bounds for client.keys files read from disk.
MAX_KEYS_FILE_BYTES = 64 * 1024 * 1024
MAX_KEYS = 500_000
_ID_FIELD = re.compile(r"^\d{1,8}$")


def parse_client_keys(
    text: str,
    max_entries: int = MAX_KEYS,
    previous: Mapping[str, AgentKey] | KeyStore | None = None,
) -> list[AgentKey]:
    """Parse client.keys text: one ``ID NAME IP KEY`` per line.

    Comment lines (``#``, or a leading space), removed entries (a name starting with ``!`` or
    ``#``) and malformed lines are skipped, as Wazuh does. Raises :class:`KeyFileError` when
    there are more than ``max_entries`` entries. Unchanged entries of ``previous`` are
    reused, so reloading a large file after one enrollment derives one key, not all.
    """
    entries: list[AgentKey] = []
    old = previous if previous is not None else {}
    for raw in text.splitlines():
        if not raw or raw[0] in "# ":
            continue
        parts = raw.split(" ", 3)
        if len(parts) != 4 or not _ID_FIELD.match(parts[0]):
            continue
        agent_id, name, ip, key = parts
        if name[:1] in ("!", "#") or not name or not key.strip():
            continue
        key = key.strip()
        known = old.get(agent_id)
        if known is not None and known.key == key and known.name == name and known.ip == ip:
            entry = known
        else:
            try:
                entry = AgentKey(agent_id, name, ip, key)
            except ValueError:
                continue
        entries.append(entry)
        if len(entries) > max_entries:
            raise KeyFileError(f"more than {max_entries} agent keys")
    return entries


def _host_of(entry: AgentKey) -> str:
    """The address a single-host entry is looked up by."""
    return str(ipaddress.ip_network(entry.ip, strict=False).network_address)


def _forget(by_id: dict[str, AgentKey], by_ip: dict[str, AgentKey], agent_id: str) -> None:
    """Drop ``agent_id`` from both lookups (its IP only if it still points to it)."""
    gone = by_id.pop(agent_id, None)
    if gone is not None and gone.single_host and by_ip.get(_host_of(gone)) is gone:
        del by_ip[_host_of(gone)]


class KeyStore:
    """An immutable lookup of agent keys by ID and by single-host IP.

    To reload, build a new store and swap the reference (see
    :meth:`wazuhcluster.agents.channel.AgentChannelFactory.set_keys`).
    """

    def __init__(self, entries: Iterable[AgentKey] = ()) -> None:
        self._by_id: dict[str, AgentKey] = {}
        self._by_ip: dict[str, AgentKey] = {}
        for entry in entries:
            self._by_id[entry.agent_id] = entry
            if entry.single_host:
                self._by_ip[_host_of(entry)] = entry

    def updated(self, added: Iterable[AgentKey], removed: Iterable[str]) -> KeyStore:
        """A new store: this one without the ``removed`` ids, then with ``added`` (an added
        entry replaces the one with its id). Costs a copy of the lookups, not a re-parse."""
        store = KeyStore()
        by_id, by_ip = dict(self._by_id), dict(self._by_ip)
        for agent_id in removed:
            _forget(by_id, by_ip, agent_id)
        for entry in added:
            _forget(by_id, by_ip, entry.agent_id)
            by_id[entry.agent_id] = entry
            if entry.single_host:
                by_ip[_host_of(entry)] = entry
        store._by_id, store._by_ip = by_id, by_ip
        return store

    @classmethod
    def load(
        cls,
        path: str,
        max_bytes: int = MAX_KEYS_FILE_BYTES,
        max_entries: int = MAX_KEYS,
        previous: KeyStore | None = None,
    ) -> KeyStore:
        """Read a client.keys file; a missing file is an empty store.

        ``previous`` (the store being replaced) lets unchanged entries be reused.
        """
        try:
            with open(path, "rb") as handle:
                data = handle.read(max_bytes + 1)
        except FileNotFoundError:
            return cls()
        except OSError as exc:
            raise KeyFileError(f"{path}: {exc.strerror}") from None
        if len(data) > max_bytes:
            raise KeyFileError(f"{path}: larger than {max_bytes} bytes")
        text = data.decode("utf-8", "replace")
        return cls(parse_client_keys(text, max_entries, previous))

    def get(self, agent_id: str) -> AgentKey | None:
        """The entry for ``agent_id``, or None."""
        return self._by_id.get(agent_id)

    def by_ip(self, source_ip: str) -> AgentKey | None:
        """The entry registered with exactly ``source_ip``, or None."""
        return self._by_ip.get(source_ip)

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[AgentKey]:
        return iter(self._by_id.values())

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._by_id

    def as_mapping(self) -> Mapping[str, AgentKey]:
        """A read-only view by agent ID."""
        return dict(self._by_id)
