"""symgym: list envs, train and evaluate agents, collect demos, run scientific tasks and benchmarks, deploy.

Every failure the user can cause (unknown id, missing run, corrupt checkpoint, bad number, missing extra) ends in
a one-line ``symgym: error: ...`` and exit status 2, never a traceback; ``symgym.learn.run.inputs.validate``
checks every input before anything is written.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from symgym.learn.run.inputs import MAX_EPISODES, MAX_SEED, MAX_STEPS  # stdlib-only at import: --help stays fast

EXIT_USER_ERROR = 2

EPILOG = """examples:
  symgym envs
  symgym train --agent sac --env SymPush-v0 --steps 30000 --seed 0 --out runs/sac-s0 --checkpoint-freq 5000
  symgym train --resume runs/sac-s0            continue an interrupted run from its latest checkpoint
  symgym eval --run runs/sac-s0 --episodes 100 --baseline --video
  symgym demos --env TabletopStacking-v0 --n 20 --out demos/stacking.npz
  symgym task dhn --quick
  symgym bench env-speed --quick
  symgym sweep learn/bench/specs/sac.yaml --resume && symgym report sac --markdown

Every error is one line on stderr with exit status 2; nothing is written before the inputs are checked.
Optional extras: pip install 'symgym[tabletop|arm|ros|science|bench|logging|video|sweep]'."""


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors on one line (``symgym train: error: ...``), not usage plus message."""

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message}\n")


