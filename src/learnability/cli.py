"""`learnability run | compare | report | demo`.

Config overrides are `--section.field=value` (see `learnability.config`); `compare` also takes
`--arms=uniform,learnability,...`. Bad input exits with status 2 and a message naming what to fix.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import time

from learnability import config as C

DEMO_OVERRIDES = [
    "--data.label_noise=0.4", "--train.steps=1500", "--train.eval_every=100", "--data.test_size=5000",
]


def _out(given: str, kind: str) -> str:
    if given:
        if os.path.exists(os.path.join(given, "metrics.jsonl")) or os.path.exists(os.path.join(given, "compare.json")):
            raise C.ConfigError(f"--out={given} already holds a run; choose a new folder so nothing is overwritten")
        return given
    return os.path.join("runs", f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}")


def _split_out(args: list[str]) -> tuple[str, list[str]]:
    out, rest = "", []
    for a in args:
        if a.startswith("--out="):
            out = a.split("=", 1)[1]
        else:
            rest.append(a)
    return out, rest


def _split_resume(args: list[str]) -> tuple[str, list[str]]:
    """`--resume DIR` / `--resume=DIR` out of the arguments ("" when absent)."""
    for i, a in enumerate(args):
        if a == "--resume":
            if i + 1 == len(args) or args[i + 1].startswith("--"):
                raise C.ConfigError("--resume needs the run folder to continue: --resume RUN_DIR")
            return args[i + 1], args[:i] + args[i + 2:]
        if a.startswith("--resume="):
            return a.split("=", 1)[1], args[:i] + args[i + 1:]
    return "", args


def resumed_config(run_dir: str, overrides: list[str]) -> C.RunConfig:
    """The saved config of `run_dir`; only `--progress` may change on resume."""
    saved = C.load_for_resume(run_dir, "config.json", overrides, "learnability run")
    return dataclasses.replace(C.apply_overrides(C.from_dict(C.RunConfig, saved), overrides), out=run_dir)


def interrupted_message(command: str, out: str) -> str:
    """What to say after Ctrl-C stopped `learnability <command>` writing into `out`: which command
    continues it."""
    from learnability.checkpoint import list_checkpoints

    kept = f"interrupted; files written so far are kept in {out}"
    if command == "compare":
        return f"{kept}; `learnability compare --resume {shlex.quote(out)}` keeps the finished arms and continues the others"
    found = list_checkpoints(out)
    if found:
        return (f"{kept}; `learnability run --resume {shlex.quote(out)}` continues it from its newest checkpoint "
                f"({os.path.basename(found[0])})")
    return (f"{kept}; it wrote no checkpoint yet (--checkpoint.every=N writes them), so `learnability run --resume "
            f"{shlex.quote(out)}` starts it again from step 1")


def cmd_run(args: list[str]) -> int:
    from learnability.backend import run_arm

    resume, args = _split_resume(args)
    out, rest = _split_out(args)
    if resume:
        cfg = resumed_config(resume, rest + ([f"--out={out}"] if out else []))
    else:
        cfg = dataclasses.replace(C.apply_overrides(C.RunConfig(), rest), out=_out(out, "run"))
    try:
        summary = run_arm(cfg, resume=bool(resume))
    except KeyboardInterrupt:
        print(interrupted_message("run", cfg.out), file=sys.stderr)
        return 130
    if os.environ.get("RANK", "0") == "0":  # started as a rank by torchrun: rank 0 reports
        print(f"{summary['arm']}: final test accuracy {summary['final_accuracy']:.4f} after {summary['steps']} steps; "
              f"files in {cfg.out}")
    return 0


def _print_table(path: str, rows: list[dict]) -> None:
    from learnability.report import markdown_table

    print(markdown_table(rows))
    print(f"report: {path} (plots beside it)")


def cmd_compare(args: list[str], defaults: list[str] | None = None) -> int:
    from learnability.compare import compare, compare_seeds, resumed_compare

    resume, args = _split_resume(args)
    out, rest = _split_out(args)
    if resume:
        cfg, arms, seeds = resumed_compare(resume, rest + ([f"--out={out}"] if out else []))
        out = resume
    else:
        arms, seeds, overrides, given_seed = [], [], list(defaults or []), ""
        for a in rest:
            if a.startswith("--arms="):
                arms = [s for s in a.split("=", 1)[1].split(",") if s]
            elif a.startswith("--seeds="):
                seeds = _seeds(a.split("=", 1)[1])
            elif a.startswith("--train.seed="):  # kept for after the loop: --seeds may come later
                overrides.append(a)
                given_seed = a
            else:
                overrides.append(a)
        if seeds and given_seed:
            raise C.ConfigError(f"--seeds sets train.seed for each seed; drop {given_seed}")
        cfg = C.apply_overrides(C.RunConfig(), overrides)
        arms = arms or (["uniform", "activeclip", "jest"] if cfg.task == "clip" else ["uniform", "learnability"])
        out = _out(out, "compare")
    try:
        if seeds:
            path, _ = compare_seeds(cfg, arms, out, seeds, resume=bool(resume))
            with open(path, encoding="utf-8") as f:
                print(f.read().split("\n## ")[0].rstrip())
            print(f"report: {path} (each seed's report in its seed<N> folder)")
            return 0
        path, rows = compare(cfg, arms, out, resume=bool(resume))
    except KeyboardInterrupt:
        print(interrupted_message("compare", out), file=sys.stderr)
        return 130
    _print_table(path, rows)
    return 0


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds:
        raise C.ConfigError(f"--seeds={text}: give integers separated by commas, e.g. --seeds=0,1,2")
    return seeds


def cmd_report(args: list[str]) -> int:
    from learnability.report import build_report, seed_folders, seeds_report

    p = argparse.ArgumentParser(prog="learnability report", description="markdown report and plots from run directories")
    p.add_argument("runs", nargs="+", help="run directories, or compare directories holding them (one multi-seed "
                                           "compare directory: its report over seeds)")
    p.add_argument("--out", default=None, help="where to write report.md and the plots (default: the run folder)")
    p.add_argument("--amortise", type=int, default=10, help="runs over which one-off reference costs are amortised")
    try:
        a = p.parse_args(args)
    except SystemExit as e:  # --help (0) or a usage error (2), already printed by argparse
        return int(e.code or 0)
    multi = [p for p in a.runs if seed_folders(p)[0]]
    if multi and len(a.runs) > 1:
        raise C.ConfigError(f"{multi[0]} is a multi-seed compare (seed<N> folders): give it alone, "
                            f"`learnability report {multi[0]}`")
    if multi:  # a multi-seed compare (`compare --seeds`): each seed's report, then the one over seeds
        folders, order = seed_folders(a.runs[0])
        path, _ = seeds_report(folders, a.out or a.runs[0], a.amortise, order=order)
        print(f"report: {path} (each seed's report in its seed<N> folder beside it)")
        return 0
    path, rows = build_report(a.runs, a.out, a.amortise)
    _print_table(path, rows)
    return 0


def cmd_demo(args: list[str]) -> int:
    print("learnability demo: uniform vs learnability selection on Fashion-MNIST with 40% label noise "
          "(CNN learner, MLP proxies; a few minutes on 2 CPU cores)")
    return cmd_compare(args, DEMO_OVERRIDES)


COMMANDS = {"run": cmd_run, "compare": cmd_compare, "report": cmd_report, "demo": cmd_demo}
USAGE = """usage: learnability {run,compare,report,demo} [--section.field=value ...]

  run       train one arm (--selection.score=learnability|hard_learner|easy_reference|rho|uniform);
            --checkpoint.every=N writes checkpoints; `run --resume RUN_DIR` continues a killed run
  compare   arms side by side on the same data and seeds (--arms=uniform,learnability,...) + report;
            --seeds=0,1,2: once per seed, medians and seed-by-seed comparisons over them;
            `compare --resume DIR` keeps finished arms and continues the others from their checkpoints;
            --task=clip: image-text pairs, arms uniform,activeclip,jest (jest_learner: JEST scored by the learner)
  report    RUN_DIR... -> report.md and PNG plots, from the run files alone
  demo      the compare on Fashion-MNIST at 40% label noise, small settings

