"""Checkpoints as safetensors weights plus a JSON sidecar; atomic writes; resumable training.

Origin: written for dgm-course (MIT licence). File format: Hugging Face safetensors (Apache-2.0
library, used as a dependency).

Why safetensors: a checkpoint that arrives in a pull request must not be able to run code, and
``torch.load`` unpickles. Nothing here ever unpickles.

A checkpoint ``ckpt.safetensors`` comes with:

* ``ckpt.json`` (the sidecar): ``config`` (whatever rebuilds the model), ``step``, ``metrics``,
  ``command`` (the exact command that produced it), ``sha256`` of the weights file, and, for a
  resumable checkpoint, the name and sha256 of the training-state file.
* optionally ``ckpt.train.safetensors``: optimizer state, EMA weights and RNG state, flattened to
  tensors, with the non-tensor structure kept in the sidecar. Shipped checkpoints leave it out.

Every file is written to a temporary name in the same folder and renamed into place, sidecar last,
so an interrupted save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from shared_utils.fileio import publish as _publish
from shared_utils.fileio import sha256_file as _sha256
from shared_utils.fileio import temp_beside as _tmp_name

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupted or does not fit the model; the message says what to do."""


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any]
    step: int
    metrics: dict[str, Any]
    command: str | None
    sidecar: dict[str, Any]
    train_state: dict[str, Any] | None = field(default=None)


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


def train_state_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.stem + ".train.safetensors")


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


def _unflatten(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__list__" in skeleton:
            items = [_unflatten(v, tensors) for v in skeleton["__list__"]]
            return tuple(items) if skeleton.get("__tuple__") else items
        if "__dict__" in skeleton:
            int_keys = set(skeleton.get("__int_keys__", []))
            return {
                (int(k) if k in int_keys else k): _unflatten(v, tensors)
                for k, v in skeleton["__dict__"].items()
            }
    return skeleton


def _as_state_dict(model: torch.nn.Module | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    # safetensors refuses shared storage; clone so tied weights are stored once per name
    return {k: v.detach().cpu().clone().contiguous() for k, v in state.items()}


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module | dict[str, torch.Tensor],
    *,
    config: dict[str, Any],
    step: int,
    metrics: dict[str, Any] | None = None,
    command: str | None = None,
    train_state: dict[str, Any] | None = None,
) -> Path:
    """Write ``path`` (weights), its sidecar and, if ``train_state`` is given, the training state.

    ``train_state`` is a nested dict of tensors and plain values, typically
    ``{"optimizer": opt.state_dict(), "ema": ema.state_dict(), "rng": torch.get_rng_state()}``.
    Returns the weights path.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"checkpoint path must end in .safetensors, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    json.dumps(config)  # fail early, before anything is written, if config is not JSON-able

    sidecar: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "weights": path.name,
        "config": config,
        "step": int(step),
        "metrics": metrics or {},
        "command": command,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
    }
    pending: list[tuple[Path, Path]] = []
    try:
        tmp = _tmp_name(path)
        save_file(_as_state_dict(model), str(tmp), metadata={"format": "pt"})
        sidecar["sha256"] = _sha256(tmp)
        pending.append((tmp, path))
        if train_state is not None:
            tensors: dict[str, torch.Tensor] = {}
            sidecar["train_state"] = _flatten(train_state, "", tensors)
            ts_path = train_state_path(path)
            ts_tmp = _tmp_name(ts_path)
            save_file(tensors, str(ts_tmp))
            sidecar["train_state_file"] = ts_path.name
            sidecar["train_state_sha256"] = _sha256(ts_tmp)
            pending.append((ts_tmp, ts_path))
        side = sidecar_path(path)
        side_tmp = _tmp_name(side)
        side_tmp.write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
        pending.append((side_tmp, side))
    except BaseException:
        for tmp_file, _ in pending:
            tmp_file.unlink(missing_ok=True)
        raise
    for tmp_file, final in pending:
        _publish(tmp_file, final)
    if train_state is None:  # a stale training state must not pair with new weights
        train_state_path(path).unlink(missing_ok=True)
    return path


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """The sidecar of a checkpoint, validated enough to trust its fields."""
    side = sidecar_path(path)
    if not side.exists():
        raise CheckpointError(
            f"{side} is missing: every checkpoint needs its JSON sidecar. Re-save the checkpoint with "
            "shared_utils.checkpoints.save_checkpoint."
        )
    try:
        sidecar = json.loads(side.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(
            f"{side} is not valid JSON ({err}); restore it (git checkout) or re-train."
        ) from err
    for key in ("config", "step", "sha256"):
        if key not in sidecar:
            raise CheckpointError(f"{side} lacks the field {key!r}; re-save the checkpoint.")
    return sidecar


def load_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module | None = None,
    *,
    strict: bool = True,
    map_location: str | torch.device = "cpu",
    load_train_state: bool = False,
) -> Checkpoint:
    """Read and verify a checkpoint; if ``model`` is given, load the weights into it.

    Raises :class:`CheckpointError` with a fix-it message if a file is missing, its sha256 does not
    match the sidecar, or the weights do not fit ``model``. The model is left untouched on error.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(
            f"checkpoint {path} does not exist; train one first or check the path."
        )
    sidecar = read_sidecar(path)
    if _sha256(path) != sidecar["sha256"]:
        raise CheckpointError(
            f"{path} is corrupted: its sha256 does not match {sidecar_path(path).name}. "
            "Restore it (`git checkout -- <file>`) or re-train it with the command in the sidecar: "
            f"{sidecar.get('command')}"
        )
    try:
        state = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file ({err}).") from err

    if model is not None:
        own = model.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        wrong_shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
        if wrong_shape or (strict and (missing or unexpected)):
            raise CheckpointError(
                f"{path} does not fit this model (config in the sidecar: {sidecar['config']}). "
                f"missing: {missing[:5]}, unexpected: {unexpected[:5]}, wrong shape: {wrong_shape[:5]}. "
                "Build the model from the sidecar's config."
            )
        model.load_state_dict(state, strict=strict)

    train_state = None
    if load_train_state:
        ts_path = train_state_path(path)
        if "train_state_file" not in sidecar or not ts_path.exists():
            raise CheckpointError(f"{path} has no training state to resume from; start a new run.")
        if _sha256(ts_path) != sidecar.get("train_state_sha256"):
            raise CheckpointError(f"{ts_path} is corrupted (sha256 mismatch); start a new run.")
        train_state = _unflatten(
            sidecar["train_state"], load_file(str(ts_path), device=str(map_location))
        )

    return Checkpoint(
        path=path,
        state_dict=state,
        config=sidecar["config"],
        step=int(sidecar["step"]),
        metrics=sidecar.get("metrics", {}),
        command=sidecar.get("command"),
        sidecar=sidecar,
        train_state=train_state,
    )


def update_metrics(path: str | os.PathLike, **metrics: Any) -> dict[str, Any]:
    """Add evaluation results to a checkpoint's sidecar (atomically); returns the new sidecar."""
    path = Path(path)
    sidecar = read_sidecar(path)
    sidecar.setdefault("metrics", {}).update(metrics)
    side = sidecar_path(path)
    tmp = _tmp_name(side)
    tmp.write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    _publish(tmp, side)
    return sidecar
