"""`make new-location NAME=<name> TEAM=<team>`: a working code location, the way a data team
starts one (docs/adding-a-location.md).

It writes `locations/<name>/` from the template next to this file (a dg project: pyproject with
the location's declaration, `definitions.py` + `defs/`, one example asset that reads a mart and
writes the location's own schema, its test against the embedded warehouse, `deploy/values.yaml`)
and adds one line to dg.toml. Everything else the platform derives from the declaration
(platform_devkit.locations); CODEOWNERS, which GitHub reads from the repository, is rewritten
from the declarations. The image needs no file: locations build from the shared template
(infra/docker/location.Dockerfile) unless they bring their own Dockerfile.
"""

import importlib.util
import keyword
import re
import shutil
import string
import subprocess
import sys
import tomllib
from pathlib import Path

from platform_devkit import locations

TEMPLATE = Path(__file__).parent / "template"
# The name is the Python package, the dg project, the Helm release and its Service, the Secret's
# prefix, the warehouse role and schema: lower-case letters and digits fit them all.
NAME = re.compile(r"[a-z][a-z0-9]{1,29}")
# Names a location must not take: they mean something else to the platform or to Dagster.
# YAML 1.1 reads the last line's words as booleans and null (a release named `yes` would be
# `true` to Helm).
RESERVED_NAMES = frozenset({"dagster", "platform", "postgres", "warehouse", "shop", "test",
                            "tests", "src", "reports",
                            "yes", "no", "on", "off", "true", "false", "null"})  # fmt: skip
WORKSPACE_END = "]\n"


class ScaffoldError(ValueError):
    """A name or team that cannot be a location's; the message says why and what to pass."""


def _package_versions(root: Path) -> dict[str, str]:
    lock = tomllib.loads((root / "uv.lock").read_text())
    return {package["name"]: package["version"] for package in lock.get("package", [])}


def check_name(name: str, team: str, root: Path = locations.REPO_ROOT) -> None:
    """Refuse what cannot be a new location, with the reason."""
    if not NAME.fullmatch(name):
        raise ScaffoldError(
            f"NAME={name!r}: use 2 to 30 lower-case letters and digits, starting with a letter "
            "(it is the Python package, the Helm release, the warehouse schema and role)"
        )
    if keyword.iskeyword(name) or name in RESERVED_NAMES:
        raise ScaffoldError(f"NAME={name!r} is reserved; choose another name")
    if not team or not locations.TEAM.fullmatch(team):
        raise ScaffoldError(
            f"TEAM={team!r}: the owning team's GitHub team slug (lower-case letters, digits, "
            "- and _), e.g. TEAM=growth"
        )
    found = locations.load(root)
    if (root / "locations" / name).exists() or name in {loc.name for loc in found}:
        raise ScaffoldError(
            f"NAME={name!r}: locations/{name} exists already (a failed earlier run leaves it: "
            "remove the folder and its dg.toml line to start again)"
        )
    taken = {schema: loc.name for loc in found for schema in loc.role.writes}
    if name in taken:
        raise ScaffoldError(f"NAME={name!r}: the schema {name} belongs to {taken[name]}")
    roles = {role.name for role in locations.warehouse_roles(found)} | locations.RESERVED_ROLES
    if name in roles or name in locations.RESERVED_SCHEMAS:
        raise ScaffoldError(f"NAME={name!r}: a warehouse role or schema of that name exists")
    if importlib.util.find_spec(name) is not None:
        raise ScaffoldError(
            f"NAME={name!r}: a module of that name is importable already (the standard library "
            "or an installed package); the location's package would shadow it"
        )


def render(name: str, team: str, root: Path = locations.REPO_ROOT) -> list[Path]:
    """Write locations/<name>/ from the template; the paths written, relative to root."""
    versions = _package_versions(root)
    values = {
        "name": name,
        "module": name,
        "schema": name,
        "team": team,
        "prefix": name.upper(),
        "github_org": locations.GITHUB_ORG,
        "dagster_version": versions["dagster"],
        "integrations_version": versions["dagster-postgres"],
    }
    target = root / "locations" / name
    written = []
    for source in sorted(TEMPLATE.rglob("*.tmpl")):
        relative = source.relative_to(TEMPLATE).with_suffix("")
        path = target / str(relative).replace("__module__", name).replace("__schema__", name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(string.Template(source.read_text()).substitute(values))
        written.append(path.relative_to(root))
    # dg runs a project's code with the interpreter at <project>/.venv: the workspace's.
    (target / ".venv").symlink_to(Path("..") / ".." / ".venv")
    tidy(target, root)
    return written


def tidy(target: Path, root: Path) -> None:
    """Sort the new files' imports and format them with the repository's ruff settings, so the
    location passes `make lint` as written. Where its module sorts among the first-party ones
    depends on its name, which a static template cannot know. Without ruff (a workspace
    installed without its dev tools) the files stay as the template wrote them."""
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        found = shutil.which("ruff")
        if found is None:
            return
        ruff = Path(found)
    for args in (["check", "--select", "I", "--fix"], ["format"]):
        subprocess.run(
            [str(ruff), *args, "--quiet", str(target)], cwd=root, check=True, timeout=120
        )


def add_to_workspace(name: str, root: Path = locations.REPO_ROOT) -> None:
    """One line at the end of dg.toml's project list (downstream of every location)."""
    path = root / "dg.toml"
    text = path.read_text()
    if not text.endswith(WORKSPACE_END):
        raise ScaffoldError(f"{path}: the workspace list must end the file with `{WORKSPACE_END}`")
    line = f'    {{ path = "locations/{name}" }},\n'
    path.write_text(text[: -len(WORKSPACE_END)] + line + WORKSPACE_END)


def new_location(name: str, team: str, root: Path = locations.REPO_ROOT) -> list[Path]:
    """Check, write, and check the result together with every other declaration; on any
    failure, nothing is left behind (the folder removed, dg.toml and CODEOWNERS restored)."""
    check_name(name, team, root)
    kept = {path: path.read_text() for path in (root / "dg.toml", root / locations.CODEOWNERS)}
    try:
        written = render(name, team, root)
        add_to_workspace(name, root)
        found = locations.load(root)
        (root / locations.CODEOWNERS).write_text(locations.codeowners(found))
    except BaseException:
        shutil.rmtree(root / "locations" / name, ignore_errors=True)
        for path, text in kept.items():
            path.write_text(text)
        raise
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m platform_devkit.scaffold NAME TEAM", file=sys.stderr)
        return 2
    name, team = argv
    try:
        written = new_location(name, team)
    except (ScaffoldError, locations.DeclarationError, ValueError) as error:
        print(f"new-location: {error}", file=sys.stderr)
        return 1
    print(f"==> locations/{name}: {len(written)} files (team {team}, schema {name})")
    for path in written:
        print(f"    {path}")
    print("==> dg.toml: added at the end of the workspace; .github/CODEOWNERS: rewritten")
    return 0
