"""Images: size per location, cold build, rebuild after a code-only change.

Builds go through the images' own script (infra/docker/build-image.sh, what `make image` runs),
on a copy of the build context, so that
- the code-only change (a line added to the location's package) never touches the checkout
  other people work in, and the CA files the script stages land in the copy;
- the images get a registry name of their own (bench-platform/<location>:bench) and never
  replace the images others build and test (data-platform/<location>).
Images and layers these builds created are removed at the end; cached layers they reused are
not theirs and stay.
"""

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from platform_bench.progress import say
from platform_devkit.paths import REPO_ROOT

REGISTRY = "bench-platform"
TAG = "bench"
BUILD_TIMEOUT = 3600


def docker_available() -> str | None:
    """None when a Docker engine answers, else why not. When none answers, tries to start one
    with the images' own script (infra/docker/ensure-docker.sh), if it exists."""
    ensure = REPO_ROOT / "infra" / "docker" / "ensure-docker.sh"
    if shutil.which("docker") and _docker("info").returncode == 0:
        return None
    if not ensure.exists():
        return "no Docker engine (docker info fails) and no infra/docker/ensure-docker.sh"
    say("no Docker engine answers: starting one with infra/docker/ensure-docker.sh")
    subprocess.run([str(ensure)], check=False, timeout=900)
    if shutil.which("docker") and _docker("info").returncode == 0:
        return None
    return "no Docker engine (docker info fails, ensure-docker.sh could not start one)"


def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def copy_context(target: Path) -> Path:
    """The repository's files as git sees them (tracked and untracked, without ignored ones),
    copied to `target`: the build context of `make image`, minus host state."""
    shutil.rmtree(target, ignore_errors=True)
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_file() and not source.is_symlink():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@dataclass
class Builds:
    """What the session's builds created, so it can be removed afterwards."""

    created: list[str] = field(default_factory=list)
    tags: set[str] = field(default_factory=set)

    def remove(self) -> None:
        for tag in sorted(self.tags):
            _docker("rmi", tag)
        # Newest first: a layer is removable once the layers built on it are gone. Only
        # untagged images, never forced: anything that became someone else's stays.
        for image_id in reversed(self.created):
            tags = _docker("image", "inspect", "--format", "{{len .RepoTags}}", image_id)
            if tags.returncode == 0 and tags.stdout.strip() == "0":
                _docker("rmi", image_id)


_STEP = re.compile(r"^Step \d+/\d+ : (\w+)")
_LAYER = re.compile(r"^ ---> ([0-9a-f]{12})$")


def _created_layers(output: str) -> list[str]:
    """Layer ids the legacy builder created in this build: not the base image a FROM step
    names, not those it took from the cache."""
    created, skip = [], False
    for line in output.splitlines():
        if step := _STEP.match(line):
            skip = step.group(1).upper() == "FROM"
        elif line.strip() == "---> Using cache":
            skip = True
        elif (match := _LAYER.match(line)) and not skip:
            created.append(match.group(1))
    return created


class BuildError(RuntimeError):
    """build-image.sh failed; `output` is what it printed."""

    def __init__(self, location: str, output: str) -> None:
        super().__init__(f"build-image.sh {location} failed:\n{output[-3000:]}")
        self.output = output

    @property
    def no_bridge(self) -> bool:
        """The engine's default bridge is unusable (its interface was removed under it): RUN
        steps cannot get a network, whatever the Dockerfile."""
        return "failed to create endpoint" in self.output or "could not find bridge" in self.output


@dataclass
class Built:
    seconds: float
    # "Step 18/26 COPY --from=builder ..." -> seconds, from the builder's own progress lines.
    steps: dict[str, float]

    def slowest(self, top: int = 4) -> dict[str, float]:
        ranked = sorted(self.steps.items(), key=lambda item: item[1], reverse=True)[:top]
        return {name: round(seconds, 1) for name, seconds in ranked}


def build(
    context: Path, location: str, builds: Builds, no_cache: bool, extra: tuple[str, ...] = ()
) -> Built:
    """One `build-image.sh <location>` in the context copy: its wall time, and each build
    step's (timed from the moment the builder prints it to the next one)."""
    env = {
        **os.environ,
        "REGISTRY": REGISTRY,
        "IMAGE_TAG": TAG,
        # The copy has no .git; the script labels the image with the checkout's revision.
        "GIT_DIR": str(REPO_ROOT / ".git"),
        "DOCKER_BUILD_ARGS": " ".join([*(["--no-cache"] if no_cache else []), *extra]),
    }
    steps: dict[str, float] = {}
    current, since = "before the first step (context upload)", time.perf_counter()
    output: list[str] = []
    started = time.perf_counter()
    with subprocess.Popen(
        [str(context / "infra" / "docker" / "build-image.sh"), location],
        cwd=context, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as process:  # fmt: skip
        for line in process.stdout:
            output.append(line)
            if _STEP.match(line) or line.startswith("==> built"):
                now = time.perf_counter()
                steps[current] = steps.get(current, 0.0) + now - since
                current, since = " ".join(line.split())[:90], now
        returncode = process.wait(BUILD_TIMEOUT)
    seconds = time.perf_counter() - started
    text = "".join(output)
    with (context.parent / f"build-{location}.log").open("a") as log:
        log.write(text)
    builds.created += _created_layers(text)
    builds.tags |= {f"{REGISTRY}/{location}:{TAG}", f"{REGISTRY}/{location}:latest"}
    if returncode != 0:
        raise BuildError(location, text)
    return Built(seconds, steps)


def image_size(location: str) -> int:
    """Bytes, as `docker image inspect` reports them (the uncompressed image)."""
    result = _docker("image", "inspect", "--format", "{{.Size}}", f"{REGISTRY}/{location}:{TAG}")
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return int(result.stdout.strip())


def change_code(context: Path, location: str, counter: int) -> Path:
    """A code-only change: one more line in the location package's __init__.py (the copy's)."""
    init = next((context / "locations" / location / "src").glob("*/__init__.py"))
    with init.open("a") as f:
        f.write(f"# benchmark: code-only change {counter} at {time.time()}\n")
    return init


def base_image(context: Path) -> str:
    """Make sure the base image exists before timing anything (the script builds a stand-in
    when it can be neither found nor pulled); returns its reference."""
    result = subprocess.run(
        [str(context / "infra" / "docker" / "build-base-image.sh")],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=True,
    )  # fmt: skip
    return result.stdout.strip()


def largest_packages(location: str, top: int = 6) -> dict[str, float]:
    """MB per installed package in the image's environment, the largest first (what the size
    is made of)."""
    result = _docker(
        "run", "--rm", "--entrypoint", "sh", f"{REGISTRY}/{location}:{TAG}", "-c",
        "du -sk /app/.venv/lib/python3*/site-packages/* | sort -rn | head -n " + str(top),
    )  # fmt: skip
    if result.returncode != 0:
        return {}
    sizes = {}
    for line in result.stdout.splitlines():
        kib, path = line.split(maxsplit=1)
        sizes[path.rsplit("/", 1)[-1]] = round(int(kib) / 1024, 1)
    return sizes
