"""Tests for wazuhcluster.analysis.predecoder: syslog headers and other timestamp formats."""

from __future__ import annotations

from twisted.trial import unittest

from wazuhcluster.analysis.predecoder import predecode


class SyslogHeaderTests(unittest.SynchronousTestCase):
    """The classic and ISO syslog stamps with hostname and program name."""

    def test_classic_with_pid(self) -> None:
        """'Mon dd hh:mm:ss host prog[pid]: msg' yields all three header fields."""
        found = predecode("Feb  9 11:44:56 someserver sshd[1234]: error: x")
        self.assertEqual(
            (found.timestamp, found.hostname, found.program_name, found.log),
            ("Feb  9 11:44:56", "someserver", "sshd", "error: x"),
        )

    def test_program_without_pid_and_without_space(self) -> None:
        """'prog:' works and the space after the colon is optional."""
        found = predecode("Dec 19 17:20:08 User test_noalert[12345]:Test noalert=1")
        self.assertEqual((found.program_name, found.log), ("test_noalert", "Test noalert=1"))
        found = predecode("Dec 19 17:20:08 host su: ok")
        self.assertEqual((found.program_name, found.log), ("su", "ok"))

    def test_pid_without_colon(self) -> None:
        """'prog[pid] msg' (no colon) is accepted."""
        found = predecode("Dec 19 17:20:08 host cron[12] job done")
        self.assertEqual((found.program_name, found.log), ("cron", "job done"))

    def test_no_program_name(self) -> None:
        """When the word after the host is not a program tag, there is no program name."""
        found = predecode("Mar  1 10:00:00 host %ASA-4-106023: Deny tcp")
        self.assertEqual(
            (found.hostname, found.program_name, found.log),
            ("host", None, "%ASA-4-106023: Deny tcp"),
        )

    def test_solaris_without_hostname(self) -> None:
        """'stamp prog: msg' has a program name and no hostname."""
        found = predecode("Mar  1 10:00:00 sendmail: hello")
        self.assertEqual(
            (found.hostname, found.program_name, found.log), (None, "sendmail", "hello")
        )

    def test_id_tag_dropped(self) -> None:
        """A Solaris '[ID n facility.level]' tag is removed from the log."""
        found = predecode("Mar  1 10:00:00 host sshd[1]: [ID 800047 auth.info] Accepted")
        self.assertEqual(found.log, "Accepted")

    def test_iso8601_formats(self) -> None:
        """syslog-ng, rsyslog and macOS ISO stamps are recognised."""
        for line, stamp in (
            ("2007-06-14T15:48:55-04:00 host prog: m", "2007-06-14T15:48:55-04:00"),
            ("2009-05-22T09:36:46.214994-07:00 host prog: m", "2009-05-22T09:36:46.214994-07:00"),
            ("2022-12-19T15:02:53.288+00:00 host prog: m", "2022-12-19T15:02:53.288+00:00"),
            ("2021-04-21 10:16:09.404756-0700  host prog: m", "2021-04-21 10:16:09.404756-0700"),
        ):
            found = predecode(line)
            self.assertEqual(
                (found.timestamp, found.hostname, found.program_name, found.log),
                (stamp, "host", "prog", "m"),
                line,
            )

    def test_year_first_and_proftpd(self) -> None:
        """'2015 Dec 29 10:00:01' and '2015-04-16 21:51:02,805' stamps are recognised."""
        self.assertEqual(
            predecode("2015 Dec 29 10:00:01 host prog: m").timestamp, "2015 Dec 29 10:00:01"
        )
        self.assertEqual(
            predecode("2015-04-16 21:51:02,805 host prog: m").timestamp, "2015-04-16 21:51:02,805"
        )

    def test_aix_format(self) -> None:
        """AIX's 'host facility|facility:level prog:' form yields the program name."""
        found = predecode("Mar  1 10:00:00 host auth|security:info sshd: hi")
        self.assertEqual((found.program_name, found.log), ("sshd", "hi"))


class OtherFormatsTests(unittest.SynchronousTestCase):
    """Stamps that have no hostname or program name."""

    def test_plain_line_untouched(self) -> None:
        """A line without a known stamp is kept whole."""
        found = predecode('device="SFW" date=2000-12-01')
        self.assertEqual(
            (found.log, found.timestamp, found.program_name),
            ('device="SFW" date=2000-12-01', None, None),
        )

    def test_apache_error_stamp(self) -> None:
        """'[Fri Feb 11 18:06:35 2004] [warn] ...' drops the stamp."""
        found = predecode("[Fri Feb 11 18:06:35 2004] [warn] oops")
        self.assertEqual((found.timestamp, found.log), ("Fri Feb 11 18:06:35 2004", "[warn] oops"))

    def test_xferlog_and_snort(self) -> None:
        """xferlog and snort stamps are split off."""
        found = predecode("Mon Apr 17 18:27:14 2006 1 64.160.42.130 5 /x b _ i r u ftp 0 * c")
        self.assertEqual(found.timestamp, "Mon Apr 17 18:27:14 2006")
        found = predecode("01/28-09:13:16.240702  [**] [1:2:3] alert")
        self.assertEqual(found.log, "[**] [1:2:3] alert")

    def test_suricata_stamp(self) -> None:
        """A suricata stamp (a year and microseconds) is split off with the space after it."""
        found = predecode("01/28/1979-09:13:16.240702  [**] [1:2:3] alert")
        self.assertEqual(
            (found.timestamp, found.log), ("01/28/1979-09:13:16.240702", "[**] [1:2:3] alert")
        )

    def test_fixed_stamp_needs_its_length(self) -> None:
        """A line holding only an apache stamp's marks, too short for its log, is left whole."""
        line = "[Fri Feb 11 18:06:35 2004]"
        found = predecode(line)
        self.assertEqual((found.timestamp, found.log), (None, line))

    def test_macos_asl(self) -> None:
        """ASL lines give the sender as program name and the message as log."""
        found = predecode(
            "[Time 2006.12.28 15:53:55 UTC] [Facility auth] [Sender sshd] [PID 483] "
            "[Message error: PAM: failure] [Level 3] [Host mymac]"
        )
        self.assertEqual(
            (found.program_name, found.log, found.hostname),
            ("sshd", "error: PAM: failure", "mymac"),
        )

    def test_umlaut_month(self) -> None:
        """'Mär' is read as 'Mar'."""
        self.assertEqual(predecode("M\u00e4r  2 17:30:52 host prog: x").program_name, "prog")
