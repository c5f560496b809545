"""Model sites: where a method reads or writes a model's activations, for both hook systems at once.

One table per architecture family (as pyvene keeps one per model type) maps each *site kind* to
  (a) the Hugging Face module whose output (or input) it is, used with forward hooks on the HF model, and
  (b) the TransformerLens hook name on a `TransformerBridge` booted from that model (`models/bridge.py`).
Analyses and defenses ask `sites_of(model)` instead of spelling module paths or hook strings themselves.

Site kinds (per decoder layer L unless marked global; all `[batch, pos, d_model]` unless noted):

    embed             global   token embeddings entering layer 0 (Gemma: already scaled by √d_model)
    resid_pre         L        residual stream entering layer L (the layer's input)
    resid_post        L        residual stream after layer L (the layer's output)
    attn_out          L        what the attention block adds to the residual stream. Llama: the self_attn
                               module's output; Gemma 3: the output of `post_attention_layernorm`, applied to
                               the attention output before the residual add
    mlp_out           L        what the MLP block adds (Llama: mlp output; Gemma 3: `post_feedforward_layernorm`)
    head_in           L        per-head input of o_proj, `[batch, pos, n_heads, head_dim]` (TransformerLens
                               `hook_z`): head h's output before W_O
    final_norm_scale  global   TransformerLens only (`ln_final.hook_scale`, `[batch, pos, 1]`): no HF module
                               outputs it

Modules (`Sites.module(model, kind, layer)`): every site kind above with an HF module, plus "layers" (the
decoder ModuleList), "layer", "attn", "mlp" (per layer), "final_norm", "lm_head", and each linear sublayer type
("q_proj", ..., "down_proj"; per layer). `linear_modules(model, types)` lists linear sublayers by type.

    sites = sites_of(model)                    # HF causal LM, a peft (LoRA) wrapper of one, or a TransformerBridge
    sites.n_layers, sites.n_heads, sites.head_dim, sites.tied_embeddings
    sites.hook_name("attn_out", 3)             # "blocks.3.hook_attn_out" (Gemma 3: "blocks.3.ln1_post.hook_out")
    sites.module(model, "attn_out", 3)         # the HF module a forward hook goes on
    with sites.capture(model, "resid_post") as acts: model(...)        # acts[L]: the tensor, still in the graph
    with sites.add_to_output(model, "mlp_out", 2, delta): model(...)   # the site's value becomes value + delta
    with sites.edit(model, "attn_out", {L: fn for L in ...}): ...      # value -> fn(value) (None: unchanged)
    sites.layer_of("base_model.model.model.layers.3.self_attn.q_proj.lora_A.default.weight")   # 3

"Output" in `add_to_output` / `edit` means the site's value, whichever side of its module it sits on
(resid_pre and head_in are module inputs: forward pre-hooks).

Adding a family: add an `Architecture` to `ARCHITECTURES` (HF class names, module paths, the TransformerLens
hook name of each site) and add a tiny random instance to tests/test_model_sites.py, whose oracle compares every
site with raw forward hooks on the HF modules and with the bridge's activations.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

PEFT_PREFIX = "base_model.model."  # how peft prefixes the wrapped model's parameter and module names


@dataclass(frozen=True)
class Site:
    """How one site kind is reached. `module`: HF module path, relative to decoder layer L for per-layer sites
    ("" = the layer itself) or to the causal LM for global ones; None = TransformerLens only. `port`: whether
    the site is the module's output (forward hook) or its input `arg` (forward pre-hook). `hook`: the
    TransformerLens hook name ("{layer}" filled in). `heads`: the last axis is viewed as [n_heads, head_dim]."""

    module: str | None
    hook: str
    port: str = "output"
    arg: str = "hidden_states"
    per_layer: bool = True
    heads: bool = False


def _llama_sites(attn_out: Site, mlp_out: Site) -> dict[str, Site]:
    return {
        "embed": Site("model.embed_tokens", "hook_embed", per_layer=False),
        "resid_pre": Site("", "blocks.{layer}.hook_resid_pre", port="input"),
        "resid_post": Site("", "blocks.{layer}.hook_resid_post"),
        "attn_out": attn_out,
        "mlp_out": mlp_out,
        "head_in": Site("self_attn.o_proj", "blocks.{layer}.attn.hook_z", port="input", arg="input", heads=True),
        "final_norm_scale": Site(None, "ln_final.hook_scale", per_layer=False),
    }


@dataclass(frozen=True)
class Architecture:
    """One model family: HF class names / model types it covers, module paths, and its sites."""

    family: str
    classes: tuple[str, ...]  # HF `*ForCausalLM` class names (also TransformerLens' `cfg.architecture`)
    model_types: tuple[str, ...]  # `config.model_type` values
    examples: str  # models of the family the workbench uses
    sites: Mapping[str, Site]
    layers: str = "model.layers"  # decoder ModuleList, from the causal LM
    embed: str = "model.embed_tokens"
    final_norm: str = "model.norm"
    lm_head: str = "lm_head"
    attn: str = "self_attn"  # per layer
    mlp: str = "mlp"  # per layer
    attn_linears: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")  # inside `attn`
    mlp_linears: tuple[str, ...] = ("gate_proj", "up_proj", "down_proj")  # inside `mlp`
    norm_offset: float = 0.0  # RMSNorm scales by (norm_offset + weight): Gemma stores weight − 1
    attn_out_norm: str | None = None  # per layer: an RMSNorm applied to o_proj's output before the residual add
    extra: Mapping[str, str] = field(default_factory=dict)  # further per-layer modules by name

    @property
    def linear_types(self) -> tuple[str, ...]:
        return self.attn_linears + self.mlp_linears

    def container_of(self, linear: str) -> str | None:
        """"self_attn" / "mlp" (this family's module names) for a linear sublayer type, else None."""
        return self.attn if linear in self.attn_linears else self.mlp if linear in self.mlp_linears else None


LLAMA = Architecture(
    family="llama", classes=("LlamaForCausalLM",), model_types=("llama",), examples="SmolLM2, tiny-llama",
    sites=_llama_sites(attn_out=Site("self_attn", "blocks.{layer}.hook_attn_out"),
                       mlp_out=Site("mlp", "blocks.{layer}.hook_mlp_out")),
)

# Gemma 3 normalises each block's output before the residual add (post_attention_layernorm /
# post_feedforward_layernorm), so "what attention adds to the residual stream" is that norm's output; the
# TransformerLens Gemma 3 adapter names those norms ln1_post / ln2_post.
GEMMA3 = Architecture(
    family="gemma3", classes=("Gemma3ForCausalLM",), model_types=("gemma3_text",), examples="Gemma 3 (text)",
    sites=_llama_sites(attn_out=Site("post_attention_layernorm", "blocks.{layer}.ln1_post.hook_out"),
                       mlp_out=Site("post_feedforward_layernorm", "blocks.{layer}.ln2_post.hook_out")),
    norm_offset=1.0,
    attn_out_norm="post_attention_layernorm",
    extra={"input_layernorm": "input_layernorm", "post_attention_layernorm": "post_attention_layernorm",
           "pre_feedforward_layernorm": "pre_feedforward_layernorm",
           "post_feedforward_layernorm": "post_feedforward_layernorm"},
)

ARCHITECTURES: tuple[Architecture, ...] = (LLAMA, GEMMA3)

# Linear sublayer types scored / projected by default (Wanda, Safe LoRA): the same names in every family above.
LINEAR_TYPES: tuple[str, ...] = LLAMA.linear_types


def supported() -> str:
    return "; ".join(f"{a.family} ({', '.join(a.classes)}: {a.examples})" for a in ARCHITECTURES)


def architecture_of(class_name: str | None, model_type: str | None = None) -> Architecture:
    """The table entry for an HF class name (or, failing that, a config.model_type); ValueError if none."""
    for arch in ARCHITECTURES:
        if class_name in arch.classes:
            return arch
    for arch in ARCHITECTURES:
        if model_type is not None and model_type in arch.model_types:
            return arch
    raise ValueError(
        f"no model-site table for {class_name} (model_type {model_type!r}); supported: {supported()}. To add a "
        "family, add an Architecture to ARCHITECTURES in workbench/models/sites.py (its HF class name, the module "
        "paths of its decoder layers, attention, MLP, norms, embeddings and LM head, and the TransformerLens hook "
        "name of each site) and a tiny random instance to tests/test_model_sites.py, which checks every site "
        "against raw forward hooks and the TransformerLens bridge")


def unwrap(model):
    """The HF causal LM under a peft wrapper (LoRA layers stay injected in it); the model itself otherwise."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _is_bridge(model) -> bool:
    return hasattr(model, "original_model") and hasattr(getattr(model, "cfg", None), "architecture")


def sites_of(model) -> Sites:
    """The sites of `model`: an HF causal LM, a peft wrapper of one, or a TransformerLens `TransformerBridge`."""
    if _is_bridge(model):
        cfg = model.cfg
        hf_cfg = getattr(model.original_model, "config", None)
        return Sites(architecture_of(cfg.architecture), n_layers=int(cfg.n_layers), n_heads=int(cfg.n_heads),
                     head_dim=int(cfg.d_head), d_model=int(cfg.d_model),
                     tied_embeddings=bool(getattr(hf_cfg, "tie_word_embeddings", False)))
    base = unwrap(model)
    cfg = getattr(base, "config", None)
    arch = architecture_of(type(base).__name__, getattr(cfg, "model_type", None))
    n_heads = int(cfg.num_attention_heads)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    n_layers = len(base.get_submodule(arch.layers))
    return Sites(arch, n_layers=n_layers, n_heads=n_heads, head_dim=int(head_dim), d_model=int(cfg.hidden_size),
                 tied_embeddings=bool(getattr(cfg, "tie_word_embeddings", False)))


# ------------------------------------------------------------------------------------ parameter names

def strip_peft(name: str) -> str:
    """A peft-wrapped parameter / module name as it reads in the merged model (`base_model.model.` removed)."""
    return name.removeprefix(PEFT_PREFIX)


def _layer_pattern(layers_path: str) -> re.Pattern:
    # The ModuleList's own name, anywhere in the dotted name: plain (`model.layers.3.mlp.up_proj.weight`), peft
    # (`base_model.model.model.layers.3.self_attn.q_proj.lora_A.default.weight`) and backbone-relative
    # (`layers.3.…`) names alike; a module name that ends at the layer (`model.layers.3`) counts too.
    return re.compile(rf"(?:^|\.){re.escape(layers_path.rsplit('.', 1)[-1])}\.(\d+)(?:\.|$)")


_LAYER_PATTERNS = tuple(dict.fromkeys(_layer_pattern(a.layers) for a in ARCHITECTURES))


def layer_of(name: str) -> int | None:
    """Decoder layer of a parameter / module name of any supported family, or None (embeddings, final norm,
    LM head). For code that holds names but no model; `sites_of(model).layer_of` is the per-family form."""
    for pattern in _LAYER_PATTERNS:
        m = pattern.search(name)
        if m:
            return int(m.group(1))
    return None


def linear_modules(model, types: tuple[str, ...] | list[str] = LINEAR_TYPES) -> dict[str, torch.nn.Linear]:
    """`nn.Linear` modules whose last name component is one of `types`, by module name, in module order.

    Selected by type name, as peft's `target_modules` are, so it works on any module tree (names are those of
    `model.named_modules()`); for the families in the table the default types are exactly each decoder layer's
    attention and MLP linears (tests/test_model_sites.py). ValueError when none matches.
    """
    wanted = set(types)
    out = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n.rsplit(".", 1)[-1] in wanted}
    if not out:
        raise ValueError(f"no linear modules named {list(types)} in the model")
    return out


def container_of(linear: str) -> str | None:
    """The block module ("self_attn" or "mlp") holding a linear sublayer type, when every family agrees."""
    found = {a.container_of(linear) for a in ARCHITECTURES} - {None}
    return found.pop() if len(found) == 1 else None


# --------------------------------------------------------------------------------------------- sites

def _first(output):
    return output[0] if isinstance(output, tuple) else output


def _with_first(output, tensor: torch.Tensor):
    return (tensor, *output[1:]) if isinstance(output, tuple) else tensor


@dataclass(frozen=True)
class Sites:
    """The sites of one model (architecture entry + sizes). Methods take the model (plain or peft-wrapped), so
    one `Sites` serves copies of the same architecture (e.g. a frozen reference model)."""

    arch: Architecture
    n_layers: int
    n_heads: int
    head_dim: int
    d_model: int
    tied_embeddings: bool

    # --- names
    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self.arch.sites)

    def site(self, kind: str) -> Site:
        try:
            return self.arch.sites[kind]
        except KeyError:
            raise ValueError(f"unknown site kind {kind!r}; known: {', '.join(self.arch.sites)}") from None

    def _check_layer(self, kind: str, layer: int | None, per_layer: bool | None = None) -> None:
        per_layer = self.site(kind).per_layer if per_layer is None else per_layer
        if per_layer and (layer is None or not 0 <= layer < self.n_layers):
            raise ValueError(f"{kind}: layer must be in [0, {self.n_layers}), got {layer}")
        if not per_layer and layer is not None:
            raise ValueError(f"{kind} is not a per-layer site; pass layer=None")

    def hook_name(self, kind: str, layer: int | None = None) -> str:
        """The TransformerLens hook name of a site (`blocks.{layer}.hook_resid_post`, ...)."""
        self._check_layer(kind, layer)
        return self.site(kind).hook.format(layer=layer)

    def hook_names(self, kind: str, layers: list[int] | range | None = None) -> list[str]:
        """Hook names of a per-layer site for `layers` (default: every layer)."""
        return [self.hook_name(kind, layer) for layer in (range(self.n_layers) if layers is None else layers)]

    def layer_of(self, name: str) -> int | None:
        """Decoder layer of a parameter / module name (plain, peft-wrapped or backbone-relative), or None."""
        m = _layer_pattern(self.arch.layers).search(name)
        return int(m.group(1)) if m else None

    # --- modules
    def layers(self, model) -> torch.nn.ModuleList:
        return unwrap(model).get_submodule(self.arch.layers)

    def module_path(self, kind: str, layer: int | None = None) -> str:
        """Dotted path (from the unwrapped causal LM) of the module of a site kind or module name."""
        a = self.arch
        if kind in a.sites:
            site = self.site(kind)
            if site.module is None:
                raise ValueError(f"site {kind!r} exists on the TransformerLens side only ({site.hook}); "
                                 "it has no HF module")
            self._check_layer(kind, layer)
            if not site.per_layer:
                return site.module
            return ".".join(p for p in (a.layers, str(layer), site.module) if p)
        globals_ = {"layers": a.layers, "final_norm": a.final_norm, "lm_head": a.lm_head}
        if kind in globals_:
            self._check_layer(kind, layer, per_layer=False)
            return globals_[kind]
        rel = {"layer": "", "attn": a.attn, "mlp": a.mlp, **a.extra,
               **{t: f"{a.attn}.{t}" for t in a.attn_linears}, **{t: f"{a.mlp}.{t}" for t in a.mlp_linears}}
        if kind not in rel:
            raise ValueError(f"unknown site or module {kind!r} for {a.family}; sites: {', '.join(a.sites)}; modules: "
                             f"{', '.join([*globals_, *rel])}")
        self._check_layer(kind, layer, per_layer=True)
        return ".".join(p for p in (a.layers, str(layer), rel[kind]) if p)

    def module(self, model, kind: str, layer: int | None = None) -> torch.nn.Module:
        """The HF module of a site kind (the one a forward hook goes on) or of a module name (see docstring)."""
        return unwrap(model).get_submodule(self.module_path(kind, layer))

    def modules(self, model, kind: str) -> list[torch.nn.Module]:
        """One module per decoder layer for a per-layer site kind or module name."""
        return [self.module(model, kind, layer) for layer in range(self.n_layers)]

    def norm_gain(self, norm: torch.nn.Module) -> torch.Tensor:
        """An RMSNorm module's elementwise gain (weight, or offset + weight for Gemma), detached."""
        w = norm.weight.detach()
        return w + self.arch.norm_offset if self.arch.norm_offset else w

    def final_norm_gain(self, model) -> torch.Tensor:
        """The final RMSNorm's elementwise gain `[d_model]` (weight, or offset + weight for Gemma), detached."""
        return self.norm_gain(self.module(model, "final_norm"))

    def heads_to_attn_out(self, model, layer: int, head_out: torch.Tensor) -> torch.Tensor:
        """Split attn_out among heads: `head_out [..., n_heads, d_model]` holds each head's o_proj output
        (z_h · W_O[h], summing to o_proj's output); returns the part of attn_out each head accounts for, summing
        exactly to attn_out. Llama: head_out itself. Gemma 3, where attn_out = post_attention_layernorm(o_proj
        output): each head is scaled as the norm scales the sum (the sum's RMS frozen, then the gain 1 + w), the
        linearisation TransformerLens's `apply_ln_to_stack` makes for the final norm."""
        if self.arch.attn_out_norm is None:
            return head_out
        norm = unwrap(model).get_submodule(f"{self.arch.layers}.{layer}.{self.arch.attn_out_norm}")
        eps = getattr(norm, "eps", None)
        if eps is None:
            eps = norm.variance_epsilon
        total = head_out.sum(-2, keepdim=True)
        rms = (total.pow(2).mean(-1, keepdim=True) + eps).sqrt()
        return head_out / rms * self.norm_gain(norm).to(head_out.device, head_out.dtype)

    # --- hooks
    def _view(self, site: Site, t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(-1, (self.n_heads, self.head_dim)) if site.heads else t

    def _unview(self, site: Site, t: torch.Tensor) -> torch.Tensor:
        return t.flatten(-2) if site.heads else t

    def _register(self, module: torch.nn.Module, site: Site, fn: Callable):
        def apply(value):
            new = fn(self._view(site, value))
            return None if new is None else self._unview(site, new)

        if site.port == "output":
            def hook(mod, args, output):
                new = apply(_first(output))
                return None if new is None else _with_first(output, new)
            return module.register_forward_hook(hook)

        def pre_hook(mod, args, kwargs):
            if args:
                new = apply(args[0])
                return None if new is None else ((new, *args[1:]), kwargs)
            new = apply(kwargs[site.arg])
            return None if new is None else (args, {**kwargs, site.arg: new})
        return module.register_forward_pre_hook(pre_hook, with_kwargs=True)

    @contextmanager
    def edit(self, model, kind: str, fns: Mapping[int | None, Callable[[torch.Tensor], torch.Tensor | None]]
             ) -> Iterator[None]:
        """While active, the value of site `kind` at each layer in `fns` becomes fns[layer](value) (None keeps
        it). head_in values are `[batch, pos, n_heads, head_dim]`. Global sites take the key None."""
        site = self.site(kind)
        handles = []
        try:
            for layer, fn in fns.items():
                handles.append(self._register(self.module(model, kind, layer), site, fn))
            yield
        finally:
            for h in handles:
                h.remove()

    @contextmanager
    def capture(self, model, kind: str, layers: list[int] | range | None = None
                ) -> Iterator[dict[int | None, torch.Tensor]]:
        """Record site `kind` at `layers` (default every layer; global sites: key None) into the yielded dict.

        The tensors are the ones the forward pass goes on with, so they stay in the autograd graph; one that
        does not require grad while grad is enabled (e.g. after a frozen first layer) is made a grad-requiring
        leaf, so `torch.autograd.grad` can still be taken with respect to it.
        """
        store: dict[int | None, torch.Tensor] = {}

        def make(layer):
            def keep(t: torch.Tensor) -> torch.Tensor:
                if not t.requires_grad and torch.is_grad_enabled():
                    t.requires_grad_(True)
                store[layer] = t
                return t
            return keep

        if not self.site(kind).per_layer:
            keys = [None]
        else:
            keys = list(range(self.n_layers) if layers is None else layers)
        with self.edit(model, kind, {key: make(key) for key in keys}):
            yield store

    @contextmanager
    def add_to_outputs(self, model, kind: str, deltas: Mapping[int | None, torch.Tensor]) -> Iterator[None]:
        """While active, site `kind` at each layer in `deltas` becomes value + deltas[layer] (same shape)."""
        with self.edit(model, kind, {layer: (lambda t, d=d: t + d) for layer, d in deltas.items()}):
            yield

    def add_to_output(self, model, kind: str, layer: int | None, delta: torch.Tensor):
        """`add_to_outputs` for one layer."""
        return self.add_to_outputs(model, kind, {layer: delta})
