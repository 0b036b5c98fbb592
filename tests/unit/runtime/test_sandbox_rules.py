"""Pod sandboxes without namespaces: which volume files and mounts are refused, the
AtomicWriter layout of a volume on disk, the commands, and the mount table parser."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from osm.runtime import mounts, record, sandbox
from osm.runtime.sandbox import Mount, PodSandbox, VolumeFile


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ([VolumeFile("/etc/x", b"")], 'file path "/etc/x" must be relative'),
        ([VolumeFile("", b"")], 'file path "" must be relative'),
        ([VolumeFile("..data", b"")], 'file path "..data" must not contain'),
        ([VolumeFile("a/../b", b"")], 'file path "a/../b" must not contain'),
        ([VolumeFile("a//b", b"")], 'file path "a//b" must not contain'),
        ([VolumeFile("a", b""), VolumeFile("a", b"")], 'file path "a" appears twice'),
        ([VolumeFile("a", b""), VolumeFile("a/b", b"")], '"a" is also the directory of "a/b"'),
        ([VolumeFile("a", b"", 0o4755)], 'file "a": mode 0o4755 is not between 0 and 0777'),
    ],
)
def test_volume_files_are_refused_as_kubernetes_refuses_them(
    files: list[VolumeFile], problem: str
) -> None:
    assert problem in " ".join(sandbox.file_problems(files))


def test_valid_volume_files_have_no_problem() -> None:
    files = [VolumeFile("a.yaml", b""), VolumeFile("dir/b", b"", 0o600), VolumeFile("c..", b"")]
    assert sandbox.file_problems(files) == []


@pytest.mark.parametrize(
    ("mount", "problem"),
    [
        (Mount("nope", "/etc/x"), 'there is no volume "nope"'),
        (Mount("config", "etc/x"), 'mountPath "etc/x" must be an absolute, normalized path'),
        (Mount("config", "/etc/../x"), 'mountPath "/etc/../x" must be'),
        (Mount("config", "/etc/x/"), 'mountPath "/etc/x/" must be'),
        (Mount("config", "/"), 'mountPath "/" must be'),
        (Mount("config", "/etc/x", sub_path="/a"), 'subPath "/a" must be relative'),
        (Mount("config", "/etc/x", sub_path="a/../../b"), 'subPath "a/../../b" must be'),
    ],
)
def test_mounts_are_refused_with_the_container_and_index(mount: Mount, problem: str) -> None:
    problems = sandbox.mount_problems(["config"], "app", [Mount("config", "/ok"), mount])
    assert len(problems) == 1
    assert problems[0].startswith(f"container app: volumeMounts[1]: {problem}")


def test_a_mount_path_twice_in_one_container_is_refused() -> None:
    twice = [Mount("config", "/etc/x"), Mount("config", "/etc/x", sub_path="a")]
    assert sandbox.mount_problems(["config"], "app", twice) == [
        'container app: volumeMounts[1]: mountPath "/etc/x" is mounted twice'
    ]


def test_create_reports_every_problem_before_making_anything(tmp_path: Path) -> None:
    with record.Journal.open(tmp_path) as journal:
        with pytest.raises(sandbox.SandboxError) as raised:
            PodSandbox.create(
                journal,
                tmp_path / "base",
                "pod",
                "osmtest-no-such-netns",
                {"config": [VolumeFile("../x", b"")]},
                {"app": [Mount("other", "/etc/x")]},
            )
        assert journal.live() == []
    message = str(raised.value)
    assert 'volume config: file path "../x"' in message
    assert 'container app: volumeMounts[0]: there is no volume "other"' in message
    assert not (tmp_path / "base").exists()


# -- the volume on disk ----------------------------------------------------------------------
def _tree(volume: Path) -> dict[str, str]:
    """Each entry below ``volume``: a symlink's target, or a file's mode and content."""
    found = {}
    for directory, names, files in os.walk(volume):
        for name in names + files:
            path = Path(directory) / name
            relative = str(path.relative_to(volume))
            if path.is_symlink():
                found[relative] = "-> " + os.readlink(path)
            elif path.is_file():
                found[relative] = f"{path.stat().st_mode & 0o777:o} {path.read_text()}"
    return found


def _visible(tree: dict[str, str]) -> dict[str, str]:
    """The entries whose names do not start with a payload directory's name."""
    return {k: v for k, v in tree.items() if not k.startswith("..2") and k != "..data"}


def test_a_volume_is_laid_out_as_kubernetes_atomic_writer_does(tmp_path: Path) -> None:
    volume = tmp_path / "config"
    volume.mkdir()
    sandbox.write_payload(
        volume, [VolumeFile("a.yaml", b"a", 0o640), VolumeFile("dir/b", b"b", 0o600)]
    )
    data = os.readlink(volume / "..data")
    assert data.startswith("..") and (volume / data).is_dir()
    assert _visible(_tree(volume)) == {"a.yaml": "-> ..data/a.yaml", "dir": "-> ..data/dir"}
    assert (volume / "a.yaml").read_text() == "a"
    assert (volume / "dir" / "b").stat().st_mode & 0o777 == 0o600
    assert (volume / data / "dir").stat().st_mode & 0o777 == 0o755
    assert (volume / data).stat().st_mode & 0o777 == 0o755


