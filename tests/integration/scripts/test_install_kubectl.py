"""scripts/install-kubectl on a machine whose kubectl embeds a kustomize too old for
deploy/k8s (Debian bookworm's kubectl 1.20 has kustomize 2): it builds the kustomize CLI
from its Go module, and that kustomize renders the manifests. And where kubectl's own
kustomize is recent, it does nothing.

The old kubectl is a stand-in that only answers ``version --client``, first on PATH;
kustomize is built into a directory of the test's (``KUSTOMIZE_BIN_DIR``), never into the
machine's /usr/local/bin. The Go toolchain and modules come as the script gets them
(Debian's golang-go or /usr/local/go; the Go module proxy, or the local module cache).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "install-kubectl"

pytestmark = [pytest.mark.integration]


def _kubectl(bin_dir: Path, kustomize_version: str) -> None:
    """A kubectl that says which kustomize it embeds, and does nothing else."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    fake = bin_dir / "kubectl"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = version ]; then\n'
        "  echo 'Client Version: v1.20.0'\n"
        f"  echo 'Kustomize Version: {kustomize_version}'\n"
        "  exit 0\n"
        "fi\n"
        "echo 'this kubectl only tells its version' >&2\n"
        "exit 1\n"
    )
    fake.chmod(0o755)


def _run(path: list[Path], out: Path) -> subprocess.CompletedProcess[str]:
    env = {
        # No kustomize anywhere on it (not /usr/local/bin, where a machine may have one).
        "PATH": os.pathsep.join(str(p) for p in [*path, Path("/usr/bin"), Path("/bin")]),
        # Go's module and build caches.
        "HOME": str(Path.home()),
        "KUSTOMIZE_BIN_DIR": str(out),
    }
    return subprocess.run(  # noqa: S603 - the project's own script
        ["/usr/bin/env", "bash", str(SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=280,
    )


def test_a_recent_kubectl_is_enough_and_nothing_is_installed(tmp_path: Path) -> None:
    _kubectl(tmp_path / "bin", "v5.5.0")
    done = _run([tmp_path / "bin"], tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert not (tmp_path / "out").exists()


@pytest.mark.timeout(300)
@pytest.mark.skipif(os.geteuid() != 0, reason="the script installs as root only")
def test_an_old_kubectl_gets_a_kustomize_built_that_renders_the_manifests(
    tmp_path: Path,
) -> None:
    _kubectl(tmp_path / "bin", "v2.0.3")
    out = tmp_path / "out"
    done = _run([tmp_path / "bin"], out)
    assert done.returncode == 0, done.stderr
    assert "kubectl's kustomize is too old; building" in done.stderr
    kustomize = out / "kustomize"
    assert kustomize.is_file()
    assert "v5.5.0" in done.stderr  # `kustomize version`, printed by the script
    rendered = subprocess.run(  # noqa: S603 - the kustomize just built, on our manifests
        [str(kustomize), "build", str(ROOT / "deploy" / "k8s")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert rendered.returncode == 0, rendered.stderr
    assert "kind: Deployment" in rendered.stdout
    # Run again with it on PATH: quick and silent (idempotent).
    again = _run([tmp_path / "bin", out], tmp_path / "unused")
    assert again.returncode == 0, again.stderr
    assert again.stderr == ""
    assert shutil.which("kustomize", path=str(out)) is not None
