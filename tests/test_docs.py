"""Every public callable has a docstring: the modules users import, their public classes
and functions, and the public methods of those classes (an inherited docstring counts)."""
import importlib
import inspect

import pytest

MODULES = ["fastrnn", "fastrnn.functional", "fastrnn.reference", "fastrnn.layers",
           "fastrnn.models", "fastrnn.losses", "fastrnn.metrics", "fastrnn.optim",
           "fastrnn.clip", "fastrnn.schedules", "fastrnn.callbacks", "fastrnn.data",
           "fastrnn.init", "fastrnn.training", "fastrnn.tasks"]


def _public(module):
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    for name in names:
        obj = getattr(module, name)
        if inspect.ismodule(obj):
            continue
        owner = getattr(obj, "__module__", "") or ""
        if (inspect.isclass(obj) or callable(obj)) and owner.startswith("fastrnn"):
            yield name, obj


def _undocumented():
    missing, seen = [], set()
    for modname in MODULES:
        module = importlib.import_module(modname)
        if not (module.__doc__ or "").strip():
            missing.append(modname)
        for name, obj in _public(module):
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            label = f"{modname}.{name}"
            if not (inspect.getdoc(obj) or "").strip():
                missing.append(label)
            if not inspect.isclass(obj):
                continue
            for attr, member in vars(obj).items():
                if attr.startswith("_") and attr != "__call__":
                    continue
                fn = member.fget if isinstance(member, property) else member
                if isinstance(fn, (staticmethod, classmethod)):
                    fn = fn.__func__
                if not callable(fn) and not isinstance(member, property):
                    continue
                if inspect.isclass(fn):
                    continue
                doc = inspect.getdoc(getattr(obj, attr)) if not isinstance(member, property) \
                    else member.__doc__
                if not (doc or "").strip():
                    missing.append(f"{label}.{attr}")
    return missing


def test_every_public_callable_has_a_docstring():
    missing = _undocumented()
    assert not missing, f"{len(missing)} public callables without a docstring: {missing}"


@pytest.mark.parametrize("modname", MODULES)
def test_modules_import_without_optional_extras(modname):
    importlib.import_module(modname)
