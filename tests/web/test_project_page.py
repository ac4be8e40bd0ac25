"""The human page of a project, `/project/NAME/`, from `pypi-insiders serve` over a generated index:
releases newest first, files with sizes and upload times, yanked state with its reason, and where
a fetched file came from. (Who may read it: tests/web/test_access.py.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pypi_insiders import config, provenance
from pypi_insiders.store import Store
from pypi_insiders.web.project_page import size_text
from tests.conftest import ConfigMaker
from tests.support.distfiles import make_sdist, make_wheel
from tests.support.server_fixtures import JSON_TYPE, request, serve_process

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.slow
def test_project_page_shows_releases_files_yanks_and_origin(make_config: ConfigMaker, tmp_path: Path) -> None:
    config_file = make_config(yank={"page-demo": {"1.0": "<b>old</b> & broken"}})
    loaded = config.load(str(config_file))
    store = Store(loaded.paths.store)
    old = make_wheel(tmp_path / "d", "page-demo", "1.0")
    new = [make_wheel(tmp_path / "d", "page-demo", "2.0"), make_sdist(tmp_path / "d", "page-demo", "2.0")]
    loaded.paths.state.mkdir(parents=True, exist_ok=True)
    origin = provenance.Origin(repo="page", url="https://git.example.invalid/page.git", tag="v2.0",
                               commit=COMMIT)
    provenance.record(loaded.paths.state, [p.name for p in new], origin)
    for path in (old, *new):
        store.add(path.name, path)
    with serve_process(config_file) as running:
        reply = request(running.url, "/project/page-demo/")
        assert reply.status == 200, reply
        assert reply.header("Content-Type") == "text/html; charset=utf-8"
        page = reply.body.decode()
        files = json.loads(request(running.url, "/simple/page-demo/", headers={"Accept": JSON_TYPE}).body)
        home = request(running.url, "/").body.decode()
        listing = request(running.url, "/project/").body.decode()
    assert page.index('<h2 id="2.0">2.0</h2>') < page.index('<h2 id="1.0">1.0 <span class="yanked">(yanked)')
    for entry in files["files"]:
        row = next(line for line in page.splitlines() if f">{entry['filename']}</a>" in line)
        assert f'href="{entry["url"]}"' in row
        assert f"<td>{size_text(entry['size'])}</td>" in row
        assert entry["upload-time"][:19].replace("T", " ") in row
        if entry["filename"] == old.name:
            assert "yanked: &lt;b&gt;old&lt;/b&gt; &amp; broken" in row
            assert "uploaded or added by hand" in row
        else:
            assert "yanked" not in row
            assert f"tag <code>v2.0</code> commit <code>{COMMIT[:12]}</code>" in row
            assert "https://git.example.invalid/page.git" in row
    assert "<b>old</b>" not in page
    assert re.search(r'href="project/page-demo/"', home), home
    assert 'href="project/"' in home
    assert '<li><a href="page-demo/">page-demo</a></li>' in listing


@pytest.mark.parametrize(("size", "text"), [(0, "0 bytes"), (1023, "1023 bytes"), (1536, "1.5 KiB"),
                                            (5 * 1024 * 1024, "5.0 MiB"), (None, "?")])
def test_project_page_size_text(size: int | None, text: str) -> None:
    assert size_text(size) == text
