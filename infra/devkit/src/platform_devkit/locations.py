"""The code locations and what the platform derives from their declarations.

Each location declares itself once, in the `[tool.platform]` table of its own
`locations/<name>/pyproject.toml` (docs/adding-a-location.md): its team and owners, the
warehouse schemas it writes and reads, its Secret's extra keys, the platform variables it reads,
and the roles outside Dagster that read its schemas. `dg.toml` lists the locations in dependency
order (upstream first). Everything that used to repeat the list of locations is derived here:
the warehouse bootstrap's roles and grants, the devkit's roles and variables, the e2e drivers'
variables, the workspace servers, the platform chart's Secrets, `infra/kind/secrets.sh`'s
Secrets and CODEOWNERS.

Standard library only, so scripts without the workspace venv can run it:

    python3 infra/devkit/src/platform_devkit/locations.py names|secrets|team-secrets|codeowners|...
"""

import json
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[4]

# The organisation's GitHub handles (placeholders of this organisation's teams): the platform
# team owns everything that runs the locations; a location's default owner is
# @<GITHUB_ORG>/<its team>.
GITHUB_ORG = "data-platform"
PLATFORM_OWNERS = (f"@{GITHUB_ORG}/platform",)
CODEOWNERS = Path(".github") / "CODEOWNERS"

# Schemas no location may declare: PostgreSQL's own, and `public`, which the bootstrap closes.
RESERVED_SCHEMAS = frozenset({"public", "information_schema"})
# The Dagster storage role, the server's administrator and the demo shop's reader belong to the
# platform; PostgreSQL refuses role names starting with pg_.
RESERVED_ROLES = frozenset({"dagster", "postgres", "shop_reader"})
# The platform's own Secrets (charts/platform values.yaml `secrets`, infra/kind/secrets.sh).
RESERVED_SECRETS = frozenset({"platform-postgres-admin", "dagster-postgresql-secret"})
# Variables the platform sets for every server: no Secret key may take them.
SHARED_PREFIXES = ("WAREHOUSE_", "DAGSTER_", "PG")
# Keys any location's Secret may hold besides its declared ones, absent unless the platform
# team sets them (infra/kind/secrets.sh when the variable is set, the secret manager in
# production); a location reads them when present. In a Secret, not the shared ConfigMap, so
# each team may have its own value, and because a webhook URL carries a token.
# ALERT_WEBHOOK_URL: where the location's alerts on failed runs and checks are POSTed.
OPTIONAL_SECRET_KEYS = ("ALERT_WEBHOOK_URL",)
# PostgreSQL truncates identifiers past 63 bytes.
MAX_IDENTIFIER = 63
# A generated password in a Secret's dev/kind default (infra/kind/secrets.sh).
RANDOM = "random"

IDENTIFIER = re.compile(r"[a-z][a-z0-9_]{0,62}")
# A GitHub team slug that is also a Kubernetes label value (the pods' `team` label).
TEAM = re.compile(r"[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?")
# Secret values kind/dev puts in a Secret: no white space or quotes (secrets.sh splits on them).
SECRET_VALUE = re.compile(r"[A-Za-z0-9_.@:/+-]*")
SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
VARIABLE = re.compile(r"[A-Z][A-Z0-9_]*")
OWNER = re.compile(r"@[A-Za-z0-9-]+(/[A-Za-z0-9._-]+)?")

DECLARATION_KEYS = frozenset({
    "team", "owners", "writes", "reads", "temporary_tables", "secret", "secret_keys",
    "environment", "readers", "image",
})  # fmt: skip


class DeclarationError(ValueError):
    """A location's declaration is missing or wrong; the message names the file to fix."""


@dataclass(frozen=True)
class Role:
    """A warehouse role: its default name, the variables that carry its name and password, the
    Secret that holds them, and the schemas it owns (writes) and only reads."""

    name: str
    secret: str
    writes: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    temporary_tables: bool = False

    @property
    def prefix(self) -> str:
        return self.name.upper()

    @property
    def user_var(self) -> str:
        return f"{self.prefix}_USER"

    @property
    def password_var(self) -> str:
        return f"{self.prefix}_PASSWORD"


