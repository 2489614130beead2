"""The researcher SDK is light: its own distribution, no simulator behind ``import twin.client``.

Both checks run in a fresh interpreter, because this test process has long since loaded NumPy.
The distribution check builds the ``novamind-client`` wheel from ``client/``, installs it into an
empty folder and runs it next to nothing but the installed distributions its metadata names
(and theirs), so a file the wheel forgot or a dependency it did not declare fails here.
"""

from __future__ import annotations

import email
import json
import re
import subprocess
import sys
import textwrap
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
SDK_DEPENDENCIES = {"httpx", "httpx-sse", "pydantic", "tenacity"}

# Imports the SDK, uses its wire models the way a researcher does, and reports what it loaded.
PROBE = textwrap.dedent(
    """
    import json, sys
    import twin.client
    from twin import schemas
    from twin.domain.specs import CohortSpec, Scenario

    spec = CohortSpec(n_patients=10, days=28, regimen=[{"day": 0, "drug": "sertraline",
                                                        "mg_per_day": 50}])
    scenario = Scenario(name="x", doses=[{"day": 0, "drug": "sertraline", "mg_per_day": 100}])
    run = schemas.CohortRunIn(synthetic=spec, scenarios=[scenario])
    try:
        Scenario(doses=[{"day": 0, "drug": "aspirin", "mg_per_day": 1}])
        refused = False
    except ValueError:
        refused = True
    client = twin.client.Client("http://127.0.0.1:9", token="t")
    client.close()
    print(json.dumps({
        "client": twin.client.__file__,
        "loaded": sorted(m for m in sys.modules if m.split(".")[0] in {"numpy", "scipy", "numba",
                  "pandas", "pydantic_settings"} or m.startswith(("twin.model", "twin.forecast"))),
        "refused_unknown_drug": refused,
        "weeks": run.weeks,
    }))
    """
)


def _probe(command: list[str]) -> dict[str, object]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_importing_the_sdk_loads_no_numeric_stack() -> None:
    result = _probe([sys.executable, "-c", PROBE])

    assert result["loaded"] == []
    assert result["refused_unknown_drug"] is True
    assert result["weeks"] == 12


def _closure(names: set[str]) -> set[str]:
    """Distributions ``names`` need at run time (no extras), as installed here."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.distribution(name).requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def _link_distribution(name: str, into: Path) -> None:
    """Make one installed distribution importable from ``into`` (links to its top-level files)."""
    dist = metadata.distribution(name)
    for top in {Path(str(f)).parts[0] for f in dist.files or []}:
        if top in {"..", "__pycache__"} or top.endswith(".dist-info"):
            continue
        source = Path(str(dist.locate_file(top)))
        if source.exists() and not (into / top).exists():
            (into / top).symlink_to(source)


def test_the_client_distribution_runs_on_its_declared_dependencies(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         str(ROOT / "client"), "-w", str(wheels)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = wheels.glob("novamind_client-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(archive.read(info))
        archive.extractall(tmp_path / "site")  # a pure wheel installs by unpacking
    required = {
        Requirement(r).name for r in meta.get_all("Requires-Dist") or [] if "extra" not in r
    }
    assert required == SDK_DEPENDENCIES
    modules = {n for n in names if n.endswith(".py")}
    assert "twin/client/http.py" in modules
    assert not {
        n for n in modules if n.startswith(("twin/model/", "twin/forecast/", "twin/service/"))
    }
    assert "twin/settings.py" not in modules and "twin/ports.py" not in modules

    deps = tmp_path / "deps"
    deps.mkdir()
    for name in _closure(required):
        _link_distribution(name, deps)
    # -S: no site-packages at all, so only the wheel and its declared closure are importable.
    paths = [str(tmp_path / "site"), str(deps)]
    result = _probe([sys.executable, "-S", "-c", f"import sys; sys.path[:0] = {paths!r}\n{PROBE}"])

    assert Path(str(result["client"])).is_relative_to(tmp_path / "site")
    assert result["loaded"] == []
    assert result["refused_unknown_drug"] is True
