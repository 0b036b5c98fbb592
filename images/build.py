"""``python images/build.py``: builds the mesh's OCI images without Docker or a registry.

The one idea: a script, not Containerfiles, because what varies between the images is data
(`spec.IMAGES`) and the steps around ``buildah`` (mmdebstrap, pip on the host, export) are
most of the work; four near-identical Containerfiles would still need this driver. Steps:

1. the Debian roots (`spec.ROOTS`) with mmdebstrap, cached in the work directory by a hash of
   their recipe (``--fresh`` rebuilds them);
2. the wheels, on the host (pip inside a build cannot verify this machine's re-signed TLS):
   the project's, built for Debian's ``/usr/bin/python3`` with the sidecar's hot modules
   compiled by mypyc (``OSM_REQUIRE_COMPILED=1``: a pure fallback is an error), its
   dependencies (``pip download``, binary only), and pip itself, which runs from its wheel
   in the build and is not left in the image;
3. per root a base image (one layer); per venv kind one container from it in which
   ``python3 -m venv`` and pip install the wheels offline (``--network none``, the wheels
   mounted read-only), committed once per image that shares it (the controller and the
   injector differ only in their command, so their layers are the same);
4. ``skopeo copy`` to ``<out>/<name>-<tag>.oci.tar`` and a report, ``<out>/images.json``.

Reproducible where cheap: every commit has ``--timestamp $SOURCE_DATE_EPOCH`` (default: the
last commit's time), which also fixes every file's mtime; Python's caches are unchecked-hash
.pyc; no apt lists, caches, docs or pip cache in an image.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import spec

DPKG_EXCLUDES = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/lintian/*",
)
CLEANUP_HOOK = 'rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*'
PROJECT_FILES = ("setup.py", "pyproject.toml", "README.md", "osm")
MOUNT = "/run/osm-build"


def log(message: str) -> None:
    print(f"images: {message}", file=sys.stderr, flush=True)


class Builder:
    def __init__(self, args: argparse.Namespace) -> None:
        self.registry: str = args.registry
        self.tag: str = args.tag
        self.out: Path = args.out.resolve()
        self.work: Path = args.work.resolve()
        self.fresh: bool = args.fresh
        self.pip: list[str] = [args.python, "-m", "pip"]
        self.epoch = str(args.source_date_epoch or _last_commit_time())
        self.env = spec.tool_environment(self.work)
        self.env["SOURCE_DATE_EPOCH"] = self.epoch
        self.timings: dict[str, float] = {}

    def run(self, command: Sequence[str], **kwargs: object) -> str:
        result = subprocess.run(
            list(command), env=self.env, check=False, capture_output=True, text=True, **kwargs
        )  # type: ignore[call-overload]
        if result.returncode != 0:
            raise SystemExit(
                f"images: {' '.join(command)} failed ({result.returncode}):\n"
                f"{result.stdout[-4000:]}{result.stderr[-4000:]}"
            )
        return str(result.stdout)

    # -- 1. Debian roots ----------------------------------------------------------------
    def root_tar(self, root: spec.Root) -> Path:
        command = [
            "mmdebstrap",
            "--quiet",
            "--variant=essential",
            "--mode=root",
            f"--include={','.join(root.packages)}",
            '--aptopt=APT::Install-Recommends "false"',
            "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",  # else usrmerge pulls perl
            *(f"--dpkgopt={option}" for option in DPKG_EXCLUDES),
            *(f"--customize-hook={hook}" for hook in (*root.hooks, CLEANUP_HOOK)),
            spec.SUITE,
        ]
        key = hashlib.sha256(json.dumps([command, spec.MIRRORS]).encode()).hexdigest()[:16]
        tar = self.work / "roots" / f"{root.name}-{key}.tar"
        if tar.exists() and not self.fresh:
            log(f"root {root.name}: cached {tar.name}")
            return tar
        tar.parent.mkdir(parents=True, exist_ok=True)
        partial = tar.with_suffix(".partial.tar")
        started = time.monotonic()
        self.run([*command, str(partial), *spec.MIRRORS])
        partial.rename(tar)
        self.timings[f"root {root.name}"] = time.monotonic() - started
        log(
            f"root {root.name}: {tar.stat().st_size / 1e6:.0f} MB in "
            f"{self.timings[f'root {root.name}']:.0f} s"
        )
        return tar

    # -- 2. wheels -----------------------------------------------------------------------
    def wheels(self) -> Path:
        """A directory with ``project/`` (the project's wheel), ``deps/`` and ``pip/``."""
        wheels = self.work / "wheels"
        project = wheels / "project"
        shutil.rmtree(project, ignore_errors=True)
        project.mkdir(parents=True)
        started = time.monotonic()
        # A copy at a fixed path (pip must not write build/ into the tree; a random path
        # would end up in the compiled modules), built without debug information (which
        # names pip's randomly named build environment): the same sources, the same wheel.
        source = self.work / "source"
        shutil.rmtree(source, ignore_errors=True)
        source.mkdir(parents=True)
        for name in PROJECT_FILES:
            path = spec.ROOT / name
            if path.is_dir():
                shutil.copytree(
                    path,
                    source / name,
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"),
                )
            else:
                shutil.copy2(path, source)
        self.env["OSM_REQUIRE_COMPILED"] = "1"
        self.env["CFLAGS"] = "-g0"
        try:
            self.run(
                [
                    *self.pip,
                    "--python",
                    spec.TARGET_PYTHON,
                    "wheel",
                    "-q",
                    "--no-deps",
                    "-w",
                    str(project),
                    str(source),
                ]
            )
        finally:
            del self.env["OSM_REQUIRE_COMPILED"], self.env["CFLAGS"]
        self.timings["project wheel (mypyc)"] = time.monotonic() - started
        started = time.monotonic()
        # The project's dependencies as the target interpreter resolves them.
        self.run(
            [
                *self.pip,
                "--python",
                spec.TARGET_PYTHON,
                "download",
                "-q",
                "--only-binary",
                ":all:",
                "-d",
                str(wheels / "deps"),
                str(source),
            ]
        )
        self.run(
            [
                *self.pip,
                "download",
                "-q",
                "--no-deps",
                "--only-binary",
                ":all:",
                "-d",
                str(wheels / "pip"),
                "pip",
            ]
        )
        self.timings["dependency wheels"] = time.monotonic() - started
        return wheels

    # -- 3. images -----------------------------------------------------------------------
    def base(self, root: spec.Root, tar: Path) -> str:
        container = self.run(["buildah", "from", "scratch"]).strip()
        try:
            self.run(["buildah", "add", "--quiet", container, str(tar), "/"])
            self.run(["buildah", "config", "--env", f"PATH={spec.PATH}", container])
            return self.commit(container, f"localhost/osm-py-build/{root.name}:{tar.stem}")
        finally:
            self.run(["buildah", "rm", container])

    def venv_container(self, base: str, image: spec.Image, wheels: Path) -> str:
        chosen = [
            f"{MOUNT}/{wheel.relative_to(wheels)}"
            for wheel in sorted([*wheels.glob("deps/*.whl"), *wheels.glob("project/*.whl")])
            if image.wants(spec.distribution_name(wheel))
        ]
        (pip_wheel,) = wheels.glob("pip/pip-*.whl")
        script = " && ".join(
            [
                f"python3 -m venv --without-pip {spec.VENV}",
                f"{spec.VENV}/bin/python {MOUNT}/pip/{pip_wheel.name}/pip install -q "
                "--no-index --no-deps --no-compile --no-cache-dir "
                "--disable-pip-version-check --root-user-action=ignore " + " ".join(chosen),
                f"{spec.VENV}/bin/python -m compileall -q --invalidation-mode unchecked-hash "
                f"{spec.VENV}/lib",
            ]
        )
        container = self.run(["buildah", "from", base]).strip()
        self.run(
            [
                "buildah",
                "run",
                "--network",
                "none",
                "-v",
                f"{wheels}:{MOUNT}:ro",
                container,
                "--",
                "/bin/sh",
                "-c",
                script,
            ]
        )
        self.run(["buildah", "run", "--network", "none", container, "--", "rmdir", MOUNT])
        return container

    def configure(
        self, container: str, image: spec.Image, previous: spec.Image | None = None
    ) -> None:
        """Sets `image`'s configuration on `container`; `previous` is the image configured on
        it before (an image sharing a venv), whose exposed ports are removed."""
        command = [
            "buildah",
            "config",
            "--user",
            image.user,
            "--workingdir",
            image.workdir,
            "--cmd",
            json.dumps(list(image.cmd)),
            "--entrypoint",
            "[]",
            "--env",
            f"PATH={spec.PATH}",
            "--label",
            f"org.opencontainers.image.version={self.tag}",
            "--label",
            "org.opencontainers.image.title=" + image.name,
            "--label",
            "org.opencontainers.image.source=osm-py",
        ]
        for name, value in image.env:
            command += ["--env", f"{name}={value}"]
        for port in previous.ports if previous else ():
            command += ["--port", f"{port}/tcp-"]
        for port in image.ports:
            command += ["--port", f"{port}/tcp"]
        self.run([*command, container])

    def commit(self, container: str, ref: str) -> str:
        return self.run(
            ["buildah", "commit", "--quiet", "--timestamp", self.epoch, container, ref]
        ).strip()

    def export(self, image: spec.Image, image_id: str) -> Path:
        archive = image.archive(self.out, self.tag)
        archive.unlink(missing_ok=True)
        self.run(
            [
                "skopeo",
                "copy",
                "--quiet",
                f"containers-storage:{image_id}",
                f"oci-archive:{archive}:{image.archive_ref(self.registry, self.tag)}",
            ]
        )
        return archive

    def size(self, image_id: str) -> int:
        return int(self.run(["podman", "image", "inspect", "--format", "{{.Size}}", image_id]))

    def build(self, names: Sequence[str]) -> dict[str, object]:
        self.out.mkdir(parents=True, exist_ok=True)
        images = [spec.BY_NAME[name] for name in names]
        wheels = self.wheels() if any(image.venv for image in images) else self.work
        bases: dict[str, str] = {}
        venvs: dict[tuple[str, str], str] = {}  # (root, venv kind) -> a working container
        configured: dict[str, spec.Image] = {}  # container -> the image last configured on it
        report: list[dict[str, object]] = []
        try:
            for image in images:
                started = time.monotonic()
                if image.root not in bases:
                    root = spec.ROOTS[image.root]
                    bases[image.root] = self.base(root, self.root_tar(root))
                if image.venv:
                    key = (image.root, image.venv)
                    if key not in venvs:
                        venvs[key] = self.venv_container(bases[image.root], image, wheels)
                    container = venvs[key]
                else:
                    container = self.run(["buildah", "from", bases[image.root]]).strip()
                    venvs[(image.root, image.name)] = container
                self.configure(container, image, configured.get(container))
                configured[container] = image
                ref = image.ref(self.registry, self.tag)
                image_id = self.commit(container, ref)
                archive = self.export(image, image_id)
                seconds = time.monotonic() - started
                size = self.size(image_id)
                log(
                    f"{ref}: {size / 1e6:.0f} MB, archive {archive.stat().st_size / 1e6:.0f} "
                    f"MB, {seconds:.1f} s"
                )
                report.append(
                    {
                        "name": image.name,
                        "ref": ref,
                        "id": image_id,
                        "archive": str(archive),
                        "build_seconds": round(seconds, 1),
                        "size_bytes": size,
                        "archive_bytes": archive.stat().st_size,
                    }
                )
        finally:
            for container in venvs.values():
                self.run(["buildah", "rm", container])
            # Earlier builds' images, now untagged, in this build's own storage.
            self.run(["podman", "image", "prune", "--force"])
        # Images built earlier with the same name and tag stay in the report.
        previous = self.out / spec.REPORT
        if previous.exists():
            earlier = json.loads(previous.read_text())
            if (earlier.get("registry"), earlier.get("tag")) == (self.registry, self.tag):
                built = {entry["name"] for entry in report}
                report += [e for e in earlier.get("images", []) if e["name"] not in built]
        report.sort(key=lambda entry: list(spec.BY_NAME).index(str(entry["name"])))
        result: dict[str, object] = {
            "registry": self.registry,
            "tag": self.tag,
            "source_date_epoch": self.epoch,
            "shared_seconds": {k: round(v, 1) for k, v in self.timings.items()},
            "images": report,
        }
        (self.out / spec.REPORT).write_text(json.dumps(result, indent=2) + "\n")
        return result


def _last_commit_time() -> int:
    try:
        out = subprocess.run(
            ["git", "-C", str(spec.ROOT), "log", "-1", "--format=%ct"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return int(out.strip())
    except (OSError, subprocess.CalledProcessError, ValueError):
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--registry", default="osm-py")
    parser.add_argument("--tag", default=spec.project_version())
    parser.add_argument("--out", type=Path, default=spec.ROOT / "dist" / "images")
    parser.add_argument("--work", type=Path, default=spec.ROOT / "build" / "images")
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="the interpreter whose pip (22.3+) builds and downloads wheels",
    )
    parser.add_argument("--source-date-epoch", type=int, default=None)
    parser.add_argument("--fresh", action="store_true", help="rebuild the cached Debian roots")
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"images to build (default: all): {', '.join(spec.BY_NAME)}",
    )
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(spec.BY_NAME)
    if unknown:
        parser.error(f"no image {', '.join(sorted(unknown))}; images: {', '.join(spec.BY_NAME)}")
    names = args.names or list(spec.BY_NAME)
    missing = [
        tool
        for tool in ("mmdebstrap", "buildah", "podman", "skopeo", "runc")
        if shutil.which(tool) is None
    ]
    if missing:
        raise SystemExit(f"images: missing {', '.join(missing)} (make images installs them)")
    started = time.monotonic()
    result = Builder(args).build(names)
    log(f"done in {time.monotonic() - started:.0f} s; report: {args.out / spec.REPORT}")
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
