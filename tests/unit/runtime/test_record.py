"""The journal: durable, crash-tolerant, single-owner; teardown removes what it names."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from osm.runtime import record
from osm.runtime.record import HOSTS, NETNS, PROCESS, Journal, JournalBusyError


@pytest.fixture
def etc_netns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Points the journal's /etc/netns at a scratch directory."""
    fake = tmp_path / "etc-netns"
    monkeypatch.setattr(record, "ETC_NETNS", fake)
    return fake


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        yield process
    finally:
        process.kill()
        process.wait(timeout=10)


def test_entries_are_live_until_removed_and_survive_reopening(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as journal:
        journal.created(NETNS, "osmtest-never-made-a")
        journal.created(NETNS, "osmtest-never-made-b")
        journal.removed(NETNS, "osmtest-never-made-a")
        journal.removed(NETNS, "not-recorded")  # ignored
    with Journal.open(tmp_path) as journal:
        assert [e.key for e in journal.live()] == ["osmtest-never-made-b"]


def test_every_entry_is_on_disk_before_created_returns(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as journal:
        journal.created(NETNS, "osmtest-x", extra=1)
        lines = (tmp_path / "runtime" / "journal.jsonl").read_text().splitlines()
        assert json.loads(lines[-1]) == {
            "op": "create",
            "kind": NETNS,
            "key": "osmtest-x",
            "data": {"extra": 1},
        }


def test_a_torn_last_line_from_a_crash_is_ignored(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as journal:
        journal.created(NETNS, "osmtest-kept")
    path = tmp_path / "runtime" / "journal.jsonl"
    with path.open("a") as out:
        out.write('{"op":"create","kind":"netns","key":"osmtest-tor')
    with Journal.open(tmp_path) as journal:
        assert [e.key for e in journal.live()] == ["osmtest-kept"]
    # Reopening compacted the journal: only live entries remain, all well formed.
    assert [json.loads(line)["key"] for line in path.read_text().splitlines()] == ["osmtest-kept"]


def test_one_owner_at_a_time(tmp_path: Path) -> None:
    with Journal.open(tmp_path):
        with pytest.raises(JournalBusyError, match="in use"):
            Journal.open(tmp_path)
        with pytest.raises(JournalBusyError):
            record.teardown(tmp_path)
    Journal.open(tmp_path).close()  # released on close (and by the kernel on death)


def test_teardown_of_an_unused_state_dir_does_nothing(tmp_path: Path) -> None:
    assert record.teardown(tmp_path / "nothing-here").removed == []
    assert not (tmp_path / "nothing-here").exists()


def test_teardown_removes_recorded_hosts_dirs_and_nothing_else(
    tmp_path: Path, etc_netns: Path
) -> None:
    etc_netns.mkdir()
    (etc_netns / "ours").mkdir()
    (etc_netns / "ours" / "hosts").write_text("10.0.0.1 x\n")
    (etc_netns / "someone-elses").mkdir()
    with Journal.open(tmp_path) as journal:
        journal.created(HOSTS, "ours")
        journal.created(HOSTS, "../escape")  # never followed outside /etc/netns
    report = record.teardown(tmp_path)
    assert report.ok
    assert report.removed == [f"hosts {etc_netns / 'ours'}"]
    assert sorted(p.name for p in etc_netns.iterdir()) == ["someone-elses"]
    assert record.teardown(tmp_path).removed == []  # idempotent, and the journal is empty
    with Journal.open(tmp_path) as journal:
        assert journal.live() == []


def test_teardown_kills_recorded_processes(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    with Journal.open(tmp_path) as journal:
        entry = record.record_process(journal, sleeper.pid, netns="osmtest-none", name="sleep")
        assert entry is not None and entry.kind == PROCESS
    report = record.teardown(tmp_path)
    assert report.removed == [f"process {sleeper.pid}"]
    assert sleeper.wait(timeout=10) == -9


def test_teardown_spares_a_process_that_reused_a_recorded_pid(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    start_time = record.process_start_time(sleeper.pid)
    assert start_time is not None
    with Journal.open(tmp_path) as journal:
        journal.created(
            PROCESS,
            f"{sleeper.pid}:{start_time - 1}",
            pid=sleeper.pid,
            start_time=start_time - 1,
            netns="osmtest-none",
            name="other",
        )
    assert record.teardown(tmp_path).removed == []
    time.sleep(0.05)
    assert sleeper.poll() is None


def test_creating_removes_a_half_made_thing_when_the_body_fails(
    tmp_path: Path, etc_netns: Path
) -> None:
    etc_netns.mkdir()
    with Journal.open(tmp_path) as journal:
        with pytest.raises(RuntimeError, match="boom"), record.creating(journal, HOSTS, "half"):
            (etc_netns / "half").mkdir()
            raise RuntimeError("boom")
        assert journal.live() == []
    assert not (etc_netns / "half").exists()


def test_process_start_time_of_a_missing_process_is_none() -> None:
    assert record.process_start_time(2**22 + 12345) is None
