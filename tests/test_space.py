"""The Gradio Space: driven through gradio_client, and clicked in a real headless Chromium."""

from __future__ import annotations

import importlib.util
import re
import shutil
import socket
import sys
import zipfile
from pathlib import Path

import pytest
import torch

gr = pytest.importorskip("gradio", reason="the Space needs gradio (make test installs it)")

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def _load_app():
    spec = importlib.util.spec_from_file_location("space_app", ROOT / "spaces_demo" / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["space_app"] = module
    spec.loader.exec_module(module)
    return module


app = _load_app()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def space(tiny_fit, tmp_path_factory):
    """The app on a local port, serving the tiny Iris flow (as if it were embedded) and a saved copy."""
    folder = tmp_path_factory.mktemp("space")
    tiny_fit.pipeline.save_pretrained(folder / "pipeline")
    flows = {"tiny iris": app.Flow.from_pipeline(tiny_fit.pipeline, tiny_fit.training_zoo)}
    demo = app.build_demo(flows)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, max_file_size="5mb")
    yield {"url": f"http://127.0.0.1:{port}/", "folder": folder, "zoo": tiny_fit.training_zoo}
    demo.close()


@pytest.fixture(scope="module")
def client(space):
    from gradio_client import Client

    return Client(space["url"], verbose=False)


def test_generate_through_gradio_client(client, space):
    status, table, plot, download = client.predict(
        "tiny iris", "", "7", "rk4", "5", "3", api_name="/generate"
    )
    assert "Generated **7** networks" in status and "Median novelty" in status
    rows = table["data"]
    assert [r[0] for r in rows] == list(range(7))
    assert all(0.0 <= r[1] <= 1.0 for r in rows)  # test accuracy
    assert all(r[2] > 0 and r[3] > 0 for r in rows)  # distance and novelty of new networks
    assert plot is not None
    with zipfile.ZipFile(download) as z:
        assert sum(name.endswith(".safetensors") for name in z.namelist()) == 7
    again = client.predict("tiny iris", "", "7", "rk4", "5", "3", api_name="/generate")
    assert again[1]["data"] == rows  # same seed, same networks


def test_a_local_pipeline_folder_is_a_flow_only_when_enabled(client, space, monkeypatch):
    folder = str(space["folder"] / "pipeline")
    status, _, _, _ = client.predict("tiny iris", folder, "3", "euler", "4", "0", api_name="/generate")
    assert status.startswith("**Error:**") and "not a Hub repo id" in status  # visitors cannot probe folders
    monkeypatch.setattr(app, "ALLOW_LOCAL", True)  # the operator enables it
    status, table, _, _ = client.predict("tiny iris", folder, "3", "euler", "4", "0", api_name="/generate")
    assert "Generated **3** networks" in status and len(table["data"]) == 3


@pytest.mark.parametrize("repo", ["ünïcødé/流", "a/" + "b" * 5000, "../../etc", "org/name/extra"])
def test_odd_repo_ids_are_one_line_errors(client, repo):
    status, table, _, _ = client.predict("tiny iris", repo, "2", "rk4", "5", "0", api_name="/generate")
    assert status.startswith("**Error:**") and "not a Hub repo id" in status and not table["data"]
    assert len(status) < 300


def test_flow_cache_and_downloads_are_bounded(space, monkeypatch, tmp_path):
    library = app.FlowLibrary({})
    monkeypatch.setattr(app, "ALLOW_LOCAL", True)
    monkeypatch.setattr(app, "MAX_FLOWS", 2)
    copies = []
    for i in range(3):
        shutil.copytree(space["folder"] / "pipeline", tmp_path / f"p{i}")
        copies.append(str(tmp_path / f"p{i}"))
        library.get(None, copies[-1])
    assert list(library.extra) == copies[1:]  # the least recently used one was dropped
    monkeypatch.setattr(app, "MAX_DOWNLOADS", 2)
    monkeypatch.setattr(app, "DOWNLOADS", tmp_path / "downloads")
    for seed in range(4):
        app.generate(library, None, copies[-1], "2", "rk4", "3", str(seed))
    assert len(list((tmp_path / "downloads").iterdir())) == 2  # older archives removed, no folders left


