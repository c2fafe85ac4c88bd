"""``dwf-hub``: command-line interface. Heavy libraries are imported inside the commands."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from pathlib import Path
from typing import NoReturn


def _main_writes(write) -> bool:
    """Under accelerate launch / torchrun every rank computes and the main process alone writes; the others
    wait for it. Returns whether this is the main process (the one that reports)."""
    from .distributed import process_state

    state = process_state()
    if state.is_main_process:
        write()
    state.wait_for_everyone()
    return state.is_main_process


def _check_outputs(a: argparse.Namespace) -> None:
    """The output policy (``artifacts.check_output``) for every folder or file a command writes, before any
    work: each writing command declares ``output=(kind, input arguments)`` on its parser."""
    from .artifacts import check_output
    from .errors import DWFError

    kind, names = a.output
    inputs = [
        v for n in names for v in (getattr(a, n) if isinstance(getattr(a, n), list) else [getattr(a, n)]) if v
    ]
    if getattr(a, "out", None):
        check_output(a.out, kind, a.overwrite, inputs)
    if getattr(a, "export", None):
        if Path(a.export).resolve() == Path(a.out).resolve():
            raise DWFError(f"--export {a.export}: the same folder as --out")
        check_output(a.export, "exported networks", a.overwrite, [*inputs, a.out])
    if getattr(a, "json", None):
        out = Path(a.json)
        if out.is_dir() or out.is_symlink():
            raise DWFError(f"--json {a.json}: is a folder or a symbolic link; give a file name")
        if any(out.resolve() == Path(i).resolve() for i in inputs):
            raise DWFError(f"--json {a.json}: is an input; choose another file")
        if out.exists() and not a.overwrite:
            raise DWFError(f"--json {a.json}: exists; refusing to replace it (pass --overwrite)")


def _zoo_train(a: argparse.Namespace) -> None:
    from .zoo.training import train_zoo

    zoo = train_zoo(
        a.recipe,
        a.num_models,
        a.out,
        seed=a.seed,
        progress=not a.quiet,
        device=a.device,
        overwrite=a.overwrite,
    )
    m = zoo.arch.metric
    scores = [r[f"test_{m}"] for r in zoo.records]
    print(f"{len(zoo)} networks in {a.out}; test {m} mean {sum(scores) / len(scores):.4f}")


def _zoo_import(a: argparse.Namespace) -> None:
    from .errors import DWFError
    from .zoo.recipes import load_recipe
    from .zoo.weight_zoo import WeightZoo

    recipe = load_recipe(a.recipe) if a.recipe else None
    zoo = WeightZoo.from_transformers(a.models, recipe=recipe, info={"source": "imported"})
    if recipe and recipe.arch_spec != zoo.arch:
        raise DWFError(f"recipe {recipe.name!r} is for {recipe.arch_spec!r}, the models are {zoo.arch!r}")
    zoo.save(a.out, overwrite=a.overwrite)
    print(f"{len(zoo)} {zoo.arch.name} networks ({zoo.arch.num_params:,} weights each) in {a.out}")


def _recipes(a: argparse.Namespace) -> None:
    from .zoo.recipes import available_recipes, load_recipe

    for name in available_recipes():
        print(f"{name:<22} {load_recipe(name).description}")


def _canonicalize(a: argparse.Namespace) -> None:
    from .matching import canonicalize
    from .zoo.weight_zoo import open_zoo

    result = canonicalize(
        open_zoo(a.zoo),
        reference=a.reference,
        max_iter=a.max_iter,
        progress=not a.quiet,
        permute_residual=not a.fixed_residual,
    )
    perms = {f"{i}.{p}": idx for i, perm in enumerate(result.perms) for p, idx in perm.items()}
    if _main_writes(
        lambda: result.zoo.save(
            a.out, overwrite=a.overwrite, extra_tensors={"permutations.safetensors": perms}
        )
    ):
        print(f"canonical zoo of {len(result.zoo)} networks in {a.out} (reference: member {a.reference})")


def _count_or_fraction(text: str) -> int | float:
    """``64`` -> 64 components; ``0.99`` -> enough components for 99 % of the variance."""
    return float(text) if "." in text or "e" in text.lower() else int(text)


def _number_or_name(text: str) -> float | str:
    """``matched`` stays a name; anything else must be a number."""
    try:
        return float(text)
    except ValueError:
        return text


def _flow_fields():
    """``(phase, field, type hint)`` of every flow setting the CLI exposes (all but ``seed``)."""
    import dataclasses
    import typing

    from .configs import PHASES

    for phase, cls in PHASES.items():
        hints = typing.get_type_hints(cls)
        yield from ((phase, f, hints[f.name]) for f in dataclasses.fields(cls) if f.name != "seed")


def _argument(hint, meta) -> dict:
    """argparse keywords for a config field of type ``hint`` (``choices`` from its registry)."""
    import argparse
    import typing

    args = set(typing.get_args(hint)) - {type(None)}
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(hint) is tuple:
        return {"type": float, "nargs": len(typing.get_args(hint)), "metavar": "X"}
    if args == {int, float}:
        return {"type": _count_or_fraction}
    if args == {float, str}:
        return {"type": _number_or_name}
    kind = next(iter(args)) if args else hint
    return {"type": kind, "choices": list(meta["choices"]) if meta.get("choices") is not None else None}


def _add_flow_options(parser: argparse.ArgumentParser) -> None:
    """One option per flow setting, generated from the config dataclasses (help, type, choices)."""
    groups = {}
    for phase, f, hint in _flow_fields():
        if phase not in groups:
            groups[phase] = parser.add_argument_group(
                f"flow {phase} (the defaults below are the global ones; a zoo's recipe [flow] table overrides "
                "them, and fit logs every setting that differs)"
            )
        default = "" if f.default is None else f" (default {f.default})"
        groups[phase].add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None,
                                   help=f.metadata.get("help", "") + default, **_argument(hint, f.metadata))  # fmt: skip


def _log_settings(config, overrides: dict) -> None:
    """One line: every flow setting that differs from the global default, and who set it (recipe or option)."""
    import logging

    from .configs import FlowConfig

    defaults = FlowConfig().flat()
    changed = {k: v for k, v in config.flat().items() if v != defaults.get(k) and k != "seed"}
    said = ", ".join(f"{k}={v}{' (option)' if k in overrides else ''}" for k, v in changed.items()) or "none"
    logging.getLogger("dwf_hub.cli").info("flow settings beyond the global defaults: %s", said)


def _fit(a: argparse.Namespace) -> None:
    from .artifacts import resumable_job
    from .distributed import process_state
    from .errors import DWFError
    from .flow.fitting import default_flow_config, fit_conditional, fit_pipeline
    from .zoo.weight_zoo import open_zoo

    labels = [x.strip() for x in a.labels.split(",")] if a.labels else None
    if (len(a.zoo) > 1 or labels) and len(labels or []) != len(a.zoo):
        raise DWFError(
            f"{len(a.zoo)} zoos: --labels needs one name per zoo, comma-separated (got {a.labels!r})"
        )
    if labels and a.evaluate:
        raise DWFError("--evaluate: not for conditional flows; evaluate each condition's generated zoo")
    zoos = [open_zoo(z) for z in a.zoo]
    overrides = {f.name: getattr(a, f.name) for _, f, _ in _flow_fields() if getattr(a, f.name) is not None}
    overrides["seed"] = a.seed
    config = default_flow_config(zoos[0], a.preset, **overrides)
    _log_settings(config, overrides)
    out = Path(a.out)
    # the job is what it computes (settings, the zoos' contents), however the zoos were named
    job = {"fit": config.to_dict(), "zoos": [z.fingerprint() for z in zoos], "labels": labels,
           "evaluate": a.evaluate}  # fmt: skip
    with resumable_job(out, job, a.overwrite, main=process_state().is_main_process) as folder:
        ckpt = folder / "flow"
        if labels:
            result = fit_conditional(a.zoo, labels, config, checkpoint_dir=ckpt, progress=not a.quiet)
        else:
            result = fit_pipeline(zoos[0], config, checkpoint_dir=ckpt, progress=not a.quiet)
        evaluation = None
        if a.evaluate:
            from .evaluation.zoo_evaluation import evaluate_zoo

            generated = result.pipeline.generate_zoo(a.evaluate, seed=a.seed)
            evaluation = evaluate_zoo(generated, reference=result.training_zoo)
            evaluation.pop("scores", None)
        base_zoo = (
            None if labels or Path(a.zoo[0]).is_dir() else a.zoo[0]
        )  # a Hub repo id: linked from the card
        write = lambda: result.pipeline.save_pretrained(  # noqa: E731
            out, base_zoo=base_zoo, evaluation=evaluation, overwrite=a.overwrite
        )
        if not _main_writes(write):
            return
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    print(f"pipeline saved to {out} (final loss {result.losses[-1]:.4g}; {phases})")
    if result.selection is not None:
        print(f"flow selection: {result.selection.describe()}")


def _generate(a: argparse.Namespace) -> None:
    from .configs import CallConfig
    from .errors import DWFError
    from .pipeline import DeepWeightFlowPipeline

    CallConfig(a.num_networks, a.seed, temperature=a.temperature)  # before loading anything
    per_shard = a.networks_per_shard
    if per_shard is None and a.num_networks > PACK_ABOVE:
        per_shard = PACK_ABOVE
    if a.export and per_shard is not None:
        raise DWFError("--export writes one folder per network, for small sets: not with packed shards")
    pipe = DeepWeightFlowPipeline.from_pretrained(a.pipeline)
    given = {"num_inference_steps": a.steps, "solver": a.solver, "condition": a.condition,
             "guidance_scale": a.guidance_scale, "temperature": a.temperature,
             "quality_check": False if a.no_quality_check else None}  # fmt: skip
    kwargs = {k: v for k, v in given.items() if v is not None}
    if per_shard is not None:  # streamed: memory flat in the number of networks
        pipe.generate_to_disk(a.out, a.num_networks, a.seed, per_shard, a.overwrite, not a.quiet, **kwargs)
        print(f"{a.num_networks} generated networks in {a.out} ({per_shard} per shard){_checked(a.out)}")
        return
    from .artifacts import check_disk
    from .zoo.weight_zoo import zoo_bytes

    check_disk(a.out, zoo_bytes(pipe.codec_of(a.condition).arch, a.num_networks) * (2 if a.export else 1))
    zoo = pipe.generate_zoo(a.num_networks, seed=a.seed, **kwargs)
    zoo.save(a.out, overwrite=a.overwrite)
    if a.export:
        from .scoring import score_many
        from .zoo.export import export_networks

        scores = None
        with contextlib.suppress(
            DWFError, AttributeError
        ):  # each card says what its network scores, where the data can be had
            scores = score_many(zoo.arch, zoo.to_matrix(), *zoo.recipe.task.split("test")).tolist()
        provenance = {"source": "generated", "generator": a.pipeline, "scores": scores}
        export_networks(zoo.arch, [zoo.model(i) for i in range(len(zoo))], a.export, zoo.recipe, a.overwrite,
                        provenance)  # fmt: skip
        print(f"one Hub model folder per network in {a.export}")
    print(f"{len(zoo)} generated networks in {a.out}{_checked(a.out)}")


def _checked(out: str) -> str:
    """What the quality check did for the zoo at ``out``, as the end of ``generate``'s summary line."""
    from .zoo.weight_zoo import read_zoo_config

    check = read_zoo_config(Path(out)).get("info", {}).get("quality_check")
    if not check:
        return " (no quality check)"
    n = check["counts"]
    rate = (n["drawn"] - n["rejected"]) / n["drawn"]
    return (f"; quality check: {n['drawn']} drawn, {n['rejected']} rejected below {check['threshold']:.4f} "
            f"(acceptance {100 * rate:.0f} %)")  # fmt: skip


