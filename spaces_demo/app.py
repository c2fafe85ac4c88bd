"""DeepWeightFlow Space: pick a flow, press Generate, get a population of working networks.

    python spaces_demo/app.py            # http://127.0.0.1:7860

Flows: the embedded Iris and digits flows (built offline on first start, then loaded from
``DWF_SPACE_CACHE``), or any DeepWeightFlow pipeline by Hub repo id; a server-local folder only when the
operator sets ``DWF_SPACE_ALLOW_LOCAL=1``. Limits: ``DWF_MAX_NETWORKS`` networks per request (default 200),
``DWF_MAX_UPLOAD_MB`` per upload (default 50) and ``DWF_MAX_UPLOAD_TENSORS`` tensors in it (default 10,000),
``DWF_MAX_NETWORK_STEPS`` networks x ODE steps per request (default 20,000), ``DWF_MAX_FLOWS`` flows kept loaded besides the embedded ones (default 8), ``DWF_MAX_DOWNLOADS`` generated
archives kept for download (default 32).
"""

from __future__ import annotations

import atexit
import functools
import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import gradio as gr
import torch

from dwf_hub.errors import DWFError
from dwf_hub.evaluation.novelty import NoveltyScorer
from dwf_hub.evaluation.zoo_evaluation import aligned_matrices
from dwf_hub.flow.solvers import SOLVERS
from dwf_hub.pipeline import DeepWeightFlowPipeline
from dwf_hub.scoring import score_many
from dwf_hub.zoo.weight_zoo import WeightZoo

MAX_NETWORKS = int(os.environ.get("DWF_MAX_NETWORKS", "200"))
MAX_UPLOAD_MB = float(os.environ.get("DWF_MAX_UPLOAD_MB", "50"))
MAX_UPLOAD_TENSORS = int(os.environ.get("DWF_MAX_UPLOAD_TENSORS", "10000"))
MAX_FLOWS = int(os.environ.get("DWF_MAX_FLOWS", "8"))
MAX_DOWNLOADS = int(os.environ.get("DWF_MAX_DOWNLOADS", "32"))
ALLOW_LOCAL = os.environ.get("DWF_SPACE_ALLOW_LOCAL", "") == "1"
MAX_STEPS = 1000
# networks x ODE steps per request: 200 x 100 takes seconds on 2 cores; 200 x 1000 held the queue for 112 s
MAX_WORK = int(os.environ.get("DWF_MAX_NETWORK_STEPS", "20000"))
# Gradio copies every returned file and figure into its cache: every 10 minutes, drop what is older than 30
CACHE_CLEANUP = (600, 1800)
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
DOWNLOADS = Path(tempfile.gettempdir()) / f"dwf_space_{os.getpid()}"
CACHE = Path(os.environ.get("DWF_SPACE_CACHE", Path.home() / ".cache" / "dwf_hub" / "space"))
PREBUILT = Path(__file__).parent / "flows"  # rebuild with: python spaces_demo/app.py --rebuild-flows
EMBEDDED = {"Iris MLP (embedded)": "iris_mlp", "8x8 digits MLP (embedded)": "digits_mlp"}
COLUMNS = ["network", "test score", "distance to nearest zoo network", "novelty"]