def _int_in(lo: int, hi: int):
    """argparse type: an integer in [lo, hi], the bad value and the bound named in the error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer in [{lo}, {hi}], got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is out of bounds: expected an integer in [{lo}, {hi}]")
        return value

    return parse


_seed = _int_in(0, MAX_SEED)
_steps = _int_in(0, MAX_STEPS)
_count = _int_in(1, MAX_EPISODES)


def _int_at_least(minimum: int):
    """argparse type: an integer >= ``minimum``, with the bad value named in the error."""
    kind = "a positive" if minimum == 1 else "a non-negative" if minimum == 0 else f"an >= {minimum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind} integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {kind} integer, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_nonneg_int = _int_at_least(0)


def _json_dict(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({e.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


# -- commands ------------------------------------------------------------------------------
def cmd_envs(args) -> int:
    if args.frames:
        from symgym.learn.run.video import configure_headless_gl

        configure_headless_gl()
        from symgym.learn.run.gallery import write_gallery

        for env_id, kind in write_gallery(args.frames).items():
            print(f"{env_id}: {kind}")
        print(f"frames: {Path(args.frames) / 'gallery.png'}")
        return 0
    import gymnasium as gym

    import symgym.envs as envs
    from symgym.learn.run.runs import env_missing_extra

    rows = []
    for env_id in envs.symgym_env_ids():
        missing = env_missing_extra(env_id)
        if missing:  # listed, not built: its simulator or client is an optional extra
            rows.append((env_id, "?", "-", f"[not installed: {missing}]"))
            continue
        env = gym.make(env_id)
        sym = env.unwrapped.symmetry
        rows.append((env_id, sym.group.name, "exact" if sym.exact else "approximate",
                     ", ".join(f"{k}={v}" for k, v in sym.breaking.items())))
        env.close()
    width = max(len(r[0]) for r in rows)
    print(f"{'id':<{width}}  {'group':<8} {'symmetry':<12} breaking")
    for env_id, group, kind, breaking in rows:
        print(f"{env_id:<{width}}  {group:<8} {kind:<12} {breaking}")
    return 0


def cmd_train(args) -> int:
    from symgym.learn.run.inputs import train_options, train_request
    from symgym.learn.run.training import TrainOptions, resume, train

    if args.resume is not None:
        run_dir = resume(args.resume, TrainOptions(**train_options(args)))
        print(f"run resumed and saved to {run_dir}")
        return 0
    config, options = train_request(args)
    run_dir = train(config, TrainOptions(**options))
    print(f"run saved to {run_dir}")
    return 0


def cmd_eval(args) -> int:
    if args.video:
        from symgym.learn.run.video import configure_headless_gl

        configure_headless_gl()  # must pick MUJOCO_GL before mujoco is imported
    from symgym.learn.run.evaluate import evaluate
    from symgym.learn.io import write_json
    from symgym.learn.run.runs import load_run

    agent, config = load_run(args.run)
    env_id = getattr(args, "env", None) or config.env
    # the run's env kwargs belong to its env; a transfer target starts from its own defaults
    env_kwargs = config.env_kwargs if env_id == config.env else {}
    stem = "eval" if env_id == config.env else f"eval-{env_id}"
    video = Path(args.run) / f"{stem}.mp4" if args.video else None
    result = evaluate(agent, env_id, episodes=args.episodes, seed=args.seed, env_kwargs=env_kwargs, video=video)
    if video is not None and not video.is_file() and video.with_suffix(".gif").is_file():
        video = video.with_suffix(".gif")  # no imageio-ffmpeg: write_video fell back to a GIF
    payload = {"agent": config.agent, "env": env_id, "trained_on": config.env, "eval_seed": args.seed,
               **result.as_dict()}
    if args.baseline:
        rnd = evaluate(None, env_id, episodes=args.episodes, seed=args.seed, env_kwargs=env_kwargs)
        payload["random_policy"] = rnd.as_dict()
    write_json(Path(args.run) / f"{stem}.json", payload)
    print(json.dumps(payload, indent=2))
    if video:
        print(f"video: {video}")
    return 0


def cmd_demo(args) -> int:
    """The README's demo: a short SAC run on SymPush-v0, evaluated against a random policy."""
    ns = argparse.Namespace(agent="sac", env="SymPush-v0", steps=args.steps, seed=0, out=args.out, demos=None,
                            env_kwargs={}, agent_kwargs={}, hyperparams=None, tensorboard=None, eval_freq=None,
                            eval_episodes=10, checkpoint_freq=None, no_progress=False, force=args.force,
                            resume=None, command="train")
    from symgym.learn.run.inputs import validate

    validate(ns)  # the demo is a train + eval: the same checks, before anything is written
    cmd_train(ns)
    cmd_eval(argparse.Namespace(run=args.out, env=None, episodes=args.episodes, seed=10_000, video=True,
                                baseline=True))
    print(f"learning curve: {Path(args.out) / 'learning_curve.png'}")
    return 0


def cmd_demos(args) -> int:
    from symgym.learn.run.demos import collect_demos

    path = collect_demos(args.env, n=args.n, out=Path(args.out), seed=args.seed)
    print(f"wrote {args.n} demonstrations to {path}")
    return 0


def cmd_task(args) -> int:
    from symgym.learn.tasks import run_task

    results = run_task(args.name, quick=args.quick, seed=args.seed, out_dir=args.out)
    print(json.dumps(results, indent=2, default=str))
    print(f"results: {Path(args.out) / (args.name + '.json')}")
    return 0


def cmd_bench(args) -> int:
    from symgym.learn.bench import run_bench

    results = run_bench(args.name, out_dir=args.out, quick=args.quick, seed=args.seed)
    print(json.dumps(results, indent=2, default=str))
    print(f"results: {Path(args.out) / (args.name + '.json')}")
    return 0


def cmd_sweep(args) -> int:
    from symgym.learn.evidence.sweep import sweep_main

    return sweep_main(args)


def cmd_report(args) -> int:
    from symgym.learn.evidence.report import report_main

    return report_main(args)


def cmd_deploy(args) -> int:
    from symgym.learn.deploy.deploy import deploy_main

    return deploy_main(args)


def cmd_sim_robot(args) -> int:
    from symgym.learn.deploy.deploy import sim_robot_main

    return sim_robot_main(args)


