"""Tests for wazuhcluster.agents.secure: framing, key derivation, AES, zlib, MD5, counters, keys."""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import zlib

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.agents import secure

AGENT_ID = "001"
AGENT_NAME = "agent-one"
AGENT_KEY = "0123456789abcdef" * 4

# Computed outside Python with coreutils md5sum:
#   md5(key) + md5(md5(name) + md5(id))[:15]
FIXED_KEY_STRING = "fe3a1ff59f3b89b2ad3d33f08984874be73bcb7a7ff2635"
# Computed with `openssl enc -aes-256-cbc -K <first 32 bytes of the key string, hex>
# -iv <hex of FEDCBA0987654321>` over '!' * 7 + zlib(md5(inner) + inner), where
# inner = "123450000000004:0007:1:/var/log/auth.log:hello world".
FIXED_CIPHERTEXT = bytes.fromhex(
    "7b074d86fd64c8ff8436ea99060da1b0e65c6443a74501e7e8fc6af2516684c0"
    "db6ef2714ccc0231db688a67eb8aa571b37485bcb312394ecdc3f94a17bdae70"
    "79e56b26043933802b873263c15af9e7df71bc824190f47d70f5864f2392dc58"
)


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data).hexdigest().encode()


def _aes_encrypt(plaintext: bytes, key: bytes) -> bytes:
    padder = padding.PKCS7(128).padder()
    data = padder.update(plaintext) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(b"FEDCBA0987654321")).encryptor()
    return enc.update(data) + enc.finalize()


def _aes_decrypt(ciphertext: bytes, key: bytes) -> bytes:
    dec = Cipher(algorithms.AES(key), modes.CBC(b"FEDCBA0987654321")).decryptor()
    data = dec.update(ciphertext) + dec.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(data) + unpadder.finalize()


def _hand_made(inner: bytes, key: bytes, extra_bang: int = 0) -> bytes:
    """Build a ciphertext step by step from the published algorithm."""
    compressed = zlib.compress(_md5(inner) + inner)
    pad = (8 - (len(compressed) + 1) % 8) % 8
    return _aes_encrypt(b"!" * (pad + 1 + extra_bang) + compressed, key)


class KeyDerivationTests(SynchronousTestCase):
    """The per-agent key is derived as OS_AddKey does."""

    def test_fixed_vector(self) -> None:
        """The 47-character key string matches the value computed with md5sum."""
        self.assertEqual(
            secure.derive_key_string(AGENT_ID, AGENT_NAME, AGENT_KEY), FIXED_KEY_STRING
        )

    def test_aes_key_is_first_32_bytes(self) -> None:
        """AES-256 uses the first 32 bytes of the key string."""
        key = secure.derive_key(AGENT_ID, AGENT_NAME, AGENT_KEY)
        self.assertEqual(key, FIXED_KEY_STRING[:32].encode())
        self.assertEqual(len(key), 32)

    def test_agent_key_caches_derived_key(self) -> None:
        """AgentKey exposes the derived cipher key."""
        entry = secure.AgentKey(AGENT_ID, AGENT_NAME, "any", AGENT_KEY)
        self.assertEqual(entry.cipher_key, FIXED_KEY_STRING[:32].encode())


