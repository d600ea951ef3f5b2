"""The read-only web page ``/ui`` of ``phalanx serve``: its routes and ``/ui/topology.json``
against a dry-run extender served in process, and the page itself in a real headless browser
(Chromium driven by Playwright), which must draw the fabric, list the queue, highlight a
selected gang's nodes and give a screenshot that is a picture, not a blank page."""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from phalanx.extender.app import ExtenderApp
from phalanx.extender.config import ServeConfig
from phalanx.extender.runtime import DryRunBackend, planner_factory
from phalanx.extender.ui_routes import ui_view
from phalanx.topology.model import Cluster
from phalanx.topology.presets import dgx_h100, rail_fat_tree

from tests.fake_apiserver import kube_pod, phalanx_gang, serve_app

NODES = [f"h100-{i:05d}" for i in range(8)]
SELECTED_RGB = (0xDB, 0x27, 0x77)
"""The stroke of a selected gang's nodes (``--selected`` in ``extender/ui/ui.css``)."""


def _filter(http: httpx.Client, pod: dict[str, Any]) -> list[str]:
    reply = http.post("/filter", json={"Pod": pod, "Nodes": None, "NodeNames": NODES}).json()
    return reply["NodeNames"] or []


def _gang(http: httpx.Client, name: str, size: int, *, present: int | None = None, bind: bool):
    pods = [
        kube_pod(f"{name}-{i}", annotations=phalanx_gang(name, size))
        for i in range(size if present is None else present)
    ]
    for pod in pods:
        _filter(http, pod)
    if not bind:
        return
    binds = []
    for pod in pods:
        (node,) = _filter(http, pod)
        meta = pod["metadata"]
        binds.append(
            {"PodName": meta["name"], "PodNamespace": "ml", "PodUID": meta["uid"], "Node": node}
        )

    def bind(args: dict[str, str]) -> dict[str, Any]:
        with httpx.Client(base_url=str(http.base_url), timeout=30) as own:
            return own.post("/bind", json=args).json()

    # together, as kube-scheduler's binding goroutines do: a gang may bind only as a whole
    with ThreadPoolExecutor(len(binds)) as pool:
        assert list(pool.map(bind, binds)) == [{"Error": ""}] * len(binds)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, httpx.Client]]:
    """Two SUs of four 8-GPU nodes: ml/a (3 x 8) bound, ml/b (2 x 8) reserved and not bound,
    ml/c (4 x 8) waiting for room, ml/d with one member of two."""
    nodes = [dgx_h100(name) for name in NODES]
    cluster = Cluster("two-sus", nodes, rail_fat_tree(nodes, su_nodes=4))
    backend = DryRunBackend(planner_factory(ServeConfig())(cluster))
    with serve_app(ExtenderApp(backend)) as url, httpx.Client(base_url=url) as http:
        _gang(http, "a", 3, bind=True)
        _gang(http, "b", 2, bind=False)
        _gang(http, "c", 4, bind=False)
        _gang(http, "d", 2, present=1, bind=False)
        yield url, http


# ---------------------------------------------------------------------------- routes
def test_ui_redirects_to_the_page_keeping_only_the_gang_selection(server):
    _, http = server
    reply = http.get("/ui", params={"gang": "ml/a", "x": "\r\nevil"})
    assert reply.status_code == 302 and reply.headers["location"] == "ui/?gang=ml%2Fa"
    assert http.get("/ui").headers["location"] == "ui/"


def test_page_and_its_assets_are_served_with_a_strict_policy(server):
    _, http = server
    page = http.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert 'src="ui.js"' in page.text and 'href="ui.css"' in page.text
    script = http.get("/ui/ui.js")
    assert script.status_code == 200 and "topology.json" in script.text
    assert "innerHTML" not in script.text  # names from Kubernetes objects go in as text
    assert http.get("/ui/ui.css").headers["content-type"].startswith("text/css")
    assert http.get("/ui/nope").status_code == 404
    assert http.get("/uix").status_code == 404  # the app's own 404, not the page's


