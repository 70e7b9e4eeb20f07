"""Regenerate the golden outputs for flow projects (dev-only): what Prefect itself reports.

Every directory under xtask/tests/fixtures/flow_projects/ is a small project. For each function
decorated with a `flow` in any of its files, this writes
`<project>/goldens/<file path with / as __>.<function>.json` holding one section per mode:

- `imported` (run with an interpreter that can import the project's packages): what
  `prefect deploy` stores, i.e. `load_flow_from_entrypoint` then
  `parameter_schema(flow).model_dump(exclude_unset=True)`, with name, description and version.
  When the import fails, Prefect's own fallback (the source read without importing) is what
  this records, as `prefect deploy` would.
- `source_only`: `parameter_schema_from_entrypoint`, the schema Prefect builds from the source
  alone when it cannot import the module.

The working directory is the project (as for `prefect deploy`). Run from the repository root,
once per mode (each mode updates only its own section):

    <golden-venv>/bin/python scripts/gen_flow_project_goldens.py imported
    .venv/bin/python scripts/gen_flow_project_goldens.py source_only
"""

import ast
import json
import os
import sys
from pathlib import Path

PROJECTS = Path(__file__).resolve().parent.parent / "xtask" / "tests" / "fixtures" / "flow_projects"


def flow_functions(path: Path) -> list[str]:
    """Functions whose decorator is named `flow` (bare, called, or an attribute)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except SyntaxError:
        return []
    names = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for decorator in node.decorator_list:
            target = decorator.func if isinstance(decorator, ast.Call) else decorator
            name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
            if name == "flow":
                names.append(node.name)
                break
    return names


def error(exc: Exception) -> dict:
    return {"error_type": type(exc).__name__, "error": str(exc)}


def imported(entrypoint: str) -> dict:
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema

    try:
        flow = load_flow_from_entrypoint(entrypoint)
        schema = parameter_schema(flow).model_dump(exclude_unset=True)
    except Exception as exc:  # the error is part of the golden output
        return error(exc)
    return {
        "flow_name": flow.name,
        "description": flow.description,
        "version": flow.version,
        "schema": schema,
    }


def source_only(entrypoint: str) -> dict:
    from prefect.utilities.callables import parameter_schema_from_entrypoint

    try:
        return {"schema": parameter_schema_from_entrypoint(entrypoint).model_dump(exclude_unset=True)}
    except Exception as exc:
        return error(exc)


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    run = {"imported": imported, "source_only": source_only}.get(mode)
    if run is None:
        print("usage: gen_flow_project_goldens.py imported|source_only", file=sys.stderr)
        return 2
    count = 0
    for project in sorted(p for p in PROJECTS.iterdir() if p.is_dir()):
        os.chdir(project)
        sys.path.insert(0, str(project))
        goldens = project / "goldens"
        goldens.mkdir(exist_ok=True)
        for path in sorted(project.rglob("*.py")):
            relative = path.relative_to(project).as_posix()
            for function in flow_functions(path):
                entrypoint = f"{relative}:{function}"
                out = goldens / f"{relative.replace('/', '__')}.{function}.json"
                golden = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
                golden["entrypoint"] = entrypoint
                golden[mode] = run(entrypoint)
                ordered = {k: golden[k] for k in ("entrypoint", "imported", "source_only") if k in golden}
                out.write_text(json.dumps(ordered, indent=2) + "\n", encoding="utf-8")
                count += 1
        sys.path.remove(str(project))
    print(f"wrote the {mode} section of {count} golden files under {PROJECTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