class FixedVectorTests(SynchronousTestCase):
    """A ciphertext made outside the codec (openssl CLI) decodes to the expected message."""

    def test_decode_openssl_vector(self) -> None:
        """open_sealed recovers counters and message from the openssl-made vector."""
        key = FIXED_KEY_STRING[:32].encode()
        opened = secure.open_sealed(FIXED_CIPHERTEXT, key)
        self.assertEqual(opened.global_count, 4)
        self.assertEqual(opened.local_count, 7)
        self.assertEqual(opened.message, b"1:/var/log/auth.log:hello world")

    def test_payload_with_agent_prefix(self) -> None:
        """The full payload '!001!#AES:<ct>' splits into the ID and the ciphertext."""
        payload = b"!001!#AES:" + FIXED_CIPHERTEXT
        agent_id, rest = secure.split_agent_id(payload)
        self.assertEqual(agent_id, "001")
        self.assertEqual(secure.strip_token(rest), FIXED_CIPHERTEXT)

    def test_hand_made_decodes(self) -> None:
        """A ciphertext built step by step with the primitives decodes through the codec."""
        key = secure.derive_key(AGENT_ID, AGENT_NAME, AGENT_KEY)
        inner = b"%05d%010d:%04d:" % (7, 123, 9997) + b"#!-agent startup {}"
        opened = secure.open_sealed(_hand_made(inner, key), key)
        self.assertEqual((opened.global_count, opened.local_count), (123, 9997))
        self.assertEqual(opened.message, b"#!-agent startup {}")

    def test_seal_layout(self) -> None:
        """seal() output decrypted by hand has '!' padding to 8, zlib, MD5 and counters."""
        key = secure.derive_key(AGENT_ID, AGENT_NAME, AGENT_KEY)
        ciphertext = secure.seal(b"2:syslog:msg", key, (42, 3), 65535)
        plaintext = _aes_decrypt(ciphertext, key)
        self.assertEqual(len(plaintext) % 8, 0)
        stripped = plaintext.lstrip(b"!")
        self.assertTrue(1 <= len(plaintext) - len(stripped) <= 8)
        body = zlib.decompress(stripped)
        inner = b"65535" + b"0000000042" + b":0003:" + b"2:syslog:msg"
        self.assertEqual(body, _md5(inner) + inner)

    def test_compressed_for_any_inflater(self) -> None:
        """A message of any size, up to the largest, is one zlib stream that a default
        inflater (an agent's ``uncompress()``: 32 KiB window) reads back whole."""
        random_part = bytes(range(256)) * 40
        for message in (
            b"x",
            random_part[:900],
            (b"<agent_config/>\n" * 5000)[: secure.MAX_MESSAGE],
        ):
            stream = secure.compress_message(message)
            self.assertEqual(zlib.decompress(stream), message)
            self.assertLessEqual(len(stream), len(message) + 64)


class RoundTripTests(SynchronousTestCase):
    """seal/open and payload encoding round-trip."""

    @settings(max_examples=60, deadline=None)
    @given(
        message=st.binary(min_size=1, max_size=3000),
        global_count=st.integers(0, 2**32 - 1),
        local_count=st.integers(1, 9997),
        rnd=st.integers(0, 65535),
    )
    def test_round_trip(
        self, message: bytes, global_count: int, local_count: int, rnd: int
    ) -> None:
        """Any message and counters survive seal then open_sealed, and so they do sealed
        from blocks deflated once (seal_deflated, for many agents), whose body is one zlib
        stream that a default inflater reads to the same bytes."""
        key = secure.derive_key("123", "n", "k" * 64)
        counter = (global_count, local_count)
        expected = secure.Opened(global_count, local_count, message)
        self.assertEqual(secure.open_sealed(secure.seal(message, key, counter, rnd), key), expected)
        sealed = secure.seal_deflated(message, secure.deflate_body(message), key, counter, rnd)
        self.assertEqual(secure.open_sealed(sealed, key), expected)
        body = zlib.decompress(_aes_decrypt(sealed, key).lstrip(b"!"))
        inner = b"%05d%010d:%04d:" % (rnd, global_count, local_count) + message
        self.assertEqual(body, _md5(inner) + inner)

    @settings(max_examples=40, deadline=None)
    @given(messages=st.lists(st.binary(min_size=1, max_size=600), min_size=1, max_size=8))
    def test_several_opened_together(self, messages: list[bytes]) -> None:
        """Messages of one key opened together (open_messages: one call into the cipher)
        are what open_sealed makes of each."""
        key = secure.derive_key("123", "n", "k" * 64)
        sealed = [secure.seal(message, key, (5, n + 1), n) for n, message in enumerate(messages)]
        self.assertEqual(list(secure.open_messages(sealed, key)), messages)
        self.assertEqual([secure.open_sealed(one, key).message for one in sealed], messages)

    def test_encode_payload_prefix(self) -> None:
        """encode_payload adds '!id!' only when an agent ID is given."""
        key = secure.derive_key("1", "n", "k")
        with_id = secure.encode_payload(b"x", key, (0, 1), 1, agent_id="017")
        without = secure.encode_payload(b"x", key, (0, 1), 1)
        self.assertTrue(with_id.startswith(b"!017!#AES:"))
        self.assertTrue(without.startswith(b"#AES:"))

    def test_deflated_once_size_bounds(self) -> None:
        """seal_deflated refuses what seal refuses."""
        key = secure.derive_key("1", "n", "k")
        big = b"a" * (secure.MAX_MESSAGE + 1)
        for message in (b"", big):
            self.assertRaises(
                secure.MessageTooLarge,
                secure.seal_deflated,
                message,
                secure.deflate_body(message),
                key,
                (0, 1),
                0,
            )

    def test_message_size_bounds(self) -> None:
        """Empty messages and messages over OS_MAXSTR - header are refused."""
        key = secure.derive_key("1", "n", "k")
        self.assertRaises(secure.MessageTooLarge, secure.seal, b"", key, (0, 1), 0)
        big = b"a" * (secure.MAX_MESSAGE + 1)
        self.assertRaises(secure.MessageTooLarge, secure.seal, big, key, (0, 1), 0)


