"""`devkit`: the local platform's command line (the Makefile calls it; `devkit --help` lists it)."""

import argparse
import os
import sys
from datetime import date
from pathlib import Path

from platform_devkit.local import LocalPlatform, report, say
from platform_devkit.shop.generator import SIZES, Size


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


def cmd_dev(args: argparse.Namespace) -> None:
    platform = LocalPlatform()
    env = platform.up(size=args.size)
    workspace = platform.state / "workspace.yaml"
    say(f"starting Dagster (webserver + daemon) on http://{args.host}:{args.port}")
    _exec(
        [_bin("dagster"), "dev", "-w", str(workspace), "-h", args.host, "-p", str(args.port)],
        env,
    )


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
    p = command("dev", cmd_dev, "bring the platform up and start `dagster dev` with every location")
    p.add_argument("--size", choices=sizes, default="small")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p = command("psql", cmd_psql, "open psql on the platform's server as the admin role")
    p.add_argument("database", nargs="?", default="warehouse")
    p = command("run", cmd_run, "headless: materialise every asset of every location in order")
    p.add_argument("--size", choices=sizes, default="small")

    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except RuntimeError as error:
        raise SystemExit(f"devkit: {error}") from error
    except KeyboardInterrupt:
        # Ctrl-C, or SIGTERM: Dagster maps it to the same interrupt while it runs anything.
        say("interrupted")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