@dataclass
class Flow:
    """A pipeline, the canonical zoo it was trained on (when known) and its test data (when loadable)."""

    pipeline: DeepWeightFlowPipeline
    zoo: WeightZoo | None
    test: tuple[torch.Tensor, torch.Tensor] | None

    @classmethod
    def from_pipeline(cls, pipe: DeepWeightFlowPipeline, zoo: WeightZoo | None) -> Flow:
        try:
            test = pipe.recipe.split("test") if pipe.recipe else None
        except DWFError:  # e.g. a Hub dataset that is not available here
            test = None
        if zoo is not None and not zoo.is_canonical:
            from dwf_hub.matching import canonicalize

            zoo = canonicalize(zoo, progress=False).zoo
        if zoo is not None:  # held in memory: every request compares against it
            zoo = WeightZoo(zoo.arch, list(zoo), zoo.records, recipe=zoo.recipe, info=zoo.info)
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, zoo, test)

    @cached_property
    def novelty(self) -> NoveltyScorer:
        """Permutation-invariant distances to the canonical zoo, and its median nearest-neighbour distance."""
        return NoveltyScorer(self.zoo.arch, self.zoo.to_matrix())

    def nearest_zoo_distance(self, weights: torch.Tensor) -> torch.Tensor:
        """``[N]`` permutation-invariant distance of each network ``weights [N, D]`` to its nearest zoo network."""
        return self.novelty.nearest(weights, self.novelty.train)


def build_embedded(
    recipe: str, root: Path = CACHE, num_models: int = 100, prebuilt: Path | None = PREBUILT
) -> Flow:
    """The recipe's flow and canonical zoo: shipped prebuilt in ``prebuilt/<recipe>`` (the Space is ready in
    seconds), else trained and fitted once offline into ``root`` and loaded from there on later starts."""
    from dwf_hub.flow.fitting import fit_pipeline
    from dwf_hub.zoo.training import train_zoo

    folder = prebuilt / recipe if prebuilt is not None and (prebuilt / recipe).is_dir() else root / recipe
    if not (folder / "pipeline" / "model_index.json").is_file() or not (folder / "canonical_zoo").is_dir():
        zoo = train_zoo(recipe, num_models, folder / "zoo", progress=False)
        fit = fit_pipeline(zoo, progress=False)
        fit.training_zoo.save(folder / "canonical_zoo")
        fit.pipeline.save_pretrained(folder / "pipeline")
    pipe = DeepWeightFlowPipeline.from_pretrained(folder / "pipeline")
    return Flow.from_pipeline(pipe, WeightZoo.load(folder / "canonical_zoo"))


class FlowLibrary:
    """The embedded flows plus the ``MAX_FLOWS`` most recently used repo ids (loaded once, then kept)."""

    def __init__(self, flows: dict[str, Flow]) -> None:
        self.flows, self.extra = dict(flows), {}

    def get(self, choice: str | None, repo: str | None) -> Flow:
        key = (repo or "").strip() or choice
        if not key:
            raise DWFError("choose a flow or enter a Hub repo id")
        if key in self.flows:
            return self.flows[key]
        if key not in self.extra:
            self.extra[key] = self._load(key)
            while len(self.extra) > MAX_FLOWS:
                self.extra.pop(next(iter(self.extra)))
        self.extra[key] = self.extra.pop(key)  # most recently used last
        return self.extra[key]

    @staticmethod
    def _load(key: str) -> Flow:
        local = ALLOW_LOCAL and Path(key).is_dir()
        if not local and not REPO_ID.match(key):
            shown = key if len(key) <= 60 else key[:60] + "…"
            raise DWFError(
                f"{shown!r} is not a Hub repo id of the form 'org/name' (ASCII, at most 96 characters each)"
            )
        try:
            pipe = DeepWeightFlowPipeline.from_pretrained(key, local_files_only=False)
        except DWFError:
            raise
        except Exception as e:  # a Space answers every request; the reason goes to the status field
            raise DWFError(f"{key}: could not load this flow ({type(e).__name__})") from None
        base = pipe.card_info.get("base_zoo")
        zoo = None
        if isinstance(base, str) and REPO_ID.match(base):
            try:
                zoo = WeightZoo.from_pretrained(base)
            except DWFError:
                zoo = None
        return Flow.from_pipeline(pipe, zoo)