def test_topology_document_has_the_fabric_nodes_and_placed_gangs(server):
    _, http = server
    doc = http.get("/ui/topology.json").json()
    assert [level["name"] for level in doc["levels"]] == ["node", "su", "spine"]
    domains = {d["id"]: d for d in doc["domains"]}
    assert domains["spine:spine"]["parent"] is None
    sus = [d for d in doc["domains"] if d["level"] == "su"]
    assert [d["name"] for d in sus] == ["su0", "su1"]
    assert all(d["parent"] == "spine:spine" and d["gpus"] == 32 for d in sus)
    nodes = {n["name"]: n for n in doc["nodes"]}
    assert list(nodes) == NODES and all(n["domain"] in domains for n in nodes.values())
    gangs = {g["key"]: g for g in doc["gangs"]}
    assert set(gangs) == {"ml/a", "ml/b"}  # ml/c waits for room, ml/d for its members
    assert gangs["ml/a"]["phase"] == "bound" and len(gangs["ml/a"]["nodes"]) == 3
    assert gangs["ml/b"]["phase"] == "reserved" and gangs["ml/b"]["gpus"] == 16
    for name in gangs["ml/a"]["nodes"]:
        assert nodes[name]["allocated"] == 8 and nodes[name]["reserved"] == 0
    for name in gangs["ml/b"]["nodes"]:
        assert nodes[name]["allocated"] == 8 and nodes[name]["reserved"] == 8
    assert doc["gpus"] == {"total": 64, "free": 24, "reserved": 16}


def test_topology_before_the_cluster_is_known():
    page = ui_view("/ui/topology.json", b"", None)
    assert page is not None and page.status == 503 and b"not ready" in page.body
    assert ui_view("/debug/queue", b"", None) is None


# ---------------------------------------------------------------------------- browser
def _chromium() -> str | None:
    """A Chromium or Chrome on this machine; Playwright's own download is not needed."""
    explicit = os.environ.get("PHALANX_CHROMIUM")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if found := shutil.which(name):
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
    )
    executable = _chromium()
    if executable is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium; or PHALANX_CHROMIUM)")
    with sync_api.sync_playwright() as playwright:
        # Chromium's sandbox refuses to start as root (containers, CI): it needs --no-sandbox
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


def _colours(png: bytes) -> np.ndarray:
    from matplotlib import image

    pixels = image.imread(io.BytesIO(png), format="png")
    return np.round(pixels[..., :3] * 255).astype(np.int64).reshape(-1, 3)


def test_page_highlights_the_selected_gang_in_a_browser(server, browser, tmp_path: Path):
    url, http = server
    placed = http.get("/ui/topology.json").json()["gangs"]
    a_nodes = next(g["nodes"] for g in placed if g["key"] == "ml/a")
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(20_000)
    page.goto(f"{url}/ui?gang=ml/a")
    page.wait_for_selector("body[data-state=ready]")
    page.wait_for_selector("#fabric .node.selected")
    assert page.url.endswith("/ui/?gang=ml%2Fa")
    assert page.locator("#fabric .domain").count() == 3  # the spine and its two SUs
    assert page.locator("#fabric .node").count() == len(NODES)
    selected = page.eval_on_selector_all(
        "#fabric .node.selected", "els => els.map(e => e.dataset.node)"
    )
    assert sorted(selected) == sorted(a_nodes)
    assert page.locator("#fabric .node.reserved").count() == 2  # ml/b's nodes
    queue = page.eval_on_selector_all("#queues li", "els => els.map(e => e.dataset.gang)")
    assert queue == ["ml/c", "ml/d"]
    page.wait_for_selector("#selection-details dd")
    assert "bound" in page.locator("#selection-details").inner_text()

    shot = tmp_path / "ui.png"
    png = page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000 and png.startswith(b"\x89PNG\r\n\x1a\n")
    colours = _colours(png)
    assert len(np.unique(colours, axis=0)) > 50, "the screenshot is (almost) one colour"
    assert (colours == SELECTED_RGB).all(axis=1).sum() > 100, "no highlighted node was drawn"

    # a click on one of ml/b's nodes selects ml/b, and the address says so
    b_node = page.locator("#fabric .node.reserved").first
    b_node.click()
    # waited for with Playwright's own assertions: a string given to wait_for_function is
    # eval'd in the page, which the page's Content-Security-Policy (no 'unsafe-eval') refuses
    expect = pytest.importorskip("playwright.sync_api").expect
    expect(page).to_have_url(re.compile(r"/ui/\?gang=ml%2Fb$"))
    assert page.locator("#fabric .node.selected.reserved").count() == 2
    page.locator("#queues li[data-gang='ml/c']").click()
    expect(page.locator("#selection-details")).to_contain_text("capacity")
    assert page.locator("#fabric .node.selected").count() == 0
    assert errors == []
    page.close()