@dataclass(frozen=True)
class WarehouseRole(Role):
    """A location's role: its variables are <LOCATION>_WAREHOUSE_USER / _PASSWORD."""

    @property
    def prefix(self) -> str:
        return f"{self.name.upper()}_WAREHOUSE"


@dataclass(frozen=True)
class Location:
    """One code location, as its folder, pyproject and `[tool.platform]` table declare it."""

    name: str
    path: Path
    root_module: str
    team: str
    owners: tuple[str, ...]
    role: WarehouseRole
    # Keys of the location's Secret besides its role's, with the value kind/dev generates
    # (RANDOM: a new password).
    secret_keys: dict[str, str] = field(default_factory=dict)
    # Non-secret variables of the platform environment the location reads.
    environment: tuple[str, ...] = ()
    # Roles outside Dagster (BI tools) that read this location's schemas.
    readers: tuple[Role, ...] = ()

    @property
    def module(self) -> str:
        return f"{self.root_module}.definitions"

    @property
    def secret(self) -> str:
        return self.role.secret

    def secret_defaults(self) -> dict[str, str]:
        """Every key of the location's Secret and its kind/dev default (RANDOM: generated)."""
        return {self.role.user_var: self.role.name, self.role.password_var: RANDOM,
                **self.secret_keys}  # fmt: skip

    @property
    def alert_webhook_var(self) -> str:
        """The variable `make secrets` (infra/kind/secrets.sh) reads this team's own alert
        webhook from, before the shared ALERT_WEBHOOK_URL: <LOCATION>_ALERT_WEBHOOK_URL."""
        return f"{self.name.upper()}_ALERT_WEBHOOK_URL"

    def variables(self) -> tuple[str, ...]:
        """The variables this location's server and runs receive beyond the shared ones (the
        optional Secret keys when they are set)."""
        return (*self.secret_defaults(), *OPTIONAL_SECRET_KEYS, *self.environment)

    def as_dict(self) -> dict[str, str]:
        """The form the devkit has always used: name, module and folder."""
        return {"name": self.name, "module": self.module, "path": str(self.path)}


def _fail(path: Path, root: Path, message: str) -> DeclarationError:
    try:
        shown = path.relative_to(root)
    except ValueError:
        shown = path
    return DeclarationError(f"{shown}: {message}")


def _strings(value: object, what: str, path: Path, root: Path, pattern: re.Pattern[str]):
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(path, root, f"[tool.platform] {what} must be a list of strings")
    bad = [v for v in value if not pattern.fullmatch(v)]
    if bad:
        raise _fail(path, root, f"[tool.platform] {what}: {bad} (expected {pattern.pattern})")
    if len(set(value)) != len(value):
        raise _fail(path, root, f"[tool.platform] {what} lists a value twice: {value}")
    return tuple(value)


