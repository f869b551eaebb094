"""
Convert AGMM's (UniMatch's / ST++'s) ImageNet deep-stem ResNet weights (`resnet50.pth`,
`resnet101.pth`, torchvision-style names with a 3-conv stem) to wss_d2's backbone names, so
that MODEL.WEIGHTS can point at them (docs/agmm.md §9.2).

    python tools/convert_agmm_resnet.py resnet101.pth output/R-101-deepstem-agmm.pth \
        [--config-file configs/voc/agmm_R101_point.yaml]

Every source tensor must find its place (fc.* and num_batches_tracked are dropped); with
--config-file, every backbone parameter of that config's model must be covered with the
right shape. The original loads these files with strict=False, which hides mismatches.
"""
import argparse
import re
import sys

import torch

__all__ = ["convert_agmm_resnet"]

# (pattern, replacement) applied in order to every source key
_RULES = [
    (r"^conv1\.0\.", "stem.conv1."),
    (r"^conv1\.1\.", "stem.conv1.norm."),
    (r"^conv1\.3\.", "stem.conv2."),
    (r"^conv1\.4\.", "stem.conv2.norm."),
    (r"^conv1\.6\.", "stem.conv3."),
    (r"^bn1\.", "stem.conv3.norm."),
    (r"^layer([1-4])\.", lambda m: f"res{int(m.group(1)) + 1}."),
    (r"\.bn([1-3])\.", r".conv\1.norm."),
    (r"\.downsample\.0\.", ".shortcut."),
    (r"\.downsample\.1\.", ".shortcut.norm."),
]
_DROPPED = re.compile(r"(^fc\.|num_batches_tracked$)")
_TARGET = re.compile(r"^(stem\.conv[1-3](\.norm)?|res[2-5]\.\d+\.(conv[1-3]|shortcut)(\.norm)?)\.(weight|bias|running_mean|running_var)$")


def convert_agmm_resnet(state_dict, prefix="backbone."):
    """wss_d2 names (with `prefix`) for every kept tensor; ValueError on a key no rule maps."""
    converted, unknown = {}, []
    for key, value in state_dict.items():
        key = key[len("module."):] if key.startswith("module.") else key
        if _DROPPED.search(key):
            continue
        new = key
        for pattern, replacement in _RULES:
            new = re.sub(pattern, replacement, new)
        if not _TARGET.match(new):
            unknown.append(key)
            continue
        converted[prefix + new] = value
    if unknown:
        raise ValueError(f"{len(unknown)} keys are not deep-stem ResNet keys: {unknown[:10]}")
    return converted


def check_coverage(converted, model):
    """ValueError listing backbone parameters/buffers the converted weights miss or mis-shape."""
    expected = {k: v for k, v in model.state_dict().items() if k.startswith("backbone.") and "num_batches_tracked" not in k}
    missing = sorted(set(expected) - set(converted))
    extra = sorted(set(converted) - set(expected))
    shapes = sorted(k for k in set(expected) & set(converted) if tuple(expected[k].shape) != tuple(converted[k].shape))
    if missing or extra or shapes:
        raise ValueError(
            f"converted weights do not fit the backbone: missing {missing[:10]}, unexpected {extra[:10]}, "
            f"wrong shape {shapes[:10]}"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="AGMM/UniMatch resnet50.pth or resnet101.pth")
    parser.add_argument("output", help="converted .pth (load with MODEL.WEIGHTS)")
    parser.add_argument("--config-file", help="check that every backbone parameter of this config is covered")
    args = parser.parse_args(argv)
    state = torch.load(args.input, map_location="cpu")
    state = state.get("state_dict", state.get("model", state))
    converted = convert_agmm_resnet(state)
    if args.config_file:
        from detectron2.modeling import build_model

        from wss_d2 import get_wss_cfg

        cfg = get_wss_cfg(args.config_file, ["MODEL.WEIGHTS", "", "MODEL.RESNETS.NORM", "BN", "MODEL.SEM_SEG_HEAD.NORM", "BN"])
        check_coverage(converted, build_model(cfg))
    torch.save({"model": converted, "__author__": "AGMM (converted by wss_d2)"}, args.output)
    print(f"wrote {len(converted)} tensors to {args.output}")


if __name__ == "__main__":
    sys.exit(main())
