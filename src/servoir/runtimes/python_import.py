"""Import a version's `model.py` in isolation: one module per loaded version, no sys.path.

Each load imports the file under a fresh module name, as a package whose search path is
the version directory, so `from . import helpers` finds files beside model.py while two
models (or two versions of one) never see each other's modules, and nothing is added to
sys.path. The module and its submodules leave sys.modules when the version is unloaded.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import uuid
from pathlib import Path
from types import ModuleType

MODEL_FILE = "model.py"


class ModelImportError(Exception):
    """model.py could not be imported; the text is safe to show (no directories)."""


def module_name(model: str, version: int) -> str:
    """Unique per load (a reloaded version gets a new module): `_servoir_model_<name>_v<n>_<id>`."""
    ident = re.sub(r"\W", "_", model)
    return f"_servoir_model_{ident}_v{version}_{uuid.uuid4().hex[:8]}"


def import_model_file(path: Path, name: str) -> ModuleType:
    """Execute `<path>/model.py` as module `name`; on failure nothing is left in sys.modules."""
    spec = importlib.util.spec_from_file_location(
        name, path / MODEL_FILE, submodule_search_locations=[str(path)]
    )
    if spec is None or spec.loader is None:
        raise ModelImportError(f"{MODEL_FILE} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    # Registered before running: dataclasses, typing and relative imports look it up here.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        forget_modules(name)
        file = Path(e.filename).name if e.filename else MODEL_FILE
        raise ModelImportError(f"{file} line {e.lineno}: {e.msg}") from None
    except BaseException as e:
        forget_modules(name)
        # SystemExit and KeyboardInterrupt from a model file must not stop the server.
        raise ModelImportError(f"importing {MODEL_FILE} raised {describe(e, path)}") from e
    return module


def forget_modules(name: str) -> None:
    """Drop the module and every submodule imported through it."""
    # list(): other load threads import while this runs; iterating sys.modules itself could
    # meet "dictionary changed size during iteration".
    for key in [k for k in list(sys.modules) if k == name or k.startswith(name + ".")]:
        sys.modules.pop(key, None)


def describe(e: BaseException, path: Path) -> str:
    """`TypeName: message`, with the version directory's path taken out of the message."""
    text = str(e).replace(str(path), "<version>")
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