def _location(folder: Path, root: Path) -> Location:
    path = folder / "pyproject.toml"
    if not path.is_file():
        places = references(folder.name, root)
        still = "; still referred to by " + ", ".join(places) if places else ""
        raise _fail(
            path, root, f"does not exist (every location in dg.toml needs its package){still}"
        )
    pyproject = tomllib.loads(path.read_text())
    name = pyproject.get("project", {}).get("name", "")
    if name != folder.name:
        raise _fail(path, root, f"[project] name is {name!r}; it must be the folder's name")
    if not IDENTIFIER.fullmatch(name):
        raise _fail(path, root, f"the location name {name!r} is not a lower-case identifier")
    root_module = pyproject.get("tool", {}).get("dg", {}).get("project", {}).get("root_module")
    if not root_module:
        raise _fail(path, root, "has no [tool.dg.project] root_module")
    declared = pyproject.get("tool", {}).get("platform")
    if not isinstance(declared, dict):
        places = references(folder.name, root)
        still = "; still referred to by " + ", ".join(places) if places else ""
        raise _fail(
            path,
            root,
            "has no [tool.platform] table: the location's declaration (team, owners, the "
            f"schemas it writes and reads; docs/adding-a-location.md){still}",
        )
    unknown = set(declared) - DECLARATION_KEYS
    if unknown:
        raise _fail(path, root, f"[tool.platform] has unknown keys {sorted(unknown)}")
    team = declared.get("team")
    if not isinstance(team, str) or not TEAM.fullmatch(team):
        raise _fail(path, root, "[tool.platform] team must be a lower-case name (team:<team>)")
    owners = _strings(
        declared.get("owners", [f"@{GITHUB_ORG}/{team}"]), "owners", path, root, OWNER
    )
    if not owners:
        raise _fail(path, root, "[tool.platform] owners is empty: name the team's GitHub handle")
    writes = _strings(declared.get("writes", []), "writes", path, root, IDENTIFIER)
    reads = _strings(declared.get("reads", []), "reads", path, root, IDENTIFIER)
    if not writes:
        raise _fail(path, root, "[tool.platform] writes is empty: a location owns its schema")
    for schema in (*writes, *reads):
        if schema in RESERVED_SCHEMAS or schema.startswith("pg_"):
            raise _fail(path, root, f"[tool.platform] schema {schema!r} is reserved")
    if set(writes) & set(reads):
        raise _fail(path, root, "[tool.platform] a schema is both in writes and reads")
    temporary = declared.get("temporary_tables", False)
    if not isinstance(temporary, bool):
        raise _fail(path, root, "[tool.platform] temporary_tables must be true or false")
    secret = declared.get("secret", f"{name}-credentials")
    if not isinstance(secret, str) or not SECRET_NAME.fullmatch(secret):
        raise _fail(path, root, f"[tool.platform] secret {secret!r} is not a Secret name")
    if secret in RESERVED_SECRETS:
        raise _fail(path, root, f"[tool.platform] secret {secret!r} is the platform's")
    secret_keys = declared.get("secret_keys", {})
    if not isinstance(secret_keys, dict) or not all(
        isinstance(k, str)
        and VARIABLE.fullmatch(k)
        and isinstance(v, str)
        and SECRET_VALUE.fullmatch(v)
        for k, v in secret_keys.items()
    ):
        raise _fail(
            path, root, "[tool.platform.secret_keys] maps VARIABLE names to their dev defaults "
            "(no white space or quotes)",
        )  # fmt: skip
    for key in secret_keys:
        if key.startswith(SHARED_PREFIXES) or key in OPTIONAL_SECRET_KEYS or key.endswith((
                "_WAREHOUSE_USER", "_WAREHOUSE_PASSWORD")):  # fmt: skip
            raise _fail(path, root, f"[tool.platform.secret_keys] {key} is set by the platform")
    environment = _strings(declared.get("environment", []), "environment", path, root, VARIABLE)
    if set(environment) & set(OPTIONAL_SECRET_KEYS):
        taken = sorted(set(environment) & set(OPTIONAL_SECRET_KEYS))
        raise _fail(path, root, f"[tool.platform] environment lists {taken}, a Secret key")
    readers = []
    for reader, spec in declared.get("readers", {}).items():
        if not IDENTIFIER.fullmatch(reader) or not isinstance(spec, dict):
            raise _fail(path, root, f"[tool.platform.readers.{reader}] is not a role table")
        if set(spec) - {"reads", "secret"}:
            unknown_keys = sorted(set(spec) - {"reads", "secret"})
            raise _fail(path, root, f"readers.{reader} has unknown keys {unknown_keys}")
        reader_secret = spec.get("secret", f"{reader.replace('_', '-')}-credentials")
        if not isinstance(reader_secret, str) or not SECRET_NAME.fullmatch(reader_secret):
            raise _fail(path, root, f"readers.{reader} secret {reader_secret!r} is not a name")
        if reader_secret in RESERVED_SECRETS:
            raise _fail(path, root, f"readers.{reader} secret {reader_secret!r} is the platform's")
        reader_reads = _strings(spec.get("reads", []), f"readers.{reader}.reads", path, root,
                                IDENTIFIER)  # fmt: skip
        if not set(reader_reads) <= set(writes):
            raise _fail(path, root, f"readers.{reader} may read only this location's schemas")
        readers.append(Role(reader, reader_secret, reads=reader_reads))
    role = WarehouseRole(name, secret, writes, reads, temporary)
    return Location(
        name, folder, root_module, team, owners, role, dict(secret_keys), environment,
        tuple(readers),
    )  # fmt: skip