def test_work_per_request_is_bounded_and_errors_hide_server_paths(space, monkeypatch):
    library = app.FlowLibrary({"tiny iris": app.Flow.from_pipeline(*_tiny(space))})
    monkeypatch.setattr(app, "MAX_WORK", 100)
    status, rows, _, download = app.generate(library, "tiny iris", None, "20", "rk4", "10", "0")
    assert "more work than one request may ask" in status and rows == [] and download is None
    assert (
        app.public("/srv/app/.cache/dwf_hub/space/flow/codec/config.json: invalid") == "config.json: invalid"
    )
    monkeypatch.setattr(app, "ALLOW_LOCAL", True)
    status, *_ = app.generate(library, None, str(space["folder"] / "missing"), "2", "rk4", "3", "0")
    assert str(space["folder"]) not in status and "**Error:**" in status


def test_gradio_cache_is_cleaned_and_downloads_go_with_the_server(space):
    demo = app.build_demo({})
    assert demo.delete_cache == app.CACHE_CLEANUP
    app.DOWNLOADS.mkdir(exist_ok=True)
    app._remove_downloads()  # what atexit runs when the server stops
    assert not app.DOWNLOADS.exists()


def _tiny(space):
    from dwf_hub.pipeline import DeepWeightFlowPipeline

    return DeepWeightFlowPipeline.from_pretrained(space["folder"] / "pipeline"), space["zoo"]


def test_an_upload_with_too_many_tensors_is_refused_from_its_header(client, space, tmp_path, monkeypatch):
    from gradio_client import handle_file

    from dwf_hub.io import save_tensors

    path = tmp_path / "many.safetensors"
    save_tensors(path, {f"t{i}": torch.zeros(1) for i in range(50)})
    monkeypatch.setattr(app, "MAX_UPLOAD_TENSORS", 20)
    report = client.predict("tiny iris", "", handle_file(str(path)), api_name="/inspect")
    assert report.startswith("**Error:**") and "50 tensors" in report


def test_bad_inputs_give_messages_and_the_app_keeps_working(client):
    status, table, _, _ = client.predict("tiny iris", "", "abc", "rk4", "5", "0", api_name="/generate")
    assert status == "**Error:** Number of networks must be a whole number, got 'abc'" and not table["data"]
    status, table, _, _ = client.predict("tiny iris", "", "2.5", "rk4", "5", "0", api_name="/generate")
    assert "whole number" in status
    status, _, _, _ = client.predict("tiny iris", "", "", "rk4", "5", "0", api_name="/generate")
    assert "whole number" in status
    status, _, _, _ = client.predict("tiny iris", "", "-3", "rk4", "5", "0", api_name="/generate")
    assert status == "**Error:** Number of networks must be at least 1, got -3"
    status, table, _, _ = client.predict("tiny iris", "", "10000", "rk4", "2", "0", api_name="/generate")
    assert f"Capped at {app.MAX_NETWORKS} networks per request (10000 asked)" in status
    assert len(table["data"]) == app.MAX_NETWORKS
    status, _, _, _ = client.predict(
        "tiny iris", "nobody/no-such-flow", "2", "rk4", "5", "0", api_name="/generate"
    )
    assert status.startswith("**Error:**") and "nobody/no-such-flow" in status
    status, _, _, _ = client.predict("tiny iris", "", "2", "rk4", "0", "0", api_name="/generate")
    assert "Steps must be between 1 and" in status
    status, table, _, _ = client.predict("tiny iris", "", "2", "rk4", "5", "0", api_name="/generate")
    assert "Generated **2** networks" in status and len(table["data"]) == 2


