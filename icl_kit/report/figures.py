"""Report figures as PNG bytes.

Every figure of the report is the one a notebook shows (training curves: `icl_kit.train.plots`,
accuracy by epoch: `icl_kit.evaluation.plots`, forest and power: `icl_kit.stats.plots`), so the
report and the notebooks agree. Labels inside figures are English in both report languages:
the captions under them are translated, and English needs no CJK font.
"""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

DPI = 110
WIDTH = 10.0  # inches; 1100 px at DPI


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes (no software metadata, so reruns give the same file); closes a pyplot figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)  # a no-op for figures pyplot does not manage
    return buf.getvalue()