def workspace_paths(root: Path = REPO_ROOT) -> list[str]:
    """The projects dg.toml lists, in its order (upstream first)."""
    dg_toml = tomllib.loads((root / "dg.toml").read_text())
    return [project["path"] for project in dg_toml["workspace"]["projects"]]


def load(root: Path = REPO_ROOT) -> list[Location]:
    """Every location in dg.toml order, validated together: a DeclarationError names the file."""
    found = [_location(root / path, root) for path in workspace_paths(root)]
    check(found, root)
    return found


def check(found: list[Location], root: Path = REPO_ROOT) -> None:
    """What no single declaration shows: one writer per schema, reads of schemas written by a
    location listed before, unique roles, Secrets and variables."""
    writers: dict[str, str] = {}
    roles: dict[str, str] = {}
    secrets: dict[str, str] = {}
    variables: dict[str, str] = {}
    for loc in found:
        declaration = loc.path / "pyproject.toml"
        for schema in loc.role.reads:
            if schema not in writers:
                later = [o.name for o in found if schema in o.role.writes]
                where = (f"written by {later[0]}, listed after it in dg.toml" if later
                         else "no location writes it")  # fmt: skip
                raise _fail(declaration, root, f"reads {schema!r}, which {where}")
        for schema in loc.role.writes:
            if schema in writers:
                raise _fail(declaration, root, f"writes {schema!r}, owned by {writers[schema]}")
            writers[schema] = loc.name
        for role in (loc.role, *loc.readers):
            if role.name in RESERVED_ROLES or role.name.startswith("pg_") or role.name in roles:
                owner = roles.get(role.name, "the platform")
                raise _fail(declaration, root, f"role {role.name!r} is taken by {owner}")
            roles[role.name] = loc.name
            if role.secret in secrets:
                raise _fail(declaration, root, f"Secret {role.secret} is {secrets[role.secret]}'s")
            secrets[role.secret] = loc.name
        secret_vars = {v for o in found for v in o.secret_defaults()} | {
            v for o in found for r in o.readers for v in (r.user_var, r.password_var)
        }
        leaked = sorted(set(loc.environment) & secret_vars)
        if leaked:
            raise _fail(declaration, root, f"environment lists Secret keys {leaked}")
        for var in (*loc.secret_defaults(), *(v for r in loc.readers for v in
                                               (r.user_var, r.password_var))):  # fmt: skip
            if var in variables:
                raise _fail(declaration, root, f"variable {var} is {variables[var]}'s too")
            variables[var] = loc.name


def warehouse_roles(found: list[Location]) -> list[Role]:
    """Every warehouse role in the order the bootstrap creates them: each location's (dg.toml
    order, so a schema exists before its readers are granted it), then the outside readers."""
    return [loc.role for loc in found] + [r for loc in found for r in loc.readers]


def bootstrap_script(found: list[Location]) -> str:
    """The warehouse bootstrap as psql runs it: bootstrap.sql, then role.sql for each role of
    `warehouse_roles`. Run from infra/sql (or the Job's folder holding both files): the
    includes are relative. Passwords stay in the environment (role.sql reads them by name)."""
    lines = [
        "-- Generated from the locations' declarations (platform_devkit.locations); do not edit.",
        "\\ir bootstrap.sql",
    ]
    for role in warehouse_roles(found):
        lines += [
            f"-- {role.name}: writes {','.join(role.writes) or '-'}, "
            f"reads {','.join(role.reads) or '-'}",
            f"\\set role_name {role.name}",
            f"\\set user_var {role.user_var}",
            f"\\set password_var {role.password_var}",
            f"\\set writes '{','.join(role.writes)}'",
            f"\\set reads '{','.join(role.reads)}'",
            f"\\set temporary_tables {'true' if role.temporary_tables else 'false'}",
            "\\ir role.sql",
        ]
    names = ", ".join(role.name for role in warehouse_roles(found))
    lines.append(f"\\echo 'bootstrap: databases, roles ({names}), schemas and grants are in place'")
    return "\n".join(lines) + "\n"


