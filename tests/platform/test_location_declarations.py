"""The locations' declarations ([tool.platform] in locations/<name>/pyproject.toml) and what
the platform derives from them: wrong declarations are refused naming the file, derived files
never drift, and a location whose declaration is gone is reported with every place that still
names it."""

import shutil
import subprocess
from pathlib import Path

import pytest

from platform_devkit import locations

REPO = locations.REPO_ROOT


def copy_declarations(tmp_path: Path) -> Path:
    """dg.toml and every location's pyproject.toml, in a folder of their own."""
    shutil.copy(REPO / "dg.toml", tmp_path / "dg.toml")
    for path in locations.workspace_paths(REPO):
        (tmp_path / path).mkdir(parents=True)
        shutil.copy(REPO / path / "pyproject.toml", tmp_path / path / "pyproject.toml")
    return tmp_path


def edit(root: Path, location: str, old: str, new: str) -> None:
    path = root / "locations" / location / "pyproject.toml"
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_the_repository_declares_every_location_in_dg_toml_order():
    found = locations.load()

    # The product's three first; a team's own locations (make new-location) come after them.
    assert [loc.name for loc in found][:3] == ["ingestion", "transformation", "exports"]
    assert [loc.team for loc in found][:3] == ["ingestion", "analytics", "bi"]
    assert [r.name for r in locations.warehouse_roles(found)][-1] == "bi_reader"


def test_codeowners_is_the_one_the_declarations_give():
    committed = (REPO / locations.CODEOWNERS).read_text()

    assert committed == locations.codeowners(locations.load()), (
        ".github/CODEOWNERS differs from the locations' declarations: run `make codeowners`"
    )


def test_every_location_folder_is_in_the_workspace_and_every_entry_has_a_folder():
    folders = {p.name for p in (REPO / "locations").iterdir() if (p / "pyproject.toml").exists()}

    assert folders == {loc.name for loc in locations.load()}, "dg.toml and locations/ differ"


@pytest.mark.parametrize(
    ("location", "old", "new", "message"),
    [
        ("transformation", 'reads = ["raw"]', 'reads = ["bi"]',
         "reads 'bi', which written by exports, listed after it in dg.toml"),
        ("exports", 'reads = ["marts"]', 'reads = ["nowhere"]',
         "reads 'nowhere', which no location writes it"),
        ("exports", 'writes = ["bi"]', 'writes = ["bi", "raw"]',
         "writes 'raw', owned by ingestion"),
        ("exports", 'writes = ["bi"]', 'writes = ["public"]', "schema 'public' is reserved"),
        ("exports", 'writes = ["bi"]', 'writes = ["pg_toast2"]', "schema 'pg_toast2' is reserved"),
        ("exports", 'writes = ["bi"]', "writes = []", "writes is empty"),
        ("exports", 'team = "bi"', 'team = "BI Team"', "team must be a lower-case name"),
        ("exports", 'team = "bi"', 'team = "bi"\nsecrets = 1', "unknown keys ['secrets']"),
        ("exports", 'owners = ["@data-platform/bi"]', 'owners = ["bi"]', "owners: ['bi']"),
        ("exports", "[tool.platform.readers.bi_reader]", "[tool.platform.readers.dagster]",
         "role 'dagster' is taken by the platform"),
        ("exports", 'reads = ["bi"]', 'reads = ["marts"]', "readers.bi_reader may read only"),
        ("exports", "[tool.platform.readers.bi_reader]", '[tool.platform.secret_keys]\n'
         'SHOP_DB_USER = "x"\n[tool.platform.readers.bi_reader]',
         "variable SHOP_DB_USER is ingestion's too"),
        ("exports", 'team = "bi"', 'team = "bi"\nsecret = "dagster-postgresql-secret"',
         "secret 'dagster-postgresql-secret' is the platform's"),
        ("exports", 'reads = ["bi"]', 'reads = ["bi"]\nsecret = "platform-postgres-admin"',
         "readers.bi_reader secret 'platform-postgres-admin' is the platform's"),
        ("exports", 'reads = ["bi"]', 'read = ["bi"]', "readers.bi_reader has unknown keys"),
        ("exports", "[tool.platform.readers.bi_reader]", "[tool.platform.readers.shop_reader]",
         "role 'shop_reader' is taken by the platform"),
        ("exports", 'environment = ["EXPORTS_URL"]',
         'environment = ["EXPORTS_URL", "INGESTION_WAREHOUSE_PASSWORD"]',
         "environment lists Secret keys ['INGESTION_WAREHOUSE_PASSWORD']"),
        ("ingestion", 'SHOP_DB_PASSWORD = "random"', 'SHOP_DB_PASSWORD = "random"\n'
         'WAREHOUSE_HOST = "x"', "WAREHOUSE_HOST is set by the platform"),
        ("ingestion", 'SHOP_DB_PASSWORD = "random"', 'SHOP_DB_PASSWORD = "two words"',
         "no white space or quotes"),
        # Every team's Secret may hold ALERT_WEBHOOK_URL; no declaration may take it.
        ("ingestion", 'SHOP_DB_PASSWORD = "random"', 'SHOP_DB_PASSWORD = "random"\n'
         'ALERT_WEBHOOK_URL = "x"', "ALERT_WEBHOOK_URL is set by the platform"),
        ("exports", 'environment = ["EXPORTS_URL"]',
         'environment = ["EXPORTS_URL", "ALERT_WEBHOOK_URL"]', "a Secret key"),
        ("exports", 'writes = ["bi"]', 'writes = ["bi\\n"]', "writes: ['bi\\n']"),
        ("exports", 'writes = ["bi"]', f'writes = ["{"b" * 64}"]', "writes: ['bbbb"),
    ],
)  # fmt: skip
def test_a_wrong_declaration_is_refused_naming_its_file(tmp_path, location, old, new, message):
    root = copy_declarations(tmp_path)
    edit(root, location, old, new)

    with pytest.raises(locations.DeclarationError) as error:
        locations.load(root)

    assert str(error.value).startswith(f"locations/{location}/pyproject.toml: ")
    assert message in str(error.value)


