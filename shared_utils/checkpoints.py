"""Checkpoints as safetensors weights plus a JSON sidecar; crash-safe saves; validated loads.

Origin: written for dgm-course (MIT licence). File format: Hugging Face safetensors (Apache-2.0
library, used as a dependency).

Why safetensors: a checkpoint that arrives in a pull request must not be able to run code, and
``torch.load`` unpickles. Nothing here ever unpickles.

A checkpoint ``ckpt.safetensors`` comes with:

* ``ckpt.json`` (the sidecar): ``model`` (the constructor's keyword arguments: the model is
  rebuilt with ``Model(**sidecar["model"])``), ``train`` (the training settings), ``step``,
  ``metrics``, ``command`` (the command that produced it), ``sha256`` of the weights file and, for a
  resumable checkpoint, the sha256 of the training-state file and the structure of that state.
* optionally ``ckpt.train.safetensors``: optimizer, EMA and RNG states flattened to tensors (their
  non-tensor structure is kept in the sidecar). Shipped checkpoints leave it out.

Crash safety. A save writes every new file under a fixed temporary name first. Before it replaces
the first of the current files it links them, complete and consistent, under backup names
(``ckpt.prev.safetensors``, ...); it deletes the backups once the new set is in place. So a kill
at any instant leaves either the new or the previous checkpoint loadable: :func:`load_checkpoint`
takes the backup when the main set does not verify. Temporary files left by a kill are removed by
the next save.

Loads validate before they trust: a sidecar that is not a JSON object of the expected types, too
large or too deeply nested, a file of another format, a directory in a file's place, or weights
that do not fit the model each raise one :class:`CheckpointError` line that names the file and
the fix. :func:`load_model` builds the model on PyTorch's ``meta`` device first, so a sidecar whose
configuration does not match the weights is refused before any memory is allocated for it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _load_safetensors_bytes
from safetensors.torch import save as _safetensors_bytes

from shared_utils.fileio import publish, sha256_file
from shared_utils.training import flush_denormals

FORMAT_VERSION = 2
MAX_SIDECAR_BYTES = 4 * 2**20  # a sidecar is a few kB; anything this large is not one of ours
MAX_DEPTH = 64  # nesting of the sidecar (an optimizer state is about 10 levels deep)
# Test hook: name of a save phase (see SAVE_PHASES) after which the saving process kills itself
# with SIGKILL, so that tests can check what a crash at that instant leaves behind.
KILL_HOOK_ENV = "DGM_TEST_KILL_AT"
SAVE_PHASES = (
    "temps-written",
    "backup-weights",
    "backup-train-state",
    "backup-sidecar",
    "published-weights",
    "published-train-state",
    "published-sidecar",
    "backups-removed",
)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupted or does not fit the model; the message says what to do."""


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    model: dict[str, Any]
    train: dict[str, Any]
    step: int
    metrics: dict[str, Any]
    command: str | None
    sidecar: dict[str, Any]
    train_state: dict[str, Any] | None = field(default=None)
    recovered: bool = False  # True when the previous checkpoint was taken (interrupted save)


# --------------------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------------------


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


def train_state_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.stem + ".train.safetensors")


def backup_path(path: str | os.PathLike) -> Path:
    """Where the previous weights wait while a save is replacing them."""
    path = Path(path)
    return path.with_name(path.stem + ".prev.safetensors")


def _members(path: Path) -> tuple[Path, Path, Path]:
    """(weights, training state, sidecar) of the checkpoint at ``path``."""
    return path, train_state_path(path), sidecar_path(path)


