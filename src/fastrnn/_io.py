"""Saving and loading models: one ``.npz`` file holding the architecture as JSON and the
parameters as arrays.  Loading never unpickles (no code runs from the file) and builds only
fastrnn's own classes or the ones passed in ``custom_objects``.  Saving writes a temporary
file in the same directory and renames it over the target, so an interrupted save never
leaves a truncated model where a good one was."""
import inspect
import io
import json
import os
import tempfile
import zipfile

import numpy as np

from fastrnn._version import __version__
from fastrnn.layers._base import Layer, ParameterBudgetExceeded, builtin_classes, parameter_budget

FORMAT = "fastrnn-model"
FORMAT_VERSION = 1
_CONFIG_KEY = "__fastrnn_config__"
_PARAM_PREFIX = "param:"


class ModelFileError(ValueError):
    """A file that is not a readable fastrnn model."""


def _registry(custom_objects):
    reg = builtin_classes()
    if custom_objects:
        if not hasattr(custom_objects, "items"):
            raise TypeError(f"custom_objects must be a dict of name -> class, got "
                            f"{type(custom_objects).__name__}")
        for name, cls in custom_objects.items():
            if not (isinstance(cls, type) and issubclass(cls, Layer)):
                raise TypeError(f"custom_objects[{name!r}] must be a Layer subclass, got "
                                f"{cls!r}")
            reg[name] = cls
    return reg


def layer_config(layer):
    """{"class": name, "config": {...}} for a layer (JSON-ready)."""
    return {"class": type(layer).__name__, "config": layer.get_config()}


def _check_members(data):
    """The archive's members must be stored or deflated .npy files whose unpacked sizes are
    plausible for the file's size (fastrnn.save stores them uncompressed), so a damaged or
    crafted header cannot make the loader unpack gigabytes."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        total = 0
        for info in z.infolist():
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ModelFileError(f"member {info.filename!r} uses compression method "
                                     f"{info.compress_type}, not one a model file uses")
            if info.flag_bits & 0x1:
                raise ModelFileError(f"member {info.filename!r} is encrypted")
            total += info.file_size
        if total > max(64 * len(data), 1 << 20):
            raise ModelFileError(f"the archive's members unpack to {total} bytes, implausible "
                                 f"for a {len(data)}-byte file")


def layer_from_config(entry, custom_objects=None):
    if not isinstance(entry, dict) or not isinstance(entry.get("class"), str) \
            or "config" not in entry:
        raise ModelFileError(f"bad layer entry in the model's architecture: {entry!r:.200}")
    reg = _registry(custom_objects)
    cls = reg.get(entry["class"])
    if cls is None:
        raise ModelFileError(f"unknown layer class {entry['class']!r}: pass it to "
                             f"fastrnn.load(..., custom_objects={{{entry['class']!r}: cls}})")
    config = entry["config"]
    if not isinstance(config, dict):
        raise ModelFileError(f"the configuration of {entry['class']} must be a mapping, got "
                             f"{type(config).__name__}")
    try:
        if "custom_objects" in inspect.signature(cls.from_config).parameters:
            return cls.from_config(config, custom_objects=custom_objects)
        return cls.from_config(config)
    except (ModelFileError, ParameterBudgetExceeded):
        raise
    except Exception as exc:          # a crafted configuration may fail in any way
        raise ModelFileError(f"cannot build {entry['class']} from the saved configuration: "
                             f"{type(exc).__name__}: {exc}") from exc


def _umask():
    """The process's umask, read without changing it where the OS allows (Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)                    # elsewhere: set and restore
    os.umask(mask)
    return mask


