"""pellucid's ``lrp.attnlrp`` / ``lrp.cp_lrp`` against ``lxt.efficient`` (AttnLRP's reference
implementation, lxt 2.1) on whole Hugging Face models: tiny BERT, GPT-2 and Llama (hidden 32,
2 layers, 4 heads, random weights, float64, sdpa attention), explained at ``inputs_embeds``.

lxt patches the ``transformers`` 4.x modelling modules (it imports names that transformers 5
removed), so this runs in a separate environment with ``transformers<5``::

    python -m venv /tmp/venv_tf4          # torch linked or installed, then:
    /tmp/venv_tf4/bin/pip install "transformers==4.51.3" scipy tqdm
    /tmp/venv_tf4/bin/pip install --no-deps lxt==2.1 zennit
    /tmp/venv_tf4/bin/pip install --no-deps -e .
    /tmp/venv_tf4/bin/python -m benchmarks.lxt_models

For each model it prints max |R_pellucid − R_lxt| over the input relevance and max |R_lxt|.
lxt's relevance is input ⊙ gradient through its patched modules; pellucid runs on an unpatched
copy with the same weights (patching changes the classes of the modelling module).
"""

from __future__ import annotations

import sys
import types

import torch
from torch import nn

import pellucid

VOCAB, HIDDEN, TOKEN = 50, 32, 7


def _placeholder_torchvision() -> None:
    """lxt.efficient imports torchvision's ViT only to patch it: a placeholder suffices."""
    vision = types.ModuleType("torchvision.models.vision_transformer")
    vision.nn = nn
    models = types.ModuleType("torchvision.models")
    models.vision_transformer = vision
    root = types.ModuleType("torchvision")
    root.models = models
    sys.modules.update({"torchvision": root, "torchvision.models": models,
                        "torchvision.models.vision_transformer": vision})


def _build(kind: str, state: dict | None = None) -> nn.Module:
    import transformers

    common = dict(hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, attn_implementation="sdpa")
    torch.manual_seed(0)
    if kind == "bert":
        model = transformers.BertForSequenceClassification(transformers.BertConfig(
            vocab_size=VOCAB, max_position_embeddings=16, num_labels=3, **common))
    elif kind == "gpt2":
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
            vocab_size=VOCAB, n_positions=16, n_embd=HIDDEN, n_layer=2, n_head=4,
            bos_token_id=0, eos_token_id=0, attn_implementation="sdpa"))
    else:
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
            vocab_size=VOCAB, max_position_embeddings=16, num_key_value_heads=2, **common))
    if state is not None:
        model.load_state_dict(state)
    return model.double().eval()


class Embedded(nn.Module):
    def __init__(self, model: nn.Module, kind: str) -> None:
        super().__init__()
        self.model, self.kind = model, kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        extra = {} if self.kind == "bert" else {"use_cache": False}
        logits = self.model(inputs_embeds=x, **extra).logits
        return logits if self.kind == "bert" else logits[:, -1]  # the last position


def main() -> None:
    import transformers.models.bert.modeling_bert as modeling_bert
    import transformers.models.gpt2.modeling_gpt2 as modeling_gpt2
    import transformers.models.llama.modeling_llama as modeling_llama

    _placeholder_torchvision()
    from lxt.efficient import monkey_patch

    x = torch.randn(2, 6, HIDDEN, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    modules = {"bert": modeling_bert, "gpt2": modeling_gpt2, "llama": modeling_llama}
    ours = {}
    for kind in modules:  # pellucid first, on the unpatched modules
        model = _build(kind)
        target = 1 if kind == "bert" else TOKEN
        e = pellucid.explain(Embedded(model, kind).eval(), x, target=target,
                             method="lrp.attnlrp", epsilon=1e-12)
        ours[kind] = (e.attribution, model.state_dict(), target)
    for kind, module in modules.items():
        monkey_patch(module)
        attribution, state, target = ours[kind]
        patched = Embedded(_build(kind, state), kind).eval()
        leaf = x.clone().requires_grad_(True)
        out = patched(leaf)
        out[:, target].sum().backward()
        reference = (leaf * leaf.grad).detach()
        difference = float((attribution - reference).abs().max())
        print(f"{kind}: max |R_pellucid - R_lxt| = {difference:.3g}"
              f"  (max |R_lxt| = {float(reference.abs().max()):.3g}; Σ R_lxt "
              f"{[round(float(v), 6) for v in reference.flatten(1).sum(1)]}, Σ R_pellucid "
              f"{[round(float(v), 6) for v in attribution.flatten(1).sum(1)]})")


if __name__ == "__main__":
    main()