def codeowners(found: list[Location]) -> str:
    """The generated .github/CODEOWNERS (a test holds the committed file equal to it)."""
    platform = " ".join(PLATFORM_OWNERS)
    width = max([len(f"/locations/{loc.name}/") for loc in found] + [30]) + 1
    lines = [
        "# Generated from the locations' declarations ([tool.platform] owners in",
        "# locations/<name>/pyproject.toml): `make codeowners` writes it, a test fails on drift.",
        "# Everything that runs the locations belongs to the platform; each location's folder,",
        "# its deploy/ values included, to its team. Changes under locations/*/deploy/ also need",
        "# the platform team's approval: the branch ruleset requires it (docs/adding-a-location.md",
        '# "Review"), since GitHub asks one owner per file here.',
        f"{'*':<{width}}{platform}",
    ]
    for loc in found:
        lines.append(f"{f'/locations/{loc.name}/':<{width}}{' '.join(loc.owners)}")
    lines += [
        "# The contract between teams: asset keys across locations, the warehouse's roles and",
        "# grants, and the declarations' derivations.",
        f"{'/tests/contracts/':<{width}}{platform}",
        f"{'/infra/sql/':<{width}}{platform}",
    ]
    return "\n".join(lines) + "\n"


def secret_specs(found: list[Location]) -> list[str]:
    """The location Secrets for infra/kind/secrets.sh: `name|KEY=default ...` lines."""
    specs = []
    for loc in found:
        pairs = " ".join(f"{k}={v}" for k, v in loc.secret_defaults().items())
        specs.append(f"{loc.secret}|{pairs}")
        for reader in loc.readers:
            specs.append(
                f"{reader.secret}|{reader.user_var}={reader.name} {reader.password_var}={RANDOM}"
            )
    return specs


def references(name: str, root: Path = REPO_ROOT) -> list[str]:
    """Files outside the location's folder that name it (`locations/<name>`, its variables or
    its Secret), each as `path:line`, git-ignored files left out: what a removed location
    leaves behind. Works in a copy of the repository that is no git checkout too."""
    patterns = [f"locations/{name}([^a-z0-9_-]|$)", f"{name.upper()}_WAREHOUSE_(USER|PASSWORD)",
                f"{name}-credentials"]  # fmt: skip
    args = ["git", "grep", "--no-index", "--exclude-standard", "-n", "-I", "-E"]
    for pattern in patterns:
        args += ["-e", pattern]
    excluded = [f":(exclude)locations/{name}", ":(exclude)uv.lock", ":(exclude).local"]
    result = subprocess.run(
        [*args, "--", ".", *excluded], cwd=root, capture_output=True, text=True, check=False
    )
    return [":".join(line.split(":", 2)[:2]) for line in result.stdout.splitlines()]


def main(argv: list[str]) -> int:
    commands = {
        "names": lambda found: " ".join(loc.name for loc in found),
        "secrets": lambda found: "\n".join(secret_specs(found)),
        # The Secrets that may hold OPTIONAL_SECRET_KEYS (the locations' own, not readers'),
        # each with the variable its own ALERT_WEBHOOK_URL comes from: `<secret> <VARIABLE>`.
        "team-secrets": lambda found: "\n".join(
            f"{loc.secret} {loc.alert_webhook_var}" for loc in found
        ),
        "codeowners": lambda found: codeowners(found).rstrip("\n"),
        "json": lambda found: json.dumps([loc.as_dict() for loc in found]),
        "bootstrap": lambda found: bootstrap_script(found).rstrip("\n"),
        "check": lambda found: (
            f"{len(found)} locations declared: " + ", ".join(loc.name for loc in found)
        ),
    }
    if len(argv) != 1 or argv[0] not in commands:
        print(f"usage: locations.py {{{'|'.join(commands)}}}", file=sys.stderr)
        return 2
    try:
        print(commands[argv[0]](load()))
    except DeclarationError as error:
        print(f"locations: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
