"""The package's layout: imports point one way, ``import sam_lab`` is light, one source per fact.

Every module's imports are read from its source (including imports inside functions, which run
later but still tie the modules together), resolved to sam_lab modules, and checked against
the layers below. A module may import from its own layer and the layers above it in this list,
never from one below it; and no chain of imports may come back to where it started.
"""
from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import sam_lab
from sam_lab import STAGES, build_sam, stage_kwargs
from sam_lab.config import STAGE_PARENTS

PACKAGE = Path(sam_lab.__file__).parent
ROOT = PACKAGE.parent

# lowest first: a module may import only from its own layer or an earlier one
LAYERS = [
    ("sam_lab.config", "sam_lab.device", "sam_lab.modeling.kernels"),
    ("sam_lab.modeling",),
    # io, official, download, random_init, transformers_names; convert (the files, not the models)
    ("sam_lab.weights", "sam_lab.convert"),
    ("sam_lab.build",),
    ("sam_lab.inference", "sam_lab.weights.pretrained"),
    ("sam_lab.evaluation",),
    ("sam_lab.training",),  # uses the evaluation for its closing report, never the reverse
    ("sam_lab.data_engine",),  # annotates with inference, retrains with training, measures with evaluation
    ("sam_lab.exercises", "sam_lab.viz"),
    ("sam_lab.widgets",),
    ("sam_lab",),  # the package's __init__: the public API
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    best, rank = -1, None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    assert rank is not None, f"{module} is in no layer: add it to LAYERS"
    return rank


def imports_of(module: str) -> set:
    """The sam_lab modules that `module` imports, anywhere in its source."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            # `from package import submodule` imports the submodule
            names = [target] + [f"{target}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def packages_above(module: str) -> set:
    """The packages that hold `module`, the root package aside: sam_lab.a.b -> {sam_lab.a}."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(2, len(parts))} & set(MODULES)


def runs_on_import(module: str) -> set:
    """What importing `module`'s imports executes: each target and the packages above it
    (importing sam_lab.a.b first runs sam_lab/a/__init__.py), except the packages `module`
    itself sits in, which are already being imported when it runs."""
    targets = set()
    for target in GRAPH[module]:
        targets |= {target} | packages_above(target)
    return targets - packages_above(module) - {module}


GRAPH = {m: imports_of(m) for m in MODULES}


def test_the_import_reader_sees_function_level_and_relative_imports():
    assert "sam_lab.weights.io" in GRAPH["sam_lab.build"]  # inside build_sam
    assert "sam_lab.modeling.kernels" in GRAPH["sam_lab.modeling.attention"]  # from .kernels import
    assert "sam_lab.modeling.attention" in GRAPH["sam_lab.exercises.engine"]  # from ..modeling import attention


def test_no_module_imports_from_a_layer_below_it():
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in GRAPH.items()
        for target in targets
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def test_modeling_imports_nothing_from_sam_lab_but_config_and_kernels():
    allowed = {"sam_lab.config", "sam_lab.modeling"}
    wrong = [
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if module.startswith("sam_lab.modeling")
        for target in targets
        if target not in allowed and not target.startswith("sam_lab.modeling")
    ]
    assert not wrong, "\n".join(wrong)


def test_there_is_no_import_cycle():
    edges = {m: runs_on_import(m) for m in MODULES}
    state, stack = {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for target in sorted(edges[module]):
            if state.get(target) == "open":
                cycle = stack[stack.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = "done"

    for module in sorted(MODULES):
        if module not in state:
            visit(module)


def test_the_cycle_check_would_catch_a_cycle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    seen, found = set(), []

    def visit(module, path):
        for target in edges[module]:
            if target in path:
                found.append(path[path.index(target):] + [target])
            elif target not in seen:
                seen.add(target)
                visit(target, path + [target])

    visit("a", ["a"])
    assert found == [["a", "b", "c", "a"]]


def test_import_sam_lab_loads_neither_matplotlib_nor_the_widgets():
    code = (
        "import sys, sam_lab\n"
        "heavy = [m for m in ('matplotlib', 'matplotlib.pyplot', 'anywidget', 'ipywidgets', 'sam_lab.widgets', "
        "'sam_lab.viz', 'sam_lab.exercises') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
        "sam_lab.viz.show_mask\n"  # still reachable on first use
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"import sam_lab loaded {result.stdout.strip()}"


def test_no_two_public_classes_share_a_name():
    where = {}
    for module, path in MODULES.items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                where.setdefault(node.name, []).append(module)
    shared = {name: modules for name, modules in where.items() if len(modules) > 1}
    assert not shared, shared


def test_model_files_are_named_for_the_class_they_hold():
    for stem, cls in [("mask_decoder", "MaskDecoder"), ("prompt_encoder", "PromptEncoder"),
                      ("image_encoder", "ImageEncoder"), ("two_way_transformer", "TwoWayTransformer"),
                      ("attention", "Attention"), ("sam", "Sam")]:
        assert cls in {n.name for n in ast.parse((PACKAGE / "modeling" / f"{stem}.py").read_text()).body
                       if isinstance(n, ast.ClassDef)}, f"modeling/{stem}.py should hold {cls}"


OLD_PATHS = re.compile(
    r"sam_lab\.(backends|components|interactive|checkpoints|download|pretrained|losses|train|data|rle|"
    r"predictor|transforms|validation|mask_head|two_way_attention|attention|image_encoder|patching|"
    r"positional_encoding|prompt_encoder|layers|sam)\b"
)


def test_nothing_refers_to_the_old_flat_module_paths():
    files = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=ROOT).stdout.split()
    if not files:  # not a git checkout: look at what the package ships and the course
        files = [str(p.relative_to(ROOT)) for d in ("sam_lab", "lessons", "widgets", "tests", "benchmarks")
                 for p in (ROOT / d).rglob("*") if p.suffix in (".py", ".ipynb", ".md")]
    here = Path(__file__).name
    stale = []
    for name in files:
        path = ROOT / name
        if path.name == here or path.suffix not in (".py", ".ipynb", ".md", ".yml", ".toml", ".cfg") or not path.is_file():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OLD_PATHS.search(line):
                stale.append(f"{name}:{number}: {line.strip()[:100]}")
    assert not stale, "old module paths:\n" + "\n".join(stale)


# ----------------------------------------------------------------------------- one source per fact

def test_every_stage_is_built_with_exactly_the_keyword_arguments_of_stage_kwargs():
    """Record what each stage's factory is called with inside build_sam and our parent classes."""
    received = {}

    def recording(stage):
        def factory(**kwargs):
            received.setdefault(stage, kwargs)  # the first instance: block 0 for the blocks
            return STAGES[stage](**kwargs)

        return factory

    sub_stage_arguments = {"patch_embed", "block", "neck", "positional_encoding"}  # how parents take them
    for config in ("tiny", "vit_b"):
        received.clear()
        with torch.device("meta"):  # shapes only
            build_sam(config, **{stage: recording(stage) for stage in STAGES})
        expected = stage_kwargs(config)
        for stage in STAGES:
            got = dict(received[stage])
            if stage == "mask_decoder":
                assert got.pop("transformer") is not None
            if stage in STAGE_PARENTS.values():  # a parent also receives its swapped sub-stages
                got = {key: value for key, value in got.items() if key not in sub_stage_arguments}
            assert got.keys() == expected[stage].keys(), stage
            for key, value in expected[stage].items():
                if key not in ("norm_layer",):  # a fresh functools.partial each time
                    assert got[key] == value, (config, stage, key)


def test_build_sams_docstring_lists_every_stage_and_keyword_argument():
    doc = inspect.getdoc(build_sam)
    for stage, kwargs in stage_kwargs("tiny").items():
        line = next((l for l in doc.splitlines() if l.strip().startswith(stage + " ")), None)
        assert line is not None, f"{stage} is missing from build_sam's docstring"
        block = doc[doc.index(line):]
        for name in kwargs:
            assert name in block.split("\n\n")[0], f"{stage}: {name} is missing from build_sam's docstring"


def test_the_reference_oracle_and_the_checkers_use_stage_kwargs():
    for path in (ROOT / "tests" / "reference.py", PACKAGE / "exercises" / "image_stages.py",
                 PACKAGE / "exercises" / "prompt_stages.py", PACKAGE / "build.py"):
        assert "stage_kwargs(" in path.read_text(), path
