"""Regenerate the golden outputs for xtask's native flow reader (dev-only).

For every flow fixture under xtask/tests/fixtures/flows/, load each function the
way `prefect deploy` does (`load_flow_from_entrypoint` + `parameter_schema`,
dumped with `exclude_unset=True` like RunnerDeployment) and write
`<file>.<function>.expected.json`. The Rust tests compare against these files,
so they never need Python.

Run with the project's venv from the repository root:

    .venv/bin/python scripts/gen_schema_fixtures.py
"""

import ast
import json
import os
import sys
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "xtask" / "tests" / "fixtures" / "flows"

# Entrypoints that are not functions defined in the file: error cases.
EXTRA_CASES = {
    "errors_not_flow.py": ["does_not_exist", "Missing.method"],
    "decorators.py": ["Pipeline.missing"],
}


def function_names(path: Path) -> list[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except SyntaxError:
        return ["broken"]
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.append(node.name)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.decorator_list:
                    names.append(f"{node.name}.{item.name}")
    return names + EXTRA_CASES.get(path.name, [])


def load_case(file_name: str, function: str) -> dict:
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema

    entrypoint = f"{file_name}:{function}"
    try:
        flow = load_flow_from_entrypoint(entrypoint)
        schema = parameter_schema(flow).model_dump(exclude_unset=True)
    except Exception as exc:  # the error text is part of the golden output
        return {"entrypoint": entrypoint, "error_type": type(exc).__name__, "error": str(exc)}
    return {
        "entrypoint": entrypoint,
        "flow_name": flow.name,
        "description": flow.description,
        "version": flow.version,
        "schema": schema,
    }


def main() -> int:
    os.chdir(FIXTURES)
    sys.path.insert(0, str(FIXTURES))
    for stale in FIXTURES.glob("*.expected.json"):
        stale.unlink()
    count = 0
    for path in sorted(FIXTURES.glob("*.py")):
        for function in function_names(path):
            result = load_case(path.name, function)
            out = FIXTURES / f"{path.stem}.{function}.expected.json"
            out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
            count += 1
    print(f"wrote {count} golden files to {FIXTURES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
