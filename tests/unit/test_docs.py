"""The example in docs/api.md runs and prints the values in its comments."""

import contextlib
import io
import re

from netstate import bootstrap
from tests.conftest import REPO


def test_api_example_runs(tmp_path, monkeypatch):
    text = (REPO / "docs" / "api.md").read_text()
    (example,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    real_open = bootstrap.open_service
    monkeypatch.setattr(bootstrap, "open_service", lambda _db: real_open(tmp_path / "netstate.db", kernel="fake"))

    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(compile(example, "docs/api.md", "exec"), {})

    printed = output.getvalue().splitlines()
    assert printed[:3] == ["192.0.2.0/24 192.0.2.1 nsweb0", "192.0.2.2 192.0.2.9", "c2"]
    assert [eval(line)["endpoint"] for line in printed[3:]] == ["c1", "c2"]
    assert len(printed) == 5