class ReusedDecryptorTests(SynchronousTestCase):
    """The per-key decryptor reused across messages decrypts as a fresh CBC one."""

    def test_interleaved_keys_and_sizes(self) -> None:
        """Messages of two keys, interleaved, of every length around the block size,
        decrypt to what OpenSSL's CBC mode made of them."""
        keys = [secure.derive_key(str(n), "n", "k" * 64) for n in (1, 2)]
        for length in [*range(0, 40), 255, 256, 4000]:
            for key in keys:
                plaintext = bytes((length + i) % 251 for i in range(length))
                padder = padding.PKCS7(128).padder()
                padded = padder.update(plaintext) + padder.finalize()
                enc = Cipher(algorithms.AES(key), modes.CBC(secure.IV)).encryptor()
                ciphertext = enc.update(padded) + enc.finalize()
                self.assertEqual(secure.decrypt_body(ciphertext, key), plaintext)

    def test_one_context_per_thread(self) -> None:
        """Another thread gets its own context for the same key (a context is not shared)."""
        key = secure.derive_key("1", "n", "k" * 64)
        here = secure._decryptor(key)
        self.assertIs(secure._decryptor(key), here)
        there: list[object] = []
        thread = threading.Thread(target=lambda: there.append(secure._decryptor(key)))
        thread.start()
        thread.join()
        self.assertIsNot(there[0], here)

    def test_bad_padding_lengths(self) -> None:
        """A last byte of 0 or above 16, or padding bytes that differ, is WrongKey."""
        key = secure.derive_key("1", "n", "k" * 64)
        for tail in (b"\x00", b"\x11", b"\x01\x02", b"\x03\x03\x02\x03"):
            block = b"a" * (16 - len(tail)) + tail
            enc = Cipher(algorithms.AES(key), modes.CBC(secure.IV)).encryptor()
            ciphertext = enc.update(block) + enc.finalize()
            self.assertRaises(secure.WrongKey, secure.decrypt_body, ciphertext, key)
        # The reused context starts the next message from the IV all the same.
        self.assertEqual(secure.decrypt_body(secure.encrypt_body(b"after", key), key), b"after")


