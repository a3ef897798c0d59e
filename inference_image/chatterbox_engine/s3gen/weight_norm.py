"""Weight-normed convolutions that run as plain convolutions.

Upstream wraps convs in `torch.nn.utils.parametrizations.weight_norm`, so checkpoints store
`<name>.parametrizations.weight.original0` (g, shape (dim0, 1, ...)) and `.original1` (v); older files use the
legacy `<name>.weight_g` / `<name>.weight_v`. Recomputing g·v/‖v‖ on every forward is pure overhead at inference,
so these modules keep one plain `weight` and translate at the state-dict boundary only:

- loading accepts either spelling and folds it into `weight` (a load pre-hook);
- `state_dict()` emits the parametrization spelling (g = ‖weight‖, v = weight), so a saved model has exactly
  the official key set and reloads into upstream unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

_G = "parametrizations.weight.original0"
_V = "parametrizations.weight.original1"
_LEGACY_G = "weight_g"
_LEGACY_V = "weight_v"


def _norm_except_dim0(v: torch.Tensor) -> torch.Tensor:
    dims = tuple(range(1, v.dim()))
    return torch.linalg.vector_norm(v, dim=dims, keepdim=True)


def fold_weight_norm(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """weight = g · v / ‖v‖, the norm taken over every dim except 0 (as torch's `weight_norm(dim=0)`)."""
    return v * (g / _norm_except_dim0(v))


class _WeightNormStateDict:
    """Mixin for conv modules whose checkpoint weight is weight-normed (see module docstring)."""

    def _install_weight_norm_hooks(self) -> None:
        self.register_state_dict_post_hook(_emit_weight_norm)
        self.register_load_state_dict_pre_hook(_accept_weight_norm)


def _emit_weight_norm(module: nn.Module, state_dict: dict, prefix: str, local_metadata) -> None:
    weight = state_dict.pop(prefix + "weight")
    state_dict[prefix + _G] = _norm_except_dim0(weight.detach())
    state_dict[prefix + _V] = weight


def _accept_weight_norm(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    for g_key, v_key in ((_G, _V), (_LEGACY_G, _LEGACY_V)):
        if prefix + g_key in state_dict and prefix + v_key in state_dict:
            g = state_dict.pop(prefix + g_key)
            v = state_dict.pop(prefix + v_key)
            state_dict[prefix + "weight"] = fold_weight_norm(g.float(), v.float()).to(v.dtype)
            return


class WNConv1d(_WeightNormStateDict, nn.Conv1d):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._install_weight_norm_hooks()


class WNConvTranspose1d(_WeightNormStateDict, nn.ConvTranspose1d):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._install_weight_norm_hooks()