def _baseline(a: argparse.Namespace) -> None:
    from .evaluation.baselines import ZooBaseline
    from .zoo.weight_zoo import open_zoo

    knobs = {"sigma": a.sigma, "alpha": a.alpha, "k": a.k, "scale": a.scale}
    baseline = ZooBaseline(open_zoo(a.zoo), a.kind, **knobs, recalibrate_units=a.recalibrate_units)
    zoo = baseline.generate_zoo(a.num_networks, seed=a.seed)
    zoo.save(a.out, overwrite=a.overwrite)
    knob = ", ".join(f"{k}={v}" for k, v in baseline.knob.items())
    print(f"{len(zoo)} {a.kind} baseline networks ({knob}) in {a.out}")


def _evaluate(a: argparse.Namespace) -> None:
    from .evaluation.zoo_evaluation import evaluate_zoo
    from .zoo.weight_zoo import open_zoo

    json_out = Path(a.json) if a.json else None  # checked before any work (_check_outputs)
    ref = open_zoo(a.reference) if a.reference else None
    zoo = open_zoo(a.zoo)
    if a.out:
        summary = _report(a, zoo, ref)  # scores every set once, the generated one included
    else:
        summary = evaluate_zoo(zoo, reference=ref, split=a.split, holdout=a.holdout, progress=not a.quiet)
        print(_summary_line(summary, ref is not None))
    if json_out is not None:
        from .io import write_json

        write_json(json_out, summary)