def test_inspect_an_uploaded_checkpoint(client, space, tmp_path):
    from gradio_client import handle_file

    from dwf_hub.io import save_tensors
    from dwf_hub.permutations import apply_permutation, random_permutation

    zoo = space["zoo"]
    sd = zoo.state_dict(3)
    spec = zoo.arch.permutation_spec()
    permuted = apply_permutation(spec, random_permutation(spec, sd, torch.Generator().manual_seed(0)), sd)
    save_tensors(tmp_path / "member.safetensors", sd)
    report = client.predict(
        "tiny iris", "", handle_file(str(tmp_path / "member.safetensors")), api_name="/inspect"
    )
    assert (
        "Distance to the nearest training-zoo network (best permutation): **0.0000**" in report
    )  # a (canonical) zoo member
    save_tensors(tmp_path / "permuted.safetensors", permuted)
    report = client.predict(
        "tiny iris", "", handle_file(str(tmp_path / "permuted.safetensors")), api_name="/inspect"
    )
    before, after = (float(v) for v in re.search(r"([\d.]+) as uploaded, \*\*([\d.]+)\*\*", report).groups())
    assert after < before  # canonicalization brought the permuted copy closer to the reference
    (tmp_path / "weights.pt").write_bytes(b"not safetensors")
    report = client.predict("tiny iris", "", handle_file(str(tmp_path / "weights.pt")), api_name="/inspect")
    assert report == "**Error:** weights.pt: only .safetensors checkpoints are accepted"
    limit = app.MAX_UPLOAD_MB
    app.MAX_UPLOAD_MB = 1e-6
    try:
        report = client.predict(
            "tiny iris", "", handle_file(str(tmp_path / "member.safetensors")), api_name="/inspect"
        )
    finally:
        app.MAX_UPLOAD_MB = limit
    assert report.startswith("**Error:** member.safetensors:") and "over the 1e-06 MB upload limit" in report
    save_tensors(tmp_path / "wrong.safetensors", {"layers.0.weight": torch.zeros(2, 2)})
    report = client.predict(
        "tiny iris", "", handle_file(str(tmp_path / "wrong.safetensors")), api_name="/inspect"
    )
    assert report.startswith("**Error:** wrong.safetensors: keys do not match")


def test_embedded_flows_are_built_once_then_loaded(tmp_path):
    first = app.build_embedded("iris_mlp", root=tmp_path, num_models=6, prebuilt=None)
    assert len(first.zoo) == 6 and first.zoo.is_canonical and first.test is not None
    mtime = (tmp_path / "iris_mlp" / "pipeline" / "model_index.json").stat().st_mtime
    second = app.build_embedded(
        "iris_mlp", root=tmp_path, num_models=6, prebuilt=None
    )  # loaded, not refitted
    assert (tmp_path / "iris_mlp" / "pipeline" / "model_index.json").stat().st_mtime == mtime
    a = first.pipeline(num_networks=2, generator=torch.Generator().manual_seed(0), output_type="pt").weights
    b = second.pipeline(num_networks=2, generator=torch.Generator().manual_seed(0), output_type="pt").weights
    assert torch.equal(a, b)


def _browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1600", f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Debian's chromium and chromium-driver are not installed (make test installs them where apt-get works)",
)
@pytest.mark.slow
def test_real_browser_generates_and_shows_errors(space, tmp_path):
    pytest.importorskip("selenium", reason="selenium is not installed")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _browser(tmp_path)
    try:
        wait = WebDriverWait(driver, 60)
        driver.get(space["url"])
        wait.until(ec.element_to_be_clickable((By.ID, "generate"))).click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "Generated 20 networks"))
        # the table renders the visible rows: the first ones, under the column headers
        wait.until(lambda d: d.find_element(By.ID, "results").text.split()[:2] == ["Generated", "networks"])
        rows = driver.find_element(By.ID, "results").text.splitlines()
        assert "novelty" in rows and "0" in rows and "1" in rows
        screenshot = tmp_path / "space_generate.png"
        driver.save_screenshot(str(screenshot))
        assert screenshot.stat().st_size > 10_000
        out = ROOT / "tests" / "artifacts"
        out.mkdir(exist_ok=True)
        shutil.copy(screenshot, out / "space_generate.png")

        field = driver.find_element(By.CSS_SELECTOR, "#num textarea, #num input")
        repo = driver.find_element(By.CSS_SELECTOR, "#repo textarea, #repo input")

        def submit(box, text: str, expected: str) -> None:
            box.clear()
            box.send_keys(text)
            driver.find_element(By.ID, "generate").click()
            wait.until(ec.text_to_be_present_in_element((By.ID, "status"), expected))

        submit(field, "abc", "must be a whole number")  # non-numeric -> a message in the page
        field.clear()
        field.send_keys("5")
        submit(repo, "nobody/no-such-flow", "nobody/no-such-flow")  # unknown repo -> a message
        submit(repo, " ", "Generated 5 networks")  # and the app still works
        submit(field, "5000", f"Capped at {app.MAX_NETWORKS}")  # too many -> capped, and said so
        driver.save_screenshot(str(out / "space_after_errors.png"))
        # a non-safetensors upload on the second tab -> a message in the page
        tabs = driver.find_elements(By.XPATH, "//button[@role='tab'][contains(., 'Inspect a checkpoint')]")
        next(t for t in tabs if t.is_displayed()).click()
        (tmp_path / "weights.pt").write_bytes(b"not safetensors")
        upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#upload input[type=file]"))
        driver.execute_script("arguments[0].style.display = 'block';", upload)  # what the file picker fills
        upload.send_keys(str(tmp_path / "weights.pt"))
        wait.until(lambda d: "weights.pt" in d.page_source)
        wait.until(ec.element_to_be_clickable((By.ID, "inspect"))).click()
        wait.until(
            ec.text_to_be_present_in_element((By.ID, "report"), "only .safetensors checkpoints are accepted")
        )
        driver.save_screenshot(str(out / "space_upload_error.png"))
    finally:
        driver.quit()