class ReusedEncryptorTests(SynchronousTestCase):
    """The per-key encryptor reused across messages encrypts as a fresh CBC one."""

    def test_sequence_matches_fresh_contexts(self) -> None:
        """Many messages of three keys, interleaved, of every length around the block size,
        encrypt to exactly what a fresh OpenSSL CBC context makes of each, decrypt back, and
        build one context per key."""
        built: list[bytes] = []
        cipher = secure.Cipher

        def counted(algorithm: algorithms.AES, mode: modes.CBC) -> Cipher[modes.CBC]:
            built.append(algorithm.key)
            return cipher(algorithm, mode)

        self.patch(secure, "Cipher", counted)
        keys = [secure.derive_key(str(n), "n", os.urandom(32).hex()) for n in (1, 2, 3)]
        for round_ in range(3):
            for length in [*range(0, 40), 255, 256, 4000]:
                for key in keys:
                    plaintext = bytes((length + round_ + i) % 251 for i in range(length))
                    ciphertext = secure.encrypt_body(plaintext, key)
                    self.assertEqual(ciphertext, _aes_encrypt(plaintext, key))
                    self.assertEqual(secure.decrypt_body(ciphertext, key), plaintext)
        self.assertEqual(len(built), 2 * len(keys))  # one encryptor and one decryptor each

    def test_one_context_per_thread(self) -> None:
        """Another thread gets its own encryptor for the same key, and both encrypt as a
        fresh context would."""
        key = secure.derive_key("1", "n", "k" * 64)
        here = secure._encryptor(key)
        self.assertIs(secure._encryptor(key), here)
        there: list[tuple[object, bytes]] = []

        def encrypt() -> None:
            there.append((secure._encryptor(key), secure.encrypt_body(b"x" * 20, key)))

        thread = threading.Thread(target=encrypt)
        thread.start()
        thread.join()
        self.assertIsNot(there[0][0], here)
        self.assertEqual(there[0][1], _aes_encrypt(b"x" * 20, key))
        self.assertEqual(secure.encrypt_body(b"x" * 20, key), _aes_encrypt(b"x" * 20, key))