def _temp(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp")


def printable(text: Any, limit: int = 500) -> str:
    """``text`` with control characters escaped (no terminal escape codes), cut to ``limit``."""
    text = str(text)
    out = "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )
    return out if len(out) <= limit else out[:limit] + "..."


# --------------------------------------------------------------------------------------------------
# nested training state <-> tensors + JSON skeleton
# --------------------------------------------------------------------------------------------------


def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Move every tensor of a nested dict/list into ``tensors``; return a JSON-able skeleton."""
    if isinstance(obj, torch.Tensor):
        key = prefix or "tensor"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        skeleton = {}
        for k, v in obj.items():
            skeleton[str(k)] = _flatten(v, f"{prefix}.{k}" if prefix else str(k), tensors)
        # optimizer state dicts use int keys; remember which keys were ints
        int_keys = [str(k) for k in obj if isinstance(k, int)]
        return (
            {"__dict__": skeleton, "__int_keys__": int_keys} if int_keys else {"__dict__": skeleton}
        )
    if isinstance(obj, (list, tuple)):
        items = [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
        return {"__list__": items, "__tuple__": isinstance(obj, tuple)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix!r} in a checkpoint")


def _unflatten(skeleton: Any, tensors: dict[str, torch.Tensor], where: Path) -> Any:
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            key = skeleton["__tensor__"]
            if not isinstance(key, str) or key not in tensors:
                raise CheckpointError(
                    f"{where} names a tensor {printable(key, 80)!r} that its training-state file "
                    "lacks; the run cannot be resumed: start a new one (new --out)."
                )
            return tensors[key]
        if "__list__" in skeleton and isinstance(skeleton["__list__"], list):
            items = [_unflatten(v, tensors, where) for v in skeleton["__list__"]]
            return tuple(items) if skeleton.get("__tuple__") else items
        if "__dict__" in skeleton and isinstance(skeleton["__dict__"], dict):
            int_keys = set(skeleton.get("__int_keys__") or [])
            return {
                (int(k) if k in int_keys and k.lstrip("-").isdigit() else k): _unflatten(
                    v, tensors, where
                )
                for k, v in skeleton["__dict__"].items()
            }
        raise CheckpointError(
            f"{where}: the training-state structure is malformed; start a new run (new --out)."
        )
    if isinstance(skeleton, list):
        raise CheckpointError(
            f"{where}: the training-state structure is malformed; start a new run (new --out)."
        )
    return skeleton


def _as_state_dict(model: torch.nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    # safetensors refuses shared storage; clone so tied weights are stored once per name
    return {k: v.detach().cpu().clone().contiguous() for k, v in state.items()}


# --------------------------------------------------------------------------------------------------
# saving
# --------------------------------------------------------------------------------------------------


def _phase(name: str) -> None:
    """Test hook: die here, as a crash would, when $DGM_TEST_KILL_AT names this phase."""
    if os.environ.get(KILL_HOOK_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _write_new(final: Path, payload: bytes) -> Path:
    """Write ``payload`` completely (flushed to disk) under ``final``'s temporary name."""
    tmp = _temp(final)
    with open(tmp, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def _link_or_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` (atomically) a copy of ``src``: a hard link where the file system allows."""
    if dst.exists() and os.path.samefile(src, dst):
        return  # already linked (an interrupted save got this far)
    tmp = _temp(dst)
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        tmp.write_bytes(src.read_bytes())
    os.replace(tmp, dst)


def _remove_stale_temps(path: Path) -> None:
    for member in (*_members(path), *_members(backup_path(path))):
        _temp(member).unlink(missing_ok=True)
        # temporary names of earlier versions of this module: .<name>.<random>.tmp
        for old in member.parent.glob(f".{member.name}.*.tmp"):
            old.unlink(missing_ok=True)


def _consistent(path: Path) -> bool:
    """Whether the checkpoint at ``path`` verifies (sidecar readable, sha256s match)."""
    try:
        sidecar = read_sidecar(path)
        if sha256_file(path) != sidecar["sha256"]:
            return False
        if "train_state_sha256" in sidecar:
            return sha256_file(train_state_path(path)) == sidecar["train_state_sha256"]
        return True
    except (CheckpointError, OSError):
        return False


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module | Mapping[str, torch.Tensor],
    *,
    model_config: dict[str, Any],
    train_config: dict[str, Any] | None = None,
    step: int,
    metrics: dict[str, Any] | None = None,
    command: str | None = None,
    train_state: dict[str, Any] | None = None,
) -> Path:
    """Write ``path`` (weights), its sidecar and, if ``train_state`` is given, the training state.

    ``model_config`` holds the keyword arguments that rebuild the model; ``train_config`` the
    training settings. ``train_state`` is a nested dict of tensors and plain values, e.g.
    ``{"optimizer": opt.state_dict(), "rng": torch.get_rng_state()}``. A kill at any instant
    leaves this checkpoint or the previous one loadable (see the module docstring). Returns
    the weights path.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"checkpoint path must end in .safetensors, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    for name, value in (("model_config", model_config), ("train_config", train_config or {})):
        if not isinstance(value, dict):
            raise TypeError(f"{name} must be a dict, not {type(value).__name__}")
    json.dumps([model_config, train_config, metrics])  # fail before writing if not JSON-able

    sidecar: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "weights": path.name,
        "model": model_config,
        "train": train_config or {},
        "step": int(step),
        "metrics": metrics or {},
        "command": command,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
    }
    weights = _safetensors_bytes(_as_state_dict(model), metadata={"format": "pt"})
    sidecar["sha256"] = hashlib.sha256(weights).hexdigest()
    state_bytes = None
    if train_state is not None:
        tensors: dict[str, torch.Tensor] = {}
        sidecar["train_state"] = _flatten(train_state, "", tensors)
        state_bytes = _safetensors_bytes(tensors)
        sidecar["train_state_file"] = train_state_path(path).name
        sidecar["train_state_sha256"] = hashlib.sha256(state_bytes).hexdigest()
    side_bytes = (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode()

    w, t, s = _members(path)
    bw, bt, bs = _members(backup_path(path))
    _remove_stale_temps(path)
    w_tmp = _write_new(w, weights)
    t_tmp = _write_new(t, state_bytes) if state_bytes is not None else None
    s_tmp = _write_new(s, side_bytes)
    _phase("temps-written")

    # 1. the current checkpoint, if it verifies, becomes the backup (the old backup, if the
    #    current one does not verify: an earlier save was interrupted)
    if _consistent(path):
        for src, dst, phase in ((w, bw, "weights"), (t, bt, "train-state"), (s, bs, "sidecar")):
            if src.exists():
                _link_or_copy(src, dst)
            else:
                dst.unlink(missing_ok=True)
            _phase(f"backup-{phase}")
    # 2. the new files take their places, sidecar last
    publish(w_tmp, w)
    _phase("published-weights")
    if t_tmp is not None:
        publish(t_tmp, t)
    _phase("published-train-state")
    publish(s_tmp, s)
    _phase("published-sidecar")
    if t_tmp is None:  # a stale training state must not pair with the new weights
        t.unlink(missing_ok=True)
    # 3. the new checkpoint is complete: the backup goes
    for backup in (bs, bw, bt):
        backup.unlink(missing_ok=True)
    _phase("backups-removed")
    return path


# --------------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------------


def _depth_ok(obj: Any, limit: int = MAX_DEPTH) -> bool:
    stack = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


def _read_bytes(path: Path, what: str, fix: str, limit: int | None = None) -> bytes:
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a {what}; {fix}")
    try:
        if limit is not None and path.stat().st_size > limit:
            raise CheckpointError(
                f"{path} is {path.stat().st_size / 2**20:.1f} MB, too large for a {what}; {fix}"
            )
        return path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; {fix}") from None
    except OSError as err:
        raise CheckpointError(f"{path} cannot be read ({err.strerror}); {fix}") from None


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """The sidecar of a checkpoint, with its fields checked enough to trust them."""
    side = sidecar_path(path)
    fix = "restore it (git checkout) or re-save the checkpoint with shared_utils.checkpoints."
    raw = _read_bytes(side, "checkpoint sidecar", fix, limit=MAX_SIDECAR_BYTES)
    try:
        sidecar = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise CheckpointError(f"{side} is nested too deeply to be a sidecar; {fix}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{side} is not valid JSON ({printable(err, 120)}); {fix}") from None
    if not isinstance(sidecar, dict):
        raise CheckpointError(f"{side} holds a JSON {type(sidecar).__name__}, not an object; {fix}")
    if not _depth_ok(sidecar):
        raise CheckpointError(f"{side} is nested more than {MAX_DEPTH} levels deep; {fix}")
    if "config" in sidecar and "model" not in sidecar:
        raise CheckpointError(
            f"{side} uses the old sidecar layout ('config'); re-save the checkpoint so that the "
            "sidecar holds 'model' (constructor arguments) and 'train' (settings)."
        )
    expected = {
        "model": (dict,),
        "train": (dict,),
        "step": (int,),
        "sha256": (str,),
        "metrics": (dict,),
        "command": (str, type(None)),
    }
    for key, types in expected.items():
        if key in ("train", "metrics", "command") and key not in sidecar:
            continue
        if key not in sidecar:
            raise CheckpointError(f"{side} lacks the field {key!r}; {fix}")
        value = sidecar[key]
        if not isinstance(value, types) or isinstance(value, bool):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise CheckpointError(
                f"{side}: field {key!r} is {printable(repr(value), 60)}, not {names}; {fix}"
            )
    if sidecar["step"] < 0:
        raise CheckpointError(f"{side}: field 'step' is negative; {fix}")
    sha = sidecar["sha256"]
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise CheckpointError(f"{side}: field 'sha256' is not a sha256 hex digest; {fix}")
    sidecar.setdefault("train", {})
    sidecar.setdefault("metrics", {})
    sidecar.setdefault("command", None)
    return sidecar


def _retrain_hint(sidecar: dict[str, Any]) -> str:
    command = sidecar.get("command")
    if command:
        return f" or re-train it with the command in the sidecar: {printable(command)}"
    return ""


def _load_weights(path: Path, sidecar: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Read the weights file once, check its sha256 against the sidecar and parse it."""
    data = _read_bytes(path, "safetensors weights file", "train one first or check the path.")
    if hashlib.sha256(data).hexdigest() != sidecar["sha256"]:
        raise CheckpointError(
            f"{path} is corrupted: its sha256 does not match {sidecar_path(path).name}. "
            f"Restore it (git checkout -- <file>){_retrain_hint(sidecar)}"
        )
    try:
        return _load_safetensors_bytes(data)
    except (SafetensorError, ValueError, OSError) as err:
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({printable(err, 120)}); re-save it with "
            "shared_utils.checkpoints."
        ) from None


def _load_train_state(path: Path, sidecar: dict[str, Any]) -> dict[str, Any]:
    ts_path = train_state_path(path)
    if "train_state_sha256" not in sidecar or "train_state" not in sidecar:
        raise CheckpointError(f"{path} has no training state to resume from; start a new run.")
    data = _read_bytes(ts_path, "training-state file", "start a new run (new --out).")
    if hashlib.sha256(data).hexdigest() != sidecar["train_state_sha256"]:
        raise CheckpointError(
            f"{ts_path} is corrupted (sha256 mismatch); start a new run (new --out)."
        )
    try:
        tensors = _load_safetensors_bytes(data)
    except (SafetensorError, ValueError, OSError) as err:
        raise CheckpointError(
            f"{ts_path} is not a safetensors file ({printable(err, 120)}); start a new run."
        ) from None
    return _unflatten(sidecar["train_state"], tensors, ts_path)


def _fit(
    path: Path, sidecar: dict[str, Any], model: torch.nn.Module, state, strict: bool, load=True
) -> None:
    """Load ``state`` into ``model`` or raise CheckpointError (the model is untouched then);
    with ``load=False`` only check that it would fit."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if wrong_shape or (strict and (missing or unexpected)):
        raise CheckpointError(
            f"{path} does not fit this model (model config in the sidecar: "
            f"{printable(sidecar['model'], 200)}). missing: {missing[:5]}, unexpected: "
            f"{unexpected[:5]}, wrong shape: {wrong_shape[:5]}. Build the model from the sidecar's "
            "'model' arguments (shared_utils.checkpoints.load_model)."
        )
    if load:
        model.load_state_dict(state, strict=strict)


def _load_one(
    path: Path,
    model: torch.nn.Module | None,
    strict: bool,
    map_location: str | torch.device,
    load_train_state: bool,
) -> Checkpoint:
    sidecar = read_sidecar(path)
    state = _load_weights(path, sidecar)
    train_state = _load_train_state(path, sidecar) if load_train_state else None
    if model is not None:
        _fit(path, sidecar, model, state, strict)
    if str(map_location) != "cpu":
        state = {k: v.to(map_location) for k, v in state.items()}
    return Checkpoint(
        path=path,
        state_dict=state,
        model=sidecar["model"],
        train=sidecar["train"],
        step=sidecar["step"],
        metrics=sidecar["metrics"],
        command=sidecar["command"],
        sidecar=sidecar,
        train_state=train_state,
    )


def load_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module | None = None,
    *,
    strict: bool = True,
    map_location: str | torch.device = "cpu",
    load_train_state: bool = False,
) -> Checkpoint:
    """Read and verify a checkpoint; if ``model`` is given, load the weights into it.

    When the checkpoint does not verify and the backup of an interrupted save does, the backup
    is returned (``recovered=True``). Raises :class:`CheckpointError` with a fix-it message if
    a file is missing or malformed, a sha256 does not match, or the weights do not fit
    ``model``; the model is left untouched then.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: a checkpoint path ends in .safetensors; check the path.")
    try:
        return _load_one(path, model, strict, map_location, load_train_state)
    except CheckpointError as first:
        backup = backup_path(path)
        if not sidecar_path(backup).is_file():
            if not path.exists() and not sidecar_path(path).exists():
                raise CheckpointError(
                    f"checkpoint {path} does not exist; train one first or check the path."
                ) from None
            raise
        try:
            ckpt = _load_one(backup, model, strict, map_location, load_train_state)
        except CheckpointError:
            raise first from None
        ckpt.recovered = True
        return ckpt


def load_model(
    path: str | os.PathLike,
    build: Callable[..., torch.nn.Module],
    *,
    map_location: str | torch.device = "cpu",
) -> torch.nn.Module:
    """The model of a checkpoint: ``build(**sidecar["model"])`` with the weights, in eval mode.

    The weights file is read once. ``build`` is the model class (or a factory taking the same
    keyword arguments). It first runs on the ``meta`` device, which allocates nothing, so that
    arguments that do not match the weights (or would need a huge allocation) are refused first.
    Subnormal floats are flushed to zero from then on in this process
    (:func:`shared_utils.training.flush_denormals`): weights trained on a GPU can hold many, and a
    CPU computes with them many times slower.
    """
    flush_denormals()
    path = Path(path)
    ckpt = load_checkpoint(path)
    kwargs = ckpt.model
    where = sidecar_path(ckpt.path)
    try:
        with torch.device("meta"):
            probe = build(**kwargs)
    except TypeError as err:
        raise CheckpointError(
            f"{where}: its 'model' arguments do not fit {getattr(build, '__name__', build)} "
            f"({printable(err, 160)}); re-save the checkpoint from this project's code."
        ) from None
    except (ValueError, KeyError) as err:
        raise CheckpointError(
            f"{where}: its 'model' arguments are invalid ({printable(err, 160)}); re-save the "
            "checkpoint from this project's code."
        ) from None
    except (RuntimeError, NotImplementedError):
        probe = None  # this model cannot be built on the meta device; the full build checks it
    if probe is not None:
        _fit(ckpt.path, ckpt.sidecar, probe, ckpt.state_dict, strict=True, load=False)
    try:
        model = build(**kwargs)
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(
            f"{where}: its 'model' arguments are invalid ({printable(err, 160)}); re-save the "
            "checkpoint from this project's code."
        ) from None
    _fit(ckpt.path, ckpt.sidecar, model, ckpt.state_dict, strict=True)
    return model.to(map_location).eval()


def update_metrics(path: str | os.PathLike, **metrics: Any) -> dict[str, Any]:
    """Add evaluation results to a checkpoint's sidecar (one atomic write); returns the sidecar."""
    path = Path(path)
    sidecar = read_sidecar(path)
    sidecar["metrics"].update(metrics)
    side = sidecar_path(path)
    tmp = _write_new(side, (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode())
    publish(tmp, side)
    return sidecar
