"""The `vrm` command: the seed's deployment scripts as subcommands, plus the TUI.

Exit codes: 0 success, 1 failure, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from vrm_tui import console as console_mod
from vrm_tui.console import ENV_TEMPLATE, ApplyResult, Console, Settings
from vrm_tui.core import address, services
from vrm_tui.core.clock import hhmmss
from vrm_tui.core.errors import (
    Failure,
    SplitError,
    StackError,
    UsageError,
    VrmError,
    environment_fault,
    shown,
)
from vrm_tui.core.split import parse_weight

if TYPE_CHECKING:  # `vrm rollback` must start fast: these load where they are used
    from vrm_tui.console import MigrationView
    from vrm_tui.views import (  # types only: Console.fleet()
        FleetService,
        HostRollback,
        RollbackOutcome,
        StackStatus,
    )

__all__ = ["ENV_TEMPLATE", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (exit 2) through `main`, like every other
    bad value, instead of printing its usage block."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _count(text: str) -> int:
    """A whole number >= 0 in ASCII digits (`int()` takes `٥٠` and `1_000`)."""
    if not re.fullmatch(r"[0-9]{1,18}", text.strip()):  # int() fails past 4300 digits
        raise argparse.ArgumentTypeError(f"{shown(text)}: expected a whole number, 0 or more")
    return int(text)


def _positive(text: str) -> float:
    """A finite number above 0 in ASCII digits (`float()` takes `inf`, `nan` and `1_0`)."""
    if not re.fullmatch(r"([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", text.strip()):
        raise argparse.ArgumentTypeError(f"{shown(text)}: expected a number above 0")
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{shown(text)}: expected a finite number above 0")
    return value


def _folder(text: str) -> Path:
    """A folder named on the command line; an empty one is a mistake (`--state-dir "$X"`
    with X unset), not the current directory."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected a folder, got nothing")
    return Path(text)