def test_shipped_flows_load_in_seconds_and_generate(tmp_path):
    """The embedded flows ship prebuilt: a fresh Space is ready without training anything."""
    import time

    t0 = time.perf_counter()
    flows = {
        label: app.build_embedded(recipe, root=tmp_path / "nothing-here")
        for label, recipe in app.EMBEDDED.items()
    }
    seconds = time.perf_counter() - t0
    assert not (tmp_path / "nothing-here").exists()  # nothing was trained or written
    assert seconds < 60, seconds
    for flow in flows.values():
        status, table, _, _ = app.generate(app.FlowLibrary({"f": flow}), "f", "", "3", "rk4", "5", "0")
        assert "Generated **3** networks" in status and len(table) == 3
        assert all(row[1] > 0.5 for row in table)  # working networks (test accuracy)


def test_space_requirements_install_here_and_match_the_package():
    """requirements.txt names only packages on the index (not dwf-hub itself) and agrees with pyproject."""
    from importlib.metadata import version

    import tomllib
    from packaging.requirements import Requirement

    lines = [ln.strip() for ln in (ROOT / "spaces_demo" / "requirements.txt").read_text().splitlines()]
    reqs = [Requirement(ln) for ln in lines if ln and not ln.startswith("#")]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    needed = {Requirement(d).name for d in project["dependencies"] if "python_version" not in d}
    assert needed <= {r.name for r in reqs} and "dwf-hub" not in {r.name for r in reqs}
    for r in reqs:  # the environment the tests run in satisfies every line
        assert r.specifier.contains(version(r.name), prereleases=True), (r, version(r.name))


@pytest.mark.slow
def test_make_space_assembles_a_deployable_folder(tmp_path):
    import subprocess

    space = tmp_path / "space"  # never inside the repository
    out = subprocess.run(
        ["make", "-s", "space", f"SPACE_DIR={space}"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert {"app.py", "README.md", "requirements.txt", "flows", "dwf_hub", "zoo_recipes", "model_cards"} <= {
        p.name for p in space.iterdir()
    }
    assert (space / "dwf_hub" / "pipeline.py").is_file() and not list(space.rglob("__pycache__"))
    again = subprocess.run(
        ["make", "-s", "space", f"SPACE_DIR={space}"], cwd=ROOT, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr  # its own Space: rebuilt
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    refused = subprocess.run(
        ["make", "-s", "space", f"SPACE_DIR={tmp_path / 'mine'}"], cwd=ROOT, capture_output=True, text=True
    )
    assert refused.returncode != 0 and "not a Space folder" in refused.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_the_histogram_compares_shares_not_counts(space):
    fig = app._histogram([0.9] * 100, [0.9] * 20 + [0.5] * 20, "accuracy")
    heights = {round(p.get_height(), 6) for p in fig.axes[0].patches if p.get_height() > 0}
    assert heights == {1.0, 0.5}  # all 100 generated in one bin: share 1; the zoo's two halves: 0.5 each
    assert fig.axes[0].get_ylabel() == "share of networks"