class BadPayloadTests(SynchronousTestCase):
    """Every way a payload can be bad raises the right SecureError."""

    key = secure.derive_key(AGENT_ID, AGENT_NAME, AGENT_KEY)

    def test_wrong_key(self) -> None:
        """Another agent's key fails with WrongKey (1404)."""
        other = secure.derive_key("002", "other", "f" * 64)
        ciphertext = secure.seal(b"hello", self.key, (0, 1), 0)
        err = self.assertRaises(secure.SecureError, secure.open_sealed, ciphertext, other)
        # A wrong key nearly always breaks the PKCS#7 padding or the '!' prefix; in the rare
        # case both survive, zlib or the MD5 check catches it.
        self.assertIn(err.code, (1404, 2202, 1406))

    def test_garbage(self) -> None:
        """Bytes that are not a multiple of the AES block fail with WrongKey."""
        self.assertRaises(secure.WrongKey, secure.open_sealed, b"garbage!", self.key)
        self.assertRaises(secure.WrongKey, secure.open_sealed, b"", self.key)

    def test_bad_pkcs7_padding(self) -> None:
        """A block whose PKCS#7 padding is invalid fails with WrongKey."""
        enc = Cipher(algorithms.AES(self.key), modes.CBC(secure.IV)).encryptor()
        ciphertext = enc.update(b"!" * 15 + b"\x00") + enc.finalize()
        err = self.assertRaises(secure.WrongKey, secure.open_sealed, ciphertext, self.key)
        self.assertIn("padding", err.reason)

    def test_missing_bang_padding(self) -> None:
        """A plaintext that does not start with '!' is refused (1404)."""
        inner = b"000000000000001:0001:x"
        ciphertext = _aes_encrypt(zlib.compress(_md5(inner) + inner), self.key)
        err = self.assertRaises(secure.WrongKey, secure.open_sealed, ciphertext, self.key)
        self.assertEqual(err.code, 1404)

    def test_not_zlib(self) -> None:
        """'!' followed by non-zlib bytes fails with UncompressError."""
        ciphertext = _aes_encrypt(b"!!!!!!!!not zlib at all", self.key)
        self.assertRaises(secure.UncompressError, secure.open_sealed, ciphertext, self.key)

    def test_bad_md5(self) -> None:
        """A message whose MD5 does not match fails with ChecksumMismatch (1406)."""
        inner = b"000000000000001:0001:hello"
        body = b"0" * 32 + inner
        ciphertext = _aes_encrypt(b"!" + zlib.compress(body), self.key)
        err = self.assertRaises(secure.ChecksumMismatch, secure.open_sealed, ciphertext, self.key)
        self.assertEqual(err.code, 1406)

    def test_bad_counter_layout(self) -> None:
        """Counters without their ':' separators fail with BadFormat (1403)."""
        inner = b"00000000000000100001xhello"
        ciphertext = _hand_made(inner, self.key)
        err = self.assertRaises(secure.BadFormat, secure.open_sealed, ciphertext, self.key)
        self.assertEqual(err.code, 1403)

    def test_too_short(self) -> None:
        """A decompressed body shorter than the overhead fails with TooShort."""
        ciphertext = _aes_encrypt(b"!" + zlib.compress(b"short"), self.key)
        self.assertRaises(secure.TooShort, secure.open_sealed, ciphertext, self.key)

    def test_zip_bomb(self) -> None:
        """A body that inflates beyond OS_MAXSTR fails with MessageTooLarge."""
        bomb = zlib.compress(b"A" * (secure.MAX_FRAME * 4), 9)
        ciphertext = _aes_encrypt(b"!" + bomb, self.key)
        self.assertRaises(secure.MessageTooLarge, secure.open_sealed, ciphertext, self.key)

    def test_bad_one_among_several(self) -> None:
        """Opened together, the messages before a bad ciphertext come out, then the same
        error as open_sealed's for it; the next messages of the key open all the same."""
        enc = Cipher(algorithms.AES(self.key), modes.CBC(secure.IV)).encryptor()
        bad_padding = enc.update(b"!" * 15 + b"\x00") + enc.finalize()
        bad_md5 = _aes_encrypt(
            b"!" + zlib.compress(b"0" * 32 + b"000000000000001:0001:x"), self.key
        )
        bomb = _aes_encrypt(b"!" + zlib.compress(b"A" * (secure.MAX_FRAME * 4), 9), self.key)
        good = [secure.seal(b"one", self.key, (0, 1), 0), secure.seal(b"two", self.key, (0, 2), 0)]
        for bad, error in (
            (b"garbage!", secure.WrongKey),
            (bad_padding, secure.WrongKey),
            (_aes_encrypt(b"!!!!!!!!not zlib at all", self.key), secure.UncompressError),
            (bad_md5, secure.ChecksumMismatch),
            (_hand_made(b"00000000000000100001xhello", self.key), secure.BadFormat),
            (_aes_encrypt(b"!" + zlib.compress(b"short"), self.key), secure.TooShort),
            (bomb, secure.MessageTooLarge),
        ):
            self.assertRaises(error, secure.open_sealed, bad, self.key)
            opened: list[bytes] = []
            with self.assertRaises(error):
                opened.extend(secure.open_messages([*good, bad, *good], self.key))
            self.assertEqual(opened, [b"one", b"two"])
            self.assertEqual(list(secure.open_messages(good, self.key)), [b"one", b"two"])

    def test_bad_prefix(self) -> None:
        """'!abc!' is not an agent ID prefix; a payload without '#AES:' is BadFormat."""
        self.assertRaises(secure.BadFormat, secure.split_agent_id, b"!abc!#AES:xx")
        self.assertRaises(secure.BadFormat, secure.split_agent_id, b"!001#AES:xx")
        self.assertRaises(secure.BadFormat, secure.strip_token, b"#DES:xx")
        self.assertRaises(secure.WrongKey, secure.strip_token, b":blowfish")
        self.assertRaises(secure.UnsupportedCipher, secure.strip_token, b":blowfish")
        self.assertEqual(secure.split_agent_id(b"#AES:x"), (None, b"#AES:x"))