def _report(a: argparse.Namespace, zoo, ref) -> dict:
    """``evaluate --out``: the comparison report; prints its verdict and the generated set's line."""
    from .errors import DWFError
    from .evaluation.report import build_report
    from .evaluation.verdict import INTERVALS, RATIOS, fmt_ratio, unit

    if ref is None:
        raise DWFError("--out writes a comparison report: give the training zoo with --reference")
    noise = tuple(_number("--noise", v) for v in a.noise.split(",")) if a.noise else ()
    report = build_report(
        zoo, ref, a.out, noise=noise, split=a.split, holdout=a.holdout,
        baselines=not a.no_baselines, progress=not a.quiet, sweep_networks=a.sweep_networks, overwrite=a.overwrite,
    )  # fmt: skip
    m, (scale, suffix) = report["metric"], unit(report["metric"])
    gen, seen = report["accuracy"]["generated"], report["accuracy"]["zoo"]
    ratios = ", ".join(f"{k.replace('_', ' ')} {fmt_ratio(report[k]['generated'], report[INTERVALS[k]]['generated'])}"
                       for k in RATIOS)  # fmt: skip
    failed = report["failed_share"]["generated"]
    print(f"{report['num_generated']} networks, {a.split} {m}{suffix} {scale * gen['mean']:.2f} ± "
          f"{scale * gen['std']:.2f}; reference {scale * seen['mean']:.2f} ± {scale * seen['std']:.2f}; {ratios}; "
          f"failed {100 * failed:.0f} %")  # fmt: skip
    print("\n".join(report["headline"]).replace("**", ""))
    print(f"wrote {Path(a.out) / 'report.md'} (the verdict in full), summary.json and figures")
    return report


