"""The agent-info refresh rows on the wire: the format string :func:`encode_rows` writes them
with gives the encoder's own text, and the master reads them as before."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.agents import info
from wazuhcluster.agents.info import InfoError, decode_reports, encode_rows
from wazuhcluster.agents.sessions import AgentStatus, RefreshRow
from wazuhcluster.registry.model import AgentInfoReport

#: The encoder encode_rows used for every row before refresh rows had their own format.
_REFERENCE = json.JSONEncoder(separators=(",", ":"))

#: Times a node can report: None, zeros, integer-valued and fractional floats, the extremes
#: of the float range, ints (a clock may give them) and the values json writes by name.
TIMES: tuple[float | int | None, ...] = (
    None,
    0,
    0.0,
    -0.0,
    17,
    2**63,
    1700000000.0,
    1700000010.124187,
    1e16,
    2.0**53 + 2,
    1e300,
    1.7976931348623157e308,
    5e-324,
    0.1 + 0.2,
    float("inf"),
    float("-inf"),
    float("nan"),
)


def reference_line(row: RefreshRow) -> str:
    """A refresh row as the former encoding wrote it: a dict through the JSON encoder."""
    fields: dict[str, Any] = {
        "id": row.agent_id,
        "status": str(row.status),
        "last_keepalive": row.last_keepalive,
        "disconnection_time": row.disconnection_time,
        "time": row.timestamp,
        "seq": row.seq,
        "refresh": True,
    }
    return _REFERENCE.encode(fields)


def reference_bytes(rows: list[RefreshRow]) -> bytes:
    """The former report for ``rows``."""
    return "".join(reference_line(row) + "\n" for row in rows).encode("utf-8")


class RefreshEncodingTests(SynchronousTestCase):
    """Refresh rows give byte for byte the text of the former dict-and-encoder path."""

    def assert_same_report(self, rows: list[RefreshRow]) -> None:
        """The new bytes equal the former ones; both parse alike with json and the master."""
        new, old = encode_rows(rows), reference_bytes(rows)
        self.assertEqual(new, old)
        for new_line, old_line in zip(new.splitlines(), old.splitlines(), strict=True):
            # NaN is unequal to itself: compare what json gives back through its text.
            self.assertEqual(repr(json.loads(new_line)), repr(json.loads(old_line)))
        try:
            expected = decode_reports(old, "w1")
        except InfoError as error:
            with self.assertRaises(InfoError) as raised:
                decode_reports(new, "w1")
            self.assertEqual(str(raised.exception), str(error))
        else:
            self.assertEqual(repr(decode_reports(new, "w1")), repr(expected))

    def test_times_table(self) -> None:
        """Every time value in every field, with each status, as the encoder wrote it."""
        rows = [
            RefreshRow(f"{n:03d}", status, value, other, at, n)
            for n, (status, value, other, at) in enumerate(
                (status, value, other, at)
                for status in AgentStatus
                for value in TIMES
                for other, at in ((None, 1.5), (value, value if value is not None else 0.0))
            )
        ]
        self.assert_same_report(rows)

    def test_each_status_decodes_to_the_report(self) -> None:
        """The master reads a refresh row of each status as a refresh-only report."""
        for status in AgentStatus:
            row = RefreshRow("0042", status, 1700000010.5, None, 1700000010.5, 7)
            self.assertEqual(
                decode_reports(encode_rows([row]), "w1"),
                [
                    AgentInfoReport(
                        agent_id="0042",
                        node_name="w1",
                        status_time=1700000010.5,
                        status_seq=7,
                        connection_status=str(status),
                        last_keepalive=1700000010.5,
                        disconnection_time=0.0,
                        refresh_only=True,
                    )
                ],
            )

    def test_shared_time_object_and_signed_zero(self) -> None:
        """The keep-alive time formatted once serves both fields only when it is the same
        float: 0.0 and -0.0 are equal yet written apart."""
        shared = 1700000123.000001
        rows = [
            RefreshRow("001", AgentStatus.ACTIVE, shared, None, shared, 1),
            RefreshRow("002", AgentStatus.ACTIVE, 0.0, None, -0.0, 2),
            RefreshRow("003", AgentStatus.ACTIVE, -0.0, None, 0.0, 3),
        ]
        self.assert_same_report(rows)
        self.assertIn(
            b'"last_keepalive":0.0,"disconnection_time":null,"time":-0.0,', encode_rows(rows)
        )

    def test_odd_ids_and_statuses_stay_valid_json(self) -> None:
        """Ids and statuses that need escaping are escaped as the encoder does; the master
        refuses them as before."""
        for agent_id in ('1"2', "a\\b", "é001", "\n", "", "\u2028", "\ud800"):
            self.assert_same_report([RefreshRow(agent_id, AgentStatus.PENDING, 1.0, None, 1.0, 1)])
        odd = RefreshRow("001", 'act"ive', 1.0, None, 1.0, 1)  # type: ignore[arg-type]
        self.assert_same_report([odd])

    def test_refresh_rows_skip_the_encoder(self) -> None:
        """5,000 ordinary refresh rows are written without a call to the JSON encoder."""
        calls: list[object] = []

        class CountingEncoder(json.JSONEncoder):
            def encode(self, o: Any) -> str:
                calls.append(o)
                return super().encode(o)

        self.patch(info, "_ENCODER", CountingEncoder(separators=(",", ":")))
        rows = [
            RefreshRow(f"{n:05d}", AgentStatus.ACTIVE, 1.7e9 + n / 7, None, 1.7e9 + n / 7, n)
            for n in range(5000)
        ]
        data = encode_rows(rows)
        self.assertEqual(calls, [])
        self.assertEqual(data, reference_bytes(rows))

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.text(max_size=10),
                st.sampled_from(AgentStatus),
                st.none() | st.floats() | st.integers(min_value=-(2**70), max_value=2**70),
                st.none() | st.floats() | st.integers(min_value=0, max_value=2**64),
                st.floats() | st.integers(min_value=0, max_value=2**64),
                st.integers(min_value=0, max_value=2**64),
                st.booleans(),
            ),
            max_size=20,
        )
    )
    def test_any_values_match_the_encoder(
        self,
        values: list[tuple[str, AgentStatus, Any, Any, Any, int, bool]],
    ) -> None:
        """Any ids, statuses, times and sequence numbers give the encoder's text."""
        rows = [
            RefreshRow(agent_id, status, last, gone, last if same else at, seq)
            for agent_id, status, last, gone, at, seq, same in values
        ]
        self.assertEqual(encode_rows(rows), reference_bytes(rows))
