"""The benchmarks, each producing one report section."""

import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from platform_bench import dbt, images, ingestion, servers
from platform_bench.locations import Location, floor
from platform_bench.platform import BenchPlatform
from platform_bench.progress import load, say, step
from platform_bench.report import Section
from platform_bench.stats import Figure, Goal, ratio, throughput
from platform_devkit.shop.generator import SIZES

MB = 1_000_000


@contextmanager
def measuring(section: Section) -> Iterator[Section]:
    """Record the load average around a section."""
    section.load["start"] = [round(v, 2) for v in load()]
    yield section
    section.load["end"] = [round(v, 2) for v in load()]


def rotated(names: list[str], rep: int) -> list[str]:
    """The subjects in the order of repetition `rep`: rotated by one each time, so none always
    runs first (colder caches) or last."""
    k = rep % len(names)
    return names[k:] + names[:k]


def median_phases(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = [k for k in runs[0] if all(k in r for r in runs)]
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in keys}


# -- code-location start ---------------------------------------------------------------------
def code_location_start(
    platform: BenchPlatform, subjects: list[Location], repetitions: int, logs: Path
) -> Section:
    section = Section(
        "start",
        "Code-location start",
        "Time from spawning `dagster api grpc -m <module>` to the first health check answering "
        "SERVING (the check `dagster api grpc-health-check` makes, polled every 50 ms in the "
        "benchmark process), and the server's resident memory (RSS, with any children) at "
        "that moment. The floor is a location with one trivial asset "
        "(infra/bench/floor_location.py). Every repetition starts the floor and each location "
        "once, in rotated order; a location's ratio is its time over the floor's in the same "
        "repetition. Each location runs in an environment with only its own dependencies, "
        "made like its image (`uv sync --frozen --package <location> --no-dev`): Dagster's "
        "defs-folder loader imports every installed plugin library, so the workspace venv "
        "would charge each location for the others' libraries. The floor runs in the "
        "workspace venv (it loads no plugins). One unmeasured start of each comes first and "
        "writes the bytecode the images ship compiled (into a cache folder of the session's "
        "own); file caches are warm, as on a node that has pulled the image. Servers get the "
        "platform's variables; nothing connects at load.",
    )
    env = platform.process_env()
    everyone = [floor(), *subjects]
    with measuring(section):
        say("code-location start: one warm-up start each, confirmed with grpc-health-check")
        for location in everyone:
            servers.cli_health_check(location, env, logs)
        runs: dict[str, list[servers.Start]] = {loc.name: [] for loc in everyone}
        by_name = {loc.name: loc for loc in everyone}
        for rep in range(repetitions):
            for name in rotated(list(by_name), rep):
                start = servers.start_once(by_name[name], env, logs)
                runs[name].append(start)
                say(
                    f"  start {rep + 1}/{repetitions} {name}: {start.seconds:.2f}s, "
                    f"RSS {start.rss_bytes / MB:.0f} MB"
                )
        floor_seconds = [s.seconds for s in runs["floor"]]
        for loc in everyone:
            section.add(Figure(f"{loc.name}: start", "s", tuple(s.seconds for s in runs[loc.name])))
        for loc in subjects:
            figure = section.add(
                ratio(
                    f"{loc.name}: start / floor", [s.seconds for s in runs[loc.name]], floor_seconds
                )
            )
            section.goals.append(
                Goal(f"{loc.name} start vs the floor", figure.name, 1.3, "max", figure.median)
            )
        for loc in everyone:
            section.add(
                Figure(f"{loc.name}: RSS", "MB", tuple(s.rss_bytes / MB for s in runs[loc.name]))
            )
        with step("code-location start: import-time profile of each location (one run)"):
            for loc in everyone:
                section.breakdown[f"{loc.name}, imports by package (s)"] = servers.import_profile(
                    loc, env
                )
    return section