def _summary_line(summary: dict, with_reference: bool) -> str:
    m = summary["metric"]
    v = (lambda x: f"{100 * x:.2f}%") if m == "accuracy" else (lambda x: f"{x:.4f}")
    line = f"{summary['num_networks']} networks, {summary['split']} {m} {v(summary[m + '_mean'])} ± {v(summary[m + '_std'])}"
    line += f" (min {v(summary[m + '_min'])}, max {v(summary[m + '_max'])})"
    if with_reference:
        line += (
            f"; reference {v(summary['reference_' + m + '_mean'])} ± {v(summary['reference_' + m + '_std'])}"
        )
        from .evaluation.verdict import INTERVALS, fmt_ratio

        line += "; " + ", ".join(
            f"{k.replace('_', ' ')} {fmt_ratio(summary[k], summary.get(INTERVALS[k]))}"
            for k in ("novelty_ratio", "diversity_ratio", "heldout_ratio")
            if k in summary
        )
    return line


def _number(option: str, text: str) -> float:
    from .errors import DWFError

    try:
        return float(text)
    except ValueError as e:
        raise DWFError(f"{option}: {text!r} is not a number") from e


def _zoo_push(a: argparse.Namespace) -> None:
    from .zoo.weight_zoo import WeightZoo

    url = WeightZoo.load(a.zoo).push_to_hub(
        a.repo, private=a.private or None, commit_message=a.message, create_pr=a.create_pr, license=a.license
    )
    print(f"zoo {a.zoo} pushed to {url}")


def _push(a: argparse.Namespace) -> None:
    from .errors import DWFError
    from .pipeline import DeepWeightFlowPipeline

    if (Path(a.pipeline) / "zoo.json").is_file():  # a zoo folder: `push` takes either kind
        if a.base_zoo:
            raise DWFError(f"--base-zoo: {a.pipeline} is a zoo; the option links a pipeline to its zoo")
        a.zoo = a.pipeline
        return _zoo_push(a)

    url = DeepWeightFlowPipeline.from_pretrained(a.pipeline).push_to_hub(
        a.repo, private=a.private or None, commit_message=a.message, create_pr=a.create_pr, license=a.license,
        base_zoo=a.base_zoo,
    )  # fmt: skip
    print(f"pipeline {a.pipeline} pushed to {url}")


