"""`thrifty export`: an ONNX graph of a classifier, with its parity report."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from thrifty.cli import vocabulary as words
from thrifty.cli.command import Arg, Option, command


@command("an ONNX graph of a classifier (optionally int8), with a parity report against PyTorch", shows_passes=True)
def export(
    model_dir: Annotated[str, Arg(words.MODEL_DIR, metavar="MODEL_DIR")],
    *,
    format: Annotated[Literal["onnx"], Option("the graph format (onnx)")] = "onnx",  # noqa: A002
    quantize: Annotated[Optional[Literal["int8"]], Option("also write a dynamically quantised int8 graph")] = None,
    data: Annotated[Optional[str], Option("labelled texts to check parity on (default: the run's validation "
                                          "split)")] = None,
    text_column: Annotated[Optional[str], Option(words.DATA_TEXT_COLUMN)] = None,
    label_column: Annotated[Optional[str], Option(words.DATA_LABEL_COLUMN)] = None,
    force: Annotated[bool, Option("keep an int8 graph that agrees with PyTorch on under 99% of labels")] = False,
) -> int:
    from thrifty.inference.onnx_backend import export_onnx

    report = export_onnx(model_dir, quantize=quantize, data=data, force=force, text_column=text_column,
                         label_column=label_column)
    for line in parity_lines(report):
        print(line)
    print(f"use it: thrifty serve {model_dir} --backend {'onnx-int8' if 'int8' in report else 'onnx'}")
    return 0


def parity_lines(report: dict[str, Any]) -> list[str]:
    """The export report for a terminal: where it went, and each graph's agreement with PyTorch."""
    lines = [f"wrote {report['folder']} ({report['export_seconds']} s); parity on {report['texts']} texts of "
             f"{report['source']}: PyTorch accuracy {report['pytorch']['accuracy']:.4f}"]
    for kind in ("fp32", "int8"):
        if kind in report:
            r = report[kind]
            lines.append(f"  {kind}: accuracy {r['accuracy']:.4f}, same label as PyTorch {r['label_agreement']:.2%}, "
                         f"largest probability difference {r['max_probability_difference']:.2g}, "
                         f"{r['bytes'] / 1e6:.1f} MB")
            if "fallback_margin" in r:
                lines.append(f"    close calls (leading labels within {r['fallback_margin']:.3g}) recomputed in fp32: "
                             f"{r['fallback_share']:.1%} of texts; int8 alone: same label "
                             f"{r['without_fallback']['label_agreement']:.2%}")
    return lines