# -- ingestion ---------------------------------------------------------------------------------
def ingestion_at(
    platform: BenchPlatform,
    size: str,
    repetitions: int,
    goals: bool,
    touch: float = 0.01,
    warmup: bool = True,
) -> Section:
    orders = SIZES[size].orders
    label = (
        f"{orders / 1_000_000:g}M" if orders >= 1_000_000
        else f"{orders // 1000}k" if orders >= 1000 else str(orders)
    )  # fmt: skip
    section = Section(
        f"ingestion_{size}",
        f"Ingestion: orders, source to raw, {label} rows (size `{size}`)",
        "Three loads of the same rows (the shop's `orders`, 5 columns) from the shop database "
        "into the warehouse on the same server, as the ingestion role, each into an empty "
        "schema: the **product** (`raw/orders` materialised in process through Dagster with "
        "the ingestion location's definitions: dlt, ConnectorX to Arrow, Parquet files, binary "
        "COPY through ADBC into `raw_staging`, merge into `raw`; dlt's state tables dropped "
        "first, so a full load; its "
        "asset checks left out), the **COPY limit** (`COPY (SELECT ...) TO STDOUT` on the "
        "source piped into `COPY ... FROM STDIN` on the warehouse, binary format, two threads), "
        "and **pandas** (`read_sql` then `to_sql(if_exists='replace', index=False)` with the "
        "defaults method=None and chunksize=None: all rows in one DataFrame, written by "
        "SQLAlchemy 2's executemany, i.e. multi-row INSERTs of 1,000 rows). A fourth, "
        "**COPY through staging** (the limit into a staging table, then `INSERT ... SELECT` "
        "into the target), is the least any load that merges through a staging table can "
        f"cost. After each full product load, {touch:.0%} of the source orders get a new "
        f"`updated_at` (every order id divisible by {round(1 / touch)}) and the product runs "
        "again: the "
        "**incremental** load (the changed rows, the rows of the load's lookback window, and "
        "the content comparison with the source), compared with the full load of the same "
        "repetition; then once more with nothing changed, which is the fixed cost of a run. "
        "Order "
        "of the loads rotates per repetition; a CHECKPOINT precedes each. Row counts are "
        "verified after every run. **Payments**: a payment file with one payment per source "
        "order, all on one day, materialised as `raw/payments` for that day after the "
        "product's runs: into an empty table (**first load**), then again (**re-delivery**: "
        "the day-scoped merge deletes the day's rows and inserts the new ones), each "
        "compared with the shop's full load of the same repetition.",
    )
    with measuring(section):
        platform.seed(size)
        loads = ingestion.Loads(platform)
        rows = loads.source_rows()
        _expect(loads.write_payment_file(), rows, "payment file rows")
        say(f"ingestion at {size}: {rows:,} source orders")
        if warmup:
            with step("  one unmeasured product load (imports, caches)"):
                loads.reset()
                loads.product()
        runs: dict[str, list[ingestion.Run]] = {
            "product": [], "incremental": [], "noop": [], "copy": [], "staged": [], "pandas": [],
            "payments_first": [], "payments_again": [],
        }  # fmt: skip
        touched: list[int] = []

        def product() -> None:
            loads.reset()
            full = loads.product()
            _expect(full.rows, rows, "product full load rows_loaded")
            _expect(loads.rows_in("orders"), rows, "raw.orders after the full load")
            runs["product"].append(full)
            changed = loads.touch(touch)
            touched.append(changed)
            platform.checkpoint()
            reread = loads.lookback_rows()
            again = loads.product()
            _expect(again.rows, reread, "incremental rows_loaded (changed rows and the lookback)")
            _expect(loads.rows_in("orders"), rows, "raw.orders after the incremental load")
            runs["incremental"].append(again)
            platform.checkpoint()
            reread = loads.lookback_rows()
            nothing = loads.product()
            _expect(nothing.rows, reread, "rows_loaded of a re-run with nothing changed")
            runs["noop"].append(nothing)
            for key in ("payments_first", "payments_again"):
                platform.checkpoint()
                day = loads.payments()
                _expect(day.rows, rows, f"{key} good rows")
                _expect(loads.rows_in("payments"), rows, f"raw.payments after {key}")
                runs[key].append(day)

        def copy() -> None:
            loads.reset()
            run = loads.copy_limit()
            _expect(run.rows, rows, "COPY rows")
            runs["copy"].append(run)

        def staged() -> None:
            loads.reset()
            run = loads.staged_copy()
            _expect(loads.rows_in("orders_copy"), rows, "COPY through staging rows")
            runs["staged"].append(run)

        def pandas() -> None:
            loads.reset()
            run = loads.pandas()
            _expect(loads.rows_in(ingestion.PANDAS_TABLE), rows, "pandas rows")
            runs["pandas"].append(run)

        subjects: dict[str, Callable[[], None]] = {
            "product": product, "copy": copy, "staged": staged, "pandas": pandas
        }  # fmt: skip
        for rep in range(repetitions):
            for name in rotated(list(subjects), rep):
                with step(f"  {size} rep {rep + 1}/{repetitions}: {name}"):
                    subjects[name]()
        loads.reset()

        seconds = {name: [r.seconds for r in done] for name, done in runs.items()}
        names = {
            "product": "product (dlt through Dagster)",
            "copy": "COPY limit",
            "staged": "COPY through staging",
            "pandas": "pandas read_sql + to_sql",
        }
        for key, name in names.items():
            section.add(Figure(f"{name}: time", "s", tuple(seconds[key])))
        for key, name in names.items():
            section.add(Figure(f"{name}: throughput", "rows/s", throughput(rows, seconds[key])))
        of_copy = section.add(
            ratio("product throughput / COPY limit", seconds["copy"], seconds["product"])
        )
        section.add(
            ratio(
                "product throughput / COPY through staging", seconds["staged"], seconds["product"]
            )
        )
        over_pandas = section.add(
            ratio("product throughput / pandas", seconds["pandas"], seconds["product"])
        )
        section.add(Figure("incremental: time", "s", tuple(seconds["incremental"]),
                           note=f"{statistics.median(touched):,.0f} changed rows"))  # fmt: skip
        incremental = section.add(
            ratio("incremental / full load", seconds["incremental"], seconds["product"])
        )
        section.add(Figure("re-run with nothing changed: time", "s", tuple(seconds["noop"])))
        section.add(Figure("payments, first load: time", "s", tuple(seconds["payments_first"])))
        section.add(Figure("payments, re-delivery: time", "s", tuple(seconds["payments_again"])))
        section.add(
            ratio("payments first load / shop full load", seconds["payments_first"],
                  seconds["product"])
        )  # fmt: skip
        payment_merge = section.add(
            ratio("payments re-delivery / shop full load", seconds["payments_again"],
                  seconds["product"])
        )  # fmt: skip
        section.breakdown = {
            "product, full load (s, median per step)": median_phases(
                [r.phases for r in runs["product"]]
            ),
            "product, incremental (s, median per step)": median_phases(
                [r.phases for r in runs["incremental"]]
            ),
            "product, nothing changed (s, median per step)": median_phases(
                [r.phases for r in runs["noop"]]
            ),
            "COPY through staging (s, median per step)": median_phases(
                [r.phases for r in runs["staged"]]
            ),
            "pandas (s, median per step)": median_phases([r.phases for r in runs["pandas"]]),
            "payments, re-delivery (s, median per step)": median_phases(
                [r.phases for r in runs["payments_again"]]
            ),
        }
        suffix = f" at {label}"
        if goals:
            section.goals += [
                Goal(f"ingestion{suffix}: share of the COPY limit", of_copy.name, 0.6, "min",
                     of_copy.median),
                Goal(f"ingestion{suffix}: speed-up over pandas", over_pandas.name, 10, "min",
                     over_pandas.median),
            ]  # fmt: skip
        section.goals.append(
            Goal(f"1% re-run vs full load{suffix}", incremental.name, 0.10, "max",
                 incremental.median)
        )  # fmt: skip
        # "The same order of time" as the shop's load of as many rows. Payments cost more by
        # shape: every field is validated and typed, two lookups (known orders, ids of other
        # days) run per load, and the day's rows are deleted before the insert, where the shop's
        # load takes ConnectorX's Arrow as it is. At 1M rows the re-delivery took 16 minutes
        # with dlt's key merge; about 3x the shop's load now.
        section.goals.append(
            Goal(f"payment re-delivery vs shop full load{suffix}", payment_merge.name, 4.0,
                 "max", payment_merge.median)
        )  # fmt: skip
    return section