def _finetune(a: argparse.Namespace) -> None:
    import dataclasses

    from .configs import build_dataclass
    from .evaluation.transfer import TransferConfig, load_transfer_recipe, run_transfer

    recipe = load_transfer_recipe(a.recipe)
    changes = {"num_networks": a.num_networks, "budgets": _number_list("--budgets", a.budgets, int),
               "methods": a.methods.split(",") if a.methods else None, "mode": a.mode,
               "lr_grid": _number_list("--lr-grid", a.lr_grid, float)}  # fmt: skip
    settings = {**dataclasses.asdict(recipe.transfer), **{k: v for k, v in changes.items() if v is not None}}
    recipe = dataclasses.replace(recipe, transfer=build_dataclass(TransferConfig, settings, "--options"))
    pipe = zoo = None
    if a.pipeline:
        from .pipeline import DeepWeightFlowPipeline

        pipe = DeepWeightFlowPipeline.from_pretrained(a.pipeline)
    if a.zoo:
        from .zoo.weight_zoo import open_zoo

        zoo = open_zoo(a.zoo)
    run_transfer(recipe, a.out, pipeline=pipe, zoo=zoo, progress=not a.quiet, overwrite=a.overwrite)
    if _main_writes(lambda: None):  # the table is written by the main process; it alone reports
        print((Path(a.out) / "table.md").read_text(), end="")
        print(f"wrote {Path(a.out)}/table.md, table.csv, summary.json, transfer.png")


def _number_list(option: str, text: str | None, kind: type) -> list | None:
    from .errors import DWFError

    if text is None:
        return None
    try:
        return [kind(v) for v in text.split(",")]
    except ValueError as e:
        raise DWFError(f"{option}: {text!r} is not a comma-separated list of {kind.__name__}s") from e


def _demo(a: argparse.Namespace) -> None:
    from .demo import print_summary, run_demo

    summary = run_demo(
        a.out, num_models=a.num_models, num_generated=a.num_generated, seed=a.seed, progress=not a.quiet,
        overwrite=a.overwrite,
    )  # fmt: skip
    print_summary(summary)
    print(f"wrote {Path(a.out) / 'report.md'} and {Path(a.out) / 'summary.json'}")


# flow.solvers.SOLVERS' names written out: importing it would pull torch into every command's start (test_cli)
SOLVER_NAMES = ("rk4", "heun", "euler")