class FramingTests(SynchronousTestCase):
    """4-byte little-endian framing with a bounded size."""

    def test_frame_layout(self) -> None:
        """frame() prefixes the little-endian length."""
        self.assertEqual(secure.frame(b"abc"), b"\x03\x00\x00\x00abc")

    def test_decoder_split_and_join(self) -> None:
        """Frames arriving byte by byte or several at once are delivered whole."""
        stream = secure.frame(b"one") + secure.frame(b"") + secure.frame(b"three")
        decoder = secure.FrameDecoder()
        frames: list[bytes] = []
        for i in range(len(stream)):
            frames.extend(decoder.feed(stream[i : i + 1]))
        self.assertEqual(frames, [b"one", b"", b"three"])
        self.assertEqual(secure.FrameDecoder().feed(stream), [b"one", b"", b"three"])
        self.assertEqual(decoder.pending, 0)

    @settings(max_examples=50, deadline=None)
    @given(
        payloads=st.lists(st.binary(max_size=300), max_size=8),
        cuts=st.lists(st.integers(0, 3000), max_size=10),
    )
    def test_any_split(self, payloads: list[bytes], cuts: list[int]) -> None:
        """However the stream is cut into reads, the same frames come out in order."""
        stream = b"".join(secure.frame(p) for p in payloads)
        points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
        decoder = secure.FrameDecoder()
        out: list[bytes] = []
        for start, end in zip(points, points[1:], strict=False):
            out.extend(decoder.feed(stream[start:end]))
        self.assertEqual(out, payloads)
        self.assertEqual(decoder.pending, 0)

    def test_oversized_frame(self) -> None:
        """A header announcing more than OS_MAXSTR raises FrameTooLarge at once."""
        decoder = secure.FrameDecoder()
        header = struct.pack("<I", secure.MAX_FRAME + 1)
        self.assertRaises(secure.FrameTooLarge, decoder.feed, header)
        self.assertEqual(secure.FrameDecoder().feed(struct.pack("<I", 2) + b"ok"), [b"ok"])
        self.assertRaises(secure.FrameTooLarge, secure.frame, b"x" * (secure.MAX_FRAME + 1))

    def test_max_frame_accepted(self) -> None:
        """A frame of exactly OS_MAXSTR bytes is accepted."""
        data = b"y" * secure.MAX_FRAME
        self.assertEqual(secure.FrameDecoder().feed(secure.frame(data)), [data])


class CounterTests(SynchronousTestCase):
    """Sender counters wrap like Wazuh's; receivers can refuse replays."""

    def test_send_counter_wraps(self) -> None:
        """After local 9997 the global counter steps and local restarts at 1."""
        counter = secure.SendCounter(5, 9996)
        self.assertEqual(counter.next(), (5, 9997))
        self.assertEqual(counter.next(), (6, 1))

    def test_receive_counter_verify(self) -> None:
        """With verify on, equal or older pairs raise ReplayedCounter (1407)."""
        counter = secure.ReceiveCounter()
        counter.accept(1, 5, verify=True)
        err = self.assertRaises(secure.ReplayedCounter, counter.accept, 1, 5, True)
        self.assertEqual(err.code, 1407)
        self.assertRaises(secure.ReplayedCounter, counter.accept, 0, 9000, True)
        counter.accept(2, 1, verify=True)
        self.assertEqual((counter.global_count, counter.local_count), (2, 1))

    def test_receive_counter_no_verify(self) -> None:
        """With verify off (Wazuh's default), any pair is recorded."""
        counter = secure.ReceiveCounter(10, 10)
        counter.accept(1, 1, verify=False)
        self.assertEqual((counter.global_count, counter.local_count), (1, 1))