def _remove_stale_temps(directory, base):
    """Remove temp files that an earlier save of the same target left behind when its
    process was killed (the process named in the file's name no longer runs)."""
    prefix = f".{base}."
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp") and ".fastrnn-" in name):
            continue
        pid = name[len(prefix):].split(".", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True                            # exists, but not ours
    return True


def save(model, path):
    """Write `model` (architecture + parameters) to `path`, atomically: a temporary file
    ``.<name>.<pid>.fastrnn-*.tmp`` in the same folder is written, synced and renamed over
    `path`, so `path` always holds a whole model.  A save killed outright (SIGKILL, power
    loss) can leave that temporary file behind; the next save to the same path removes it.
    The file gets the usual mode for new files (0666 minus the umask)."""
    if not isinstance(model, Layer):
        raise TypeError(f"model must be a fastrnn layer or model, got {type(model).__name__}")
    path = os.fspath(path)
    header = {"format": FORMAT, "format_version": FORMAT_VERSION,
              "fastrnn_version": __version__, "model": layer_config(model)}
    try:
        blob = json.dumps(header).encode("utf-8")
    except TypeError as exc:
        raise TypeError(f"{type(model).__name__}.get_config() must return JSON-serializable "
                        f"values: {exc}") from exc
    arrays = {_CONFIG_KEY: np.frombuffer(blob, dtype=np.uint8)}
    arrays.update({_PARAM_PREFIX + k: v for k, v in model.parameters().items()})
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot save the model to {path}: it is a directory")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot save the model to {path}: the folder {directory} "
                                f"does not exist")
    base = os.path.basename(path)
    _remove_stale_temps(directory, base)
    try:
        # the temp file's name says whose it is: ".<target>.<pid>.fastrnn-XXXX.tmp"
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.{os.getpid()}.fastrnn-", suffix=".tmp",
                                   dir=directory)
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot save the model to {path}: cannot create a file "
                                   f"in {directory} ({exc.strerror})") from exc
    try:
        os.fchmod(fd, 0o666 & ~_umask())      # the mode any other writer would give it
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:                                   # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


_ZIP_MAGIC = b"PK\x03\x04"


def _describe(data):
    """What a file that is not a model file looks like (for the error message)."""
    if not data:
        return "it is empty"
    if data.startswith(b"\x93NUMPY"):
        return "it is a single NumPy array (.npy); a model file is a .npz archive written " \
               "by fastrnn.save"
    if data.startswith((b"\x80", b"(dp", b"(lp")):
        return "it looks like a pickle, which fastrnn never loads"
    if data.startswith(b"PK"):
        return "it is a damaged zip archive"
    if b"\x00" not in data[:512]:
        return "it is a text file; a model file is a .npz archive written by fastrnn.save"
    return "a model file is a .npz archive written by fastrnn.save"


def load(path, custom_objects=None):
    """Read a model written by ``save``.  ``custom_objects``: {class name: class} for your own
    Layer/Model subclasses.  Raises ModelFileError (a ValueError) for a corrupt or foreign
    file."""
    _registry(custom_objects)                 # checks custom_objects before any file work
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except IsADirectoryError as exc:
        raise ModelFileError(f"{path} is a directory, not a fastrnn model file") from exc
    if not data.startswith(_ZIP_MAGIC):
        raise ModelFileError(f"{path} is not a fastrnn model file: {_describe(data)}")
    try:
        _check_members(data)
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            if _CONFIG_KEY not in npz.files:
                raise ModelFileError(f"{path} is not a fastrnn model file (no architecture "
                                     f"record)")
            header = json.loads(bytes(npz[_CONFIG_KEY]).decode("utf-8"))
            arrays = {k[len(_PARAM_PREFIX):]: npz[k] for k in npz.files
                      if k.startswith(_PARAM_PREFIX)}
    except ModelFileError:
        raise
    except Exception as exc:        # zip, .npy and JSON errors of every kind (damaged files)
        raise ModelFileError(f"{path} is not a readable fastrnn model file ({type(exc).__name__}: "
                             f"{exc})") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a fastrnn model file (format "
                             f"{header.get('format') if isinstance(header, dict) else None!r})")
    if header.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path} has model format version {header.get('format_version')}, "
                             f"this fastrnn reads version {FORMAT_VERSION}")
    # the architecture may allocate only what the file holds, checked before each allocation
    with parameter_budget(sum(int(a.size) for a in arrays.values())):
        try:
            model = layer_from_config(header.get("model"), custom_objects)
        except ParameterBudgetExceeded as exc:
            raise ModelFileError(f"{path}: the saved parameters do not fit the saved "
                                 f"architecture: {exc}") from exc
    try:
        model.load_state_dict(arrays, strict=True)
    except Exception as exc:
        raise ModelFileError(f"{path}: the saved parameters do not fit the saved "
                             f"architecture: {exc}") from exc
    return model