# Commands that change what runs or what is served; `--read-only` refuses them.
WRITING = {"setup", "up", "down", "deploy", "rollback", "reload", "migrate", "benchmark"}
# `migrate ACTION` that only reads.
READING_MIGRATE = {"status"}


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--deploy-dir", type=_folder, default=argparse.SUPPRESS,
                        help="directory holding .env (default: current directory)")
    common.add_argument("--state-dir", type=_folder, default=argparse.SUPPRESS,
                        help="runtime files: configs, pids, logs, journal (VRM_STATE_DIR)")
    common.add_argument("--rust-weight", default=argparse.SUPPRESS, metavar="N",
                        help="percent of traffic to rust, 0-100 (RUST_BACKEND_WEIGHT)")
    common.add_argument("--read-only", action="store_true", default=argparse.SUPPRESS,
                        help="observer mode: the TUI hides write actions, and commands that "
                             "change the stack or the split are refused")

    parser = _Parser(
        prog="vrm", parents=[common],
        description="Vision Resource Manager migration console. Without a command: the TUI.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    setup = sub.add_parser("setup", parents=[common], help="write .env, check requirements")
    setup.add_argument("--skip-build", action="store_true", help="accepted for the seed's syntax")
    sub.add_parser("up", parents=[common], help="start the stack")
    sub.add_parser("down", parents=[common], help="stop what vrm started")
    deploy = sub.add_parser("deploy", parents=[common], help="start if needed and apply the split")
    deploy.add_argument("--yes", action="store_true",
                        help="stop a running migration without asking")
    sub.add_parser("rollback", parents=[common], help="all traffic to typescript, now")
    sub.add_parser("reload", parents=[common], help="re-render nginx config, test, reload")
    status = sub.add_parser("status", parents=[common], help="what is served and healthy")
    status.add_argument("--json", action="store_true")
    logs = sub.add_parser("logs", parents=[common], help="print (or follow) service logs")
    logs.add_argument("service", nargs="?", choices=services.ALL, metavar="SERVICE",
                      help=" | ".join(services.ALL))
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("-n", "--lines", type=_count, default=100)
    journal = sub.add_parser("journal", parents=[common], help="who did what")
    journal.add_argument("-n", "--lines", type=_count, default=20)
    journal.add_argument("--json", action="store_true")
    migrate = sub.add_parser("migrate", parents=[common],
                             help="gated gradual migration (10 -> 50 -> 100 by default)")
    migrate.add_argument("action", nargs="?", default="start",
                         choices=["start", "status", "resume", "pause", "promote", "abort"])
    migrate.add_argument("--steps", help="rust weights, e.g. 10,50,100")
    migrate.add_argument("--bake", help="how long each step must pass its gates: 300, 30s, 5m")
    migrate.add_argument("--gate-interval", help="time between full gate checks: 10, 10s")
    migrate.add_argument("--plan", type=Path, help="plan file (default configs/migration.yaml)")
    migrate.add_argument("--yes", action="store_true", help="start without asking")
    migrate.add_argument("--detach", action="store_true",
                         help="start: return once the guard runs it (default: follow it)")
    migrate.add_argument("--wait", action="store_true",
                         help="status: follow until it ends; exit 0 done, 1 rolled back/aborted")
    migrate.add_argument("--json", action="store_true", help="status: JSON for scripts")
    migrate.add_argument("--restart-step", action="store_true",
                         help="resume: start the current step's bake and evidence afresh")
    bench = sub.add_parser("benchmark", parents=[common], help="load tests and reports")
    bench.add_argument("mode", nargs="?", default="benchmark",
                       choices=["benchmark", "stress", "compare", "all", "monitor"])
    bench.add_argument("--requests", type=_count, help="per target (default 500)")
    bench.add_argument("--concurrency", type=_count,
                       help="requests in flight (default 10); stress: the most it tries "
                            "(default 256)")
    bench.add_argument("--duration", type=_positive, help="seconds per target instead of a count")
    bench.add_argument("--rate", type=_positive,
                       help="open loop: requests per second, latency from the intended send "
                            "(not for stress). Through the proxy the default is 80%% of "
                            "PROXY_RATE_LIMIT, so its own limit does not answer for the "
                            "backends")
    bench.add_argument("--requests-file", type=Path, metavar="FILE",
                       help="send this request corpus (YAML, like configs/requests/*.yaml) "
                            "instead of VRM_REQUESTS' set, like hey -D / oha -D")
    capture = sub.add_parser(
        "capture", parents=[common], help="record live requests as a corpus to replay",
        description="Write the last N requests the proxy passed to a backend (from its access "
                    "log) as a request corpus for `vrm benchmark --requests-file` or "
                    "VRM_REQUESTS. Limitation: the access log holds no headers or bodies, so "
                    "only requests without a body (GET, HEAD, DELETE, OPTIONS) are replayable; "
                    "POST/PUT/PATCH requests are listed, counted, as commented-out entries to "
                    "complete with body: or body_file:.")
    capture.add_argument("--sample", type=_count, default=200, metavar="N",
                         help="how many of the latest proxied requests (default 200)")
    capture.add_argument("--redact-param", action="append", default=[], metavar="NAME",
                         help="replace this query parameter's value with REDACTED (repeatable)")
    capture.add_argument("-o", "--output", type=Path, metavar="FILE",
                         help="write here (default: standard output)")
    validate = sub.add_parser("validate", parents=[common], help="production checks")
    validate.add_argument("--host", help="H:P of the proxy (default 127.0.0.1:PROXY_PORT)")
    validate.add_argument("--json", action="store_true")
    validate.add_argument("--speedup", type=_positive, default=2.0,
                          help="rust must be this many times faster at p50 (default 2)")
    validate.add_argument("--check-timeout", type=_positive, default=20.0, metavar="SECONDS",
                          help="each check's deadline: a check with no answer by then is a "
                               "FAIL row (default 20)")
    parity = sub.add_parser("parity", parents=[common],
                            help="mirror live requests and compare rust with typescript")
    parity.add_argument("action", choices=["on", "off", "status", "report"])
    parity.add_argument("--sample", metavar="N",
                        help="on: percent of balanced requests mirrored (default: PARITY_SAMPLE "
                             "or the last one, else 5)")
    parity.add_argument("--json", action="store_true", help="status, report: JSON for scripts")
    parity.add_argument("--examples", type=_count, default=3, metavar="N",
                        help="report: the newest N mismatch examples (default 3)")
    sub.add_parser("demo", parents=[common], help="local stack, rehearsal backends, TUI "
                                                   "(--read-only: the TUI in observer mode)")
    _add_fleet(sub, common)
    _add_silence(sub, common)
    return parser


def _check_args(args: argparse.Namespace) -> None:
    """The flag checks argparse cannot express; each bad value is one line, exit 2."""
    command = args.command or "tui"
    if getattr(args, "read_only", False) and command in WRITING and not (
            command == "migrate" and args.action in READING_MIGRATE):
        shown = f"migrate {args.action}" if command == "migrate" else command
        raise UsageError(f"--read-only: `vrm {shown}` changes the stack or the split; "
                         "run it without --read-only")
    deploy_dir = getattr(args, "deploy_dir", None)
    if deploy_dir is not None:
        args.deploy_dir = console_mod.deploy_dir_path("--deploy-dir", deploy_dir)
    if getattr(args, "host", None) is not None:
        args.host = str(address.parse_hostport("--host", args.host))


def _load_settings(args: argparse.Namespace) -> Settings:
    flags: dict[str, str | None] = {}
    if hasattr(args, "rust_weight"):
        try:
            weight = parse_weight(args.rust_weight, "--rust-weight")
        except SplitError as exc:
            raise UsageError(str(exc)) from None
        flags["RUST_BACKEND_WEIGHT"] = str(weight)
    if hasattr(args, "state_dir"):
        # Checked here too, so that an error names the flag rather than the variable.
        state_dir = console_mod.state_dir_path("--state-dir", Path.cwd() / args.state_dir)
        flags["VRM_STATE_DIR"] = str(state_dir)
    return console_mod.load_settings(flags, deploy_dir=getattr(args, "deploy_dir", None))


def main(argv: Sequence[str] | None = None) -> int:
    command = "tui"
    state_dir: Path | None = None  # where a write that names no file most likely failed
    try:
        try:
            args = _parser().parse_args(argv)
            command = args.command or "tui"
            _check_args(args)
            settings = _load_settings(args)
            state_dir = settings.state_dir
            code = COMMANDS[command](settings, args)
        except VrmError as exc:
            prefix = "vrm" if exc.exit_code == 2 else f"vrm {command}"
            print(f"{prefix}: {exc}", file=sys.stderr)
            code = exc.exit_code
        except OSError as exc:
            # The backstop for a full disk, a read-only mount or permissions wherever a command
            # writes (sites that must clean up a partial action handle it themselves): one
            # line, exit 1. Any other OSError is a bug and keeps its traceback.
            fault = environment_fault(exc, state_dir)
            if fault is None:
                raise
            print(f"vrm {command}: {fault}", file=sys.stderr)
            code = fault.exit_code
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader went away (`vrm status | head`): stop quietly, as a tool killed by
        # SIGPIPE would. stdout goes to /dev/null so the interpreter's final flush is silent.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141
    except KeyboardInterrupt:
        return 130


def _say_applied(result: ApplyResult) -> None:
    before = f" (was {result.before.rust}%)" if result.before else ""
    print(f"{result.action}: now serving {result.after}{before}; generation "
          f"{result.generation} verified in {result.duration_ms:.0f} ms")
    if result.note:
        print(f"  {result.note}")
    if result.journal_error:  # the change is live (exit 0); the audit trail is not
        print(f"vrm: warning: {result.journal_error}", file=sys.stderr)


def cmd_setup(settings: Settings, args: argparse.Namespace) -> int:
    found = Console(settings).setup()
    print("\n".join(found.notes))
    if args.skip_build:
        print("--skip-build: nothing to build for the local runtime")
    for need in found.requirements:
        mark = "ok  " if need.found else ("MISSING" if need.required else "absent")
        print(f"  {mark:8} {need.name}" + ("" if need.found else f": {need.hint}"))
    return 1 if found.missing_required else 0


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    console = Console(settings)
    started = console.up()
    print("started " + ", ".join(started) if started else "already running")
    _print_status(console.status())
    return 0


def cmd_down(settings: Settings, args: argparse.Namespace) -> int:
    stopped = Console(settings).down()
    print("stopped " + ", ".join(stopped) if stopped else "nothing vrm started is running")
    return 0


def cmd_deploy(settings: Settings, args: argparse.Namespace) -> int:
    console = Console(settings)
    question = console.split_change_question(settings.split)
    if question is not None and not args.yes and not _confirm(
            f"{question.text} {question.detail}", "vrm deploy --yes"):
        print("not deployed")
        return 1
    started, result = console.deploy()
    if started:
        print("started " + ", ".join(started))
    _say_applied(result)
    return 0


def cmd_rollback(settings: Settings, args: argparse.Namespace) -> int:
    _say_applied(Console(settings).rollback())
    return 0


def cmd_reload(settings: Settings, args: argparse.Namespace) -> int:
    _say_applied(Console(settings).reload())
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    """The stack, and a migration nobody guards (exit 1: rust's share goes unchecked)."""
    console = Console(settings)
    status = console.status()
    try:
        view, unreadable = console.migration(), ""
    except ValueError as exc:  # migration.json unreadable: said, never a traceback
        view, unreadable = None, str(exc)
    unguarded = bool(unreadable) or (view is not None and view.label == "UNGUARDED")
    if args.json:
        data = status.as_dict()
        data["migration"] = {"label": "unreadable", "reason": unreadable} if unreadable \
            else None if view is None else {
            "id": view.state.id, "phase": view.state.phase, "label": view.label,
            "guarded": view.guarded, "step": view.state.step + 1, "rust": view.state.target,
            "reason": view.unguarded_reason or view.state.reason}
        print(json.dumps(data, indent=2))
    else:
        _print_status(status)
        if unreadable:
            print(f"migration  {unreadable}")
        elif view is not None and view.state.active:
            print(f"migration {view.state.id}  {view.label}  step {view.state.step + 1} "
                  f"(rust {view.state.target}%)"
                  + (f": {view.unguarded_reason}" if unguarded else ""))
    return 0 if status.healthy and not unguarded else 1


def _print_status(status: StackStatus) -> None:
    from vrm_tui.views import HEALTH_SYMBOL

    print(f"runtime {status.runtime}, state {status.state_dir}")
    if status.compose_override:
        print(f"compose override: {status.compose_override}")
    if status.served:
        print(f"serving  {status.served.split}  (nginx generation {status.served.generation})")
        if status.served.in_flight is not None:  # nginx's own count per backend, now
            flight = status.served.in_flight
            print(f"waiting  rust {flight.rust}, typescript {flight.typescript} request(s) in "
                  "flight at nginx")
        if status.served.canary_ms:
            print(f"canary   a rust attempt may take {status.served.canary_ms / 1000:g} s before "
                  "nginx gives up on it (retried on typescript when safe to repeat)")
        if status.served.refused:
            print(f"REFUSED  {status.served.refused} split change(s) nginx refused since it "
                  f"started; last: {status.refused_last}")
    else:
        print(f"serving  unknown: {status.served_error}")
    if status.pending and status.configured:
        print(f"PENDING  on disk: {status.configured}, not served: a change was interrupted; "
              "run `vrm deploy` or `vrm rollback` to settle it")
    print(f"{'SERVICE':28}{'STATE':10}{'HEALTH':14}{'PID':>8}  DETAIL")
    for svc in status.services:
        found = svc.health  # the TUI's Health pane reads the same classification
        health = f"{HEALTH_SYMBOL[found.word]} {found.word}"
        detail = found.reason or svc.state.url or svc.state.detail or ""
        pid = str(svc.state.pid) if svc.state.pid else ""
        print(f"{svc.state.name:28}{svc.state.state:10}{health:14}{pid:>8}  {detail}")


def cmd_logs(settings: Settings, args: argparse.Namespace) -> int:
    console = Console(settings)
    if args.lines < 0:
        raise UsageError(f"--lines={args.lines}: expected 0 or more")
    names = [args.service] if args.service else console.service_names()
    if args.follow and len(names) > 1:
        raise UsageError("-f follows one service: vrm logs SERVICE -f "
                         f"(one of {', '.join(names)})")
    for name in names:
        if len(names) > 1:
            print(f"==> {name} <==")
        try:
            for line in console.log_lines(name, tail=args.lines, follow=args.follow):
                print(line, flush=args.follow)
        except StackError as exc:
            if len(names) == 1:
                raise
            print(f"({exc})")
    return 0


def cmd_journal(settings: Settings, args: argparse.Namespace) -> int:
    if args.lines < 0:
        raise UsageError(f"--lines={args.lines}: expected 0 or more")
    for record in Console(settings).journal_records(limit=args.lines or None):
        if args.json:
            print(record.to_json())
            continue
        change = ""
        if record.from_ or record.to:
            was = record.from_["rust"] if record.from_ else "?"
            now = record.to["rust"] if record.to else "?"
            change = f" rust {was}->{now}"
        took = f" {record.duration_ms:.0f}ms" if record.duration_ms is not None else ""
        print(f"{record.time} {record.operator}@{record.host} {record.action}{change} "
              f"{record.result}{took} {record.detail}")
    return 0


def cmd_benchmark(settings: Settings, args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from vrm_tui.views import BenchResult, install_uvloop

    for name, value in (("--requests", args.requests), ("--concurrency", args.concurrency),
                        ("--duration", args.duration), ("--rate", args.rate)):
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise UsageError(f"{name}={value}: expected a finite number above 0")
    if args.concurrency is not None and args.concurrency > 1000:
        raise UsageError(f"--concurrency={args.concurrency}: at most 1000")
    console = Console(settings)
    options = console.bench_options(args.requests, args.concurrency, args.duration, args.rate,
                                    args.requests_file)
    install_uvloop()
    with Progress(TextColumn("{task.description:<28}"), BarColumn(),
                  TextColumn("{task.fields[line]}"), TimeElapsedColumn(),
                  transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("starting", total=1.0, line="")

        def show(phase: str, result: BenchResult, fraction: float) -> None:
            p50 = result.latency.percentile_ms(50)
            line = f"{result.requests} req {result.rps:7.1f} req/s p50 " + (
                f"{p50:.1f}ms" if p50 is not None else "-") + \
                f" errors {result.errors_besides_429}" + (
                f" 429 (proxy's limit) {result.rate_limited}" if result.rate_limited else "")
            bar.update(task, description=phase, completed=fraction, line=line)

        run = console.run_benchmark(args.mode, options, show)
    for found in run.reports:
        print(f"== {found.mode} ==")
        print(found.table())
        if found.results and sys.stdout.isatty():
            print(found.plot())
    print(f"reports in {run.folder}")
    return 1 if run.failed else 0


def cmd_capture(settings: Settings, args: argparse.Namespace) -> int:
    from vrm_tui.core import corpus

    if args.sample < 1:
        raise UsageError(f"--sample={args.sample}: expected 1 or more")
    output: Path | None = args.output
    if output is not None and (output.is_dir() or not output.parent.is_dir()):
        where = "is a folder; name a file" if output.is_dir() else \
            f"{output.parent} is not a folder"
        raise UsageError(f"-o {shown(str(output))}: {where}")
    found = Console(settings).capture(args.sample, tuple(args.redact_param))
    if found.corpus is None:
        raise Failure(f"no replayable request among the last {found.seen} proxied requests "
                         f"in {found.log}" + (f" ({sum(found.needs_body.values())} carry a "
                                              "body, which the access log does not hold)"
                                              if found.needs_body else ""))
    text = corpus.dump(found.corpus, found.header()) + found.trailer()
    if output is None:
        print(text, end="")
        return 0
    Console(settings).write_file(output, text, mode=0o644)  # no half corpus on a full disk
    print(f"wrote {found.corpus.describe()} from {found.seen} requests to {output}"
          + (f"; {len(found.needs_body)} request kind(s) with a body left commented out"
             if found.needs_body else ""), file=sys.stderr)
    return 0


def cmd_validate(settings: Settings, args: argparse.Namespace) -> int:
    from vrm_tui.views import validation_dicts, validation_table

    host = args.host if args.host is not None else f"127.0.0.1:{settings.proxy_port}"
    checks = Console(settings).validate(host, args.speedup, args.check_timeout)
    if args.json:
        print(json.dumps(validation_dicts(checks), indent=2))
    else:
        print(validation_table(checks))
    failed = [c for c in checks if c.result == "FAIL"]
    skipped = sum(c.result == "SKIP" for c in checks)
    if not args.json:
        print(f"\n{len(checks) - len(failed) - skipped} of {len(checks)} checks without FAIL"
              + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed else 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    """Start, follow and steer a migration; a detached guard runs it, whatever happens to
    this terminal."""
    console = Console(settings)
    if args.action == "status":
        view = console.migration()
        if view is None:
            print("{}" if args.json else "no migration yet")
            return 0
        if args.wait:
            view = console.wait_migration(on_change=_print_change)
        if args.json:
            data = {k: v for k, v in asdict(view.state).items() if k != "evidence"}
            print(json.dumps({**data, "label": view.label, "guarded": view.guarded}, indent=2))
        else:
            from vrm_tui.views import migration_lines

            print("\n".join(migration_lines(view.state, view.guarded)))
        return _outcome(view) if args.wait else 0
    if args.action in ("pause", "promote", "abort"):
        steered = console.steer(args.action)
        print(steered.text)
        return 0 if steered.applied else 1
    if args.action == "resume":
        state = console.resume_migration(restart_step=args.restart_step)
        print(f"migration {state.id} runs under guard pid {state.owner_pid}")
    else:
        plan = console.load_plan(args.plan, args.steps, args.bake, args.gate_interval)
        if not args.yes and not _confirm(f"Migrate rust {' -> '.join(map(str, plan.steps))}"
                                         f"% with {plan.bake_seconds:g}s bakes?"):
            print("not started")
            return 1
        state = console.start_migration(plan)
        print(f"migration {state.id}: steps {list(plan.steps)}, bake {plan.bake_seconds:g}s, "
              f"guard pid {state.owner_pid} (it keeps going if this terminal goes away; "
              "`vrm migrate status` follows it, `vrm rollback` stops it)")
    if args.detach:
        return 0
    try:
        view = console.wait_migration(on_change=_print_change)
    except KeyboardInterrupt:
        print("\nstopped following; the guard keeps going (`vrm migrate status --wait`)")
        return 130
    print(f"migration {view.state.id} {view.label}: {view.state.reason}")
    return _outcome(view)


def cmd_parity(settings: Settings, args: argparse.Namespace) -> int:
    """on | off | status | report: the comparator's counts by endpoint and JSON path."""
    from vrm_tui.views import parity_lines

    if args.sample is not None and args.action != "on":
        raise UsageError("--sample goes with `vrm parity on`")
    if args.examples < 0:
        raise UsageError(f"--examples={args.examples}: expected 0 or more")
    console = Console(settings)
    if args.action == "on":
        sample = console_mod.parse_sample("--sample", args.sample) \
            if args.sample is not None else None
        report = console.parity_on(sample)
    elif args.action == "off":
        report = console.parity_off()
    else:
        report = console.parity_report(args.examples if args.action == "report" else 0)
    if args.json and args.action in ("status", "report"):
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print("\n".join(parity_lines(report)))
    return 0


def _outcome(view: MigrationView) -> int:
    return 0 if view.state.phase == "done" else 1


def _print_change(view: MigrationView) -> None:
    state = view.state
    line = f"{hhmmss(time.time())} step {state.step + 1} rust {state.target}% {view.label}"
    gates = (state.verdict or {}).get("gates", [])
    if gates:
        line += "  " + "  ".join(f"{g['name']}: {g['value']} [{g['status']}]" for g in gates)
    elif state.reason:
        line += f"  {state.reason}"
    print(line, flush=True)


def _confirm(question: str, unattended: str = "vrm migrate --yes") -> bool:
    if not sys.stdin.isatty():
        raise UsageError(f"{question} (no terminal to ask: run `{unattended}`)")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def cmd_tui(settings: Settings, args: argparse.Namespace) -> int:
    if not sys.stdout.isatty():
        raise UsageError("the TUI needs a terminal; for scripts use `vrm status --json`")
    from vrm_tui.tui.app import VrmApp

    app = VrmApp(Console(settings), read_only=getattr(args, "read_only", False),
                 keymap=dict(settings.keymap))
    app.run()
    return app.exited_cleanly()  # 129 when the terminal hung up


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    """The local stack with rehearsal backends and light synthetic traffic, in the TUI.

    On quit, stops what the demo started (a stack that was already running stays up)."""
    console = Console(settings)
    started = console.up()
    traffic = console.demo_traffic()
    try:
        if sys.stdout.isatty():
            from vrm_tui.tui.app import VrmApp

            app = VrmApp(console, read_only=getattr(args, "read_only", False),
                         quit_stops_stack=True, keymap=dict(settings.keymap))
            app.run()
            code = app.exited_cleanly()  # 129 when the terminal hung up
        else:
            _print_status(console.status())
            print("(no terminal: the TUI needs one; the stack stays up, `vrm down` stops it)")
            return 0
    finally:
        traffic.stop()
    stopped = console.down(started)
    if stopped:
        print("stopped " + ", ".join(stopped))
    return code


# --- fleet: `vrm fleet ...` and `vrm agent` (one facade: Console.fleet()) --------------------

FLEET_WRITING = {"deploy", "rollback", "rejoin", "migrate"}


def _add_fleet(sub: argparse._SubParsersAction[_Parser],
               common: _Parser) -> None:
    fleet = sub.add_parser("fleet", parents=[common],
                           help="one split for many hosts, steered through etcd (VRM_FLEET)")
    fleet.add_argument("action",
                       choices=["status", "hosts", "targets", "deploy", "rollback", "rejoin",
                                "migrate"])
    fleet.add_argument("what", nargs="?", choices=["start", "status", "resume", "abort"],
                       help="migrate: start (--steps, --waves, --bake), status, resume, abort")
    fleet.add_argument("--steps", default="10,50,100", metavar="W,W,...",
                       help="migrate start: rust weights (default 10,50,100)")
    fleet.add_argument("--waves", default="1,all", metavar="N,...,all",
                       help="migrate start: hosts per wave, a canary first (default 1,all)")
    fleet.add_argument("--bake", type=_positive, default=60.0, metavar="SECONDS",
                       help="migrate start: how long each wave bakes (default 60)")
    fleet.add_argument("--max-error-rate", type=_positive, default=5.0, metavar="PERCENT",
                       help="migrate start: the error-rate gate's ceiling (default 5)")
    fleet.add_argument("--min-samples", type=int, default=50, metavar="N",
                       help="migrate start: rust attempts a wave needs to pass (default 50)")
    fleet.add_argument("--timeout", type=_positive, default=None, metavar="SECONDS",
                       help="rollback: how long to wait for every live host "
                            "(default VRM_FLEET_CONFIRM_TIMEOUT)")
    fleet.add_argument("--reason", default="", help="deploy, rollback: why (fleet journal)")
    fleet.add_argument("--host", dest="only_host", default=None, metavar="HOST",
                       help="rollback: only this host, held at rust 0 until `vrm fleet "
                            "rejoin` on it (this host: locally, no etcd; another: via etcd)")
    fleet.add_argument("--json", action="store_true",
                       help="status, hosts: JSON for scripts; targets: Prometheus file_sd")
    sub.add_parser("agent", parents=[common],
                   help="follow the fleet's desired split on this host, in the foreground")


def cmd_fleet(settings: Settings, args: argparse.Namespace) -> int:
    """status | hosts | deploy --rust-weight N | rollback | rejoin."""
    action = args.action
    if getattr(args, "read_only", False) and action in FLEET_WRITING:
        raise UsageError(f"--read-only: `vrm fleet {action}` changes the fleet's split")
    if action == "deploy" and not hasattr(args, "rust_weight"):
        raise UsageError("vrm fleet deploy needs --rust-weight N")
    if hasattr(args, "rust_weight") and action != "deploy":
        raise UsageError(f"--rust-weight goes with `vrm fleet deploy`, not {action}")
    console = Console(settings)
    fleet = console.fleet()
    if action == "deploy":
        desired = fleet.deploy(settings.split.rust, args.reason)
        print(f"fleet {settings.fleet}: desired rust {desired.rust}% "
              f"(generation {desired.generation}); `vrm fleet hosts` shows who serves it")
        return 0
    if action == "migrate":
        return _fleet_migrate(settings, args, fleet)
    if args.what is not None:
        raise UsageError(f"{args.what!r} goes with `vrm fleet migrate`, not {action}")
    if args.only_host is not None and action != "rollback":
        raise UsageError(f"--host goes with `vrm fleet rollback`, not {action}")
    if action == "rollback" and args.only_host is not None:
        return _print_host_rollback(console.fleet_host_rollback(args.only_host, args.timeout))
    if action == "rollback":
        return _print_fleet_rollback(settings, fleet.rollback(args.timeout, args.reason))
    if action == "rejoin":
        was = fleet.rejoin()
        print(f"{settings.fleet_host}: rejoined fleet {settings.fleet} (held by {was})"
              if was else f"{settings.fleet_host}: not held; nothing to rejoin")
        return 0
    status = fleet.status()
    if action == "targets" and not status.unreachable:  # what Prometheus discovers (file_sd)
        groups = [g for host in sorted(status.hosts) for g in status.hosts[host].targets]
        for g in ([] if args.json else groups):
            labels = g.get("labels", {})
            print(f"{labels.get('host', '-'):<16} {labels.get('service', '-'):<26} "
                  f"{' '.join(g.get('targets', []))}")
        if args.json:
            print(json.dumps(groups, indent=2))
        return 0
    if args.json:
        print(json.dumps(asdict(status) if action == "status"
                         else {h: asdict(r) for h, r in status.hosts.items()}, indent=2))
        return 0 if not status.unreachable else 1
    if action == "status":
        d = status.desired
        print(f"fleet {status.fleet} via {', '.join(status.endpoints)}")
        print(f"desired: rust {d.rust}% generation {d.generation} ({d.action} by {d.by} at "
              f"{d.at})" if d else ("desired: unknown (etcd unreachable)" if status.unreachable
                                    else "desired: none yet (`vrm fleet deploy`)"))
        local = status.local
        mode = "held" if status.held_by else (local.mode if local else "no agent")
        print(f"this host ({status.host}): {mode}"
              + (f", generation {local.generation}" if local else "")
              + (f", held by {status.held_by} (`vrm fleet rejoin`)" if status.held_by else ""))
    if status.unreachable:
        print(f"vrm fleet {action}: {status.unreachable}", file=sys.stderr)
        return 1
    print(f"{'HOST':<16} {'MODE':<9} {'GEN':>4} {'RUST':>5}  {'HEALTH':<25} "
          f"{'RUST ERR':>8} {'RUST P95':>8} {'VRAM GB':>11}  VERIFIED")
    for host, report in sorted(status.hosts.items()):
        rust = "?" if report.rust is None else f"{report.rust}%"
        lag = " lagging" if status.desired and report.generation < \
            status.desired.generation else ""
        health = " ".join(f"{b}:{'ok' if ok else 'DOWN'}" for b, ok in report.health.items())
        seen = report.traffic.get("rust", {})
        err = "-" if seen.get("error_rate") is None else f"{100 * (seen['error_rate'] or 0):.1f}%"
        p95 = "-" if seen.get("p95_ms") is None else f"{seen['p95_ms']:.0f} ms"
        vram = "-" if report.vram_used_gb is None else \
            f"{report.vram_used_gb:.1f}/{report.vram_total_gb or 0:.0f}"
        print(f"{host:<16} {report.mode:<9} {report.generation:>4} {rust:>5}  "
              f"{health or '-':<25} {err:>8} {p95:>8} {vram:>11}  "
              f"{report.verified_at or '-'}{lag}")
    return 0


def _print_fleet_rollback(settings: Settings, outcome: RollbackOutcome) -> int:
    print(f"fleet {settings.fleet}: desired rust 0 (generation {outcome.desired.generation})")
    for done in sorted(outcome.confirmed, key=lambda c: c.seen_ms):
        own = f", applied in {done.apply_ms:.0f} ms" if done.apply_ms is not None else ""
        print(f"  {done.host}: rust 0 verified at +{done.seen_ms:.0f} ms{own}")
    for host in outcome.gone:
        print(f"  {host}: gone (its lease expired while waiting)")
    if outcome.missing:
        print(f"vrm fleet rollback: not confirmed within the timeout: "
              f"{', '.join(outcome.missing)} (the rollback stays in force for them)",
              file=sys.stderr)
        return 1
    return 0


def _print_host_rollback(done: HostRollback) -> int:
    if not done.remote:
        assert done.local is not None
        print(f"{done.host} (this host): rust 0 verified in {done.local.duration_ms:.0f} ms, "
              "held until `vrm fleet rejoin`")
        return 0
    if done.seen_ms is None:
        print(f"vrm fleet rollback: {done.host} did not confirm within the timeout (its hold "
              "stays in force)", file=sys.stderr)
        return 1
    print(f"{done.host}: held at rust 0, verified at +{done.seen_ms:.0f} ms "
          f"(`vrm fleet rejoin` on {done.host} releases it)")
    return 0


def _fleet_migrate(settings: Settings, args: argparse.Namespace, fleet: FleetService) -> int:
    what = args.what or "status"
    if what == "start":
        try:
            steps = [parse_weight(w, "--steps") for w in args.steps.split(",")]
        except SplitError as exc:
            raise UsageError(str(exc)) from None
        started = fleet.migrate_start(steps, args.waves, args.bake, args.max_error_rate / 100,
                                      args.min_samples)
        print(f"fleet migration {started.id}: steps {','.join(map(str, started.steps))}, "
              f"waves {' then '.join(','.join(w) for w in started.waves)}, bake "
              f"{started.bake_s:g}s; the guard elected among the agents runs it "
              "(`vrm fleet migrate status`)")
        return 0
    if what == "resume":
        resumed = fleet.migrate_resume()
        print(f"fleet migration {resumed.id} resumed (held: {', '.join(resumed.held) or 'none'})")
        return 0
    if what == "abort":
        return _print_fleet_rollback(settings, fleet.migrate_abort(args.timeout))
    migration, leader = fleet.migration()
    if migration is None:
        print("no fleet migration (`vrm fleet migrate start`)")
        return 0
    if args.json:
        print(json.dumps({**asdict(migration), "guard": leader}, indent=2))
        return 0
    print(f"fleet migration {migration.id}: {migration.phase}, step {migration.step + 1}/"
          f"{len(migration.steps)} (rust {migration.steps[migration.step]}), wave "
          f"{migration.wave + 1}/{len(migration.waves)}; guard: {leader or 'none'}")
    if migration.held:
        print(f"held at rust 0: {', '.join(migration.held)}")
    if migration.reason:
        print(f"reason: {migration.reason}")
    return 0


def cmd_agent(settings: Settings, args: argparse.Namespace) -> int:
    """Run this host's fleet agent in the foreground until interrupted."""
    return Console(settings).fleet().run_agent()


# --- end fleet -----------------------------------------------------------------------------


# --- silences (Alertmanager) ----------------------------------------------------------------

def _add_silence(sub: argparse._SubParsersAction[_Parser], common: _Parser) -> None:
    silence = sub.add_parser(
        "silence", parents=[common], help="silence alerts for a window (Alertmanager)",
        description="vrm silence [--for 1h] MATCHER...: silence the alerts the matchers "
                    "select (alertname=HighErrorRate backend=~rust); vrm silence list; "
                    "vrm silence expire ID. Journaled with who asked.")
    silence.add_argument("words", nargs="*", metavar="MATCHER | list | expire ID")
    silence.add_argument("--for", dest="span", default="1h", metavar="DURATION",
                         help="how long: 30m, 1h, 2h30m (default 1h)")
    silence.add_argument("--comment", default="", help="why (default: who silenced)")
    silence.add_argument("--json", action="store_true", help="list: JSON for scripts")


def cmd_silence(settings: Settings, args: argparse.Namespace) -> int:
    console = Console(settings)
    words = list(args.words)
    action = words[0] if words and words[0] in ("list", "expire") else "create"
    if getattr(args, "read_only", False) and action != "list":
        raise UsageError("--read-only: `vrm silence` changes what alerts reach people; "
                         "run it without --read-only")
    if action == "list":
        found = console.silences()
        if args.json:
            print(json.dumps([asdict(s) for s in found], indent=2))
        for s in [] if args.json else found:
            print(f"{s.id}  {s.state:8} until {s.ends_at[:19]}  {s.matchers}  "
                  f"by {s.created_by}: {s.comment}")
        if not found and not args.json:
            print("no silences")
        return 0
    if action == "expire":
        if len(words) != 2:
            raise UsageError("vrm silence expire ID: one silence id (`vrm silence list`)")
        console.expire_silence(words[1])
        print(f"expired silence {words[1]}")
        return 0
    silence_id = console.silence(words, args.span, args.comment)
    print(f"silence {silence_id}: {' '.join(words)} for {args.span} "
          f"(`vrm silence expire {silence_id}` ends it)")
    return 0


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "setup": cmd_setup,
    "up": cmd_up,
    "down": cmd_down,
    "deploy": cmd_deploy,
    "rollback": cmd_rollback,
    "reload": cmd_reload,
    "status": cmd_status,
    "logs": cmd_logs,
    "journal": cmd_journal,
    "migrate": cmd_migrate,
    "benchmark": cmd_benchmark,
    "validate": cmd_validate,
    "parity": cmd_parity,
    "capture": cmd_capture,
    "tui": cmd_tui,
    "demo": cmd_demo,
    "fleet": cmd_fleet,
    "agent": cmd_agent,
    "silence": cmd_silence,
}


if __name__ == "__main__":
    sys.exit(main())
