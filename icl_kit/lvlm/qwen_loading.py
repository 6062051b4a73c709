"""Loading Qwen2.5-VL on a first run: dtype, attention implementation, device, cache API; the weights' digest.

Each choice is made once, here, and logged in one line, so a GPU box that lacks something
(a broken flash-attn wheel, a CUDA build without a driver, an older transformers) runs
with the fallback or stops with one sentence, instead of failing at the first forward.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
from typing import Any

import torch

from icl_kit.core.config import LVLMConfig
from icl_kit.core.devices import resolve_device
from icl_kit.core.errors import KitError
from icl_kit.core.hub import locate_model

log = logging.getLogger(__name__)

CPU_DTYPE = torch.float32  # bf16 matmuls on CPU are slow and round differently per batch
CUDA_DTYPE = torch.bfloat16
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
FLASH = "flash_attention_2"


def resolve_dtype(spec: str, device: torch.device) -> torch.dtype:
    """'auto' -> bfloat16 on CUDA, float32 on CPU."""
    if spec == "auto":
        return CUDA_DTYPE if device.type == "cuda" else CPU_DTYPE
    return DTYPES[spec]


def flash_attn_problem() -> str:
    """'' when flash-attn imports AND transformers reports it available, else why not."""
    try:
        import flash_attn  # noqa: F401 - a broken wheel fails here (undefined symbol, CUDA mismatch)
    except ImportError as exc:
        return f"flash-attn does not import ({(str(exc).splitlines() or [type(exc).__name__])[0]})"
    except (OSError, RuntimeError) as exc:
        return f"flash-attn fails to load ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0]})"
    from transformers.utils import is_flash_attn_2_available

    if not is_flash_attn_2_available():
        return "transformers does not report flash-attn 2 as available (version or GPU not supported)"
    return ""


def resolve_attn(spec: str, device: torch.device) -> str:
    """'auto' -> flash_attention_2 when usable on CUDA, else sdpa (one log line with the reason).

    An explicit 'flash_attention_2' that is not usable is a KitError (not a crash at the first forward).
    """
    if spec == FLASH or (spec == "auto" and device.type == "cuda"):
        problem = flash_attn_problem() if device.type == "cuda" else "flash-attention 2 needs CUDA"
        if not problem:
            log.info("lvlm.qwen.attn_implementation=%s: using flash_attention_2", spec)
            return FLASH
        if spec == FLASH:
            raise KitError(f"lvlm.qwen.attn_implementation='flash_attention_2' but {problem}; "
                           "use 'auto' or 'sdpa'.")
        log.info("lvlm.qwen.attn_implementation=auto: using sdpa because %s", problem)
        return "sdpa"
    if spec == "auto":
        log.info("lvlm.qwen.attn_implementation=auto: using sdpa on %s", device)
        return "sdpa"
    return spec


# ------------------------------------------------------------------ cache API
@functools.cache
def cache_kwarg(model_cls: type) -> str:
    """The forward/generate keyword of the KV cache: 'cache' from transformers 5.24, else 'past_key_values'."""
    params = inspect.signature(model_cls.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def output_cache(out: Any) -> Any:
    """The KV cache of a forward output under either API (`.cache` from 5.24, `.past_key_values` before)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


# ------------------------------------------------------------------ loading
def load_model_and_processor(cfg: LVLMConfig) -> tuple[Any, Any, torch.device]:
    """Load the model (eval mode) and processor; any loading failure is one KitError."""
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    source = locate_model(cfg.model, "Qwen2.5-VL model", "lvlm.model")
    device = resolve_device(cfg.device, "lvlm.device")
    dtype = resolve_dtype(cfg.dtype, device)
    attn = resolve_attn(cfg.qwen.attn_implementation, device)
    try:
        processor = AutoProcessor.from_pretrained(source)
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(source, dtype=dtype, attn_implementation=attn)
    except (OSError, ValueError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KitError(f"lvlm.model={cfg.model!r} could not be loaded as Qwen2.5-VL ({first}).") from None
    processor.tokenizer.padding_side = "left"
    log.info("lvlm: %s on %s, %s, %s", cfg.model, device, str(dtype).removeprefix("torch."), attn)
    return model.to(device).eval(), processor, device


WEIGHT_SAMPLE = 64  # leading values of every parameter tensor hashed into the fingerprint


@torch.no_grad()
def weights_digest(model: torch.nn.Module) -> str:
    """sha256 over each parameter's name and first WEIGHT_SAMPLE values (as float32): cheap,
    independent of where the weights were loaded from, different for different weights."""
    h = hashlib.sha256()
    for name, param in model.named_parameters():
        h.update(name.encode())
        h.update(param.detach().reshape(-1)[:WEIGHT_SAMPLE].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]