def _alias(p: argparse.ArgumentParser, old: str, dest: str, kind: type) -> None:
    """``old``: an earlier spelling of ``dest``'s option, accepted but not listed (kept for a release)."""
    p.add_argument(old, dest=dest, type=kind, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def _push_arguments(p: argparse.ArgumentParser, what: str, help: str, example: str, func) -> None:
    p.add_argument(what, help=help)
    p.add_argument("repo", help=f"Hub repo id, e.g. {example}")
    p.add_argument(
        "--private",
        action="store_true",
        help="create the repo private (an existing repo keeps its visibility)",
    )
    p.add_argument("--message", default=None, help="commit message")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    p.add_argument("--license", default=None, help="licence identifier for the card (default: the recipe's)")
    p.set_defaults(func=func)


PACK_ABOVE = (
    1000  # `generate` packs shards above this many networks (the Hub's files-per-folder limit is 10k)
)
OVERWRITE_HELP = "replace --out even when it is not empty or not an artifact of ours (its files are lost)"


def _seed(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 2**63)")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


class _Parser(argparse.ArgumentParser):
    """Bad arguments are one line (``dwf-hub generate: error: ...``, exit 2), without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class _HelpFormatter(argparse.HelpFormatter):
    """Shows an option's default in its help, unless there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = not any(action.default is v for v in (None, False, argparse.SUPPRESS))
        if shown and "%(default)" not in text and action.option_strings:
            text += " (default: %(default)s)"
        return text


def _package_version() -> str:
    from .hub.repos import package_version  # hub imports nothing heavy at module level

    return package_version()


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="dwf-hub",
        description="Weight zoos and DeepWeightFlow generators.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars (also after the command)")
    p.add_argument("--version", action="version", version=f"dwf-hub {_package_version()}")
    # -q is accepted after any command too: sub-parsers inherit it without overriding the top-level value
    common = _Parser(add_help=False)
    common.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars"
    )
    kw = {"parents": [common], "formatter_class": _HelpFormatter}
    sub = p.add_subparsers(dest="command", required=True)

    zoo = sub.add_parser("zoo", help="zoo commands").add_subparsers(dest="zoo_command", required=True)
    t = zoo.add_parser("train", **kw, help="train a zoo from a recipe (resumes if interrupted)")
    t.add_argument("recipe", help="recipe name (see `dwf-hub recipes`) or path to a .toml recipe")
    t.add_argument("--num-networks", dest="num_models", type=int, default=100, help="networks in the zoo")
    _alias(t, "--num-models", "num_models", int)
    t.add_argument("--out", required=True, help="zoo folder to train into")
    t.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    t.add_argument("--seed", type=_seed, default=0, help="member i gets seed SEED+i")
    t.add_argument("--device", default=None, help="torch device to train on, e.g. cuda (default: cpu)")
    t.set_defaults(func=_zoo_train, output=("trained zoo", ("recipe",)))
    zi = zoo.add_parser("import", **kw, help="a zoo from saved transformers models (folders or Hub repo ids)")
    zi.add_argument("models", nargs="+", help="transformers model folders or Hub model repo ids")
    zi.add_argument("--out", required=True, help="zoo folder to write")
    zi.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    zi.add_argument("--recipe", default=None, help="recipe whose task evaluates the zoo (optional)")
    zi.set_defaults(func=_zoo_import, output=("imported zoo", ("models",)))
    zp = zoo.add_parser("push", **kw, help="upload a zoo folder as a Hub dataset repo")
    _push_arguments(zp, "zoo", "zoo folder", "org/dwf-zoo-resnet18-cifar10", _zoo_push)

    sub.add_parser("recipes", **kw, help="list the shipped zoo recipes").set_defaults(func=_recipes)

    c = sub.add_parser(
        "canonicalize", **kw, help="Git Re-Basin / TransFusion: align every member to one reference"
    )
    c.add_argument("zoo", help="zoo folder or Hub dataset repo id")
    c.add_argument("--out", required=True, help="folder for the canonical zoo")
    c.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    c.add_argument("--reference", type=int, default=0, help="index of the member every other is aligned to")
    c.add_argument("--max-iter", type=int, default=None, help="default: 100 (Re-Basin), 10 (TransFusion)")
    c.add_argument(
        "--fixed-residual", action="store_true", help="transformers: leave the residual stream fixed"
    )
    c.set_defaults(func=_canonicalize, output=("canonical zoo", ("zoo",)))

    f = sub.add_parser("fit", **kw, help="fit a DeepWeightFlow pipeline on a zoo (resumes if interrupted)")
    f.add_argument(
        "zoo",
        nargs="+",
        help="zoo folder or Hub dataset repo id; several with --labels: one conditional flow",
    )
    f.add_argument(
        "--labels", default=None, help="one condition name per zoo, comma-separated (conditional flow)"
    )
    f.add_argument("--out", required=True, help="pipeline folder to write")
    f.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    f.add_argument(
        "--preset",
        choices=["dwf", "paper"],
        default="dwf",
        help="dwf: our CPU-budget defaults; paper: the authors' Table 14 settings (30k iterations)",
    )
    f.add_argument("--seed", type=_seed, default=0, help="seed of canonicalization, PCA and flow training")
    f.add_argument("--evaluate", type=int, default=0, metavar="N",
                   help="generate N networks and put their accuracy and novelty in the model card")  # fmt: skip
    _add_flow_options(f)
    f.set_defaults(func=_fit, output=("pipeline", ("zoo",)))

    ps = sub.add_parser(
        "push", **kw, help="upload a pipeline (a Hub model repo) or a zoo (a dataset repo), with its card"
    )
    _push_arguments(
        ps,
        "pipeline",
        "pipeline or zoo folder (a pipeline also by Hub repo id)",
        "org/dwf-resnet18-cifar10",
        _push,
    )
    ps.add_argument(
        "--base-zoo", default=None, help="Hub dataset repo id of the training zoo (linked from the card)"
    )

    g = sub.add_parser("generate", **kw, help="generate networks with a pipeline into a zoo folder")
    g.add_argument("pipeline", help="pipeline folder or Hub model repo id")
    g.add_argument("--num-networks", type=int, default=100, help="networks to generate")
    g.add_argument("--out", required=True, help="zoo folder for the generated networks")
    g.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    g.add_argument("--seed", type=_seed, default=0, help="seed of the Gaussian source")
    g.add_argument("--num-inference-steps", dest="steps", type=int, default=None,
                   help="ODE steps (default: the pipeline's)")  # fmt: skip
    _alias(g, "--steps", "steps", int)
    g.add_argument("--export", default=None, metavar="DIR",
                   help="also write one loadable Hub model folder per network (save_pretrained format) into DIR")  # fmt: skip
    g.add_argument(
        "--solver", default=None, choices=SOLVER_NAMES, help="ODE solver (default: the pipeline's)"
    )
    g.add_argument("--condition", default=None, help="a conditional flow's label to generate for")
    g.add_argument(
        "--guidance-scale",
        type=float,
        default=None,
        help="classifier-free guidance (default: the pipeline's)",
    )
    g.add_argument("--temperature", type=float, default=None,
                   help="source std multiplier (default: the pipeline's; < 1 samples nearer the zoo's modes)")  # fmt: skip
    g.add_argument("--no-quality-check", action="store_true",
                   help="return the raw flow's networks: no redrawing of those below the pipeline's quality threshold")  # fmt: skip
    g.add_argument("--networks-per-shard", type=int, default=None, metavar="K",
                   help=f"write K networks per safetensors shard, generating K at a time (memory flat in N); "
                        f"default: one file per network up to {PACK_ABOVE} networks, else {PACK_ABOVE} per shard")  # fmt: skip
    g.set_defaults(func=_generate, output=("generated zoo", ("pipeline",)))

    e = sub.add_parser("evaluate", **kw, help="accuracy of a zoo; with --reference, novelty against it")
    e.add_argument("zoo", help="zoo folder or Hub dataset repo id")
    e.add_argument("--reference", help="a zoo to compare with (e.g. the training zoo)")
    e.add_argument("--split", default="test", choices=["train", "val", "test"], help="data split to score on")
    e.add_argument("--json", help="write the summary as JSON to this file")
    e.add_argument(
        "--out", help="write report.md, summary.json and figures (needs --reference) to this folder"
    )
    e.add_argument(
        "--noise",
        help="extra noise-baseline rows: comma-separated sigmas, relative to each tensor's spread in the zoo",
    )
    e.add_argument(
        "--holdout", type=int, default=None,
        help="the last N reference members were not fitted on (default: what the generated zoo records)",
    )  # fmt: skip
    e.add_argument(
        "--no-baselines",
        action="store_true",
        help="skip the baselines (noise, interpolation, mean + noise, Gaussian) at matched novelty",
    )
    e.add_argument(
        "--sweep-networks", type=_positive_int, default=None, metavar="N",
        help="networks per baseline sweep setting (default: as many as generated); the matched settings always "
        "use as many as generated. Fewer make a BatchNorm net's report on a CPU hours shorter",
    )  # fmt: skip
    e.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP + "; also an existing --json file")
    e.set_defaults(func=_evaluate, output=("report", ("zoo", "reference")))

    b = sub.add_parser(
        "baseline",
        **kw,
        help="networks from a trivial generator: zoo + noise, interpolation, zoo mean + noise, or a Gaussian",
    )
    # baselines.BASELINES written out: importing it would pull torch into every command's start (test_cli)
    b.add_argument("kind", choices=["noise", "interpolation", "mean_noise", "gaussian"])
    b.add_argument("zoo", help="zoo folder or Hub dataset repo id (canonicalized first unless it is)")
    b.add_argument("--out", required=True, help="zoo folder for the baseline networks")
    b.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    b.add_argument("--num-networks", type=int, default=100, help="networks to draw")
    b.add_argument("--seed", type=_seed, default=0, help="seed of the draws")
    b.add_argument(
        "--sigma", type=float, default=0.1, help="noise, mean_noise: std relative to each tensor's spread"
    )
    b.add_argument("--alpha", type=float, default=0.5, help="interpolation: weight off the first member")
    b.add_argument("--k", type=int, default=2, help="interpolation: members combined")
    b.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="gaussian: std relative to the fitted Gaussian's (0: the mean)",
    )
    b.add_argument(
        "--recalibrate-units",
        action="store_true",
        help="MLPs, SmallCNNs: reset hidden units to the parents' pre-activation statistics (as flows fitted with "
        "unit_recalibration do)",
    )
    b.set_defaults(func=_baseline, output=("baseline zoo", ("zoo",)))

    ft = sub.add_parser(
        "finetune", **kw, help="transfer: fine-tune generated, pretrained and random networks"
    )
    ft.add_argument("recipe", help="transfer recipe name (zoo_recipes/transfer/) or path to a .toml")
    ft.add_argument(
        "--out",
        required=True,
        help="folder for results.json, the table and the figure (an interrupted run resumes)",
    )
    ft.add_argument("--pipeline", default=None, help="the source flow (folder or Hub repo id): 'generated'")
    ft.add_argument("--zoo", default=None, help="the source zoo (folder or Hub repo id): 'pretrained'")
    ft.add_argument("--num-networks", type=int, default=None, help="K per method (default: the recipe's)")
    ft.add_argument(
        "--budgets", default=None, help="comma-separated epochs, e.g. 0,1,5 (default: the recipe's)"
    )
    ft.add_argument(
        "--methods", default=None, help="comma-separated: generated,pretrained,random (default: all)"
    )
    ft.add_argument(
        "--mode", default=None, help="full, linear_probe or detach: what is trained (default: the recipe's)"
    )
    ft.add_argument(
        "--lr-grid", default=None, help="comma-separated learning rates, each method and budget keeping the "
        "best on the validation shots, e.g. 1e-3,1e-2 (default: the recipe's)",
    )  # fmt: skip
    ft.add_argument(
        "--overwrite", action="store_true", help=OVERWRITE_HELP + "; also starts an interrupted run over"
    )
    ft.set_defaults(func=_finetune, output=("transfer results", ("pipeline", "zoo", "recipe")))

    d = sub.add_parser(
        "demo", **kw, help="the main job: Iris zoo -> canonicalize -> fit -> generate -> evaluate"
    )
    d.add_argument("--out", default="demo_out", help="folder for everything the demo writes")
    d.add_argument("--zoo-size", dest="num_models", type=int, default=100, help="networks in the zoo")
    d.add_argument("--num-networks", dest="num_generated", type=int, default=100, help="networks to generate")
    _alias(d, "--num-models", "num_models", int)
    _alias(d, "--num-generated", "num_generated", int)
    d.add_argument("--seed", type=_seed, default=0, help="seed of the whole run")
    d.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    d.set_defaults(func=_demo, output=("demo", ()))
    return p