def test_an_update_swaps_the_payload_and_drops_what_is_gone(tmp_path: Path) -> None:
    volume = tmp_path / "config"
    volume.mkdir()
    sandbox.write_payload(volume, [VolumeFile("a.yaml", b"a"), VolumeFile("dir/b", b"b")])
    first = os.readlink(volume / "..data")
    sandbox.write_payload(volume, [VolumeFile("a.yaml", b"a2"), VolumeFile("c", b"c")])
    assert os.readlink(volume / "..data") != first
    assert not (volume / first).exists(), "the previous payload is removed"
    assert sorted(p for p in os.listdir(volume) if not p.startswith("..")) == ["a.yaml", "c"]
    assert (volume / "a.yaml").read_text() == "a2"


def test_an_update_keeps_the_previous_payload_for_sub_path_mounts(tmp_path: Path) -> None:
    volume = tmp_path / "config"
    volume.mkdir()
    sandbox.write_payload(volume, [VolumeFile("a.yaml", b"a")])
    first = os.readlink(volume / "..data")
    sandbox.write_payload(volume, [VolumeFile("a.yaml", b"a2")], keep_previous=True)
    assert (volume / first / "a.yaml").read_text() == "a"


# -- commands --------------------------------------------------------------------------------
def _sandbox(tmp_path: Path) -> PodSandbox:
    journal = record.Journal(tmp_path, -1)  # not opened: nothing is recorded here
    return PodSandbox(journal, tmp_path / "pod", "pod", "pod-netns", ("config",), ("app",))


def test_a_command_enters_the_containers_namespaces_then_drops_privileges(
    tmp_path: Path,
) -> None:
    box = _sandbox(tmp_path)
    assert box.command("app", ["cat", "x"], uid=7, gid=8) == [
        "nsenter",
        f"--mount={tmp_path}/pod/ns/app",
        "--net=/run/netns/pod-netns",
        "--",
        *["setpriv", "--reuid=7", "--regid=8", "--clear-groups", "--no-new-privs", "--"],
        *["cat", "x"],
    ]


def test_a_working_dir_is_entered_inside_the_namespace(tmp_path: Path) -> None:
    argv = _sandbox(tmp_path).command("app", ["cat", "x"], uid=7, gid=8, working_dir="/etc/a")
    assert argv[-5:] == ["env", "--chdir=/etc/a", "--", "cat", "x"]


@pytest.mark.parametrize(
    ("container", "argv", "working_dir", "problem"),
    [
        ("nope", ["x"], "", 'no container "nope"'),
        ("app", [], "", "the command is empty"),
        ("app", ["x"], "etc", 'workingDir "etc" must be an absolute path'),
        ("app", ["A=b"], "/etc", 'the command "A=b" must not have "="'),
    ],
)
def test_commands_that_cannot_run_are_refused(
    tmp_path: Path, container: str, argv: list[str], working_dir: str, problem: str
) -> None:
    with pytest.raises(RuntimeError, match=problem):
        _sandbox(tmp_path).command(container, argv, uid=7, gid=8, working_dir=working_dir)


# -- teardown and the mount table -------------------------------------------------------------
def test_teardown_removes_a_sandbox_directory_only_below_its_base(tmp_path: Path) -> None:
    base = tmp_path / "base"
    (base / "pod" / "volumes").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    outside = record.Entry(record.MOUNTNS, str(elsewhere), {"base": str(base)})
    assert record.teardown_entry(outside) == ""
    assert elsewhere.exists()
    inside = record.Entry(record.MOUNTNS, str(base / "pod"), {"base": str(base)})
    assert record.teardown_entry(inside) == f"mount namespaces {base / 'pod'}"
    assert not (base / "pod").exists()
    assert record.teardown_entry(inside) == ""


MOUNTINFO = (
    "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
    "45 27 254:0 /run/netns /run/netns rw shared:1 - ext4 /dev/vda rw\n"
    "46 45 0:4 net:[4026532174] /run/netns/a rw shared:2 - nsfs nsfs rw\n"
    "50 27 0:40 / /srv/with\\040space rw master:3 - tmpfs tmpfs rw\n"
)


def test_the_mount_table_is_read_with_its_escapes_and_propagation() -> None:
    table = mounts.parse_mountinfo(MOUNTINFO)
    assert [m.mount_point for m in table] == ["/", "/run/netns", "/run/netns/a", "/srv/with space"]
    assert [m.shared for m in table] == [False, True, True, False]
    assert table[2].fstype == "nsfs" and table[2].root == "net:[4026532174]"
    assert [m.mount_id for m in mounts.mounted_under("/run/netns", table)] == [46]
    assert [m.mount_id for m in mounts.mounted_under("/", table)] == [45, 46, 50]
    assert [m.mount_id for m in mounts.mounted_at("/run/netns/", table)] == [45]


@pytest.mark.parametrize(("made", "kept"), [(True, False), (False, True)])
def test_teardown_removes_a_base_directory_only_if_it_made_it(
    tmp_path: Path, made: bool, kept: bool
) -> None:
    base = tmp_path / "base"
    base.mkdir()
    entry = record.Entry(record.SANDBOX_DIR, str(base), {"made": made})
    record.teardown_entry(entry)
    assert base.exists() == kept
