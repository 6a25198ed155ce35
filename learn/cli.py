"""``symgym``: list envs, train/evaluate agents, collect demos, run scientific tasks and benchmarks, deploy.

Every failure the user can cause (unknown id, missing run, corrupt checkpoint, bad number) ends in a
one-line ``symgym: error: ...`` and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_USER_ERROR = 2


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

    rows = []
    for env_id in envs.symgym_env_ids():
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
    from symgym.agents import TrainConfig
    from symgym.learn.run.hyperparams import resolve
    from symgym.learn.run.training import TrainOptions, train

    steps, agent_kwargs = resolve(args.agent, args.env, args.steps, args.agent_kwargs, path=args.hyperparams)
    run_dir = Path(args.out or f"runs/{args.agent}-{args.env}-s{args.seed}")
    config = TrainConfig(agent=args.agent, env=args.env, steps=steps, seed=args.seed, out=str(run_dir),
                         demos=args.demos, env_kwargs=args.env_kwargs, agent_kwargs=agent_kwargs)
    options = TrainOptions(progress=not args.no_progress, tensorboard=args.tensorboard, eval_freq=args.eval_freq,
                           eval_episodes=args.eval_episodes, checkpoint_freq=args.checkpoint_freq)
    train(config, options)
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
                            eval_episodes=10, checkpoint_freq=0, no_progress=False)
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


# -- parser --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="symgym", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("envs", help="list env ids with their symmetry")
    ev.add_argument("--frames", default=None, metavar="DIR", help="instead, render one frame per env family into DIR")
    ev.set_defaults(fn=cmd_envs)

    t = sub.add_parser("train", help="train (or build) an agent; writes a run directory")
    t.add_argument("--agent", required=True)
    t.add_argument("--env", required=True)
    t.add_argument("--steps", type=_nonneg_int, default=None,
                   help="training budget (default: n_timesteps from the hyper-parameter file, else 20000)")
    t.add_argument("--seed", type=_nonneg_int, default=0)
    t.add_argument("--out", default=None, help="run directory (default runs/AGENT-ENV-sSEED)")
    t.add_argument("--demos", default=None, help="demonstrations file (imitation agents)")
    t.add_argument("--env-kwargs", type=_json_dict, default={}, help='JSON, e.g. \'{"wind": 0.5}\'')
    t.add_argument("--agent-kwargs", type=_json_dict, default={}, help="JSON hyper-parameter overrides")
    t.add_argument("--hyperparams", default=None,
                   help="RL-Zoo-style YAML keyed by env id (default: learn/run/hyperparams/AGENT.yml)")
    t.add_argument("--tensorboard", default=None, metavar="DIR", help="TensorBoard log directory (RL agents)")
    t.add_argument("--eval-freq", type=_nonneg_int, default=None,
                   help="env steps between EvalCallback evaluations (0: off; default steps/10)")
    t.add_argument("--eval-episodes", type=_positive_int, default=10)
    t.add_argument("--checkpoint-freq", type=_nonneg_int, default=0,
                   help="env steps between CheckpointCallback saves into RUN/checkpoints (0: off)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("eval", help="evaluate a saved run")
    e.add_argument("--run", required=True)
    e.add_argument("--env", default=None, help="evaluate on this env id instead of the run's (zero-shot transfer)")
    e.add_argument("--episodes", type=_positive_int, default=20)
    e.add_argument("--seed", type=_nonneg_int, default=10_000, help="first evaluation seed")
    e.add_argument("--video", action="store_true", help="write RUN/eval.mp4 of the first episodes (3-D view where headless GL works)")
    e.add_argument("--baseline", action="store_true", help="also evaluate a uniform random policy")
    e.set_defaults(fn=cmd_eval)

    d = sub.add_parser("demo", help="short SAC run on SymPush-v0 + evaluation + learning curve")
    d.add_argument("--steps", type=_positive_int, default=None, help="default: hyperparams/sac.yml (30000)")
    d.add_argument("--episodes", type=_positive_int, default=100)
    d.add_argument("--out", default="runs/demo")
    d.set_defaults(fn=cmd_demo)

    dm = sub.add_parser("demos", help="collect scripted-oracle demonstrations")
    dm.add_argument("--env", required=True)
    dm.add_argument("--n", type=_positive_int, required=True)
    dm.add_argument("--out", required=True)
    dm.add_argument("--seed", type=_nonneg_int, default=0)
    dm.set_defaults(fn=cmd_demos)

    for name, fn, help_ in (("task", cmd_task, "run a scientific task; writes results/NAME.json + PNGs"),
                            ("bench", cmd_bench, "run a benchmark; writes results/NAME.json + PNG")):
        k = sub.add_parser(name, help=help_)
        k.add_argument("name")
        k.add_argument("--quick", action="store_true", help="tiny settings (for tests)")
        k.add_argument("--seed", type=_nonneg_int, default=0)
        k.add_argument("--out", default="results")
        k.set_defaults(fn=fn)

    sw = sub.add_parser("sweep", help="run a sweep spec (grid of train->evaluate trials) on Ray Tune; resumable")
    sw.add_argument("spec", help="sweep spec YAML")
    sw.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS, else local Ray)")
    sw.add_argument("--storage", default=None, help="Tune storage_path (shared file system or object store)")
    sw.add_argument("--max-concurrent", type=_positive_int, default=None, help="trials at once (default: cores)")
    sw.add_argument("--resume", action="store_true", help="continue a killed sweep, skipping finished trials")
    sw.add_argument("--quick", action="store_true", help="the spec's tiny grid (for tests)")
    sw.add_argument("--out", default="results", help="results directory (trial summaries under OUT/trials/)")
    sw.set_defaults(fn=cmd_sweep)

    rp = sub.add_parser("report", help="aggregate a sweep's trial summaries (rliable) into the claims ledger")
    rp.add_argument("sweep", help="sweep name or spec YAML")
    rp.add_argument("--markdown", action="store_true", help="print the ledger as README markdown tables")
    rp.add_argument("--out", default="results")
    rp.set_defaults(fn=cmd_report)

    dp = sub.add_parser("deploy", help="run a trained policy on an arm through rosbridge")
    dp.add_argument("--run", required=True)
    dp.add_argument("--rosbridge", required=True, help="ws://HOST:PORT")
    dp.add_argument("--config", default=None, help="RosArm YAML config")
    dp.add_argument("--dry-run", action="store_true")
    dp.add_argument("--yes", action="store_true", help="skip the confirmation before the first motion")
    dp.add_argument("--steps", type=_positive_int, default=None)
    dp.add_argument("--log", default=None)
    dp.set_defaults(fn=cmd_deploy)

    sr = sub.add_parser("sim-robot", help="rosbridge-protocol server backed by a simulated arm (digital twin)")
    sr.add_argument("--port", type=_positive_int, default=9090)
    sr.add_argument("--env", default="SymPush-v0")
    sr.add_argument("--robot", default=None, help="simulated arm to serve (e.g. panda); default: the planar pusher")
    sr.set_defaults(fn=cmd_sim_robot)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args) or 0
    except KeyboardInterrupt:
        print("symgym: interrupted", file=sys.stderr)
        return 130
    except ImportError as e:
        # an optional dependency is missing: symgym.agents.registry.MissingExtraError names the extra
        if type(e).__name__ != "MissingExtraError":
            raise
        print(f"symgym: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (ValueError, FileNotFoundError, KeyError, NotADirectoryError, PermissionError, ConnectionError,
            TimeoutError) as e:
        msg = str(e) if not isinstance(e, KeyError) or hasattr(type(e), "__str__") else repr(e)
        print(f"symgym: error: {msg}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