def _expect(actual: int, expected: int, what: str) -> None:
    if actual != expected:
        raise AssertionError(f"{what}: {actual:,}, expected {expected:,}")


# -- dbt -----------------------------------------------------------------------------------------
def dbt_load(platform: BenchPlatform, location: Location, copy: Path, repetitions: int) -> Section:
    section = Section(
        "dbt_load",
        "Transformation location: load with the prepared manifest vs preparing it first",
        "A fresh interpreter imports `transformation.definitions` and resolves the asset graph, "
        "as a code server does before serving; timed from spawn to exit. **Prepared**: the "
        "defs state (dbt manifest) prepared beforehand is read (production: prepared in the "
        "image build). **Dev flag**: the same load with `DAGSTER_IS_DEV_CLI=1`, as `dg dev` "
        "starts its code servers; the location's DbtProjectComponent has `prepare_if_dev: "
        "false`, so this load must read the state too. **Preparing**: a fresh interpreter "
        "refreshes the defs state in place (`dbt parse`, the step `dg utils "
        "refresh-defs-state` runs in the image build), which is what every start would add "
        "without prepared state; it is followed by a prepared load, and the ratio compares "
        "that pair with the prepared load of the same repetition. Every load checks that it "
        "left the manifest untouched, every preparation that it rewrote it. Modes rotate, "
        "starting with a different one each repetition.",
    )
    env = platform.process_env()
    with measuring(section):
        dbt.prepare_copy(location, env, copy)
        loads: dict[str, list[dbt.Load]] = {"prepared": [], "dev flag": []}
        preparing: list[float] = []
        after_preparing: list[dbt.Load] = []
        dbt.load_once(location, env, copy, dev=False)  # warm-up, unmeasured
        for rep in range(repetitions):
            for mode in rotated(["prepared", "dev flag", "preparing"], rep):
                if mode == "preparing":
                    preparing.append(dbt.prepare_once(location, env, copy))
                    after_preparing.append(dbt.load_once(location, env, copy, dev=False))
                    say(f"  {rep + 1}/{repetitions} preparing: {preparing[-1]:.2f}s, "
                        f"then load {after_preparing[-1].seconds:.2f}s")  # fmt: skip
                    continue
                run = dbt.load_once(location, env, copy, dev=mode == "dev flag")
                loads[mode].append(run)
                say(f"  {rep + 1}/{repetitions} load, {mode}: {run.seconds:.2f}s")
        prepared = [r.seconds for r in loads["prepared"]]
        dev = [r.seconds for r in loads["dev flag"]]
        cold = [p + r.seconds for p, r in zip(preparing, after_preparing, strict=True)]
        section.add(Figure("load with the prepared manifest", "s", tuple(prepared)))
        section.add(Figure("load under the dev flag (DAGSTER_IS_DEV_CLI=1)", "s", tuple(dev)))
        section.add(Figure("preparing the defs state (dbt parse)", "s", tuple(preparing)))
        section.add(ratio("dev-flag load / prepared", dev, prepared))
        section.add(ratio("(preparing + load) / prepared load", cold, prepared))
        section.add(
            Figure(
                "in-process share, prepared (import + definitions, no interpreter start)",
                "s", tuple(r.in_process for r in loads["prepared"]),
            )
        )  # fmt: skip
        counts = {r.assets for r in [*loads["prepared"], *loads["dev flag"], *after_preparing]}
        if len(counts) != 1:
            raise RuntimeError(f"the modes loaded different asset counts: {sorted(counts)}")
        section.notes.append(f"{counts.pop()} materialisable assets in every mode.")
    return section


