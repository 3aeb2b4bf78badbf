"""`devkit`: the local platform's command line (the Makefile calls it; `devkit --help` lists it)."""

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import psutil

from platform_devkit.defs_state import prepare
from platform_devkit.instance import locations
from platform_devkit.local import LocalPlatform, report, say
from platform_devkit.paths import REPO_ROOT
from platform_devkit.shop.generator import SIZES, Size

# How long Dagster gets to stop its processes after Ctrl-C or SIGTERM before they are killed.
STOP_GRACE_SECONDS = 10


def _bin(name: str) -> str:
    """A console script installed next to this interpreter (the workspace venv)."""
    return str(Path(sys.executable).parent / name)


def _exec(argv: list[str], env: dict[str, str]) -> None:
    os.execvpe(argv[0], argv, {**os.environ, **env})


def cmd_up(args: argparse.Namespace) -> None:
    platform = LocalPlatform()
    platform.up(size=args.size, seed=not args.no_seed)
    say(f"local platform is up; its variables are in {platform.settings.env_file} (git-ignored)")


def cmd_down(_: argparse.Namespace) -> None:
    LocalPlatform().stop_postgres()
    say("embedded PostgreSQL stopped (data kept; `make clean` removes it)")


def cmd_status(_: argparse.Namespace) -> None:
    platform = LocalPlatform()
    if platform.settings.external:
        print(f"PostgreSQL: external, {platform.settings.admin()['PGHOST']}")
    else:
        port = platform.postgres.running_port()
        print(f"PostgreSQL: embedded, {'running on 127.0.0.1:' + str(port) if port else 'stopped'}")
        if not port:
            return
    state = platform.source().state()
    span = "not seeded" if state is None else f"{state['first_day']} .. {state['last_day']}"
    print(f"demo shop: {span}")