def _whole_number(value: Any, name: str, low: int, high: int | None = None) -> int:
    if value is None or isinstance(value, bool) or str(value).strip() == "":
        raise DWFError(f"{name} must be a whole number")
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        raise DWFError(f"{name} must be a whole number, got {value!r}") from None
    if not math.isfinite(number) or number != int(number):
        raise DWFError(f"{name} must be a whole number, got {value!r}")
    if high is None and number < low:
        raise DWFError(f"{name} must be at least {low}, got {int(number)}")
    if high is not None and not low <= number <= high:
        raise DWFError(f"{name} must be between {low} and {high}, got {int(number)}")
    return int(number)


def _histogram(generated: list[float], zoo: list[float], metric: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    values = generated + zoo
    bins = torch.linspace(min(values), max(values) + 1e-6, 21).tolist() if values else 20
    # shares, not counts: 100 generated against a zoo of 20 would otherwise look like a different distribution
    if zoo:
        ax.hist(
            zoo, bins=bins, alpha=0.6, weights=[1 / len(zoo)] * len(zoo), label=f"training zoo ({len(zoo)})"
        )
    if generated:
        ax.hist(generated, bins=bins, alpha=0.6, weights=[1 / len(generated)] * len(generated),
                label=f"generated ({len(generated)})")  # fmt: skip
    ax.set_xlabel(f"test {metric}")
    ax.set_ylabel("share of networks")
    ax.legend()
    fig.tight_layout()
    return fig


def _zip(zoo: WeightZoo) -> str:
    """The generated zoo as a zip archive to download; only the ``MAX_DOWNLOADS`` newest are kept."""
    DOWNLOADS.mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="generated_", dir=DOWNLOADS))
    try:
        zoo.save(folder / "generated")
        archive = shutil.make_archive(str(folder), "zip", folder / "generated")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    archives = sorted(DOWNLOADS.glob("generated_*.zip"), key=lambda p: p.stat().st_mtime)
    for old in archives[:-MAX_DOWNLOADS]:
        old.unlink(missing_ok=True)
    return archive


_PATH = re.compile(r"(?:/[^/\s:'\"()]+)+/([^/\s:'\"()]+)")


def public(message: str) -> str:
    """``message`` with every absolute path cut to its last part: a visitor learns nothing of the server."""
    return _PATH.sub(r"\1", message)


def _remove_downloads() -> None:
    shutil.rmtree(DOWNLOADS, ignore_errors=True)


def answer_errors(*empty: Any):
    """Every failure of a request ends up in its status field as one line (never a blank Gradio error)."""

    def wrap(fn):
        @functools.wraps(fn)
        def run(*args):
            try:
                return fn(*args)
            except DWFError as e:
                message = public(str(e))
            except Exception as e:  # the Space keeps serving; the operator's log has the traceback
                import logging

                logging.getLogger(__name__).exception("request failed")
                message = f"the request failed ({type(e).__name__}); nothing was generated"
            return (f"**Error:** {message}", *empty) if empty else f"**Error:** {message}"

        return run

    return wrap