config sections: data, model, selection, reference, train, ray (see learnability/config.py); e.g.
  learnability run --selection.score=learnability --train.steps=500 --data.label_noise=0.2
  learnability run --backend=ray --ray.actors=2     # scoring on Ray actors apart from the learner
"""


COMMAND_USAGE = {
    "run": """usage: learnability run [--section.field=value ...] [--out=DIR]
       learnability run --resume RUN_DIR [--progress=false]

Trains one arm into --out (default runs/run-<date>-<time>): config.json, metrics.jsonl, summary.json,
and checkpoints every --checkpoint.every=N steps; `--resume RUN_DIR` continues a stopped run.""",
    "compare": """usage: learnability compare [--arms=uniform,learnability,...] [--seeds=0,1,2] [--section.field=value ...] [--out=DIR]
       learnability compare --resume DIR [--progress=false]

Trains each arm on the same data and seeds into --out/<arm>, then writes report.md and plots
(default arms: uniform,learnability; with --task=clip: uniform,activeclip,jest). With --seeds, the
whole compare runs once per train.seed into --out/seed<N> (same data split), and --out/report.md
gives each arm's medians over the seeds and each arm against uniform seed by seed (sign test).""",
    "demo": f"""usage: learnability demo [--section.field=value ...] [--out=DIR]

The compare on Fashion-MNIST at 40% label noise, with {' '.join(DEMO_OVERRIDES)} (overridable).""",
}


def command_help(command: str) -> str:
    """`learnability <command> --help`: its usage and every config key with its default."""
    def flat(d: dict, prefix: str = "") -> list[str]:
        return [line for k, v in d.items() for line in (flat(v, f"{prefix}{k}.") if isinstance(v, dict) else
                [f"  --{prefix}{k}={str(v).lower() if isinstance(v, bool) else v}"])]

    keys = "\n".join(flat(C.to_dict(C.RunConfig())))
    return f"{COMMAND_USAGE[command]}\n\nconfig keys and their defaults (see learnability/config.py):\n{keys}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"learnability: unknown command {argv[0]!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    if argv[0] in COMMAND_USAGE and any(a in ("-h", "--help") for a in argv[1:]):
        print(command_help(argv[0]))
        return 0
    from learnability.errors import RankFailedError
    from learnability.errors import report_user_error as report

    from learnability.distributed.stopping import interrupt_deadline

    try:
        with interrupt_deadline(10.0):  # Ctrl-C ends the process within 10 s, even if a clean-up blocks
            return COMMANDS[argv[0]](argv[1:])
    except (RankFailedError, FileNotFoundError, ValueError) as e:
        return report(e, f"learnability {argv[0]}")
    except KeyboardInterrupt:
        print("interrupted; files written so far are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
