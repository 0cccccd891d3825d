"""Whether torch.compile folds a global-context block's fusion into the residual add: full-size buffers of a compiled
residual block, plain and with a block at ``before_add``, read from the code Inductor generates on the CPU.

    python -m benchmarks.fold [--train] [--device cuda] [--presets plain gc ...]

At ``before_add`` (the paper's place) eager mode writes the block's output ``x + t`` (or ``x * sigmoid(a)``) as a
tensor of its own, and timm then adds the shortcut and applies the ReLU. Compiled, Inductor can compute
``relu(x + t + shortcut)`` in the one loop that adds the shortcut. For each residual block below (ResNet-50's
Bottleneck, ResNet-18's BasicBlock, ConvNeXt's block; stage 0, block 1, at 32 px and batch 2) the table gives the
buffers of the block's output size that the generated code allocates, and its kernels, for the plain block and each
preset: inference (no_grad, eval mode), and with ``--train`` forward and backward in train mode. A fused fusion adds no
full-size buffer at inference; a graph break between block and residual add adds two (tests/test_compile.py checks
the first, and was seen to fail on the second).

The code is read with Inductor's ``run_and_get_code``, a helper of Inductor's own tests and not a public API: this is
the one place gcnas reads it, and the test above fails (import or attribute error, or "no allocation found") when
Inductor changes it. Counts are properties of the generated code, not timings: they do not vary from run to run, but
may with the torch version and on GPUs (``--device cuda``: Triton kernels instead of C++).
"""
from __future__ import annotations

import argparse
import math
import re
import warnings

import torch
from torch import nn

FOLD_SITES = (("resnet50", "layer1.1"), ("resnet18", "layer1.1"), ("convnext_atto", "stages.0.blocks.1"))
PRESETS = (None, "gc", "gc_scale", "gc_scale_add", "se")


def residual_block(backbone: str, module: str, preset: str | None,
                   device: str = "cpu") -> tuple[nn.Module, torch.Tensor]:
    """Residual block ``module`` of a fresh timm ``backbone`` (stage 0, block 1) with ``preset`` at ``before_add``
    (None: plain), and the input it receives from a 2 x 3 x 32 x 32 image batch, on ``device``."""
    import timm

    from gcnas.backbones import insert

    torch.manual_seed(0)
    model = timm.create_model(backbone, pretrained=False, num_classes=4)
    if preset:
        insert(model, [dict(stage=0, block=1, position="before_add", spec=preset)], input_size=(3, 32, 32))
    block = model.get_submodule(module)
    inputs = []
    hook = block.register_forward_pre_hook(lambda m, args: inputs.append(args[0]))
    with torch.no_grad():
        model.eval()(torch.randn(2, 3, 32, 32))
    hook.remove()
    return block.to(device), inputs[0].to(device)


def generated_code(block: nn.Module, x: torch.Tensor, train: bool = False) -> tuple[torch.Tensor, str]:
    """The block's output and the code Inductor generates to compile it: inference, or with ``train`` the forward and
    backward of a training step."""
    from torch._inductor.utils import run_and_get_code

    torch._dynamo.reset()
    compiled = torch.compile(block.train(train))
    if not train:
        with torch.no_grad():
            out, code = run_and_get_code(compiled, x)
        return out, "\n".join(code)

    def step(x):
        out = compiled(x)
        out.sum().backward()
        return out

    out, code = run_and_get_code(step, x.detach().clone().requires_grad_(True))
    return out, "\n".join(code)


def full_size_buffers(out: torch.Tensor, code: str) -> int:
    """How many buffers with ``out``'s number of elements ``code`` allocates."""
    shapes = re.findall(r"empty_strided_(?:cpu|cuda)\(\(([0-9, ]+)\)", code)
    if not shapes:
        raise RuntimeError("no allocation found in Inductor's generated code: its form changed")
    return sum(math.prod(int(d) for d in s.split(",") if d.strip()) == out.numel() for s in shapes)


def kernels(code: str) -> int:
    """How many distinct generated kernels ``code`` defines (C++ on the CPU, Triton on a GPU)."""
    return len(set(re.findall(r"^(?:cpp|triton)_\w+ = ", code, flags=re.M)))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", action="store_true", help="also count a training step's forward and backward")
    p.add_argument("--device", default="cpu", help="where to compile: cpu (C++ kernels) or cuda (Triton kernels)")
    names = [p or "plain" for p in PRESETS]
    p.add_argument("--presets", nargs="+", default=names, choices=names,
                   help="the columns: plain and block presets at before_add (default all)")
    args = p.parse_args(argv)
    from gcnas.machine import describe_machine

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("benchmarks/fold.py: --device cuda needs a CUDA device; this machine has none")
    print(f"# full-size buffers / kernels of a compiled residual block on {args.device}; {describe_machine()}")
    modes = [False, True] if args.train else [False]
    presets = [None if p == "plain" else p for p in args.presets]
    print("| block | mode | " + " | ".join(p or "plain" for p in presets) + " |")
    print("|---|---|" + "---:|" * len(presets))
    for backbone, module in FOLD_SITES:
        for train in modes:
            cells = []
            for preset in presets:
                out, code = generated_code(*residual_block(backbone, module, preset, args.device), train=train)
                cells.append(f"{full_size_buffers(out, code)} / {kernels(code)}")
            print(f"| {backbone} {module} | {'train' if train else 'inference'} | " + " | ".join(cells) + " |",
                  flush=True)


if __name__ == "__main__":
    main()