def cmd_seed(args: argparse.Namespace) -> None:
    platform = LocalPlatform()
    platform.up(seed=False)
    source = platform.source()
    size = SIZES[args.size] if args.orders is None else Size(
        customers=max(10, args.orders // 10), products=max(10, args.orders // 500),
        orders=args.orders, days=args.days or SIZES[args.size].days,
    )  # fmt: skip
    say(f"seeding the demo shop: {size}")
    report(source.seed(size, seed=args.seed, last_day=args.last_day, size_name=args.size))


def cmd_advance(args: argparse.Namespace) -> None:
    platform = LocalPlatform()
    platform.start_postgres()
    source = platform.source()
    for _ in range(args.days):
        delivery = source.advance()
        day = max(f.day for f in delivery.files) if delivery.files else "?"
        say(f"advanced the demo shop to {day}")
        report(delivery)


def cmd_exec(args: argparse.Namespace) -> None:
    if not args.command:
        raise SystemExit("devkit exec: give a command after --, e.g. devkit exec -- dg list defs")
    platform = LocalPlatform()
    platform.start_postgres()
    command = args.command[1:] if args.command[0] == "--" else args.command
    _exec(command, platform.env())


def supervise(argv: list[str], env: dict[str, str], cwd: Path) -> int:
    """Run `argv` and everything it starts as one process group, and stop the whole group on
    Ctrl-C, SIGTERM or SIGHUP: Ctrl-C (SIGINT) to every process, as a terminal sends it, then
    after STOP_GRACE_SECONDS SIGKILL to whatever is left. `dagster dev` alone stops its
    webserver and daemon on Ctrl-C only; killed by SIGTERM (make does that) it left them and
    the code servers running. Returns the exit status (128 + signal when stopped)."""
    child = subprocess.Popen(argv, env={**os.environ, **env}, cwd=cwd, start_new_session=True)
    received: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        received.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    while child.poll() is None and not received:
        time.sleep(0.2)
    if not received:
        return child.returncode
    say("stopping Dagster (webserver, daemon, code servers, runs)")
    # Those that left the group (a process may start a session of its own) are found by parent.
    leader = psutil.Process(child.pid)
    tree = [leader, *leader.children(recursive=True)]
    _signal_group(child.pid, signal.SIGINT)
    _, alive = psutil.wait_procs(tree, timeout=STOP_GRACE_SECONDS)
    if alive:
        say(f"{len(alive)} process(es) still running after {STOP_GRACE_SECONDS}s: killed")
        _signal_group(child.pid, signal.SIGKILL)
        for process in alive:
            process.kill()
    child.wait()
    return 128 + received[0]


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # every process of the group has exited
        os.killpg(pgid, signum)


# Where the alerts' run links point (platform_ops.alerts).
WEBSERVER_VARIABLE = "DAGSTER_WEBSERVER_URL"
# Bind addresses a browser cannot open: the UI behind them is reached on the loopback.
_WILDCARD_HOSTS = ("", "0.0.0.0", "::")  # noqa: S104 - recognised, not bound


def webserver_url(host: str, port: int) -> str:
    """The address a browser opens for the UI `dg dev` serves on host:port."""
    reachable = "127.0.0.1" if host in _WILDCARD_HOSTS else host
    if ":" in reachable:  # an IPv6 address
        reachable = f"[{reachable}]"
    return f"http://{reachable}:{port}"


def dev_environment(
    platform_env: dict[str, str], host: str, port: int, environ: dict[str, str]
) -> dict[str, str]:
    """What `dg dev` and the code servers it starts get on top of the shell's variables: the
    platform's, and DAGSTER_WEBSERVER_URL so that alerts link to this UI; one the shell sets
    (a proxy in front of the UI) is kept."""
    url = environ.get(WEBSERVER_VARIABLE, "").strip() or webserver_url(host, port)
    return {**platform_env, WEBSERVER_VARIABLE: url}


def cmd_dev(args: argparse.Namespace) -> None:
    platform = LocalPlatform()
    env = dev_environment(platform.up(size=args.size), args.host, args.port, dict(os.environ))
    say(
        f"starting Dagster (dg dev: webserver, daemon, a code server per location) on "
        f"http://{args.host}:{args.port}; Ctrl-C stops it, PostgreSQL keeps running (make down)"
    )
    # dg dev reads the workspace from dg.toml, the one list of locations.
    status = supervise(
        [_bin("dg"), "dev", "-h", args.host, "-p", str(args.port)], env, cwd=REPO_ROOT
    )
    raise SystemExit(status)


def cmd_prepare(args: argparse.Namespace) -> None:
    """Prepare the defs state of every location (or the named ones) beside running servers."""
    chosen = [loc for loc in locations() if not args.location or loc["name"] in args.location]
    unknown = set(args.location) - {loc["name"] for loc in chosen}
    if unknown:
        raise SystemExit(f"devkit prepare: no location named {', '.join(sorted(unknown))}")
    for location in chosen:
        if not prepare(Path(location["path"]), say, force=args.force):
            say(f"{location['name']}: defs state is up to date (or it has none)")
    say("reload the location in the UI (or restart make dev) to use the new state")


def cmd_psql(args: argparse.Namespace) -> None:
    from platform_devkit.bootstrap import psql_path

    platform = LocalPlatform()
    platform.start_postgres()
    _exec([psql_path(), "-d", args.database], platform.settings.admin())


def cmd_run(args: argparse.Namespace) -> None:
    from platform_devkit.runner import run_everything

    platform = LocalPlatform()
    env = platform.up(size=args.size)
    if run_everything(env) != 0:
        raise SystemExit(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="devkit", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="command")

    def command(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    sizes = sorted(SIZES)
    p = command("up", cmd_up, "start PostgreSQL, bootstrap, seed the demo shop, write the instance")
    p.add_argument("--size", choices=sizes, default="small")
    p.add_argument("--no-seed", action="store_true", help="do not create the demo source")
    command("down", cmd_down, "stop the embedded PostgreSQL (keeps its data)")
    command("status", cmd_status, "show whether PostgreSQL runs and what the demo shop holds")
    p = command("seed", cmd_seed, "seed the demo shop (once; then use advance)")
    p.add_argument("--size", choices=sizes, default="small")
    p.add_argument("--orders", type=int, help="override the number of orders")
    p.add_argument("--days", type=int, help="override the number of days of history")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--last-day", type=date.fromisoformat, help="YYYY-MM-DD (default: yesterday)")
    p = command("advance", cmd_advance, "simulate the next day(s): new/updated rows, payment files")
    p.add_argument("--days", type=int, default=1)
    p = command("exec", cmd_exec, "run a command with the platform's variables set")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p = command("dev", cmd_dev, "bring the platform up and start `dg dev` with every location")
    p.add_argument("--size", choices=sizes, default="small")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p = command(
        "prepare", cmd_prepare, "prepare the dbt manifest (defs state) beside running servers"
    )
    p.add_argument("location", nargs="*", help="location names (default: every location)")
    p.add_argument("--force", action="store_true", help="prepare even when up to date")
    p = command("psql", cmd_psql, "open psql on the platform's server as the admin role")
    p.add_argument("database", nargs="?", default="warehouse")
    p = command("run", cmd_run, "headless: materialise every asset of every location in order")
    p.add_argument("--size", choices=sizes, default="small")

    args = parser.parse_args(argv)
    # SIGTERM stops every command as Ctrl-C does (a child such as dbt parse is stopped with it).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        args.handler(args)
    except RuntimeError as error:
        raise SystemExit(f"devkit: {error}") from error
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM (Dagster maps both to the same interrupt while it runs anything).
        say("interrupted")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