def main(argv: list[str] | None = None) -> int:
    from .errors import DWFError

    args = build_parser().parse_args(argv)
    import logging

    # under torchrun / accelerate launch, rank 0 speaks for the job: other ranks print errors only
    follower = os.environ.get("RANK", "0") != "0"
    args.quiet = args.quiet or follower
    logging.basicConfig(format="dwf-hub: %(message)s", level=logging.WARNING if args.quiet else logging.INFO)
    logging.getLogger("dwf_hub").setLevel(
        logging.ERROR if follower else logging.WARNING if args.quiet else logging.INFO
    )
    if args.quiet:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read when huggingface_hub is imported (after this)
        if "diffusers" in sys.modules or args.command in ("fit", "generate", "push", "demo", "evaluate"):
            from diffusers.utils import logging as diffusers_logging

            diffusers_logging.disable_progress_bar()
    try:
        if hasattr(args, "output"):
            _check_outputs(args)
        with contextlib.redirect_stdout(io.StringIO()) if follower else contextlib.nullcontext():
            args.func(args)
    except DWFError as e:
        _say(f"dwf-hub: error: {e}")
        return 2
    except OSError as e:  # a full or read-only disk, a name the file system refuses: one line
        where = f"{e.filename}: " if e.filename else ""
        _say(f"dwf-hub: error: {where}{e.strerror or e}")
        return 2
    except KeyboardInterrupt:
        _say("dwf-hub: interrupted (rerun the same command to resume where it stopped)")
        return 130
    return 0


def _say(line: str) -> None:
    """One line on stderr, whatever it holds (a path that is not UTF-8 is shown with escapes)."""
    print(line.encode("utf-8", "backslashreplace").decode("utf-8"), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