@answer_errors([], None, None)
def generate(library: FlowLibrary, choice, repo, num_networks, solver, steps, seed):
    """-> (status markdown, table rows, histogram, zip path)."""
    try:
        flow = library.get(choice, repo)
        asked = _whole_number(num_networks, "Number of networks", 1)
        steps = _whole_number(steps, "Steps", 1, MAX_STEPS)
        seed = _whole_number(seed, "Seed", 0, 2**32 - 1)
        SOLVERS[solver]  # an unknown name raises, naming the known ones
        n = min(asked, MAX_NETWORKS)
        if n * steps > MAX_WORK:
            raise DWFError(f"{n} networks x {steps} steps is more work than one request may ask "
                           f"({MAX_WORK:,} network-steps): fewer networks or steps")  # fmt: skip
        pipe = flow.pipeline
        t0 = time.perf_counter()
        out = pipe(num_networks=n, generator=torch.Generator().manual_seed(seed), num_inference_steps=steps,
                   solver=solver, output_type="state_dict")  # fmt: skip
        seconds = time.perf_counter() - t0
    except DWFError as e:  # also a flow that cannot calibrate its BatchNorm networks here
        return f"**Error:** {public(str(e))}", [], None, None
    generated = pipe.to_zoo(out, seed=seed)
    metric = pipe.arch.metric
    scores = score_many(pipe.arch, out.weights, *flow.test).tolist() if flow.test else [math.nan] * n
    if flow.zoo is not None:
        aligned, _ = aligned_matrices(generated, flow.zoo)
        distances = flow.nearest_zoo_distance(aligned).tolist()
        novelty = [d / flow.novelty.scale for d in distances]
    else:
        distances = novelty = [math.nan] * n
    rows = [
        [i, round(s, 4), round(d, 4), round(v, 3)]
        for i, (s, d, v) in enumerate(zip(scores, distances, novelty))
    ]
    zoo_scores = [r.get(f"test_{metric}") for r in flow.zoo.records] if flow.zoo is not None else []
    zoo_scores = [s for s in zoo_scores if s is not None]
    lines = [f"Generated **{n}** networks of `{pipe.arch.name}` ({pipe.arch.num_params:,} weights) in "
             f"**{seconds:.2f} s** ({solver}, {steps} steps, seed {seed})."]  # fmt: skip
    if asked > n:
        lines.append(f"Capped at {MAX_NETWORKS} networks per request ({asked} asked).")
    if flow.test:
        mean = sum(scores) / n
        lines.append(f"Test {metric}: mean **{mean:.4f}**" + (
            f" (training zoo: {sum(zoo_scores) / len(zoo_scores):.4f})" if zoo_scores else ""))  # fmt: skip
    else:
        lines.append("The flow's test data is not available here, so no test scores.")
    if flow.zoo is not None:
        median = sorted(novelty)[n // 2]
        lines.append(f"Median novelty **{median:.3f}** (distance to the nearest zoo network over the zoo's own "
                     "nearest-neighbour distance: near 0 = copies of the zoo, about 1 = new networks).")  # fmt: skip
    plot = _histogram([s for s in scores if not math.isnan(s)], zoo_scores, metric) if flow.test else None
    return "\n\n".join(lines), rows, plot, _zip(generated)


def _check_upload_header(path: Path) -> None:
    """Refuse an upload with too many tensors from its header alone, before any tensor is read."""
    from dwf_hub.io import read_header

    count = len(read_header(path).shapes)
    if count > MAX_UPLOAD_TENSORS:
        raise DWFError(f"{path.name}: {count:,} tensors, more than the {MAX_UPLOAD_TENSORS:,} accepted")


@answer_errors()
def inspect(library: FlowLibrary, choice, repo, upload) -> str:
    """Canonicalize an uploaded safetensors checkpoint against the flow's reference; its distance to the zoo."""
    from dwf_hub.io import load_tensors

    try:
        flow = library.get(choice, repo)
        if upload is None:
            raise DWFError("upload a .safetensors checkpoint first")
        path = Path(upload if isinstance(upload, str) else upload.name)
        if path.suffix != ".safetensors":
            raise DWFError(f"{path.name}: only .safetensors checkpoints are accepted")
        size_mb = path.stat().st_size / 2**20
        if size_mb > MAX_UPLOAD_MB:
            raise DWFError(f"{path.name}: {size_mb:.1f} MB is over the {MAX_UPLOAD_MB:g} MB upload limit")
        arch = flow.pipeline.arch
        _check_upload_header(path)
        state = load_tensors(path)
        arch.validate(state, source=path.name)
        aligned = flow.pipeline.canonicalize(state)
    except DWFError as e:
        return f"**Error:** {e}"
    ref = flow.pipeline.codec.reference
    before, after = (float((arch.flatten(sd) - ref).norm()) for sd in (state, aligned))
    lines = [f"`{path.name}`: a `{arch.name}` with {arch.num_params:,} weights.",
             f"Distance to the flow's reference network: {before:.4f} as uploaded, **{after:.4f}** after "
             "canonicalization (same function, permuted units)."]  # fmt: skip
    if flow.zoo is not None:
        d = float(flow.nearest_zoo_distance(arch.flatten(aligned)[None])[0])
        lines.append(f"Distance to the nearest training-zoo network (best permutation): **{d:.4f}** = "
                     f"{d / flow.novelty.scale:.3f} times the zoo's median nearest-neighbour distance.")  # fmt: skip
    if flow.test:
        score = float(score_many(arch, arch.flatten(state)[None], *flow.test)[0])
        lines.append(f"Test {arch.metric}: **{score:.4f}**.")
    return "\n\n".join(lines)


def build_demo(flows: dict[str, Flow]) -> gr.Blocks:
    library = FlowLibrary(flows)
    with gr.Blocks(title="DeepWeightFlow", delete_cache=CACHE_CLEANUP) as demo:
        gr.Markdown("# DeepWeightFlow\nGenerate populations of ready-to-use neural networks from a flow "
                    "fitted on a weight zoo — no training, no fine-tuning.")  # fmt: skip
        with gr.Row():
            choice = gr.Dropdown(list(flows), value=next(iter(flows), None), label="Flow")
            repo = gr.Textbox(
                label="…or a Hub repo id / local folder",
                placeholder="org/dwf-resnet18-cifar10",
                elem_id="repo",
            )
        with gr.Tab("Generate"):
            with gr.Row():
                # Text fields, so that whatever is typed reaches the checks below (a number field would
                # silently keep its last valid value).
                num = gr.Textbox("20", label=f"Number of networks (at most {MAX_NETWORKS})", elem_id="num")
                solver = gr.Dropdown(list(SOLVERS.names()), value="rk4", label="ODE solver")
                steps = gr.Textbox("10", label="Steps", elem_id="steps")
                seed = gr.Textbox("0", label="Seed", elem_id="seed")
            button = gr.Button("Generate", variant="primary", elem_id="generate")
            status = gr.Markdown(elem_id="status")
            table = gr.Dataframe(headers=COLUMNS, label="Generated networks", elem_id="results")
            plot = gr.Plot(label="Test score: generated vs. training zoo")
            download = gr.File(label="Generated weights (zoo folder of safetensors, zipped)")
            button.click(
                lambda *a: generate(library, *a),
                [choice, repo, num, solver, steps, seed],
                [status, table, plot, download],
                api_name="generate",
            )
        with gr.Tab("Inspect a checkpoint"):
            upload = gr.File(
                label=f"A .safetensors checkpoint of the flow's architecture (≤ {MAX_UPLOAD_MB:g} MB)",
                elem_id="upload",
            )
            inspect_button = gr.Button("Canonicalize and compare", elem_id="inspect")
            report = gr.Markdown(elem_id="report")
            inspect_button.click(
                lambda *a: inspect(library, *a), [choice, repo, upload], report, api_name="inspect"
            )
    return demo


def main() -> None:
    import sys

    if "--rebuild-flows" in sys.argv:  # after a format change: refit the shipped flows (minutes on 2 cores)
        for recipe in EMBEDDED.values():
            shutil.rmtree(PREBUILT / recipe, ignore_errors=True)
            build_embedded(recipe, root=PREBUILT, prebuilt=None)
            shutil.rmtree(
                PREBUILT / recipe / "zoo", ignore_errors=True
            )  # only the flow and canonical zoo ship
        return
    flows = {label: build_embedded(recipe) for label, recipe in EMBEDDED.items()}
    atexit.register(_remove_downloads)  # the zips of this server's answers go with it
    build_demo(flows).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), max_file_size=f"{MAX_UPLOAD_MB:g}mb"
    )


if __name__ == "__main__":
    main()