class KeyStoreTests(SynchronousTestCase):
    """client.keys parsing and lookups."""

    TEXT = (
        "001 agent-one any " + AGENT_KEY + "\n"
        "002 !removed any " + AGENT_KEY + "\n"
        "003 #gone 10.0.0.3 " + AGENT_KEY + "\n"
        "# a comment\n"
        " 004 indented any key\n"
        "005 single 10.0.0.5 " + AGENT_KEY + "\n"
        "006 net 10.1.0.0/16 " + AGENT_KEY + "\n"
        "bad line\n"
        "007 badip 999.1.1.1 " + AGENT_KEY + "\n"
        "\n"
    )

    def test_parse_skips_removed_and_bad(self) -> None:
        """Removed ('!'/'#') entries, comments and malformed lines are skipped."""
        entries = secure.parse_client_keys(self.TEXT)
        self.assertEqual([e.agent_id for e in entries], ["001", "005", "006"])

    def test_lookups(self) -> None:
        """Lookups by ID, by single-host IP, and the 'any'/CIDR source checks."""
        store = secure.KeyStore(secure.parse_client_keys(self.TEXT))
        self.assertEqual(len(store), 3)
        one = store.get("001")
        assert one is not None
        self.assertTrue(one.allows("192.0.2.1"))
        self.assertFalse(one.single_host)
        single = store.by_ip("10.0.0.5")
        assert single is not None
        self.assertEqual(single.agent_id, "005")
        self.assertFalse(single.allows("10.0.0.6"))
        self.assertTrue(single.allows("::ffff:10.0.0.5"))
        net = store.get("006")
        assert net is not None
        self.assertTrue(net.allows("10.1.200.3"))
        self.assertFalse(net.allows("10.2.0.1"))
        self.assertIsNone(store.by_ip("10.1.200.3"))
        self.assertIsNone(store.get("002"))

    def test_load_file_and_bounds(self) -> None:
        """load() reads a file, treats a missing one as empty and refuses oversized ones."""
        path = self.mktemp()
        with open(path, "w") as handle:
            handle.write(self.TEXT)
        self.assertEqual(len(secure.KeyStore.load(path)), 3)
        self.assertEqual(len(secure.KeyStore.load(path + ".missing")), 0)
        self.assertRaises(secure.KeyFileError, secure.KeyStore.load, path, max_bytes=10)
        self.assertRaises(secure.KeyFileError, secure.KeyStore.load, path, max_entries=2)

    def test_reload_reuses_unchanged_entries(self) -> None:
        """Unchanged entries are reused on reload; changed ones are rebuilt."""
        first = secure.KeyStore(secure.parse_client_keys(self.TEXT))
        changed = self.TEXT.replace("005 single 10.0.0.5", "005 single 10.0.0.9")
        second = secure.KeyStore(secure.parse_client_keys(changed, previous=first))
        self.assertIs(second.get("001"), first.get("001"))
        self.assertIsNot(second.get("005"), first.get("005"))
        entry = second.get("005")
        assert entry is not None
        self.assertEqual(entry.ip, "10.0.0.9")

    def test_updated_store(self) -> None:
        """updated() removes ids, adds and replaces entries, keeps the IP lookup in step and
        leaves the original store as it was."""
        first = secure.KeyStore(secure.parse_client_keys(self.TEXT))
        moved = secure.AgentKey("005", "single", "10.0.0.9", AGENT_KEY)
        new = secure.AgentKey("008", "fresh", "10.0.0.8", AGENT_KEY)
        second = first.updated([moved, new], ["001"])
        self.assertEqual(sorted(e.agent_id for e in second), ["005", "006", "008"])
        self.assertIsNone(second.by_ip("10.0.0.5"))
        self.assertIs(second.by_ip("10.0.0.9"), moved)
        self.assertIs(second.by_ip("10.0.0.8"), new)
        self.assertEqual(sorted(e.agent_id for e in first), ["001", "005", "006"])
        self.assertIsNotNone(first.by_ip("10.0.0.5"))
        self.assertEqual(len(second.updated([], ["005", "404"])), 2)

    def test_line(self) -> None:
        """AgentKey.line() gives back the client.keys line."""
        entry = secure.AgentKey("010", "n", "any", "k")
        self.assertEqual(entry.line(), "010 n any k")