def cmd_replay(args) -> int:
    from symgym.learn.deploy.replay import replay_main

    return replay_main(args)


def cmd_configs(args) -> int:
    from symgym.learn.deploy.deploy import configs_main

    return configs_main(args)


# -- parser --------------------------------------------------------------------------------
def _names(registry_module: str, attribute: str) -> str:
    """The valid names of a registry, for --help (the registries import nothing heavy)."""
    import importlib

    return ", ".join(sorted(getattr(importlib.import_module(registry_module), attribute)))


def build_parser() -> argparse.ArgumentParser:
    import symgym.envs as envs

    agents, env_ids = _names("symgym.agents", "AGENTS"), ", ".join(envs.symgym_env_ids())
    fmt = argparse.RawDescriptionHelpFormatter
    p = OneLineParser(prog="symgym", description=__doc__.splitlines()[0].replace("``", ""), epilog=EPILOG,
                      formatter_class=fmt)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ev = sub.add_parser("envs", help="list env ids with their symmetry (ids whose extra is missing are marked)")
    ev.add_argument("--frames", default=None, metavar="DIR", help="instead, render one frame per env family into DIR")
    ev.set_defaults(fn=cmd_envs)

    t = sub.add_parser("train", help="train (or build) an agent; writes a run directory", formatter_class=fmt,
                       epilog="examples:\n  symgym train --agent sac --env SymPush-v0 --steps 30000 --checkpoint-freq 5000"
                              "\n  symgym train --agent hep --env HepPickPlace-v0 --agent-kwargs '{\"n_demos\": 20}'"
                              "\n  symgym train --resume runs/sac-SymPush-v0-s0")
    t.add_argument("--agent", default=None, metavar="AGENT", help=f"agent to train, one of: {agents}")
    t.add_argument("--env", default=None, metavar="ID", help=f"Gymnasium env id, one of: {env_ids}")
    t.add_argument("--steps", type=_steps, default=None,
                   help=f"training budget in [0, {MAX_STEPS}] (default: n_timesteps from the hyper-parameter "
                        f"file, else 20000)")
    t.add_argument("--seed", type=_seed, default=None, help=f"seed in [0, {MAX_SEED}] (default 0)")
    t.add_argument("--out", default=None, metavar="DIR", help="run directory (default runs/AGENT-ENV-sSEED); "
                   "an existing run there is refused unless --force")
    t.add_argument("--force", action="store_true",
                   help="move an existing run in --out aside to DIR.old-TIMESTAMP (never deleted) and start afresh")
    t.add_argument("--resume", default=None, metavar="RUN",
                   help="continue the interrupted run RUN from its latest step checkpoint, with its saved config")
    t.add_argument("--demos", default=None, metavar="FILE",
                   help="demonstrations file for imitation agents (default: collect n_demos oracle episodes)")
    t.add_argument("--env-kwargs", type=_json_dict, default={}, metavar="JSON",
                   help='env keyword arguments as a JSON object, e.g. \'{"wind": 0.5}\'')
    t.add_argument("--agent-kwargs", type=_json_dict, default={}, metavar="JSON",
                   help='hyper-parameter overrides as a JSON object, e.g. \'{"batch_size": 128}\'')
    t.add_argument("--hyperparams", default=None, metavar="FILE",
                   help="RL-Zoo-style YAML keyed by env id (default: learn/run/hyperparams/AGENT.yml)")
    t.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="TensorBoard log directory for RL agents (extra: pip install 'symgym[logging]')")
    t.add_argument("--eval-freq", type=_steps, default=None, metavar="N",
                   help="env steps between EvalCallback evaluations (0: off; default steps/10)")
    t.add_argument("--eval-episodes", type=_count, default=10, metavar="N",
                   help="episodes per EvalCallback evaluation (default 10)")
    t.add_argument("--checkpoint-freq", type=_steps, default=None, metavar="N",
                   help="env steps between step checkpoints (model, replay buffer, RNG) in RUN/checkpoints that "
                        "--resume continues from (0: off; default steps/2)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("eval", help="evaluate a saved run")
    e.add_argument("--run", required=True, metavar="DIR", help="a complete run directory written by symgym train")
    e.add_argument("--env", default=None, metavar="ID",
                   help=f"evaluate on this env id instead of the run's (zero-shot transfer), one of: {env_ids}")
    e.add_argument("--episodes", type=_count, default=20, metavar="N", help="evaluation episodes (default 20)")
    e.add_argument("--seed", type=_seed, default=10_000,
                   help="first evaluation seed; episode i uses SEED+i (default 10000)")
    e.add_argument("--video", action="store_true",
                   help="write RUN/eval.mp4 of the first episodes (a GIF without the video extra)")
    e.add_argument("--baseline", action="store_true", help="also evaluate a uniform random policy")
    e.set_defaults(fn=cmd_eval)

    d = sub.add_parser("demo", help="short SAC run on SymPush-v0 + evaluation + learning curve")
    d.add_argument("--steps", type=_int_in(1, MAX_STEPS), default=None, metavar="N",
                   help="training steps (default: hyperparams/sac.yml, 30000)")
    d.add_argument("--episodes", type=_count, default=100, metavar="N", help="evaluation episodes (default 100)")
    d.add_argument("--out", default="runs/demo", metavar="DIR", help="run directory (default runs/demo)")
    d.add_argument("--force", action="store_true", help="move an existing run in --out aside and start afresh")
    d.set_defaults(fn=cmd_demo)

    dm = sub.add_parser("demos", help="collect scripted-oracle demonstrations")
    dm.add_argument("--env", required=True, metavar="ID", help=f"env id with a scripted oracle, one of: {env_ids}")
    dm.add_argument("--n", type=_count, required=True, help="number of successful episodes to keep")
    dm.add_argument("--out", required=True, metavar="FILE", help="demonstrations file to write (.npz)")
    dm.add_argument("--seed", type=_seed, default=0, help="seed of the first episode (default 0)")
    dm.set_defaults(fn=cmd_demos)

    for name, fn, help_, names in (
            ("task", cmd_task, "run a scientific task; writes results/NAME.json + PNGs",
             _names("symgym.learn.tasks", "TASKS")),
            ("bench", cmd_bench, "run a benchmark; writes results/NAME.json + PNG",
             _names("symgym.learn.bench", "BENCHES"))):
        k = sub.add_parser(name, help=help_)
        k.add_argument("name", metavar="NAME", help=f"one of: {names}")
        k.add_argument("--quick", action="store_true", help="tiny settings (for tests)")
        k.add_argument("--seed", type=_seed, default=0, help="seed (default 0)")
        k.add_argument("--out", default="results", metavar="DIR", help="results directory (default results)")
        k.set_defaults(fn=fn)

    sw = sub.add_parser("sweep", help="run a sweep spec (grid of train->evaluate trials) on Ray Tune; resumable")
    sw.add_argument("spec", help="sweep spec YAML")
    sw.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS, else local Ray)")
    sw.add_argument("--storage", default=None, help="Tune storage_path (shared file system or object store)")
    sw.add_argument("--max-concurrent", type=_positive_int, default=None, help="trials at once (default: cores)")
    sw.add_argument("--resume", action="store_true", help="continue a killed sweep, skipping finished trials")
    sw.add_argument("--rerun-stale", action="store_true",
                    help="also re-run finished trials whose code fingerprint is missing or differs from the current code's")
    sw.add_argument("--quick", action="store_true", help="the spec's tiny grid (for tests)")
    sw.add_argument("--out", default="results", help="results directory (trial summaries under OUT/trials/)")
    sw.set_defaults(fn=cmd_sweep)

    rp = sub.add_parser("report", help="aggregate a sweep's trial summaries (rliable) into the claims ledger")
    rp.add_argument("sweep", help="sweep name or spec YAML")
    rp.add_argument("--markdown", action="store_true", help="print the ledger as README markdown tables")
    rp.add_argument("--allow-mixed-code", action="store_true",
                    help="compare trials that ran different code fingerprints (flagged in each entry)")
    rp.add_argument("--out", default="results")
    rp.set_defaults(fn=cmd_report)

    dp = sub.add_parser("deploy", help="run a trained policy on an arm through rosbridge")
    dp.add_argument("--run", required=True)
    dp.add_argument("--rosbridge", required=True,
                    help="ws://HOST:PORT or wss://HOST:PORT (TLS, certificate verified); IPv6: ws://[::1]:9090")
    dp.add_argument("--config", default=None, metavar="NAME|FILE",
                    help="RosArm config: a shipped name (see `symgym configs`) or a YAML file "
                         "(default: the shipped config that mirrors the run's env)")
    dp.add_argument("--ca-file", default=None, help="PEM CA bundle for wss:// (default: the system's CAs)")
    dp.add_argument("--secret-file", default=None,
                    help="rosauth secret file (default: $SYMGYM_ROSBRIDGE_SECRET_FILE or $SYMGYM_ROSBRIDGE_SECRET; "
                         "none: no auth). The secret itself is never a command-line argument")
    dp.add_argument("--dry-run", action="store_true")
    dp.add_argument("--yes", action="store_true", help="skip the confirmation before the first motion")
    dp.add_argument("--steps", type=_positive_int, default=None)
    dp.add_argument("--log", default=None)
    dp.set_defaults(fn=cmd_deploy)

    sr = sub.add_parser("sim-robot", help="rosbridge-protocol server backed by a simulated arm (digital twin)")
    sr.add_argument("--port", type=_positive_int, default=9090)
    sr.add_argument("--env", default="SymPush-v0")
    sr.add_argument("--robot", default=None, help="simulated arm to serve (e.g. panda); default: the planar pusher")
    sr.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1", "::1"], help="loopback address to listen on")
    sr.add_argument("--tls-dir", default=None, metavar="DIR",
                    help="serve wss:// with a throwaway test CA written to DIR (clients: --ca-file DIR/ca.pem)")
    sr.add_argument("--require-auth", action="store_true",
                    help="require rosauth's auth op (secret from $SYMGYM_ROSBRIDGE_SECRET[_FILE])")
    sr.add_argument("--delivery", default="in_order", choices=["in_order", "response_first", "reorder"],
                    help="message order around a reset, as a real bridge may deliver it (rehearse the reset race)")
    sr.set_defaults(fn=cmd_sim_robot)

    rl = sub.add_parser("replay", help="replay a deploy log in the mirrored simulator and report the divergence")
    rl.add_argument("log", help="deploy log (JSONL) written by `symgym deploy`")
    rl.add_argument("--tolerance", type=float, default=None,
                    help="exit 1 if the largest observation divergence exceeds this")
    rl.set_defaults(fn=cmd_replay)

    cf = sub.add_parser("configs", help="list the shipped RosArm configs (for deploy --config NAME)")
    cf.set_defaults(fn=cmd_configs)
    return p


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a one-line argparse error (2)
        return e.code if isinstance(e.code, int) else EXIT_USER_ERROR
    try:
        from symgym.learn.run.inputs import validate

        validate(args)  # every input checked before anything is written
        return args.fn(args) or 0
    except KeyboardInterrupt:
        print("symgym: interrupted", file=sys.stderr)
        return 130
    except ImportError as e:  # an optional dependency is missing: name the extra that provides it
        from symgym.agents.registry import missing_extra_message

        msg = str(e) if type(e).__name__ == "MissingExtraError" else missing_extra_message(e)
        print(f"symgym: error: {' '.join(msg.split())}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (ValueError, KeyError, OSError) as e:  # OSError: missing files, read-only disks, busy ports, refusals
        print(f"symgym: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