def dbt_build(platform: BenchPlatform, location: Location, size: str, repetitions: int) -> Section:
    section = Section(
        "dbt_build",
        f"dbt: full build through Dagster (size `{size}`)",
        "Every model of the dbt project materialised through Dagster with the transformation "
        "location's own definitions (one `dbt build`: models, snapshots and tests as asset "
        "checks), in a fresh process, after dropping everything in the dbt schemas (so the "
        "incremental `fct_orders` builds in full). Timed around the run, not the location's "
        "load. The raw tables are loaded once beforehand by the ingestion location.",
    )
    with measuring(section):
        platform.seed(size)
        with step(f"dbt build: loading every raw table at size {size}"):
            platform.drop_tables("ingestion", ingestion.SCHEMAS)
            raw_rows = dbt.ingest_everything(platform)
        runs = []
        for rep in range(repetitions):
            with step(f"  dbt build {rep + 1}/{repetitions}"):
                runs.append(dbt.build_once(location, platform))
        section.add(Figure("full dbt build", "s", tuple(r.seconds for r in runs)))
        section.notes.append(
            f"{runs[0].models} models materialised, {runs[0].checks} dbt tests as asset checks, "
            "all passing; raw rows: " + ", ".join(f"{t} {n:,}" for t, n in raw_rows.items())
        )
    return section