def test_a_location_without_its_declaration_is_named_with_every_place_that_refers_to_it(
    tmp_path,
):
    files = (
        subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    root = tmp_path / "repo"
    for name in filter(None, files):
        source = REPO / name
        if source.is_file() and not source.is_symlink():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, root / name)
    path = root / "locations" / "exports" / "pyproject.toml"
    text = path.read_text()
    start = text.index("[tool.platform]")
    path.write_text(text[:start] + text[text.index("[tool.dg]") :])

    with pytest.raises(locations.DeclarationError) as error:
        locations.load(root)

    message = str(error.value)
    assert message.startswith("locations/exports/pyproject.toml: has no [tool.platform] table")
    places = {ref.split(":")[0] for ref in locations.references("exports", root)}
    assert {"dg.toml", ".github/CODEOWNERS", "tests/platform/test_warehouse_bootstrap.py"} <= places
    for place in places:
        assert place in message, place


def test_the_command_line_prints_what_scripts_need():
    script = REPO / "infra" / "devkit" / "src" / "platform_devkit" / "locations.py"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["python3", str(script), *args], capture_output=True, text=True,
                              check=False)  # fmt: skip

    assert run("names").stdout.split()[:3] == ["ingestion", "transformation", "exports"]
    assert (
        run("secrets")
        .stdout.splitlines()[0]
        .startswith(
            "ingestion-credentials|INGESTION_WAREHOUSE_USER=ingestion INGESTION_WAREHOUSE_PASSWORD="
        )
    )
    assert run("bootstrap").stdout.startswith("-- Generated")
    assert run("nonsense").returncode == 2


def test_a_location_listed_without_its_folder_is_named_with_the_places_that_refer_to_it(
    tmp_path,
):
    root = copy_declarations(tmp_path)
    shutil.rmtree(root / "locations" / "exports")

    with pytest.raises(locations.DeclarationError, match="does not exist") as error:
        locations.load(root)

    assert "still referred to by dg.toml:" in str(error.value)