# -- images ------------------------------------------------------------------------------------
def image_figures(
    workdir: Path, locations: list[str], cold_repetitions: int, rebuild_repetitions: int
) -> Section:
    section = Section(
        "images",
        "Images",
        "Built with the images' own script (`infra/docker/build-image.sh <location>`, what "
        "`make image` runs, legacy builder) from a copy of the build context, tagged "
        f"`{images.REGISTRY}/<location>:{images.TAG}`. **Size**: `docker image inspect` "
        "(uncompressed). **Cold build**: `--no-cache`, base image present, every dependency "
        "downloaded again. **Code-only rebuild**: one line added to the location package's "
        "`__init__.py`, then the same build with the layer cache (after one such rebuild "
        "that is reported apart). Images and layers the "
        "benchmark created are removed afterwards.",
    )
    with measuring(section):
        reason = images.docker_available()
        if reason:
            section.skipped = reason
            return section
        context = images.copy_context(workdir / "image-context")
        say(f"images: base image {images.base_image(context)}")
        builds = images.Builds()
        extra: tuple[str, ...] = ()

        def build(location: str, no_cache: bool) -> images.Built:
            nonlocal extra
            try:
                return images.build(context, location, builds, no_cache, extra)
            except images.BuildError as error:
                if not error.no_bridge or extra:
                    raise
                extra = ("--network", "host")
                section.notes.append(
                    "The Docker engine's default bridge was unusable during this session (its "
                    "interface had been removed under the running engine), so RUN steps could "
                    "not get a network; the builds ran with `--network host` "
                    "(DOCKER_BUILD_ARGS), which changes nothing in the images."
                )
                say("  the default bridge is gone: building with --network host")
                return images.build(context, location, builds, no_cache, extra)

        try:
            for location in locations:
                cold: list[images.Built] = []
                sizes: list[float] = []
                for rep in range(cold_repetitions):
                    with step(f"  image {location}: cold build {rep + 1}/{cold_repetitions}"):
                        cold.append(build(location, no_cache=True))
                    sizes.append(images.image_size(location) / MB)
                # Figures as soon as they exist: a later failure keeps them.
                size_fig = section.add(Figure(f"{location}: image size", "MB", tuple(sizes)))
                section.add(Figure(f"{location}: cold build", "s", tuple(b.seconds for b in cold)))
                section.goals.append(
                    Goal(f"{location} image size", size_fig.name, 450, "max", size_fig.median)
                )
                section.breakdown[f"{location}, largest packages (MB)"] = images.largest_packages(
                    location
                )
                section.breakdown[f"{location}, cold build, slowest steps (s)"] = cold[-1].slowest()
                # The first rebuild after a cold build is reported apart: it is much slower
                # than the next ones (its slowest steps say where the time goes).
                images.change_code(context, location, 0)
                with step(f"  image {location}: first code-only rebuild after the cold build"):
                    first = build(location, no_cache=False)
                section.breakdown[f"{location}, first code-only rebuild, slowest steps (s)"] = (
                    first.slowest()
                )
                section.notes.append(
                    f"{location}: the first code-only rebuild after the cold build took "
                    f"{first.seconds:.1f} s (one run, its slowest steps above); the figure is "
                    "the rebuilds after it."
                )
                rebuild: list[images.Built] = []
                for rep in range(rebuild_repetitions):
                    images.change_code(context, location, rep + 1)
                    with step(f"  image {location}: code-only rebuild {rep + 1}"):
                        rebuild.append(build(location, no_cache=False))
                rebuild_fig = section.add(
                    Figure(f"{location}: code-only rebuild", "s", tuple(b.seconds for b in rebuild))
                )
                section.goals.append(
                    Goal(f"{location} code-only rebuild", rebuild_fig.name, 15, "max",
                         rebuild_fig.median)
                )  # fmt: skip
        except images.BuildError as error:
            # The other sections stand; this one says why it has no (or only some) figures.
            section.skipped = f"a build failed: {str(error).splitlines()[-1][:300]}"
            say(f"images: {error}")
        finally:
            with step("images: removing the images and layers the benchmark built"):
                builds.remove()
    return section
